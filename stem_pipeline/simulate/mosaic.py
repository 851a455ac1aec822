"""abTEM cell mosaic: an affordable stand-in for a full simulation of a two-phase dot.

A full multislice simulation of a 14 nm Cs0.5FA0.5PbI3 dot is days of CPU on
a small machine. The mosaic instead simulates **one repeat cell of each pure
phase** with abTEM (:func:`simulate_cell`, through the simulation cache) and
assembles a dot image by sampling each phase's periodic cell image over a
Voronoi domain map (:func:`stem_pipeline.synthetic.domain_map`, the layout of
:func:`stem_pipeline.synthetic.make_dot`), on amorphous carbon
(:func:`stem_pipeline.synthetic.amorphous_background`), with Poisson noise
(:func:`mosaic_dot`). Ground truth comes with it: region map, true uniform
fraction, and the true heavy-atom column positions and contrasts.

What it ignores: the beam sees a single phase through the whole thickness
at every pixel (no mixing of units along the beam as in the paper's 2x2x2-cell
unit model), there is no channelling or probe spreading across domain
boundaries (the image switches phase sharply at the boundary), both phases
share one lattice origin at the dot centre with no strain or interface
relaxation, the dot has flat faces and one thickness, and the carbon support
is the synthetic speckle, not simulated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from stem_pipeline._types import (
    CONTRASTS,
    LABELS,
    REGION_ORDERED,
    REGION_UNIFORM,
    Micrograph,
)
from stem_pipeline.synthetic import (
    SyntheticDot,
    amorphous_background,
    apply_dose,
    domain_map,
    dot_frame,
)

from .config import SimulationConfig
from .structures import as_generator

logger = logging.getLogger("stem_pipeline")

__all__ = ["CellImage", "MosaicDot", "cell_columns", "column_composition", "mosaic_dot", "primitive_vectors_nm", "simulate_cell"]

_BRIGHT, _DIM, _UNIFORM = (CONTRASTS.index(c) for c in ("bright", "dim", "uniform"))
#: Atoms at least this heavy make a "column" of the truth (Cs, Pb, I; not C, N, H of FA).
MIN_COLUMN_Z = 20
#: The ordered phase's bright columns are those holding this element (Pb-I columns of CsPbI3 [001]).
BRIGHT_ELEMENT = "Pb"


@dataclasses.dataclass(frozen=True, eq=False)
class CellImage:
    """One repeat cell of a periodic crystal image, with its columns.

    Attributes
    ----------
    image : (M, N) ndarray of float32
        The cell image (one whole repeat, periodic); pixel (0, 0) is at the
        cell origin, pixel (i, j) at (i, j) * ``pixel_size_nm``.
    pixel_size_nm : (2,) tuple of float
        Pixel size (row, col) [nm].
    sites_nm : (K, 2) ndarray
        Column positions (row, col) inside the cell [nm].
    bright : (K,) ndarray of bool
        Columns holding :data:`BRIGHT_ELEMENT` (bright in an ordered phase).
    name : str
        The model's name (e.g. ``cspbi3_001``).
    thickness_nm : float
        Specimen thickness [nm] (whole repeat cells).
    """

    image: np.ndarray
    pixel_size_nm: tuple[float, float]
    sites_nm: np.ndarray
    bright: np.ndarray
    name: str = ""
    thickness_nm: float = float("nan")

    def __post_init__(self) -> None:
        image = np.asarray(self.image, dtype=np.float32)
        if image.ndim != 2 or min(image.shape) < 2:
            raise ValueError(f"CellImage.image must be a 2-D cell image, got shape {image.shape}")
        px = tuple(float(p) for p in np.broadcast_to(np.asarray(self.pixel_size_nm, float), (2,)))
        if min(px) <= 0:
            raise ValueError(f"CellImage.pixel_size_nm must be positive, got {self.pixel_size_nm}")
        sites = np.asarray(self.sites_nm, dtype=np.float64).reshape(-1, 2)
        bright = np.broadcast_to(np.asarray(self.bright, dtype=bool), (len(sites),)).copy()
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "pixel_size_nm", px)
        object.__setattr__(self, "sites_nm", sites)
        object.__setattr__(self, "bright", bright)

    @property
    def extent_nm(self) -> np.ndarray:
        """(2,) repeat lengths (row, col) [nm]."""
        return np.asarray(self.image.shape, float) * np.asarray(self.pixel_size_nm)

    def primitive_vectors_nm(self, *, tol_nm: float = 0.02) -> np.ndarray:
        """(2, 2) the columns' own period (see :func:`primitive_vectors_nm`)."""
        return primitive_vectors_nm(self.sites_nm, self.bright, self.extent_nm, tol_nm=tol_nm)

    def grid_vectors_nm(self) -> np.ndarray:
        """(2, 2) the two shortest column-grid vectors (row, col) [nm], one per row.

        For CsPbI3 [001] these are the a/2 half-cell steps between columns.
        Found among the differences between the columns (periodic images
        included); falls back to the cell edges for a single column.
        """
        from stem_pipeline.lattice import reduce_basis

        edges = np.diag(self.extent_nm)
        shifts = np.array([i * edges[0] + j * edges[1] for i in (-1, 0, 1) for j in (-1, 0, 1)])
        pts = (self.sites_nm[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
        diff = (pts[:, None, :] - self.sites_nm[None, :, :]).reshape(-1, 2)
        length = np.hypot(diff[:, 0], diff[:, 1])
        diff, length = diff[length > 1e-6], length[length > 1e-6]
        order = np.argsort(length, kind="stable")
        diff, length = diff[order], length[order]
        v1 = diff[0]
        sines = np.abs(v1[0] * diff[:, 1] - v1[1] * diff[:, 0]) / (length * length[0])
        v2 = diff[np.nonzero(sines > 0.25)[0][0]]
        return reduce_basis(np.stack([v1, v2]))



def primitive_vectors_nm(
    sites_nm: np.ndarray, kinds: np.ndarray, extent_nm: np.ndarray, *, tol_nm: float = 0.02
) -> np.ndarray:
    """(2, 2) a reduced basis of the translations that map a cell's columns onto columns of the same kind.

    The image's own period as far as the columns tell (e.g. a for CsPbI3
    [001], where the bright Pb-I column repeats; the 0.347 nm grid for PbI2
    <1 -1 1>, whose orthogonal repeat holds 18 alike columns). Only positions
    and ``kinds`` are compared.

    Parameters
    ----------
    sites_nm : (K, 2) ndarray
        Column positions (row, col) inside the repeat cell [nm] (:func:`cell_columns`).
    kinds : (K,) ndarray
        What each column is: the ``bright`` flag of :func:`cell_columns`, or
        the composition of :func:`column_composition` (stricter).
    extent_nm : (2,) ndarray
        Repeat lengths (row, col) [nm].
    tol_nm : float
        Largest mismatch of a translated column [nm].

    Returns
    -------
    (2, 2) ndarray
        Basis vectors (rows), (row, col) [nm].
    """
    from scipy.spatial import cKDTree

    from stem_pipeline.lattice import reduce_basis

    ext = np.asarray(extent_nm, dtype=np.float64)
    sites = np.asarray(sites_nm, dtype=np.float64).reshape(-1, 2)
    kinds = np.asarray(kinds)
    wrapped = sites % ext
    wrapped[wrapped >= ext] = 0.0
    tree = cKDTree(wrapped, boxsize=ext)
    same = kinds == kinds[0]
    candidates = list(sites[same] - sites[0]) + [np.array([ext[0], 0.0]), np.array([0.0, ext[1]])]
    valid = []
    for d in candidates:
        moved = (sites + d) % ext
        moved[moved >= ext] = 0.0
        dist, idx = tree.query(moved)
        if np.all(dist < tol_nm) and np.all(kinds[idx] == kinds):
            # shortest periodic image of d
            valid.append((d + ext / 2) % ext - ext / 2 if np.any(np.abs(d) < ext - 1e-9) else d)
    valid = [v for v in valid if np.hypot(*v) > 1e-9] + [np.array([ext[0], 0.0]), np.array([0.0, ext[1]])]
    valid = sorted(valid, key=lambda v: float(np.hypot(*v)))
    v1 = valid[0]
    v2 = next(v for v in valid[1:] if abs(v1[0] * v[1] - v1[1] * v[0]) > 0.25 * np.hypot(*v1) * np.hypot(*v))
    return reduce_basis(np.stack([v1, v2]))

def cell_columns(atoms, *, merge_nm: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Projected heavy-atom columns of a zone-axis repeat cell.

    Parameters
    ----------
    atoms : ase.Atoms
        An orthogonal zone-axis cell (beam along z), as built by
        :func:`stem_pipeline.simulate.build_structure`.
    merge_nm : float
        Atoms closer than this in projection are one column [nm] (chains
        merge); 0.08 nm is below the ~0.1 nm probe, so an image column. In
        PbI2 along <1 -1 1> the Pb and I of one column are offset by ~0.04 nm.

    Returns
    -------
    sites_nm : (K, 2) ndarray
        Column positions (row, col) = (y, x) inside the cell [nm].
    bright : (K,) ndarray of bool
        Columns holding :data:`BRIGHT_ELEMENT`.
    """
    sites, composition = column_composition(atoms, merge_nm=merge_nm)
    return sites, np.array([f"{BRIGHT_ELEMENT}:" in c for c in composition], dtype=bool)


def column_composition(atoms, *, merge_nm: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Projected heavy-atom columns of a zone-axis repeat cell, with what each holds.

    Parameters
    ----------
    atoms : ase.Atoms
        An orthogonal zone-axis cell (beam along z).
    merge_nm : float
        Atoms closer than this in projection are one column [nm] (see :func:`cell_columns`).

    Returns
    -------
    sites_nm : (K, 2) ndarray
        Column positions (row, col) = (y, x) inside the cell [nm], sorted by row then col.
    composition : (K,) ndarray of str
        Atoms per column, e.g. ``"I:1,Pb:1"`` (elements sorted), so that
        columns of one kind compare equal.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    heavy = np.asarray(atoms.get_atomic_numbers()) >= MIN_COLUMN_Z
    extent = np.array([atoms.cell[1, 1], atoms.cell[0, 0]]) / 10  # (row = y, col = x) [nm]
    pos = np.asarray(atoms.positions)[heavy][:, [1, 0]] / 10 % extent
    pos[pos >= extent] = 0.0  # x % e can round to e for tiny negative x
    symbols = np.asarray(atoms.get_chemical_symbols())[heavy]
    tree = cKDTree(pos, boxsize=extent)
    pairs = tree.query_pairs(merge_nm, output_type="ndarray")
    n = len(pos)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_col, which = connected_components(graph, directed=False)
    sites = np.empty((n_col, 2))
    composition = []
    for k in range(n_col):
        members = pos[which == k]
        # periodic mean: unwrap around the first member
        ref = members[0]
        sites[k] = (ref + np.mean((members - ref + extent / 2) % extent - extent / 2, axis=0)) % extent
        elements, counts = np.unique(symbols[which == k], return_counts=True)
        composition.append(",".join(f"{e}:{c}" for e, c in zip(elements, counts)))
    order = np.lexsort((sites[:, 1], sites[:, 0]))
    return sites[order], np.asarray(composition)[order]


def simulate_cell(
    config: SimulationConfig,
    *,
    thickness_nm: float | None = None,
    thicknesses_nm: Sequence[float] | None = None,
    method: str = "fast",
    cache: bool = True,
    progress: bool = False,
) -> CellImage:
    """Simulate one repeat cell of a crystal (HAADF, with the source blur) through the cache.

    Parameters
    ----------
    config : SimulationConfig
        A crystal configuration (not a dot); its ``scan.field_cells`` is
        ignored (one cell is returned).
    thickness_nm : float, optional
        Thickness [nm]; default ``config.thickness_nm``. Rounded to whole cells.
    thicknesses_nm : sequence of float, optional
        Run this thickness series (one multislice run with exit planes, one
        cache entry; e.g. the series ``compare`` uses, so both share the run)
        and return the image closest to ``thickness_nm``. Default: only
        ``thickness_nm``.
    method : {"fast", "exact"}
        Simulation path (see :func:`stem_pipeline.simulate.simulate`).
    cache, progress : bool
        Use the simulation cache; show abTEM's progress bar.

    Returns
    -------
    CellImage
        The blurred cell image (abTEM HAADF units: fraction of the beam), its
        (row, col) pixel size and its heavy-atom columns.
    """
    from .run import build_structure, simulate_thickness_series

    if config.structure.kind == "dot":
        raise ValueError(f"simulate_cell: {config.name!r} is a dot model; pass a crystal configuration")
    t = float(config.thickness_nm if thickness_nm is None else thickness_nm)
    series = [t] if thicknesses_nm is None else [float(x) for x in thicknesses_nm]
    one_cell = config.model_copy(update={"scan": config.scan.model_copy(update={"field_cells": (1, 1)})})
    images, thick, pixel = simulate_thickness_series(one_cell, series, method=method, cache=cache, progress=progress)
    # the thickness each request rounds to; pick the one nearest the wanted thickness
    index = int(np.argmin(np.abs(thick - t)))
    sites, bright = cell_columns(build_structure(one_cell, thickness_nm=float(thick[index])))
    logger.info("simulate_cell: %s, %.2f nm, %d columns per cell", config.name, thick[index], len(sites))
    return CellImage(
        image=images[index],
        pixel_size_nm=pixel,
        sites_nm=sites,
        bright=bright,
        name=config.name,
        thickness_nm=float(thick[index]),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class MosaicDot(SyntheticDot):
    """A :class:`~stem_pipeline.synthetic.SyntheticDot` assembled from simulated cells.

    Extra attributes
    ----------------
    models : (2,) tuple of str
        Names of the ordered and uniform cells.
    thickness_nm : (2,) tuple of float
        Their thicknesses [nm].
    """

    models: tuple[str, str] = ("", "")
    thickness_nm: tuple[float, float] = (float("nan"), float("nan"))

    def micrograph(self, source: str = "mosaic") -> Micrograph:
        """The noisy image as a calibrated :class:`Micrograph` (metadata: models, thickness, dose)."""
        metadata = {
            "simulated": True,
            "mosaic": True,
            "models": list(self.models),
            "thickness_nm": list(self.thickness_nm),
            "dose": self.dose,
            "uniform_fraction": self.uniform_fraction,
        }
        return Micrograph(self.image, pixel_size_nm=self.pixel_size_nm, source=source, metadata=metadata)


def _sample_cell(cell: CellImage, positions_nm: np.ndarray) -> np.ndarray:
    """Periodic cubic-spline samples of the cell image at (row, col) positions [nm]."""
    pos = positions_nm / np.asarray(cell.pixel_size_nm)
    coords = [pos[..., 0] % cell.image.shape[0], pos[..., 1] % cell.image.shape[1]]
    return ndimage.map_coordinates(cell.image.astype(np.float64), coords, order=3, mode="grid-wrap")


def _phase_columns(cell: CellImage, frame, region: np.ndarray, phase: int, pixel_size_nm: float):
    """True columns of one phase: every site of the tiled cell whose pixel lies in that phase.

    Returns their positions (row, col) [px], bright flags and cell-image values at them.
    """
    center, u, w, half = frame
    ext = cell.extent_nm
    reach = half * pixel_size_nm * np.sqrt(2) + ext.max()
    ni, nj = (int(np.ceil(reach / e)) for e in ext)
    i, j = np.meshgrid(np.arange(-ni, ni + 1), np.arange(-nj, nj + 1), indexing="ij")
    crystal = (cell.sites_nm[None, :, :] + np.stack([i.ravel() * ext[0], j.ravel() * ext[1]], axis=1)[:, None, :])
    bright = np.broadcast_to(cell.bright, crystal.shape[:2]).ravel()
    crystal = crystal.reshape(-1, 2)
    rc = center + (crystal[:, :1] * u + crystal[:, 1:] * w) / pixel_size_nm
    r, c = np.round(rc).astype(int).T
    ok = (r >= 0) & (r < region.shape[0]) & (c >= 0) & (c < region.shape[1])
    ok[ok] = region[r[ok], c[ok]] == phase
    return rc[ok], bright[ok], _sample_cell(cell, crystal[ok])


def mosaic_dot(
    ordered: CellImage,
    uniform: CellImage,
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 12.0,
    rotation_deg: float = 0.0,
    uniform_fraction: float = 0.5,
    domain_size_nm: float = 3.5,
    carbon_level: float = 0.15,
    carbon_contrast: float = 0.05,
    dose: float | None = 400.0,
    center_offset_nm: tuple[float, float] = (0.0, 0.0),
    rng: np.random.Generator | int | None = None,
) -> MosaicDot:
    """Assemble a two-phase dot image from two simulated periodic cells.

    Every pixel of the dot shows the cell image of its domain's phase,
    sampled (periodic cubic spline) at the pixel's position in the crystal
    frame; both phases share one lattice origin at the dot centre and the
    dot's rotation. The domain layout, dot frame and carbon support are those
    of :func:`stem_pipeline.synthetic.make_dot` (same parameters and same
    use of ``rng``: the region map equals ``domain_map(...)`` with the same
    seed).

    Parameters
    ----------
    ordered, uniform : CellImage
        The two phases' cell images (e.g. CsPbI3 [001] and the uniform
        phase) in the same units (both from abTEM, so their relative
        brightness is the simulated one), from :func:`simulate_cell`.
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm : float
        Pixel size of the mosaic [nm].
    dot_size_nm, rotation_deg, uniform_fraction, domain_size_nm, center_offset_nm
        As in :func:`stem_pipeline.synthetic.make_dot`.
    carbon_level, carbon_contrast : float
        Mean and speckle standard deviation of the carbon support (added
        everywhere, under the dot too), relative to the brightest pixel of
        the ordered cell image.
    dose : float or None
        Expected counts at the brightest pixel of the ordered cell (a bright
        column); None gives no noise and a unit-height bright column.
    rng : Generator, int or None
        Random source (domains, speckle, noise).

    Returns
    -------
    MosaicDot
        ``image`` (float32 counts), ``clean``, ``region_map``,
        ``uniform_fraction`` (truth), ``rc`` / ``contrast`` / ``label`` /
        ``amplitude`` of the true heavy-atom columns, the ordered column grid
        ``lattice_vectors_px`` [px], and the two models' names and thicknesses.

    Notes
    -----
    The mosaic ignores mixing of the phases along the beam, channelling and
    probe spreading across domain boundaries, interface strain, and thickness
    variation; see the module docstring.
    """
    rng = as_generator(rng)
    shape = (int(shape[0]), int(shape[1]))
    if pixel_size_nm <= 0:
        raise ValueError(f"pixel_size_nm={pixel_size_nm}: must be positive")
    placement: dict[str, Any] = {
        "pixel_size_nm": pixel_size_nm,
        "dot_size_nm": dot_size_nm,
        "rotation_deg": rotation_deg,
        "center_offset_nm": center_offset_nm,
    }
    # the synthetic generator's layout: same parameters, same draws from rng
    region = domain_map(shape, uniform_fraction=uniform_fraction, domain_size_nm=domain_size_nm, rng=rng, **placement)
    frame = dot_frame(shape, **placement)
    center, u, w, _ = frame
    scale = float(ordered.image.max())
    if not scale > 0:
        raise ValueError(f"ordered cell {ordered.name!r} has no positive pixel; is it a HAADF image?")

    crystal = np.zeros(shape)
    for phase, cell in ((REGION_ORDERED, ordered), (REGION_UNIFORM, uniform)):
        rr, cc = np.nonzero(region == phase)
        if len(rr) == 0:
            continue
        rel_nm = (np.stack([rr, cc], axis=1) - center) * pixel_size_nm
        crystal[rr, cc] = _sample_cell(cell, np.stack([rel_nm @ u, rel_nm @ w], axis=1)) / scale
    clean = crystal + amorphous_background(
        shape, pixel_size_nm=pixel_size_nm, level=carbon_level, contrast=carbon_contrast, rng=rng
    )

    carbon = clean - crystal
    rc_o, bright_o, peak_o = _phase_columns(ordered, frame, region, REGION_ORDERED, pixel_size_nm)
    rc_u, _, peak_u = _phase_columns(uniform, frame, region, REGION_UNIFORM, pixel_size_nm)
    rc = np.concatenate([rc_o, rc_u])
    r, c = np.clip(np.round(rc).astype(int), 0, np.array(shape) - 1).T
    # noise-free column peak heights: the cell at the exact column position plus the carbon under it
    amplitude = np.concatenate([peak_o, peak_u]) / scale + carbon[r, c]
    contrast = np.concatenate(
        [np.where(bright_o, _BRIGHT, _DIM), np.full(len(rc_u), _UNIFORM)]
    ).astype(np.int8)
    label = np.where(contrast == _UNIFORM, LABELS.index("uniform"), LABELS.index("ordered")).astype(np.int8)

    image, clean, amplitude = apply_dose(clean, amplitude, dose=dose, rng=rng)
    grid = ordered.grid_vectors_nm() / pixel_size_nm
    vectors = grid[:, :1] * u + grid[:, 1:] * w
    return MosaicDot(
        image=image.astype(np.float32),
        clean=clean.astype(np.float32),
        pixel_size_nm=float(pixel_size_nm),
        rc=rc,
        contrast=contrast,
        label=label,
        amplitude=amplitude,
        region_map=region,
        lattice_vectors_px=vectors,
        dose=dose,
        models=(ordered.name, uniform.name),
        thickness_nm=(ordered.thickness_nm, uniform.thickness_nm),
    )
