"""Columns of two lattices in one image: which lattice each column belongs to, and their regions.

Beside a CsPbI3 [001] crystal, PbI2 along <1 -1 1> has its own column grid
(0.347 nm at 82 deg against 0.3145 nm at 90 deg). Columns are searched on
each lattice over that lattice's whole crystal mask; where the masks overlap
(the masks are smoothed over about 1.5 spacings) one physical column can be
found on both grids. It is kept on the grid that fits its neighbourhood
best, and each lattice's region is then the set of pixels whose nearest
column is on that lattice: the boundary between the regions lies half-way
between the last columns of each grid instead of somewhere in the smoothed
overlap of the masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from .._tiles import row_blocks
from .._types import Columns

__all__ = ["grid_misfit", "nearest_column_regions", "resolve_shared_columns"]


def grid_misfit(
    rc: np.ndarray, vectors_px: np.ndarray, *, tolerance_px: float, reference: np.ndarray | None = None
) -> np.ndarray:
    """How badly each column's neighbourhood fits a lattice: mean distance of ``rc +- v`` to the nearest column.

    Parameters
    ----------
    rc : (N, 2) ndarray
        Column positions (row, col) [px], all on (or claimed by) one lattice.
    vectors_px : (2, 2) ndarray
        The lattice's column-grid vectors (row, col) [px].
    tolerance_px : float
        A missing neighbour (none within this distance) counts as this distance.
    reference : (K, 2) ndarray, optional
        The columns the neighbours are looked for among; ``rc`` itself by default.

    Returns
    -------
    (N,) ndarray
        Mean over the four directions ``+-v1, +-v2`` [px]; 0 for a perfect
        grid, ``tolerance_px`` for an isolated column.
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    if len(rc) == 0:
        return np.zeros(0)
    reference = rc if reference is None else np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    if len(reference) == 0:
        return np.full(len(rc), float(tolerance_px))
    tree = cKDTree(reference)
    vectors = np.asarray(vectors_px, dtype=np.float64)
    total = np.zeros(len(rc))
    for v in (vectors[0], vectors[1], -vectors[0], -vectors[1]):
        d, _ = tree.query(rc + v, distance_upper_bound=tolerance_px)
        total += np.minimum(d, tolerance_px)
    return total / 4


def resolve_shared_columns(
    parts: Sequence[Columns],
    vectors_px: Sequence[np.ndarray],
    *,
    tolerance_fraction: float = 0.3,
    same_fraction: float = 0.35,
) -> list[Columns]:
    """Keep every physical column on one lattice only: the one whose grid fits its neighbourhood best.

    Parameters
    ----------
    parts : sequence of Columns
        Columns found on each lattice (same order as ``vectors_px``).
    vectors_px : sequence of (2, 2) ndarray
        Each lattice's column-grid vectors [px].
    tolerance_fraction : float
        Misfit cap, as a fraction of each lattice's spacing (see :func:`grid_misfit`).
    same_fraction : float
        Columns of different lattices closer than this fraction of the
        smaller spacing are one physical column.

    Returns
    -------
    list of Columns
        ``parts`` with the losing duplicates removed, then every column on
        the lattice whose grid (among that lattice's columns) fits its
        neighbourhood best: a column found on one lattice only (the other
        search missed it) moves if the other grid fits it better.
    """
    spacings = [float(np.min(np.linalg.norm(v, axis=1))) for v in vectors_px]
    misfit = [
        grid_misfit(p.rc, v, tolerance_px=tolerance_fraction * s) / s for p, v, s in zip(parts, vectors_px, spacings)
    ]
    keep = [np.ones(len(p), bool) for p in parts]
    radius = same_fraction * min(spacings)
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            if not len(parts[i]) or not len(parts[j]):
                continue
            pairs = cKDTree(parts[i].rc).query_ball_tree(cKDTree(parts[j].rc), r=radius)
            for a, matches in enumerate(pairs):
                for b in matches:
                    if misfit[i][a] <= misfit[j][b]:
                        keep[j][b] = False
                    else:
                        keep[i][a] = False
    parts = [p.subset(k) for p, k in zip(parts, keep)]
    # Each column to the grid that fits it best, judged against each lattice's columns.
    misfits = np.stack(
        [
            np.concatenate(
                [grid_misfit(p.rc, v, tolerance_px=tolerance_fraction * s, reference=q.rc) / s for p in parts]
            )
            for q, v, s in zip(parts, vectors_px, spacings)
        ]
    )
    best = np.argmin(misfits, axis=0)
    pooled = Columns.concatenate(list(parts))
    return [pooled.subset(best == k) for k in range(len(parts))]


def nearest_column_regions(parts: Sequence[Columns], mask: np.ndarray) -> list[np.ndarray]:
    """One region per lattice: the pixels of ``mask`` whose nearest column is on that lattice.

    Parameters
    ----------
    parts : sequence of Columns
        Each lattice's columns (after :func:`resolve_shared_columns`).
    mask : (M, N) ndarray of bool
        The crystal (the union of the lattices' crystal masks).

    Returns
    -------
    list of (M, N) ndarray of bool
        Disjoint regions covering ``mask`` (a lattice without columns gets an empty region).
    """
    mask = np.asarray(mask, dtype=bool)
    if len(parts) == 1:
        return [mask.copy()]
    rc = np.concatenate([p.rc for p in parts])
    owner = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
    regions = [np.zeros_like(mask) for _ in parts]
    if len(rc) == 0:
        return regions
    tree = cKDTree(rc)
    for rows in row_blocks(*mask.shape):  # the pixel list and its nearest columns take 32 bytes per pixel
        pixels = np.argwhere(mask[rows])
        if len(pixels) == 0:
            continue
        _, nearest = tree.query(pixels + [rows.start, 0])
        for k, region in enumerate(regions):
            sel = pixels[owner[nearest] == k]
            region[sel[:, 0] + rows.start, sel[:, 1]] = True
    return regions
