"""Pixel region map, crystal area fractions and their 95 % interval.

The region map gives every crystal pixel the label of its nearest column
(Voronoi cells of the columns clipped to the crystal mask). The interval of
the uniform fraction comes from a spatial block bootstrap: the crystal is cut
into square blocks about one domain across, blocks are drawn with replacement
and, in every replicate, each column's label is also redrawn from its
posterior probability, so both the domain-sampling variability and the
label uncertainty at boundaries enter the interval.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .._types import REGION_ORDERED, REGION_OUTSIDE, REGION_UNIFORM, AreaFractions

__all__ = ["area_fractions", "domain_size_px", "hull_mask", "region_map_from_columns"]


def hull_mask(shape: tuple[int, int], rc: np.ndarray, *, margin_px: float = 0.0) -> np.ndarray:
    """Convex hull of the columns, grown by ``margin_px``.

    Parameters
    ----------
    shape : tuple of int
        Image shape (rows, cols).
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    margin_px : float
        Distance the hull is grown by [px] (half a column spacing puts the
        edge where the crystal ends).

    Returns
    -------
    (M, K) ndarray of bool
    """
    from skimage.morphology import convex_hull_image

    shape = (int(shape[0]), int(shape[1]))
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    points = np.zeros(shape, dtype=bool)
    r, c = np.round(rc).astype(int).T
    ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    points[r[ok], c[ok]] = True
    if ok.sum() < 3:
        return points
    hull = convex_hull_image(points)
    if margin_px > 0:
        hull = ndimage.distance_transform_edt(~hull) <= margin_px
    return hull


def region_map_from_columns(
    crystal_mask: np.ndarray, rc: np.ndarray, label: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cells of the columns clipped to the crystal mask.

    Parameters
    ----------
    crystal_mask : (M, K) array_like of bool
        Crystal pixels.
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    label : (N,) array_like of int
        Column labels, 0 ordered and 1 uniform.

    Returns
    -------
    region_map : (M, K) ndarray of int8
        0 outside the crystal, 1 ordered, 2 uniform.
    cell_area_px : (N,) ndarray of int64
        Crystal pixels in each column's cell.
    """
    mask = np.asarray(crystal_mask, dtype=bool)
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    label = np.asarray(label).ravel()
    region = np.full(mask.shape, REGION_OUTSIDE, dtype=np.int8)
    if len(rc) == 0 or not mask.any():
        return region, np.zeros(len(rc), dtype=np.int64)
    pix = np.argwhere(mask)
    _, owner = cKDTree(rc).query(pix)
    region[pix[:, 0], pix[:, 1]] = np.where(label[owner] == 1, REGION_UNIFORM, REGION_ORDERED)
    return region, np.bincount(owner, minlength=len(rc))


def domain_size_px(region_map: np.ndarray) -> float | None:
    """Typical domain size from the boundary length: ``8 f (1 - f) A / P`` [px].

    This is the edge of the squares of a checkerboard with the same phase
    fraction ``f``, area ``A`` and boundary length ``P``; None when the
    crystal holds a single phase.
    """
    region = np.asarray(region_map)
    inside = region != REGION_OUTSIDE
    area = float(inside.sum())
    if area == 0:
        return None
    f = float((region == REGION_UNIFORM).sum()) / area
    both_r = inside[1:, :] & inside[:-1, :]
    both_c = inside[:, 1:] & inside[:, :-1]
    perim = float(((region[1:, :] != region[:-1, :]) & both_r).sum() + ((region[:, 1:] != region[:, :-1]) & both_c).sum())
    if perim == 0:
        return None
    # Pixel-edge counting overestimates oblique boundaries by 4/pi on average.
    return 8 * f * (1 - f) * area / (perim * np.pi / 4)


def area_fractions(
    region_map: np.ndarray,
    rc: np.ndarray,
    p_uniform: np.ndarray,
    cell_area_px: np.ndarray,
    *,
    pixel_size_nm: float | None = None,
    block_size_px: float | None = None,
    n_bootstrap: int = 1000,
    rng: np.random.Generator | int | None = None,
) -> AreaFractions:
    """Area fractions of the crystal with a spatial block-bootstrap 95 % interval.

    Parameters
    ----------
    region_map : (M, K) array_like of int
        0 outside, 1 ordered, 2 uniform (from :func:`region_map_from_columns`).
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    p_uniform : (N,) array_like
        Probability that each column is uniform (redrawn in every replicate).
    cell_area_px : (N,) array_like
        Crystal pixels in each column's cell.
    pixel_size_nm : float, optional
        Pixel size [nm], for the crystal area.
    block_size_px : float, optional
        Edge of the bootstrap blocks [px]; None uses the typical domain size
        of ``region_map`` (:func:`domain_size_px`), at least 8 % of the
        crystal's extent and at most a third of it.
    n_bootstrap : int
        Bootstrap replicates.
    rng : Generator, int or None
        Random source.

    Returns
    -------
    AreaFractions
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    region = np.asarray(region_map)
    inside = region != REGION_OUTSIDE
    area_px = float(inside.sum())
    area_nm2 = None if pixel_size_nm is None else area_px * float(pixel_size_nm) ** 2
    if area_px == 0:
        nan = float("nan")
        return AreaFractions(nan, nan, (nan, nan), area_nm2, "no crystal area")
    uniform = float((region == REGION_UNIFORM).sum()) / area_px
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    p = np.clip(np.asarray(p_uniform, dtype=np.float64).ravel(), 0.0, 1.0)
    w = np.asarray(cell_area_px, dtype=np.float64).ravel()
    rows, cols = np.nonzero(inside)
    extent = float(max(np.ptp(rows), np.ptp(cols)) + 1)
    if block_size_px is None:
        size = domain_size_px(region)
        block = float(np.clip(size if size is not None else extent / 6, 0.08 * extent, extent / 3))
        how = "domain-sized"
    else:
        block = float(block_size_px)
        how = "fixed"
    sel = w > 0
    rc, p, w = rc[sel], p[sel], w[sel]
    origin = np.array([rows.min(), cols.min()], float) + rng.uniform(0, block, 2) - block
    cell = np.floor((rc - origin) / block).astype(np.int64)
    _, block_id = np.unique(cell, axis=0, return_inverse=True)
    block_id = block_id.ravel()
    n_blocks = int(block_id.max()) + 1 if len(block_id) else 0
    block_area = np.bincount(block_id, weights=w, minlength=n_blocks)
    boot = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        draw = rng.random(len(p)) < p
        block_uniform = np.bincount(block_id, weights=w * draw, minlength=n_blocks)
        pick = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)
        boot[b] = (pick @ block_uniform) / max(pick @ block_area, 1e-12)
    lo, hi = np.percentile(boot, [2.5, 97.5]) if n_bootstrap else (uniform, uniform)
    lo, hi = min(float(lo), uniform), max(float(hi), uniform)
    scale = f"{block * pixel_size_nm:.2f} nm" if pixel_size_nm else f"{block:.0f} px"
    method = (
        f"spatial block bootstrap ({n_blocks} {how} blocks of {scale}, {n_bootstrap} replicates) "
        "with column labels redrawn from their posteriors"
    )
    return AreaFractions(
        ordered=1.0 - uniform, uniform=uniform, uniform_ci95=(lo, hi), crystal_area_nm2=area_nm2, method=method
    )
