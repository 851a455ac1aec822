"""The average unit cell: fold many lattice cells of a region into one high-SNR cell.

The image is sampled by interpolation on a regular grid of fractional
coordinates of the (super)cell at every cell origin, and the samples are
averaged; the cell-to-cell scatter gives the standard error of the mean.
Origins are atom columns, so slow drift and distortion across the image do
not blur the mean cell.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
from scipy import ndimage

from .._types import REGION_ORDERED, REGION_UNIFORM, Micrograph

logger = logging.getLogger("stem_pipeline")

__all__ = ["MeanCell", "cell_origins", "mean_cell", "region_select"]

#: Region names accepted by :func:`region_select`, mapped to region-map codes.
REGIONS: dict[str, tuple[int, ...]] = {
    "all": (REGION_ORDERED, REGION_UNIFORM),
    "ordered": (REGION_ORDERED,),
    "uniform": (REGION_UNIFORM,),
}


@dataclasses.dataclass(frozen=True, eq=False)
class MeanCell:
    """An averaged (super)cell of a crystal image.

    Attributes
    ----------
    mean : (n1, n2) ndarray
        Mean image on the cell grid: sample ``(i, j)`` sits at
        ``origin + (i / n1) A1 + (j / n2) A2``, with the cell vectors ``A``.
    sem : (n1, n2) ndarray
        Standard error of the mean, from the cell-to-cell scatter.
    count : int
        Number of cells averaged.
    vectors_px : (2, 2) ndarray
        Cell vectors ``A1``, ``A2`` (rows, each (row, col)) [px].
    grid_vectors_px : (2, 2) ndarray
        The column-grid vectors the cell was built from (rows) [px].
    supercell : tuple of int
        Multiples of the grid vectors making the cell.
    pixel_size_nm : float or None
        Pixel size of the image the cell was folded from [nm].
    origins_rc : (K, 2) ndarray
        The cell origins used (row, col) [px].
    """

    mean: np.ndarray
    sem: np.ndarray
    count: int
    vectors_px: np.ndarray
    grid_vectors_px: np.ndarray
    supercell: tuple[int, int]
    pixel_size_nm: float | None
    origins_rc: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """Samples along ``A1`` and ``A2``."""
        return (int(self.mean.shape[0]), int(self.mean.shape[1]))

    @property
    def vectors_nm(self) -> np.ndarray:
        """Cell vectors (rows, each (row, col)) [nm]."""
        return self.vectors_px * self._nm_per_px()

    @property
    def grid_vectors_nm(self) -> np.ndarray:
        """Column-grid vectors (rows, each (row, col)) [nm]."""
        return self.grid_vectors_px * self._nm_per_px()

    @property
    def column_sites(self) -> np.ndarray:
        """(S, 2) fractional cell coordinates of the column-grid sites in the cell."""
        s1, s2 = self.supercell
        a, b = np.meshgrid(np.arange(s1) / s1, np.arange(s2) / s2, indexing="ij")
        return np.stack([a.ravel(), b.ravel()], axis=1)

    @property
    def area_px(self) -> float:
        """Cell area [px^2] (number of independent image pixels in one cell)."""
        return float(abs(np.linalg.det(self.vectors_px)))

    def _nm_per_px(self) -> float:
        if self.pixel_size_nm is None:
            raise ValueError("the cell has no pixel size; fold a calibrated Micrograph or pass pixel_size_nm")
        return float(self.pixel_size_nm)

    def positions_nm(self, reps: tuple[int, int] = (1, 1)) -> np.ndarray:
        """Positions of the samples of ``reps`` tiled cells relative to the origin.

        Returns
        -------
        (reps[0] * n1, reps[1] * n2, 2) ndarray
            (row, col) [nm].
        """
        n1, n2 = self.shape
        f1 = np.arange(reps[0] * n1) / n1
        f2 = np.arange(reps[1] * n2) / n2
        a = self.vectors_nm
        return f1[:, None, None] * a[0] + f2[None, :, None] * a[1]

    def tile(self, reps: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, np.ndarray]:
        """The mean and its standard error tiled ``reps`` times (a periodic patch)."""
        return np.tile(self.mean, reps), np.tile(self.sem, reps)


def _as_array(image: np.ndarray | Micrograph) -> tuple[np.ndarray, float | None]:
    if isinstance(image, Micrograph):
        return image.data, image.pixel_size_nm
    data = np.asarray(image)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    return data, None


def region_select(
    rc: np.ndarray,
    *,
    region: str = "all",
    region_map: np.ndarray | None = None,
    roi: tuple[int, int, int, int] | np.ndarray | None = None,
) -> np.ndarray:
    """Which columns lie in a phase region and/or a user region of interest.

    Parameters
    ----------
    rc : (K, 2) ndarray
        Column positions (row, col) [px].
    region : {'all', 'ordered', 'uniform'}
        Phase region, looked up in ``region_map``.
    region_map : (M, N) ndarray of int, optional
        0 outside, 1 ordered, 2 uniform (``PhaseLabels.region_map``); without
        it every column counts as in the region.
    roi : tuple of int or (M, N) bool ndarray, optional
        ``(row0, row1, col0, col1)`` [px, end exclusive] or a mask.

    Returns
    -------
    (K,) ndarray of bool
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {sorted(REGIONS)}, got {region!r}")
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    keep = np.ones(len(rc), bool)
    if region_map is not None:
        shape = np.asarray(region_map.shape)
        r, c = np.clip(np.round(rc).astype(int), 0, shape - 1).T
        keep &= np.isin(region_map[r, c], REGIONS[region])
    if roi is not None:
        if isinstance(roi, np.ndarray) and roi.ndim == 2:
            shape = np.asarray(roi.shape)
            r, c = np.clip(np.round(rc).astype(int), 0, shape - 1).T
            keep &= roi[r, c].astype(bool)
        else:
            r0, r1, c0, c1 = (float(v) for v in roi)
            keep &= (rc[:, 0] >= r0) & (rc[:, 0] < r1) & (rc[:, 1] >= c0) & (rc[:, 1] < c1)
    return keep


def cell_origins(
    rc: np.ndarray,
    vectors_px: np.ndarray,
    *,
    intensity: np.ndarray | None = None,
    supercell: tuple[int, int] = (2, 2),
    complete: bool = True,
) -> np.ndarray:
    """Pick the columns that start a supercell: one sublattice of the column grid.

    Columns are indexed on the grid relative to the column nearest their
    median; of the ``s1 * s2`` sublattices (cosets) the one with the highest
    mean ``intensity`` is kept, so that in ordered CsPbI3 the origins are the
    bright Pb-I columns.

    Parameters
    ----------
    rc : (K, 2) ndarray
        Column positions (row, col) [px].
    vectors_px : (2, 2) ndarray
        Column-grid vectors (rows) [px].
    intensity : (K,) ndarray, optional
        Column intensities; without them the sublattice of the reference column is used.
    supercell : tuple of int
        Supercell multiples along the two grid vectors.
    complete : bool
        Keep only origins whose cell lies within the given columns: the other
        three corners of the cell must be columns too (so cells at a region
        or particle edge, with missing columns, are left out).

    Returns
    -------
    (L, 2) ndarray
        The origins (row, col) [px].
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    if len(rc) == 0:
        return rc
    s1, s2 = (int(s) for s in supercell)
    ref = rc[np.argmin(np.sum((rc - np.median(rc, axis=0)) ** 2, axis=1))]
    index = np.round((rc - ref) @ np.linalg.inv(np.asarray(vectors_px, dtype=np.float64))).astype(int)
    coset = np.mod(index[:, 0], s1) * s2 + np.mod(index[:, 1], s2)
    best = 0
    if intensity is not None and s1 * s2 > 1:
        intensity = np.asarray(intensity, dtype=np.float64)
        means = [np.nanmean(intensity[coset == k]) if np.any(coset == k) else -np.inf for k in range(s1 * s2)]
        best = int(np.argmax(means))
    origins = rc[coset == best]
    if complete and len(origins):
        from scipy.spatial import cKDTree

        grid = np.asarray(vectors_px, dtype=np.float64)
        cell = grid * np.array([[s1], [s2]], dtype=np.float64)
        tol = 0.3 * float(np.min(np.linalg.norm(grid, axis=1)))
        tree = cKDTree(rc)
        ok = np.ones(len(origins), bool)
        for corner in (cell[0], cell[1], cell[0] + cell[1]):
            ok &= tree.query(origins + corner, distance_upper_bound=tol)[0] < np.inf
        origins = origins[ok]
    return origins


def mean_cell(
    image: np.ndarray | Micrograph,
    vectors_px: np.ndarray,
    origins_rc: np.ndarray,
    *,
    supercell: tuple[int, int] = (2, 2),
    samples: tuple[int, int] | None = None,
    oversample: float = 2.0,
    pixel_size_nm: float | None = None,
    min_cells: int = 3,
) -> MeanCell:
    """Average the image over many (super)cells into one mean cell.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The image (raw counts give the most honest standard errors).
    vectors_px : (2, 2) ndarray
        Column-grid vectors (rows, each (row, col)) [px], e.g. ``Lattice.vectors_px``.
    origins_rc : (K, 2) ndarray
        Cell origins (row, col) [px], e.g. from :func:`cell_origins`. Cells
        that do not fit in the image are skipped.
    supercell : tuple of int
        The cell is ``supercell[0] * v1`` by ``supercell[1] * v2``; (2, 2)
        holds the bright/dim ordering of CsPbI3 [001] (period a).
    samples : tuple of int, optional
        Samples along the two cell vectors; by default ``oversample`` per
        image pixel.
    oversample : float
        Samples per image pixel along each cell vector when ``samples`` is None.
    pixel_size_nm : float, optional
        Pixel size [nm]; taken from a Micrograph when not given.
    min_cells : int
        Fewest cells to average.

    Returns
    -------
    MeanCell

    Raises
    ------
    ValueError
        If fewer than ``min_cells`` cells fit in the image.
    """
    data, px = _as_array(image)
    pixel_size_nm = pixel_size_nm if pixel_size_nm is not None else px
    grid = np.asarray(vectors_px, dtype=np.float64).reshape(2, 2)
    cell = grid * np.asarray(supercell, dtype=np.float64)[:, None]
    if samples is None:
        n1, n2 = (max(8, int(np.ceil(oversample * np.linalg.norm(v) / 2)) * 2) for v in cell)
    else:
        n1, n2 = (int(s) for s in samples)
    origins = np.asarray(origins_rc, dtype=np.float64).reshape(-1, 2)
    # Keep the cells whose four corners are inside the image.
    corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float) @ cell
    ext = origins[:, None, :] + corners[None]
    upper = np.asarray(data.shape, float) - 1
    inside = np.all((ext >= 0) & (ext <= upper), axis=(1, 2))
    origins = origins[inside]
    if len(origins) < min_cells:
        raise ValueError(
            f"only {len(origins)} cells fit in the image (min_cells={min_cells}); "
            "choose a larger region or a smaller supercell"
        )
    f1 = np.arange(n1) / n1
    f2 = np.arange(n2) / n2
    offsets = f1[:, None, None] * cell[0] + f2[None, :, None] * cell[1]  # (n1, n2, 2)
    out_dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.float64
    work = data.astype(np.float64, copy=False)
    total = np.zeros((n1, n2))
    total_sq = np.zeros((n1, n2))
    # Sample in chunks of cells to bound memory.
    chunk = max(1, 400_000 // (n1 * n2))
    for start in range(0, len(origins), chunk):
        pos = origins[start : start + chunk, None, None, :] + offsets[None]
        vals = ndimage.map_coordinates(work, [pos[..., 0], pos[..., 1]], order=1, mode="nearest")
        total += vals.sum(axis=0)
        total_sq += (vals**2).sum(axis=0)
    k = len(origins)
    mean = total / k
    var = np.maximum(total_sq / k - mean**2, 0.0) * k / max(k - 1, 1)
    sem = np.sqrt(var / k)
    logger.debug("mean cell: %d cells of %dx%d samples", k, n1, n2)
    return MeanCell(
        mean=mean.astype(out_dtype),
        sem=sem.astype(out_dtype),
        count=k,
        vectors_px=cell,
        grid_vectors_px=grid,
        supercell=(int(supercell[0]), int(supercell[1])),
        pixel_size_nm=None if pixel_size_nm is None else float(pixel_size_nm),
        origins_rc=origins,
    )
