"""Synthetic HAADF images of two-phase quantum dots with known ground truth.

The images follow the paper's contrast: in CsPbI3-like (``ordered``) domains
the columns sit on a square grid of spacing a/2 = 3.145 A with bright Pb-I
columns on one site in four and dimmer Cs and I columns on the other three;
in PbI2/FAPbI3-like (``uniform``) domains the columns sit on a ~3.2 A grid
with uniform intensity. Domains are Voronoi cells of random seeds inside a
square dot that lies on amorphous carbon; the true region map is the physical
area of each phase's domains inside the dot outline (the area a user wants to
measure), and the area the columns of each phase cover (their lattice cells)
is kept beside it as a diagnostic. Every accuracy test and benchmark of the
project measures against these truths (positions, contrasts, labels, region
map, area fraction), at a chosen dose with Poisson noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ._tiles import fill_holes
from ._types import CONTRASTS, LABELS, REGION_ORDERED, REGION_OUTSIDE, REGION_UNIFORM, Micrograph

_BRIGHT, _DIM, _UNIFORM = (CONTRASTS.index(c) for c in ("bright", "dim", "uniform"))
_ORDERED_LABEL, _UNIFORM_LABEL = LABELS.index("ordered"), LABELS.index("uniform")


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticDot:
    """A synthetic micrograph and its ground truth.

    Attributes
    ----------
    image : (M, N) ndarray of float32
        The noisy image [counts].
    clean : (M, N) ndarray of float32
        The noise-free expected counts.
    pixel_size_nm : float
        Pixel size [nm].
    rc : (K, 2) ndarray
        True column positions (row, col) [px].
    contrast : (K,) ndarray of int8
        True contrast codes (index into ``CONTRASTS``).
    label : (K,) ndarray of int8
        True phase codes (index into ``LABELS``).
    amplitude : (K,) ndarray
        True column peak heights [counts].
    region_map : (M, N) ndarray of int8
        0 outside the dot, 1 ordered, 2 uniform: each phase's domains inside
        the dot outline (see :func:`domain_map`), the truth of the area fractions.
    lattice_vectors_px : (2, 2) ndarray
        The ordered grid's two basis vectors (row, col) [px], spacing a/2.
    dose : float or None
        Counts at a bright column peak (None: no noise).
    column_region_map : (M, N) ndarray of int8 or None
        Diagnostic: the lattice cells of the columns of each phase (see
        :func:`column_region_map`); it differs from ``region_map`` along the
        dot edge and where the two grids meet (None where a generator does
        not draw it).
    """

    image: np.ndarray
    clean: np.ndarray
    pixel_size_nm: float
    rc: np.ndarray
    contrast: np.ndarray
    label: np.ndarray
    amplitude: np.ndarray
    region_map: np.ndarray
    lattice_vectors_px: np.ndarray
    dose: float | None
    column_region_map: np.ndarray | None = None

    @property
    def uniform_fraction(self) -> float:
        """True uniform area fraction: the uniform domains' share of the dot's area."""
        return region_uniform_fraction(self.region_map)

    @property
    def column_uniform_fraction(self) -> float:
        """Diagnostic: the uniform share of the area the columns cover (``column_region_map``; nan without it)."""
        return float("nan") if self.column_region_map is None else region_uniform_fraction(self.column_region_map)

    def micrograph(self, source: str = "synthetic") -> Micrograph:
        """The noisy image as a calibrated :class:`Micrograph`."""
        return Micrograph(self.image, pixel_size_nm=self.pixel_size_nm, source=source)

    def boundary_distance_nm(self) -> np.ndarray:
        """Distance of every true column from the nearest domain boundary [nm].

        Dot edges do not count as domain boundaries; in a single-domain dot
        every distance is infinite.
        """
        region = self.region_map
        inside = region != REGION_OUTSIDE
        if not ((region == REGION_ORDERED).any() and (region == REGION_UNIFORM).any()):
            return np.full(len(self.rc), np.inf)
        # Distance to the nearest pixel of the other phase, for pixels of each phase.
        dist = np.full(region.shape, np.inf)
        for phase, other in ((REGION_ORDERED, REGION_UNIFORM), (REGION_UNIFORM, REGION_ORDERED)):
            d = ndimage.distance_transform_edt(region != other)
            sel = region == phase
            dist[sel] = d[sel]
        dist[~inside] = 0.0
        r, c = np.clip(np.round(self.rc).astype(int), 0, np.array(region.shape) - 1).T
        return dist[r, c] * self.pixel_size_nm


def region_uniform_fraction(region_map: np.ndarray) -> float:
    """Uniform share of the non-outside pixels of a region map (nan when there are none)."""
    inside = region_map != REGION_OUTSIDE
    return float(np.mean(region_map[inside] == REGION_UNIFORM)) if inside.any() else float("nan")


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def amorphous_background(
    shape: tuple[int, int],
    *,
    pixel_size_nm: float,
    level: float = 0.15,
    contrast: float = 0.05,
    correlation_nm: float = 0.08,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Amorphous-carbon-like background: correlated random speckle, no lattice.

    Parameters
    ----------
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm : float
        Pixel size [nm].
    level : float
        Mean level, relative to a bright column peak of 1.
    contrast : float
        Standard deviation of the speckle.
    correlation_nm : float
        Speckle correlation length [nm].
    rng : Generator, int or None
        Random source.

    Returns
    -------
    (M, N) ndarray of float64
    """
    rng = _as_rng(rng)
    noise = rng.standard_normal(shape)
    speckle = ndimage.gaussian_filter(noise, correlation_nm / pixel_size_nm, mode="wrap")
    speckle *= contrast / max(float(speckle.std()), 1e-12)
    return np.clip(level + speckle, 0.0, None)


def render_gaussians(shape: tuple[int, int], rc: np.ndarray, amplitude: np.ndarray, sigma_px: float) -> np.ndarray:
    """Sum of isotropic Gaussians of height ``amplitude`` at ``rc`` (row, col) [px]."""
    out = np.zeros(shape)
    half = int(np.ceil(4 * sigma_px))
    offsets = np.arange(-half, half + 1)
    for (r, c), a in zip(rc, amplitude):
        r0, c0 = int(round(r)), int(round(c))
        rows, cols = r0 + offsets, c0 + offsets
        rsel = (rows >= 0) & (rows < shape[0])
        csel = (cols >= 0) & (cols < shape[1])
        if not (rsel.any() and csel.any()):
            continue
        gr = np.exp(-0.5 * ((rows[rsel] - r) / sigma_px) ** 2)
        gc = np.exp(-0.5 * ((cols[csel] - c) / sigma_px) ** 2)
        out[rows[rsel][0] : rows[rsel][-1] + 1, cols[csel][0] : cols[csel][-1] + 1] += a * np.outer(gr, gc)
    return out


def _grid(center: np.ndarray, v1: np.ndarray, v2: np.ndarray, half_extent_px: float):
    n = int(np.ceil(half_extent_px / min(np.linalg.norm(v1), np.linalg.norm(v2)))) + 2
    i2, j2 = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    i, j = i2.ravel(), j2.ravel()
    return center + i[:, None] * v1 + j[:, None] * v2, i, j


def dot_frame(
    shape: tuple[int, int],
    *,
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 12.0,
    rotation_deg: float = 0.0,
    center_offset_nm: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The square dot's frame in the image, as :func:`make_dot` places it.

    Parameters
    ----------
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm, dot_size_nm, rotation_deg, center_offset_nm
        As in :func:`make_dot`.

    Returns
    -------
    center : (2,) ndarray
        Dot centre (row, col) [px].
    u, w : (2,) ndarray
        Unit vectors (row, col) of the dot's (and lattice's) two edge directions.
    half : float
        Half the dot edge [px].
    """
    theta = np.deg2rad(rotation_deg)
    u = np.array([np.cos(theta), np.sin(theta)])  # (row, col) unit vector
    w = np.array([-np.sin(theta), np.cos(theta)])
    center = np.array(shape, float) / 2 + np.asarray(center_offset_nm) / pixel_size_nm
    return center, u, w, dot_size_nm / pixel_size_nm / 2


def domain_map(
    shape: tuple[int, int],
    *,
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 12.0,
    rotation_deg: float = 0.0,
    uniform_fraction: float = 0.5,
    domain_size_nm: float = 3.5,
    center_offset_nm: tuple[float, float] = (0.0, 0.0),
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Region map of a square two-phase dot: Voronoi domains of random seeds.

    This is the domain layout of :func:`make_dot` (same parameters, same use
    of ``rng``), usable on its own to place other images of the two phases.

    Parameters
    ----------
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm, dot_size_nm, rotation_deg, uniform_fraction, domain_size_nm, center_offset_nm
        As in :func:`make_dot`.
    rng : Generator, int or None
        Random source (seeds and their phases).

    Returns
    -------
    (M, N) ndarray of int8
        0 outside the dot, 1 ordered, 2 uniform.
    """
    rng = _as_rng(rng)
    shape = (int(shape[0]), int(shape[1]))
    center, u, w, half = dot_frame(
        shape,
        pixel_size_nm=pixel_size_nm,
        dot_size_nm=dot_size_nm,
        rotation_deg=rotation_deg,
        center_offset_nm=center_offset_nm,
    )
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    rel = np.stack([rows - center[0], cols - center[1]], axis=-1).astype(float)
    pu, pw = rel @ u, rel @ w
    inside = (np.abs(pu) <= half) & (np.abs(pw) <= half)

    # Domains: Voronoi cells of random seeds, each uniform with probability uniform_fraction.
    n_seeds = max(1, int(round((dot_size_nm / max(domain_size_nm, 1e-6)) ** 2)))
    seeds = center + rng.uniform(-half, half, size=(n_seeds, 2)) @ np.stack([u, w])
    seed_uniform = rng.random(n_seeds) < uniform_fraction
    if uniform_fraction in (0.0, 1.0):
        seed_uniform[:] = uniform_fraction == 1.0
    tree = cKDTree(seeds)
    _, nearest = tree.query(np.stack([rows.ravel(), cols.ravel()], axis=1))
    region = np.where(seed_uniform[nearest].reshape(shape), REGION_UNIFORM, REGION_ORDERED).astype(np.int8)
    region[~inside] = REGION_OUTSIDE
    return region


def column_region_map(
    shape: tuple[int, int], rc: np.ndarray, label: np.ndarray, *, spacing_px: np.ndarray, u: np.ndarray, w: np.ndarray
) -> np.ndarray:
    """Region map of the area the columns cover: each column's square lattice cell, with its label.

    A pixel belongs to its nearest column's phase if it lies in that column's
    cell (the square of side ``spacing_px`` along ``u`` and ``w`` centred on
    it); holes (gaps where two grids meet) are filled with the nearest
    column's phase. This is the area each phase's columns occupy, the
    quantity the paper's colour-coded images measure.

    Parameters
    ----------
    shape : tuple of int
        Image shape (rows, cols).
    rc : (K, 2) ndarray
        Column positions (row, col) [px].
    label : (K,) ndarray of int
        Column phase codes (index into ``LABELS``).
    spacing_px : (K,) ndarray
        Each column's grid spacing [px].
    u, w : (2,) ndarray
        Unit vectors (row, col) of the grid directions.

    Returns
    -------
    (M, N) ndarray of int8
        0 outside the crystal, 1 ordered, 2 uniform.
    """
    region = np.full(shape, REGION_OUTSIDE, np.int8)
    if len(rc) == 0:
        return region
    pix = np.argwhere(np.ones(shape, bool))
    _, owner = cKDTree(rc).query(pix)
    rel = pix - rc[owner]
    half = 0.5 * np.asarray(spacing_px, float)[owner]
    covered = ((np.abs(rel @ u) <= half) & (np.abs(rel @ w) <= half)).reshape(shape)
    covered = fill_holes(covered)
    phase = np.where(label[owner] == _UNIFORM_LABEL, REGION_UNIFORM, REGION_ORDERED).reshape(shape)
    region[covered] = phase[covered]
    return region


def _boundary_clashes(
    region: np.ndarray, pos_o: np.ndarray, pos_u: np.ndarray, *, min_distance_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Columns to drop where the two grids meet: of every pair closer than ``min_distance_px``, the shallower.

    A column's depth is its distance to the other phase's domain; dropping the
    one nearer the boundary treats both phases alike, so the last columns of
    each phase lie, on average, as far from the true boundary on either side.

    Returns
    -------
    drop_o, drop_u : (K_o,), (K_u,) ndarray of bool
    """
    drop_o, drop_u = np.zeros(len(pos_o), bool), np.zeros(len(pos_u), bool)
    if not (len(pos_o) and len(pos_u)):
        return drop_o, drop_u
    pairs = cKDTree(pos_o).sparse_distance_matrix(cKDTree(pos_u), min_distance_px, output_type="ndarray")
    if len(pairs) == 0:
        return drop_o, drop_u

    def depth(points: np.ndarray, other: int) -> np.ndarray:
        d = ndimage.distance_transform_edt(region != other)
        r, c = np.clip(np.round(points).astype(int), 0, np.array(region.shape) - 1).T
        return d[r, c]

    d_o = depth(pos_o[pairs["i"]], REGION_UNIFORM)
    d_u = depth(pos_u[pairs["j"]], REGION_ORDERED)
    drop_o[pairs["i"][d_o <= d_u]] = True
    drop_u[pairs["j"][d_u <= d_o]] = True
    return drop_o, drop_u


def make_dot(
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 12.0,
    rotation_deg: float = 0.0,
    uniform_fraction: float = 0.5,
    domain_size_nm: float = 3.5,
    spacing_ordered_nm: float = 0.3145,
    spacing_uniform_nm: float = 0.32,
    dim_ratio: float = 0.6,
    uniform_ratio: float = 0.8,
    column_sigma_nm: float = 0.045,
    dot_background: float = 0.1,
    carbon_level: float = 0.15,
    carbon_contrast: float = 0.05,
    thickness_gradient: float = 0.0,
    dose: float | None = 400.0,
    center_offset_nm: tuple[float, float] = (0.0, 0.0),
    rng: np.random.Generator | int | None = None,
) -> SyntheticDot:
    """Make a synthetic HAADF image of a two-phase dot on amorphous carbon.

    Parameters
    ----------
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm : float
        Pixel size [nm].
    dot_size_nm : float
        Edge of the square dot [nm]; 0 gives carbon only.
    rotation_deg : float
        In-plane rotation of the lattice and the dot [deg].
    uniform_fraction : float
        Probability that a domain is ``uniform``; 0 and 1 give pure dots.
    domain_size_nm : float
        Typical domain size (Voronoi cell of random seeds) [nm].
    spacing_ordered_nm, spacing_uniform_nm : float
        Column spacing of the ordered (a/2) and uniform grids [nm].
    dim_ratio : float
        Dim (Cs, I) over bright (Pb-I) column height in ordered domains.
    uniform_ratio : float
        Uniform column height over a bright column height.
    column_sigma_nm : float
        Gaussian width of a column image (probe and source size) [nm].
    dot_background : float
        Diffuse signal inside the dot, relative to a bright column.
    carbon_level, carbon_contrast : float
        Mean and speckle standard deviation of the carbon support.
    thickness_gradient : float
        Total relative change of column heights across the dot (0.3: +-15 %).
    dose : float or None
        Expected counts at a bright column peak; None gives no noise and
        unit-height bright columns.
    center_offset_nm : tuple of float
        Offset of the dot centre from the image centre (row, col) [nm].
    rng : Generator, int or None
        Random source (domains, speckle, noise).

    Returns
    -------
    SyntheticDot
    """
    rng = _as_rng(rng)
    shape = (int(shape[0]), int(shape[1]))
    region = domain_map(
        shape,
        pixel_size_nm=pixel_size_nm,
        dot_size_nm=dot_size_nm,
        rotation_deg=rotation_deg,
        uniform_fraction=uniform_fraction,
        domain_size_nm=domain_size_nm,
        center_offset_nm=center_offset_nm,
        rng=rng,
    )
    inside = region != REGION_OUTSIDE
    center, u, w, half = dot_frame(
        shape,
        pixel_size_nm=pixel_size_nm,
        dot_size_nm=dot_size_nm,
        rotation_deg=rotation_deg,
        center_offset_nm=center_offset_nm,
    )

    def phase_at(points: np.ndarray) -> np.ndarray:
        r, c = np.round(points).astype(int).T
        ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
        out = np.full(len(points), REGION_OUTSIDE, np.int8)
        out[ok] = region[r[ok], c[ok]]
        return out

    s_o = spacing_ordered_nm / pixel_size_nm
    s_u = spacing_uniform_nm / pixel_size_nm
    pos_o, i, j = _grid(center, s_o * u, s_o * w, half * 1.5)
    keep_o = phase_at(pos_o) == REGION_ORDERED
    pos_o, i, j = pos_o[keep_o], i[keep_o], j[keep_o]
    contrast_o = np.where((i % 2 == 0) & (j % 2 == 0), _BRIGHT, _DIM).astype(np.int8)

    pos_u, _, _ = _grid(center, s_u * u, s_u * w, half * 1.5)
    pos_u = pos_u[phase_at(pos_u) == REGION_UNIFORM]
    drop_o, drop_u = _boundary_clashes(region, pos_o, pos_u, min_distance_px=0.75 * s_o)
    pos_o, contrast_o, pos_u = pos_o[~drop_o], contrast_o[~drop_o], pos_u[~drop_u]

    rc = np.concatenate([pos_o, pos_u])
    contrast = np.concatenate([contrast_o, np.full(len(pos_u), _UNIFORM, np.int8)])
    label = np.where(contrast == _UNIFORM, _UNIFORM_LABEL, _ORDERED_LABEL).astype(np.int8)
    height = np.select([contrast == _BRIGHT, contrast == _DIM], [1.0, dim_ratio], uniform_ratio)
    if thickness_gradient:
        along = ((rc - center) @ u) / max(half, 1e-9)  # -1 .. 1 across the dot
        height = height * (1 + 0.5 * thickness_gradient * along)

    cells = column_region_map(shape, rc, label, spacing_px=np.where(label == _UNIFORM_LABEL, s_u, s_o), u=u, w=w)
    sigma_px = column_sigma_nm / pixel_size_nm
    body = ndimage.gaussian_filter(inside.astype(float), sigma_px) * dot_background
    clean = render_gaussians(shape, rc, height, sigma_px) + body
    clean += amorphous_background(
        shape, pixel_size_nm=pixel_size_nm, level=carbon_level, contrast=carbon_contrast, rng=rng
    )
    image, clean, height = apply_dose(clean, height, dose=dose, rng=rng)
    v = np.stack([s_o * u, s_o * w])
    return SyntheticDot(
        image=image.astype(np.float32),
        clean=clean.astype(np.float32),
        pixel_size_nm=float(pixel_size_nm),
        rc=rc,
        contrast=contrast,
        label=label,
        amplitude=height,
        region_map=region,
        lattice_vectors_px=v,
        dose=dose,
        column_region_map=cells,
    )


def apply_dose(
    clean: np.ndarray, amplitude: np.ndarray, *, dose: float | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale a unit-height image to counts and draw Poisson noise.

    Parameters
    ----------
    clean : (M, N) ndarray
        Noise-free image with bright columns of height 1.
    amplitude : (K,) ndarray
        Column heights on the same scale.
    dose : float or None
        Expected counts at a bright column; None leaves everything as it is (no noise).
    rng : Generator
        Random source.

    Returns
    -------
    image, clean, amplitude : ndarray
        The noisy image, and the clean image and heights in counts.
    """
    if dose is None:
        return clean, clean, amplitude
    if dose <= 0:
        raise ValueError(f"dose={dose}: must be positive (counts at a bright column) or None")
    clean = clean * dose
    return rng.poisson(clean).astype(np.float64), clean, amplitude * dose


def make_carbon(
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_size_nm: float = 0.035,
    dose: float | None = 400.0,
    rng: np.random.Generator | int | None = None,
    **background_kwargs: float,
) -> Micrograph:
    """An amorphous-carbon-only micrograph (no crystal), at the same dose scale as :func:`make_dot`."""
    rng = _as_rng(rng)
    clean = amorphous_background(shape, pixel_size_nm=pixel_size_nm, rng=rng, **background_kwargs)
    image = clean if dose is None else rng.poisson(clean * dose).astype(np.float64)
    return Micrograph(image, pixel_size_nm=pixel_size_nm, source="synthetic carbon")


def disc_intensity(image: np.ndarray, rc: np.ndarray, *, radius_px: float = 2.5) -> np.ndarray:
    """Raw counts summed in a disc around each position: a simple stand-in for measured column intensities.

    Parameters
    ----------
    image : (M, N) array_like
        Image [counts].
    rc : (K, 2) array_like
        Positions (row, col) [px]; rounded to the nearest pixel.
    radius_px : float
        Disc radius [px].

    Returns
    -------
    (K,) ndarray
        Sums [counts]; pixels beyond the image edge are clamped to it.
    """
    image = np.asarray(image)
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    half = int(np.ceil(radius_px))
    off = np.arange(-half, half + 1)
    dr, dc = np.meshgrid(off, off, indexing="ij")
    sel = dr**2 + dc**2 <= radius_px**2
    r = np.clip(np.round(rc[:, 0]).astype(int)[:, None] + dr[sel], 0, image.shape[0] - 1)
    c = np.clip(np.round(rc[:, 1]).astype(int)[:, None] + dc[sel], 0, image.shape[1] - 1)
    return image[r, c].sum(axis=1)
