"""Pixel region map, crystal area fractions and their 95 % interval.

The region map gives every crystal pixel the label of its nearest column
(Voronoi cells of the columns clipped to the crystal mask), so domain
boundaries lie midway between differently labelled columns. The interval of
the uniform fraction is the measurement uncertainty of this dot's area
fraction (column-label posteriors and residual boundary placement, see
:func:`area_fractions`), computed in closed form.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .._stats import Z95
from .._tiles import row_blocks
from .._types import REGION_ORDERED, REGION_OUTSIDE, REGION_UNIFORM, AreaFractions
from .convex import grown_runs, hull_runs, runs_mask

__all__ = ["area_fractions", "boundary_length_px", "domain_size_px", "hull_mask", "region_map_from_columns"]


def hull_mask(shape: tuple[int, int], rc: np.ndarray, *, margin_px: float = 0.0) -> np.ndarray:
    """Convex hull of the columns, grown by ``margin_px``.

    The pixels within the convex hull of the columns' pixels (positions rounded, those outside the
    image left out), each taken as the diamond through its edges' midpoints, edges included (as
    ``skimage.morphology.convex_hull_image``); with ``margin_px`` > 0, every pixel within that distance
    of them (as ``ndimage.distance_transform_edt(~hull) <= margin_px``). From the hull's rows' runs
    (:mod:`~stem_pipeline.classify.convex`): ~4 ms CPU for a 1024^2 dot against ~23 ms for skimage's hull
    and ~45 ms with a margin's distance transform (benchmarks/process.py). Fewer than 3 column pixels in
    the image: those pixels only.

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
    shape = (int(shape[0]), int(shape[1]))
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    r, c = np.round(rc).astype(int).T
    ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    if ok.sum() < 3:
        out = np.zeros(shape, dtype=bool)
        out[r[ok], c[ok]] = True
        return out
    first, last = hull_runs(r[ok], c[ok], shape)
    if margin_px > 0:
        first, last = grown_runs(first, last, shape[1], margin_px)
    return runs_mask(first, last, shape[1])


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
    tree = cKDTree(rc)
    cell_area = np.zeros(len(rc), dtype=np.int64)
    # A block of rows at a time: the pixel list and its nearest columns take 32 bytes per crystal pixel
    # (8 float32 image copies for an all-crystal image).
    for rows in row_blocks(*mask.shape):
        pix = np.argwhere(mask[rows])
        if len(pix) == 0:
            continue
        pix[:, 0] += rows.start
        owner = _nearest(tree, pix)
        region[pix[:, 0], pix[:, 1]] = np.where(label[owner] == 1, REGION_UNIFORM, REGION_ORDERED)
        cell_area += np.bincount(owner, minlength=len(rc))
    return region, cell_area


#: Side of the pixel squares whose corners :func:`_nearest` asks the tree about first [px]: 2 took less
#: CPU than 3, 4 or 8 for a 1024^2 dot (fewer pixels left to ask about outweigh more corners).
CORNER_STEP = 2


def _nearest(tree: cKDTree, pix: np.ndarray) -> np.ndarray:
    """The nearest column of each pixel (K, 2), as ``tree.query(pix)[1]``, with fewer queries.

    A Voronoi cell is convex: when the four corners of a square of :data:`CORNER_STEP` pixels share
    their nearest column, so does every pixel of the square (edges included), and only the pixels
    of the other squares (those a cell boundary crosses, ~16 % at the spacings of a dot) are queried.
    Took the crystal region map from ~0.14 to ~0.08 s CPU for a 1024^2 dot (benchmarks/process.py).
    The same owners but where a pixel is exactly as near two columns (the tree's pick among equals).
    """
    lo = pix.min(axis=0)
    span = pix.max(axis=0) - lo
    if (span < CORNER_STEP).any():
        return tree.query(pix)[1]
    # Corner lines every CORNER_STEP pixels from the first pixel, and the last line; square k spans lines k, k+1.
    lines = [np.unique(np.append(np.arange(0, d + 1, CORNER_STEP), d)) for d in span]
    at = _corner_owners(tree, lines, lo)
    shared = _shared_owner(at)
    square = [np.minimum((pix[:, k] - lo[k]) // CORNER_STEP, len(lines[k]) - 2) for k in (0, 1)]
    inside = shared[square[0], square[1]]
    owner = np.where(inside, at[square[0], square[1]], 0)
    ask = np.flatnonzero(~inside)
    owner[ask] = tree.query(pix[ask])[1]
    return owner


def _corner_owners(tree: cKDTree, lines: list[np.ndarray], lo: np.ndarray) -> np.ndarray:
    """The nearest column (tree index) of every corner ``(lines[0][i], lines[1][j]) + lo``, as ``tree.query``.

    Every other line (and the last) first: a corner inside (or on the edge of) a square of those whose
    four corners share their nearest column has it too (the Voronoi cell is convex), and only the other
    corners are queried: ~40 % of :func:`_nearest`'s corners for a 1024^2 dot, its CPU ~0.078 -> ~0.065 s
    (benchmarks/process.py). The same owners but where a corner is exactly as near two columns.
    """
    picks = [np.flatnonzero((np.arange(len(v)) % 2 == 0) | (np.arange(len(v)) == len(v) - 1)) for v in lines]
    coarse = [v[k] for v, k in zip(lines, picks)]
    grid = np.stack(np.meshgrid(coarse[0] + lo[0], coarse[1] + lo[1], indexing="ij"), axis=-1)
    at_coarse = tree.query(grid.reshape(-1, 2))[1].reshape(grid.shape[:2])
    first, shared = at_coarse[:-1, :-1], _shared_owner(at_coarse)
    square = [np.minimum(np.searchsorted(c, v, side="right") - 1, len(c) - 2) for c, v in zip(coarse, lines)]
    inside = shared[np.ix_(square[0], square[1])]
    at = np.where(inside, first[np.ix_(square[0], square[1])], -1)
    at[np.ix_(picks[0], picks[1])] = at_coarse
    ask = np.nonzero(at < 0)
    at[ask] = tree.query(np.column_stack([lines[0][ask[0]] + lo[0], lines[1][ask[1]] + lo[1]]))[1]
    return at


def _shared_owner(at: np.ndarray) -> np.ndarray:
    """Which squares of the corner grid ``at`` (the corners' nearest columns) have one owner at all four corners."""
    first = at[:-1, :-1]
    return (first == at[1:, :-1]) & (first == at[:-1, 1:]) & (first == at[1:, 1:])


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
    perim = float(
        ((region[1:, :] != region[:-1, :]) & both_r).sum() + ((region[:, 1:] != region[:, :-1]) & both_c).sum()
    )
    if perim == 0:
        return None
    # Pixel-edge counting overestimates oblique boundaries by 4/pi on average.
    return 8 * f * (1 - f) * area / (perim * np.pi / 4)


def boundary_length_px(region_map: np.ndarray) -> float:
    """Length of the ordered/uniform boundary in a region map [px].

    Pixel edges between the two phases, times pi/4 (edge counting
    overestimates oblique boundaries by 4/pi on average).
    """
    region = np.asarray(region_map)
    edges = 0
    for a, b in ((region[1:, :], region[:-1, :]), (region[:, 1:], region[:, :-1])):
        edges += int(np.count_nonzero((a != b) & (a != REGION_OUTSIDE) & (b != REGION_OUTSIDE)))
    return edges * np.pi / 4


def _edge_length_px(region: np.ndarray, phase: int) -> float:
    """Length of the crystal edge along ``phase`` (pixel edges to outside, times pi/4) [px]."""
    edges = 0
    for a, b in ((region[1:, :], region[:-1, :]), (region[:, 1:], region[:, :-1])):
        edges += int(np.count_nonzero(((a == phase) & (b == REGION_OUTSIDE)) | ((b == phase) & (a == REGION_OUTSIDE))))
    return edges * np.pi / 4


def area_fractions(
    region_map: np.ndarray,
    p_uniform: np.ndarray,
    cell_area_px: np.ndarray,
    *,
    pixel_size_nm: float | None = None,
    boundary_sd_px: float = 0.0,
    edge_sd_px: float = 0.0,
) -> AreaFractions:
    """Area fractions of the crystal with the 95 % interval of this measurement.

    The interval is the measurement uncertainty of this dot's uniform area
    fraction, from two independent parts added in quadrature:

    * label uncertainty: each column's cell is uniform with its posterior
      probability ``p``, independently, so the variance is
      ``sum(a_i^2 p_i (1 - p_i)) / A^2`` over the cell areas ``a_i``;
    * boundary placement: the domain boundaries are placed between the
      last column of one phase and the first of the other, with a residual
      shift of standard deviation ``boundary_sd_px`` (measured on
      simulations), coherent along the whole boundary length ``L``, which
      moves ``L * boundary_sd_px / A`` of the area;
    * crystal edge placement: the edge of each phase's share of the crystal
      outline (length ``E_o``, ``E_u``) is placed with a shift of standard
      deviation ``edge_sd_px``, coherent along it and independent between
      the phases, which moves the uniform fraction by
      ``sqrt((1 - f)^2 E_u^2 + f^2 E_o^2) * edge_sd_px / A``.

    It does not include the sampling of the material by the domains (a
    second dot of the same composition has another fraction).

    Parameters
    ----------
    region_map : (M, K) array_like of int
        0 outside, 1 ordered, 2 uniform (from :func:`region_map_from_columns`).
    p_uniform : (N,) array_like
        Posterior probability that each column is uniform.
    cell_area_px : (N,) array_like
        Crystal pixels in each column's cell.
    pixel_size_nm : float, optional
        Pixel size [nm], for the crystal area.
    boundary_sd_px : float
        Standard deviation of the residual boundary shift [px].
    edge_sd_px : float
        Standard deviation of the placement of the crystal edge [px].

    Returns
    -------
    AreaFractions
    """
    region = np.asarray(region_map)
    inside = region != REGION_OUTSIDE
    area_px = float(inside.sum())
    area_nm2 = None if pixel_size_nm is None else area_px * float(pixel_size_nm) ** 2
    if area_px == 0:
        nan = float("nan")
        return AreaFractions(nan, nan, (nan, nan), area_nm2, "no crystal area")
    uniform = float((region == REGION_UNIFORM).sum()) / area_px
    p = np.clip(np.asarray(p_uniform, dtype=np.float64).ravel(), 0.0, 1.0)
    w = np.asarray(cell_area_px, dtype=np.float64).ravel()
    var_labels = float(np.sum(w**2 * p * (1 - p))) / area_px**2
    length = boundary_length_px(region)
    var_boundary = (length * float(boundary_sd_px) / area_px) ** 2
    edge_o, edge_u = (_edge_length_px(region, phase) for phase in (REGION_ORDERED, REGION_UNIFORM))
    var_edge = (((1 - uniform) * edge_u) ** 2 + (uniform * edge_o) ** 2) * (float(edge_sd_px) / area_px) ** 2
    half = Z95 * np.sqrt(var_labels + var_boundary + var_edge)
    lo, hi = max(uniform - half, 0.0), min(uniform + half, 1.0)
    scale = f"{boundary_sd_px * pixel_size_nm:.3f} nm" if pixel_size_nm else f"{boundary_sd_px:.2f} px"
    method = (
        "95 % measurement interval of this dot's uniform area fraction: column-label uncertainty from the "
        f"posteriors (sd {np.sqrt(var_labels):.4f}) and boundary placement ({scale} shift along "
        f"{length * (pixel_size_nm or 1):.1f} {'nm' if pixel_size_nm else 'px'} of boundary, sd "
        f"{np.sqrt(var_boundary):.4f}) and crystal-edge placement (sd {np.sqrt(var_edge):.4f}) in quadrature; "
        "not the composition of the material"
    )
    return AreaFractions(
        ordered=1.0 - uniform, uniform=uniform, uniform_ci95=(lo, hi), crystal_area_nm2=area_nm2, method=method
    )
