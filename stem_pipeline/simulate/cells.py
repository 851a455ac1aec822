"""One repeat cell of a crystal, simulated with abTEM, and its projected heavy-atom columns.

The pieces the abTEM cell mosaic (:mod:`stem_pipeline.synthetic_mosaic`) and the comparison
with experiment build on: :func:`simulate_cell` (one repeat cell through the simulation
cache), :func:`cell_columns` / :func:`column_composition` (the projected columns of a
structure), :func:`primitive_vectors_nm` (the column period) and :func:`sample_cell`
(periodic samples of a cell image).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .config import SimulationConfig

logger = logging.getLogger("stem_pipeline")

__all__ = ["CellImage", "cell_columns", "column_composition", "primitive_vectors_nm", "sample_cell", "simulate_cell"]

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


def sample_cell(cell: CellImage, positions_nm: np.ndarray) -> np.ndarray:
    """Periodic cubic-spline samples of the cell image at (row, col) positions [nm]."""
    pos = positions_nm / np.asarray(cell.pixel_size_nm)
    coords = [pos[..., 0] % cell.image.shape[0], pos[..., 1] % cell.image.shape[1]]
    return ndimage.map_coordinates(cell.image.astype(np.float64), coords, order=3, mode="grid-wrap")
