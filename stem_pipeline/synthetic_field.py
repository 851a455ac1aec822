"""Synthetic fields of many dots with known ground truth per dot.

A field is several square two-phase dots (:func:`stem_pipeline.synthetic.make_dot`,
rendered noise-free and without carbon) at their own positions, sizes,
rotations and uniform fractions, on one amorphous-carbon background, with one
Poisson draw over the whole field. Dots never overlap; pairs can be placed
touching (a gap of at most ~1 px), and dots can be cut by the frame.

Overview fields (:func:`make_overview_field`, 0.1-0.5 nm/px) have no resolved
lattice: each dot is a bright, slightly blurred square on carbon.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from ._types import REGION_OUTSIDE, Micrograph
from .synthetic import _as_rng, amorphous_background, make_dot

__all__ = ["DotTruth", "SyntheticField", "make_field", "make_overview_field", "make_stacked_pair", "match_labels"]

#: Extra canvas around a dot's diagonal when it is rendered on its own [nm].
_CANVAS_MARGIN_NM = 1.0


@dataclasses.dataclass(frozen=True)
class DotTruth:
    """The truth of one dot of a field.

    Attributes
    ----------
    center_rc : (float, float)
        Dot centre (row, col) [px].
    edge_nm : float
        Edge of the square dot [nm].
    rotation_deg : float
        In-plane rotation of the dot and its lattice [deg], in [0, 90).
    uniform_fraction : float
        True uniform area fraction: its uniform domains' share of the dot outline (nan in overview fields).
    area_px : int
        Pixels of its footprint in the label map.
    touches_border : bool
        Its footprint reaches the frame.
    n_columns : int
        Its true columns (0 in overview fields).
    """

    center_rc: tuple[float, float]
    edge_nm: float
    rotation_deg: float
    uniform_fraction: float
    area_px: int
    touches_border: bool
    n_columns: int

    @classmethod
    def placed(
        cls,
        center: np.ndarray,
        edge_nm: float,
        rotation_deg: float,
        *,
        uniform_fraction: float = float("nan"),
        area_px: int = 0,
        n_columns: int = 0,
    ) -> DotTruth:
        """The truth of a dot as placed; area and border contact are filled in once the field is complete."""
        return cls(
            center_rc=(float(center[0]), float(center[1])),
            edge_nm=float(edge_nm),
            rotation_deg=float(rotation_deg % 90.0),
            uniform_fraction=uniform_fraction,
            area_px=area_px,
            touches_border=False,
            n_columns=n_columns,
        )


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticField:
    """A synthetic field of dots and its truth.

    Attributes
    ----------
    image, clean : (M, N) ndarray of float32
        The noisy image and the expected counts [counts].
    pixel_size_nm : float
        Pixel size [nm].
    labels : (M, N) ndarray of int32
        0 on carbon, ``k + 1`` on the footprint of dot ``k``: the area its columns cover.
    region_map : (M, N) ndarray of int8
        0 outside the dots, 1 ordered, 2 uniform: each dot's domains inside its outline, the truth of
        its fractions (all dots; zeros in overview fields).
    dots : list of DotTruth
        One per dot, in the order of ``labels``.
    touching : list of (int, int)
        Pairs of dot indices placed touching.
    dose : float or None
        Counts at a bright column peak (overview: at the dot plateau).
    """

    image: np.ndarray
    clean: np.ndarray
    pixel_size_nm: float
    labels: np.ndarray
    region_map: np.ndarray
    dots: list[DotTruth]
    touching: list[tuple[int, int]]
    dose: float | None

    def micrograph(self, source: str = "synthetic field") -> Micrograph:
        """The noisy image as a calibrated :class:`Micrograph`."""
        return Micrograph(self.image, pixel_size_nm=self.pixel_size_nm, source=source)

    @property
    def inside(self) -> np.ndarray:
        """Indices of the dots not cut by the frame."""
        return np.array([k for k, d in enumerate(self.dots) if not d.touches_border], int)

    def alone(self, k: int, *, margin_nm: float = 3.0, blank_nm: float = 0.6) -> Micrograph:
        """Dot ``k`` alone: the noisy field cropped around its true footprint, the other dots replaced by carbon.

        The crop keeps ``margin_nm`` of carbon around the footprint; the other dots' true footprints,
        grown by ``blank_nm``, get pixels drawn from the field's own carbon (farther than ``blank_nm``
        from every dot). The dot's pixels are the field's: the same counts a field analysis sees,
        without its segmentation, crop or blanking (the single-dot reference of a field's dot).

        Parameters
        ----------
        k : int
            Dot index (its label is ``k + 1``).
        margin_nm : float
            Carbon kept around the footprint [nm].
        blank_nm : float
            How far beyond their footprints the other dots are replaced [nm].

        Returns
        -------
        Micrograph
        """
        px, truth = self.pixel_size_nm, self.labels
        rows, cols = np.nonzero(truth == k + 1)
        m = int(np.ceil(margin_nm / px))
        window = (
            slice(max(rows.min() - m, 0), min(rows.max() + m + 1, truth.shape[0])),
            slice(max(cols.min() - m, 0), min(cols.max() + m + 1, truth.shape[1])),
        )
        crop, own = self.image[window].copy(), truth[window]
        others = (ndimage.distance_transform_edt((own == 0) | (own == k + 1)) <= blank_nm / px) & (own != k + 1)
        carbon = self.image[ndimage.distance_transform_edt(truth == 0) > blank_nm / px]
        crop[others] = np.random.default_rng(k).choice(carbon, size=int(others.sum()))
        return Micrograph(crop, pixel_size_nm=px, source=f"dot {k + 1} alone")


def _square_mask(shape: tuple[int, int], center: np.ndarray, rotation_deg: float, half_px: float) -> np.ndarray:
    """Pixels inside a rotated square (as :func:`stem_pipeline.synthetic.dot_frame` orients it)."""
    theta = np.deg2rad(rotation_deg)
    u = np.array([np.cos(theta), np.sin(theta)])
    w = np.array([-np.sin(theta), np.cos(theta)])
    mask = np.zeros(shape, bool)
    reach = half_px * np.sqrt(2) + 1
    r0, c0 = (max(int(np.floor(v - reach)), 0) for v in center)
    r1, c1 = (min(int(np.ceil(v + reach)) + 1, n) for v, n in zip(center, shape))
    if r1 <= r0 or c1 <= c0:
        return mask
    rows, cols = np.mgrid[r0:r1, c0:c1]
    rel = np.stack([rows - center[0], cols - center[1]], axis=-1).astype(float)
    mask[r0:r1, c0:c1] = (np.abs(rel @ u) <= half_px) & (np.abs(rel @ w) <= half_px)
    return mask


def _place(
    shape: tuple[int, int],
    occupied: np.ndarray,
    half_px: float,
    rotation_deg: float,
    *,
    cut: bool,
    gap_px: float,
    rng: np.random.Generator,
    tries: int = 400,
) -> np.ndarray | None:
    """A random centre whose square keeps ``gap_px`` from ``occupied``: inside the frame, or across its edge if ``cut``."""
    free = ndimage.distance_transform_edt(~occupied) > gap_px if occupied.any() else np.ones(shape, bool)
    reach = half_px * np.sqrt(2) + 1
    for _ in range(tries):
        if cut:  # centre within +-0.4 half-edges of a random frame edge
            axis, side = rng.integers(2), rng.integers(2)
            center = rng.uniform([reach, reach], [shape[0] - reach, shape[1] - reach])
            center[axis] = side * shape[axis] + rng.uniform(-0.4, 0.4) * half_px
        else:
            center = rng.uniform([reach, reach], [shape[0] - reach, shape[1] - reach])
        square = _square_mask(shape, center, rotation_deg, half_px)
        if square.any() and not (square & ~free).any() and _touches(square) == cut:
            return center
    return None


def _touches(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _beside(
    shape: tuple[int, int],
    anchor_mask: np.ndarray,
    others: np.ndarray,
    half_px: float,
    rotation_deg: float,
    *,
    gap_px: float,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A centre whose square touches ``anchor_mask`` (gap <= 1 px), keeps ``gap_px`` from ``others``, inside the frame."""
    anchor = np.argwhere(anchor_mask).mean(axis=0)
    free = ndimage.distance_transform_edt(~others) > gap_px if others.any() else np.ones(shape, bool)
    grown = ndimage.binary_dilation(anchor_mask, iterations=1)
    for _ in range(60):
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        near, far = 0.0, 4.0 * half_px + np.sqrt(anchor_mask.sum())
        for _ in range(14):  # bisection on the distance: the closest position that does not overlap
            mid = 0.5 * (near + far)
            if (_square_mask(shape, anchor + mid * direction, rotation_deg, half_px) & anchor_mask).any():
                near = mid
            else:
                far = mid
        center = anchor + far * direction
        square = _square_mask(shape, center, rotation_deg, half_px)
        if not _touches(square) and (square & grown).any() and not (square & ~free).any():
            return center
    return None


def _layout(shape: tuple[int, int], n_dots: int, *args, rng: np.random.Generator, **kwargs):
    """:func:`_layout_once`, with a fresh draw of every position when a dot finds no room (up to 20 times)."""
    for attempt in range(20):
        try:
            return _layout_once(shape, n_dots, *args, rng=rng, **kwargs)
        except ValueError:
            if attempt == 19:
                raise
    raise AssertionError("unreachable")


def _layout_once(
    shape: tuple[int, int],
    n_dots: int,
    sizes_px: np.ndarray,
    rotations: np.ndarray,
    *,
    n_touching_pairs: int,
    n_cut: int,
    gap_px: float,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Centres of ``n_dots`` non-overlapping squares: touching pairs first, then cut dots, then free ones."""
    occupied = np.zeros(shape, bool)
    centers: list[np.ndarray] = []
    touching: list[tuple[int, int]] = []
    k = tries = 0
    while k < n_dots:
        tries += 1
        if tries > 4 * n_dots + 20:
            raise ValueError(f"n_dots={n_dots}: no room for a touching pair in a {shape} field")
        half = sizes_px[k] / 2
        pair = len(touching) < n_touching_pairs
        cut = not pair and k < 2 * n_touching_pairs + n_cut
        center = _place(shape, occupied, half, rotations[k], cut=cut, gap_px=gap_px, rng=rng)
        if center is None:
            raise ValueError(f"n_dots={n_dots}: no room for dot {k} in a {shape} field; use fewer or smaller dots")
        square = _square_mask(shape, center, rotations[k], half)
        partner = None
        if pair:
            partner = _beside(shape, square, occupied, sizes_px[k + 1] / 2, rotations[k + 1], gap_px=gap_px, rng=rng)
            if partner is None:
                continue  # no room beside this one: place the pair again
        centers.append(center)
        occupied |= square
        k += 1
        if partner is not None:
            centers.append(partner)
            touching.append((k - 1, k))
            occupied |= _square_mask(shape, partner, rotations[k], sizes_px[k] / 2)
            k += 1
    return centers, touching


def _render_dot(
    center: np.ndarray,
    size_nm: float,
    rotation_deg: float,
    uniform_fraction: float,
    *,
    pixel_size_nm: float,
    domain_size_nm: float,
    rng: np.random.Generator,
    **dot_kwargs: float,
):
    """A noise-free dot without carbon on its own canvas, and the canvas's first pixel in the field (row, col)."""
    side = int(np.ceil((size_nm * np.sqrt(2) + 2 * _CANVAS_MARGIN_NM) / pixel_size_nm)) // 2 * 2
    r0, c0 = (int(np.floor(v)) - side // 2 for v in center)
    offset = (np.asarray(center) - np.array([r0, c0]) - side / 2) * pixel_size_nm
    dot = make_dot(
        (side, side),
        pixel_size_nm=pixel_size_nm,
        dot_size_nm=size_nm,
        rotation_deg=rotation_deg,
        uniform_fraction=uniform_fraction,
        domain_size_nm=domain_size_nm,
        center_offset_nm=tuple(offset),
        dose=None,
        carbon_level=0.0,
        carbon_contrast=0.0,
        rng=rng,
        **dot_kwargs,
    )
    return dot, (r0, c0)


def make_field(
    shape: tuple[int, int] = (768, 768),
    *,
    n_dots: int = 4,
    dot_sizes_nm: tuple[float, float] = (6.0, 8.0),
    rotations_deg: tuple[float, ...] | None = None,
    uniform_fractions: tuple[float, ...] | None = None,
    n_touching_pairs: int = 0,
    n_cut: int = 0,
    gap_nm: float = 1.0,
    dose: float | None = 200.0,
    pixel_size_nm: float = 0.035,
    domain_size_nm: float = 3.0,
    rng: np.random.Generator | int | None = None,
    **dot_kwargs: float,
) -> SyntheticField:
    """Make a synthetic field of several two-phase dots on one carbon support.

    Parameters
    ----------
    shape : tuple of int
        Field shape (rows, cols).
    n_dots : int
        Number of dots.
    dot_sizes_nm : (float, float)
        Range of dot edges [nm], drawn uniformly.
    rotations_deg : tuple of float, optional
        One rotation per dot [deg]; uniform in [0, 90) when None.
    uniform_fractions : tuple of float, optional
        One domain-phase probability per dot (see ``make_dot``); uniform in
        [0, 1] when None.
    n_touching_pairs : int
        Pairs of dots placed touching (gap <= ~1 px).
    n_cut : int
        Dots placed across the frame edge.
    gap_nm : float
        Least gap between the other dots [nm].
    dose : float or None
        Counts at a bright column peak; None: no noise.
    pixel_size_nm : float
        Pixel size [nm].
    domain_size_nm : float
        Typical domain size [nm].
    rng : Generator, int or None
        Random source.
    **dot_kwargs
        Further :func:`stem_pipeline.synthetic.make_dot` options (``dim_ratio``,
        ``carbon_level``, ``carbon_contrast``, ...); carbon options apply to the
        one shared background.

    Returns
    -------
    SyntheticField
    """
    rng = _as_rng(rng)
    shape = (int(shape[0]), int(shape[1]))
    if n_dots < 0 or 2 * n_touching_pairs > n_dots:
        raise ValueError(f"n_dots={n_dots}, n_touching_pairs={n_touching_pairs}: need 2 dots per touching pair")
    carbon = {k: dot_kwargs.pop(k) for k in ("carbon_level", "carbon_contrast") if k in dot_kwargs}
    sizes_nm = rng.uniform(*dot_sizes_nm, size=n_dots)
    rotations = np.asarray(rotations_deg if rotations_deg is not None else rng.uniform(0, 90, n_dots), float)
    fractions = np.asarray(uniform_fractions if uniform_fractions is not None else rng.uniform(0, 1, n_dots), float)
    if len(rotations) != n_dots or len(fractions) != n_dots:
        raise ValueError(f"rotations_deg and uniform_fractions need one value per dot (n_dots={n_dots})")
    centers, touching = _layout(
        shape,
        n_dots,
        sizes_nm / pixel_size_nm,
        rotations,
        n_touching_pairs=n_touching_pairs,
        n_cut=n_cut,
        gap_px=gap_nm / pixel_size_nm,
        rng=rng,
    )
    clean = np.zeros(shape)
    labels = np.zeros(shape, np.int32)
    region_map = np.zeros(shape, np.int8)
    truths = []
    for k, (center, size, rot, frac) in enumerate(zip(centers, sizes_nm, rotations, fractions)):
        dot, (r0, c0) = _render_dot(
            center, size, rot, frac, pixel_size_nm=pixel_size_nm, domain_size_nm=domain_size_nm, rng=rng, **dot_kwargs
        )
        side = dot.clean.shape[0]
        # Paste the canvas, clipped to the field.
        fr = slice(max(r0, 0), min(r0 + side, shape[0]))
        fc = slice(max(c0, 0), min(c0 + side, shape[1]))
        cr = slice(fr.start - r0, fr.stop - r0)
        cc = slice(fc.start - c0, fc.stop - c0)
        clean[fr, fc] += dot.clean[cr, cc]
        # The footprint is the area the dot's columns cover (what segmentation can see); the phases are its
        # domains inside the outline (the truth of the fractions).
        labels[fr, fc][dot.column_region_map[cr, cc] != REGION_OUTSIDE] = k + 1
        own = dot.region_map[cr, cc] != REGION_OUTSIDE
        region_map[fr, fc][own] = dot.region_map[cr, cc][own]
        in_field = (dot.rc[:, 0] + r0 >= 0) & (dot.rc[:, 0] + r0 < shape[0])
        in_field &= (dot.rc[:, 1] + c0 >= 0) & (dot.rc[:, 1] + c0 < shape[1])
        truths.append(
            DotTruth.placed(center, size, rot, uniform_fraction=dot.uniform_fraction, n_columns=int(in_field.sum()))
        )
    # A touching partner's footprint can overlap its neighbour's last half cell: areas from the final map.
    return _on_carbon(
        clean, labels, region_map, truths, touching, dose=dose, pixel_size_nm=pixel_size_nm, rng=rng, **carbon
    )


def _on_carbon(
    clean: np.ndarray,
    labels: np.ndarray,
    region_map: np.ndarray,
    truths: list[DotTruth],
    touching: list[tuple[int, int]],
    *,
    dose: float | None,
    pixel_size_nm: float,
    rng: np.random.Generator,
    **carbon: float,
) -> SyntheticField:
    """The rendered dots on one carbon background with one Poisson draw; truth areas from the final label map."""
    truths = [
        dataclasses.replace(t, area_px=int((labels == k + 1).sum()), touches_border=_touches(labels == k + 1))
        for k, t in enumerate(truths)
    ]
    clean += amorphous_background(clean.shape, pixel_size_nm=pixel_size_nm, rng=rng, **carbon)
    image = clean if dose is None else rng.poisson(clean * dose).astype(np.float64)
    clean = clean if dose is None else clean * dose
    return SyntheticField(
        image=image.astype(np.float32),
        clean=clean.astype(np.float32),
        pixel_size_nm=float(pixel_size_nm),
        labels=labels,
        region_map=region_map,
        dots=truths,
        touching=touching,
        dose=dose,
    )


def make_stacked_pair(
    shape: tuple[int, int] = (640, 640),
    *,
    edge_nm: float = 8.0,
    rotations_deg: tuple[float, float] = (5.0, 35.0),
    uniform_fractions: tuple[float, float] = (0.3, 0.6),
    overlap_nm: float = 2.5,
    dose: float | None = 200.0,
    pixel_size_nm: float = 0.035,
    domain_size_nm: float = 3.0,
    rng: np.random.Generator | int | None = None,
    **dot_kwargs: float,
) -> SyntheticField:
    """Two dots stacked so that their footprints overlap: both lattices are present in the overlap.

    The two noise-free dots (:func:`_render_dot`) side by side along the rows, centred in the
    frame, their centres ``edge - overlap`` apart, are added (the overlap holds both lattices,
    as two stacked crystals project), on one carbon background, with one Poisson draw.

    Parameters
    ----------
    shape : tuple of int
        Field shape (rows, cols).
    edge_nm : float
        Edge of both dots [nm].
    rotations_deg : (float, float)
        Rotation of each dot and its lattice [deg].
    uniform_fractions : (float, float)
        Domain-phase probability of each dot (see ``make_dot``).
    overlap_nm : float
        How far the second dot reaches over the first along the rows [nm] (for unrotated squares).
    dose, pixel_size_nm, domain_size_nm, rng, **dot_kwargs
        As :func:`make_field`.

    Returns
    -------
    SyntheticField
        ``labels`` gives the overlap to the second dot (the first dot's ``area_px`` excludes it);
        ``touching`` is ``[(0, 1)]``.
    """
    rng = _as_rng(rng)
    carbon = {k: dot_kwargs.pop(k) for k in ("carbon_level", "carbon_contrast") if k in dot_kwargs}
    half_step = (edge_nm - overlap_nm) / 2 / pixel_size_nm
    centers = [np.array([shape[0] / 2, shape[1] / 2 + s * half_step]) for s in (-1, 1)]
    clean = np.zeros(shape)
    labels = np.zeros(shape, np.int32)
    region_map = np.zeros(shape, np.int8)
    truths = []
    for k, (center, rot, frac) in enumerate(zip(centers, rotations_deg, uniform_fractions)):
        dot, (r0, c0) = _render_dot(
            center,
            edge_nm,
            rot,
            frac,
            pixel_size_nm=pixel_size_nm,
            domain_size_nm=domain_size_nm,
            rng=rng,
            **dot_kwargs,
        )
        if r0 < 0 or c0 < 0 or r0 + dot.clean.shape[0] > shape[0] or c0 + dot.clean.shape[1] > shape[1]:
            raise ValueError(f"shape={shape}: too small for two {edge_nm} nm dots at {pixel_size_nm} nm/px")
        window = (slice(r0, r0 + dot.clean.shape[0]), slice(c0, c0 + dot.clean.shape[1]))
        clean[window] += dot.clean
        own = dot.region_map != REGION_OUTSIDE
        labels[window][own] = k + 1
        region_map[window][own] = dot.region_map[own]
        truths.append(
            DotTruth.placed(center, edge_nm, rot, uniform_fraction=dot.uniform_fraction, n_columns=len(dot.rc))
        )
    return _on_carbon(
        clean, labels, region_map, truths, [(0, 1)], dose=dose, pixel_size_nm=pixel_size_nm, rng=rng, **carbon
    )


def make_overview_field(
    shape: tuple[int, int] = (512, 512),
    *,
    n_dots: int = 12,
    dot_sizes_nm: tuple[float, float] = (12.0, 16.0),
    pixel_size_nm: float = 0.2,
    n_touching_pairs: int = 0,
    gap_nm: float = 3.0,
    dot_level: float = 1.0,
    carbon_level: float = 0.25,
    blur_nm: float = 0.3,
    dose: float | None = 100.0,
    rng: np.random.Generator | int | None = None,
) -> SyntheticField:
    """Make an overview field: bright squares on carbon at a pixel size where the lattice is not resolved.

    Parameters
    ----------
    shape : tuple of int
        Field shape (rows, cols).
    n_dots : int
        Number of dots (all wholly inside the frame).
    dot_sizes_nm : (float, float)
        Range of dot edges [nm].
    pixel_size_nm : float
        Pixel size [nm] (0.1-0.5 in overview images).
    n_touching_pairs : int
        Pairs placed touching.
    gap_nm : float
        Least gap between the other dots [nm].
    dot_level, carbon_level : float
        Mean signal of a dot and of the carbon (before the dose).
    blur_nm : float
        Gaussian blur (sigma) of the probe [nm].
    dose : float or None
        Counts at the dot level; None: no noise.
    rng : Generator, int or None
        Random source.

    Returns
    -------
    SyntheticField
        ``region_map`` is all zeros and ``uniform_fraction`` nan (no lattice).
    """
    rng = _as_rng(rng)
    shape = (int(shape[0]), int(shape[1]))
    sizes_nm = rng.uniform(*dot_sizes_nm, size=n_dots)
    rotations = rng.uniform(0, 90, n_dots)
    centers, touching = _layout(
        shape,
        n_dots,
        sizes_nm / pixel_size_nm,
        rotations,
        n_touching_pairs=n_touching_pairs,
        n_cut=0,
        gap_px=gap_nm / pixel_size_nm,
        rng=rng,
    )
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape)
    sub = 4  # supersampling of the square edges
    truths = []
    for k, (center, size, rot) in enumerate(zip(centers, sizes_nm, rotations)):
        half = size / pixel_size_nm / 2
        labels[_square_mask(shape, center, rot, half)] = k + 1
        fine = _square_mask((shape[0] * sub, shape[1] * sub), (np.asarray(center) + 0.5) * sub - 0.5, rot, half * sub)
        signal += fine.reshape(shape[0], sub, shape[1], sub).mean(axis=(1, 3))
        truths.append(DotTruth.placed(center, size, rot, area_px=int((labels == k + 1).sum())))
    clean = ndimage.gaussian_filter(signal * (dot_level - carbon_level), blur_nm / pixel_size_nm)
    clean += amorphous_background(
        shape, pixel_size_nm=pixel_size_nm, level=carbon_level, contrast=0.02, correlation_nm=2 * pixel_size_nm, rng=rng
    )
    image = clean if dose is None else rng.poisson(np.clip(clean, 0, None) * dose).astype(np.float64)
    clean = clean if dose is None else clean * dose
    return SyntheticField(
        image=image.astype(np.float32),
        clean=clean.astype(np.float32),
        pixel_size_nm=float(pixel_size_nm),
        labels=labels,
        region_map=np.zeros(shape, np.int8),
        dots=truths,
        touching=touching,
        dose=dose,
    )


def match_labels(found: np.ndarray, truth: np.ndarray) -> list[tuple[int, float]]:
    """For every true dot: the found label covering most of it, and their intersection over union.

    Parameters
    ----------
    found, truth : (M, N) ndarray of int
        Label maps (0: no dot), e.g. a segmentation and :attr:`SyntheticField.labels`.

    Returns
    -------
    list of (int, float)
        One ``(found label, IoU)`` per true label 1, 2, ...; ``(0, 0.0)`` when no found label covers it.
    """
    out = []
    for k in range(1, int(truth.max()) + 1):
        t = truth == k
        hits = found[t]
        hits = hits[hits > 0]
        if not hits.size:
            out.append((0, 0.0))
            continue
        v = int(np.bincount(hits).argmax())
        f = found == v
        out.append((v, float((t & f).sum() / (t | f).sum())))
    return out
