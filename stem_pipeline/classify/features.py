"""Per-column contrast features computed from column positions and intensities.

Everything here is a ratio or a fit on relative intensities, so a smooth
thickness or background gradient across a dot does not look like contrast.
The neighbour graph comes from the positions themselves (KD-tree); the
lattice vectors that index the neighbours are the caller's (the pipeline
passes the column grid it found from the FFT) or, without them, estimated
from nearest-neighbour vectors (:func:`estimate_lattice_vectors`).

The order parameter is a local least-squares fit of the three superlattice
components of the a/2 column grid. With integer lattice coordinates
``(n1, n2)`` of the neighbours relative to a column, the CsPbI3 [001] pattern
(bright Pb-I columns on the (even, even) sites, dim Cs and I columns on the
other three) is::

    x = b0 + c1 (-1)^n1 + c2 (-1)^n2 + c3 (-1)^(n1 + n2)

with ``|c1| = |c2| = |c3|`` and ``sign(c1 c2 c3) > 0``; the signs say which of
the four sublattices the column sits on. Uniform (PbI2/FAPbI3-like) regions
have ``c = 0`` up to noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "ColumnFeatures",
    "column_features",
    "estimate_lattice_vectors",
    "indexed_pairs",
    "neighbour_pairs",
    "own_intensity_llr",
    "superlattice_scan",
]

# Parity hypotheses (p, q) in the order bright, dim, dim, dim: sign vectors of (c1, c2, c3).
_PARITY_SIGNS = np.array([[1, 1, 1], [-1, 1, -1], [1, -1, -1], [-1, -1, 1]], dtype=float)


@dataclasses.dataclass(frozen=True, eq=False)
class ColumnFeatures:
    """Contrast features of every column (struct of arrays).

    Attributes
    ----------
    alternation_r2 : (N,) ndarray of float64
        Adjusted fraction of the local relative-intensity variance explained
        by the bright/dim superlattice pattern (about 0 in uniform regions,
        close to 1 in ordered regions at high dose).
    alternation : (N,) ndarray of float64
        Amplitude of the best-matching superlattice pattern (relative
        intensity units, >= 0 in ordered regions).
    on_bright_site : (N,) ndarray of bool
        True where the best-matching pattern puts the column on the bright
        sublattice.
    relative_intensity : (N,) ndarray of float64
        Intensity over the median intensity of its nearest neighbours.
    spacing_px : (N,) ndarray of float64
        Median distance to the nearest neighbours [px].
    n_neighbours : (N,) ndarray of int64
        Columns used in the local fit (the column included).
    lattice_vectors_px : (2, 2) ndarray of float64
        The two primitive column-grid vectors (row, col) [px] used to index
        the neighbours.
    """

    alternation_r2: np.ndarray
    alternation: np.ndarray
    on_bright_site: np.ndarray
    relative_intensity: np.ndarray
    spacing_px: np.ndarray
    n_neighbours: np.ndarray
    lattice_vectors_px: np.ndarray


def estimate_lattice_vectors(rc: np.ndarray, *, k: int = 4) -> np.ndarray:
    """Estimate the two primitive column-grid vectors from nearest-neighbour vectors.

    Parameters
    ----------
    rc : (N, 2) array_like
        Column positions (row, col) [px]; at least 5 columns.
    k : int
        Nearest neighbours per column to collect vectors from.

    Returns
    -------
    (2, 2) ndarray of float64
        Rows are the vectors (row, col) [px], the second at least 30 degrees
        from the first.

    Raises
    ------
    ValueError
        If there are fewer than ``k + 1`` columns.
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    if len(rc) < k + 1:
        raise ValueError(f"rc has {len(rc)} columns; at least {k + 1} are needed to estimate the lattice")
    dist, idx = cKDTree(rc).query(rc, k=k + 1)
    vec = (rc[idx[:, 1:]] - rc[:, None, :]).reshape(-1, 2)
    length = dist[:, 1:].ravel()
    # Keep the first shell only (the k nearest may reach the diagonal shell at edges).
    first = length < 1.25 * np.median(length)
    vec, length = vec[first], length[first]
    angle = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 180.0
    hist = np.bincount(np.floor(angle).astype(int) % 180, minlength=180).astype(float)
    smooth = sum(np.roll(hist, s) * w for s, w in zip(range(-3, 4), (1, 2, 3, 4, 3, 2, 1)))
    a1 = int(np.argmax(smooth))
    sep = np.abs(((np.arange(180) - a1) + 90) % 180 - 90)
    a2 = int(np.argmax(np.where(sep >= 30, smooth, -1.0)))
    vectors = []
    for peak in (a1, a2):
        near = np.abs(((angle - peak - 0.5) + 90) % 180 - 90) <= 10
        theta = np.radians(peak + 0.5)
        if near.any():
            # Refine the direction with the mean of the folded vectors.
            axis = np.array([np.cos(theta), np.sin(theta)])
            v = vec[near] * np.sign(vec[near] @ axis)[:, None]
            mean = v.mean(axis=0)
            vectors.append(mean / np.linalg.norm(mean) * np.median(length[near]))
        else:  # pragma: no cover - the histogram peak always has members
            vectors.append(np.median(length) * np.array([np.cos(theta), np.sin(theta)]))
    return np.array(vectors)


def neighbour_pairs(rc: np.ndarray, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j) of columns closer than ``radius_px``, self pairs included.

    Parameters
    ----------
    rc : (N, 2) ndarray
        Column positions (row, col) [px].
    radius_px : float
        Neighbourhood radius [px].

    Returns
    -------
    i, j : (P,) ndarray of int64
        Pair indices, sorted by ``i``.
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    pairs = cKDTree(rc).query_pairs(radius_px, output_type="ndarray")
    n = len(rc)
    i = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    j = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    order = np.argsort(i, kind="stable")
    return i[order].astype(np.int64), j[order].astype(np.int64)


def indexed_pairs(
    rc: np.ndarray, vectors: np.ndarray, radius_px: float, *, max_index_residual: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour pairs with integer lattice coordinates of ``j`` relative to ``i``.

    Parameters
    ----------
    rc : (N, 2) ndarray
        Column positions (row, col) [px].
    vectors : (2, 2) ndarray
        Primitive column-grid vectors (row, col) [px].
    radius_px : float
        Neighbourhood radius [px].
    max_index_residual : float
        Pairs whose lattice coordinates are further than this from integers
        are dropped.

    Returns
    -------
    i, j : (P,) ndarray of int64
        Pair indices (self pairs included), sorted by ``i``.
    nint : (P, 2) ndarray of int64
        Integer lattice coordinates of ``j`` relative to ``i``.
    d2 : (P,) ndarray of float64
        Squared pair distance in units of the mean vector length.
    """
    i, j = neighbour_pairs(rc, radius_px)
    delta = rc[j] - rc[i]
    frac = delta @ np.linalg.inv(vectors)
    nint = np.round(frac)
    ok = np.abs(frac - nint).max(axis=1) <= max_index_residual
    spacing = float(np.mean(np.linalg.norm(vectors, axis=1)))
    d2 = (delta[ok] ** 2).sum(axis=1) / spacing**2
    return i[ok], j[ok], nint[ok].astype(np.int64), d2


def superlattice_design(nint: np.ndarray) -> np.ndarray:
    """Design matrix ``[1, (-1)^n1, (-1)^n2, (-1)^(n1+n2)]`` of the three superlattice patterns.

    Parameters
    ----------
    nint : (P, 2) ndarray of int
        Integer lattice coordinates of the neighbours.

    Returns
    -------
    (P, 4) ndarray of float64
    """
    s1 = 1.0 - 2.0 * (nint[:, 0] % 2)
    s2 = 1.0 - 2.0 * (nint[:, 1] % 2)
    return np.stack([np.ones_like(s1), s1, s2, s1 * s2], axis=1)


def normal_equations(
    i: np.ndarray, n: int, design: np.ndarray, w: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column weighted least-squares normal equations, summed over the pairs of each column.

    Parameters
    ----------
    i : (P,) ndarray of int
        Column of each pair.
    n : int
        Number of columns.
    design : (P, K) ndarray
        Design rows of the pairs.
    w, y : (P,) ndarray
        Weights and values of the pairs.

    Returns
    -------
    gram : (n, K, K) ndarray of float64
    rhs : (n, K) ndarray of float64
    """
    k = design.shape[1]
    gram = np.empty((n, k, k))
    rhs = np.empty((n, k))
    for a in range(k):
        wa = w * design[:, a]
        rhs[:, a] = np.bincount(i, weights=wa * y, minlength=n)
        for b in range(a, k):
            gram[:, a, b] = gram[:, b, a] = np.bincount(i, weights=wa * design[:, b], minlength=n)
    return gram, rhs


def column_features(
    rc: np.ndarray,
    intensity: np.ndarray,
    *,
    radius_spacings: float = 2.3,
    lattice_vectors_px: np.ndarray | None = None,
    max_index_residual: float = 0.3,
    weight_sigma_spacings: float | None = None,
) -> ColumnFeatures:
    """Compute the contrast features of every column.

    Parameters
    ----------
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    intensity : (N,) array_like
        Column intensities on raw counts (e.g. Gaussian volume); only ratios
        are used.
    radius_spacings : float
        Radius of the neighbourhood of the local fit, in column spacings
        (2.3 takes the 21 columns of the first five shells).
    lattice_vectors_px : (2, 2) array_like, optional
        Primitive column-grid vectors (row, col) [px]; estimated from the
        positions when None.
    max_index_residual : float
        Neighbours whose lattice coordinates are further than this from
        integers (other grains, other lattices) are left out of the fit.

    Returns
    -------
    ColumnFeatures

    Raises
    ------
    ValueError
        If ``rc`` and ``intensity`` differ in length or hold non-finite values.
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    inten = np.asarray(intensity, dtype=np.float64).ravel()
    if len(inten) != len(rc):
        raise ValueError(f"intensity has {len(inten)} entries but rc has {len(rc)} columns")
    if not (np.isfinite(rc).all() and np.isfinite(inten).all()):
        raise ValueError("rc and intensity must be finite; drop the failed columns first")
    vectors = (
        estimate_lattice_vectors(rc)
        if lattice_vectors_px is None
        else np.asarray(lattice_vectors_px, dtype=np.float64).reshape(2, 2)
    )
    spacing = float(np.mean(np.linalg.norm(vectors, axis=1)))
    n = len(rc)
    # Intensities are made positive so the ratios stay meaningful for any baseline.
    floor = np.percentile(inten, 1) if n else 0.0
    inten = inten - min(floor, 0.0) + 1e-9 * max(float(np.abs(inten).max(initial=1.0)), 1.0)

    # Local spacing and intensity relative to the nearest neighbours.
    k = min(9, n)
    dist, idx = cKDTree(rc).query(rc, k=k)
    near = dist[:, 1:5] if k > 1 else np.full((n, 1), np.nan)
    near = np.where(near < 1.25 * spacing, near, np.nan)
    has = ~np.isnan(near).all(axis=1)
    spacing_px = np.full(n, np.nan)
    spacing_px[has] = np.nanmedian(near[has], axis=1)
    neigh = np.where(dist[:, 1:] < 1.6 * spacing, inten[idx[:, 1:]], np.nan) if k > 1 else np.full((n, 1), np.nan)
    lonely = np.asarray(np.isnan(neigh).all(axis=1))
    med = np.nanmedian(np.where(lonely[:, None], inten[:, None], neigh), axis=1)
    relative = inten / med

    # Local fit of the superlattice pattern.
    i, j, nint, d2 = indexed_pairs(rc, vectors, radius_spacings * spacing, max_index_residual=max_index_residual)
    w = np.ones(len(i)) if weight_sigma_spacings is None else np.exp(-0.5 * d2 / weight_sigma_spacings**2)
    count = np.bincount(i, minlength=n)
    wsum = np.bincount(i, weights=w, minlength=n)
    n_eff = wsum**2 / np.maximum(np.bincount(i, weights=w**2, minlength=n), 1e-12)
    mean = np.bincount(i, weights=w * inten[j], minlength=n) / np.maximum(wsum, 1e-12)
    x = inten[j] / mean[i] - 1.0
    design = superlattice_design(nint)  # (P, 4)
    gram, rhs = normal_equations(i, n, design, w, x)
    fit_ok = (count >= 6) & (n_eff > 4.5)
    gram[~fit_ok] = np.eye(4)
    coef = np.linalg.solve(gram + 1e-9 * np.eye(4), rhs[..., None])[..., 0]
    resid = x - np.einsum("pk,pk->p", design, coef[i])
    rss_full = np.bincount(i, weights=w * resid**2, minlength=n)
    xm = np.bincount(i, weights=w * x, minlength=n) / np.maximum(wsum, 1e-12)
    rss_mean = np.bincount(i, weights=w * (x - xm[i]) ** 2, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2_adj = 1.0 - (rss_full / np.maximum(n_eff - 4, 0.5)) / (rss_mean / np.maximum(n_eff - 1, 1))
    r2_adj = np.where(fit_ok & (rss_mean > 0), r2_adj, 0.0)
    match = coef[:, 1:] @ _PARITY_SIGNS.T / 3.0  # (N, 4) amplitude per sublattice hypothesis
    best = np.argmax(match, axis=1)
    alternation = np.where(fit_ok, match[np.arange(n), best], 0.0)
    return ColumnFeatures(
        alternation_r2=r2_adj,
        alternation=alternation,
        on_bright_site=(best == 0) & fit_ok,
        relative_intensity=relative,
        spacing_px=spacing_px,
        n_neighbours=count,
        lattice_vectors_px=vectors,
    )


def superlattice_scan(
    rc: np.ndarray,
    intensity: np.ndarray,
    *,
    lattice_vectors_px: np.ndarray,
    radius_spacings: float,
    null_mask: np.ndarray,
    max_index_residual: float = 0.3,
    clip_sd: float = 4.0,
    min_neighbourhood: int = 7,
    min_window_columns: int = 8,
) -> np.ndarray:
    """Pooled evidence of the ordered superlattice over a domain-sized window around every column.

    Each column's contrast is its log intensity minus the mean log intensity of its neighbours within 1.6
    spacings (itself included), in units of the robust sd of the contrast on the ``null_mask`` columns, clipped
    to ``clip_sd`` (a failed faint column then weighs like any other). For each of the four sublattice
    hypotheses (one bright site of four: pattern 3 / -1 / -1 / -1 over the 2x2 supercell) the matched filter
    sums pattern times contrast over the columns within ``radius_spacings`` and divides by the pattern's norm:
    a z-score that pools the evidence of all the window's columns, so a domain of ~10-30 columns reaches
    significance when each column alone does not.

    Only columns with at least ``min_neighbourhood`` of the 9 sites of their 3x3 neighbourhood (a straight
    crystal edge leaves 6) carry contrast and enter their neighbours' means: at a crystal edge the outer row is
    dimmer (no neighbours' tails overlap it) and the next row brighter than its neighbours' mean, a row
    alternation that the matched filter read as the superlattice (on uniform regions of cell-mosaic dots,
    :mod:`stem_pipeline.synthetic_mosaic`, and at the edges of the generator's dots: the whole tail of the
    score's null distribution). A window with fewer than ``min_window_columns`` such columns scores 0.

    Parameters
    ----------
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    intensity : (N,) array_like
        Positive column intensities.
    lattice_vectors_px : (2, 2) array_like
        Primitive column-grid vectors (row, col) [px].
    radius_spacings : float
        Window radius in column spacings.
    null_mask : (N,) array_like of bool
        Columns whose contrast sets the noise level (those taken for uniform).
    max_index_residual : float
        See :func:`indexed_pairs`.
    clip_sd : float
        Contrast clip, in noise sds.
    min_neighbourhood : int
        Fewest columns (itself included) of a column's 3x3 neighbourhood for it to carry contrast.
    min_window_columns : int
        Fewest contrast-carrying columns in a window for it to score.

    Returns
    -------
    (N,) ndarray of float64
        The largest z-score over the four hypotheses (0 everywhere with fewer than two contrast-carrying
        ``null_mask`` columns).
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    inten = np.asarray(intensity, dtype=np.float64).ravel()
    null = np.asarray(null_mask, dtype=bool).ravel()
    vectors = np.asarray(lattice_vectors_px, dtype=np.float64).reshape(2, 2)
    spacing = float(np.mean(np.linalg.norm(vectors, axis=1)))
    n = len(rc)
    log_i = np.log(np.maximum(inten, 1e-9 * max(float(inten.max(initial=0.0)), 1e-300)))
    # One pair query for both neighbourhoods: the 3x3 one (1.6 spacings) and the window.
    pi, pj, pn, d2 = indexed_pairs(
        rc, vectors, max(radius_spacings, 1.6) * spacing, max_index_residual=max_index_residual
    )
    ni, nj = pi[d2 <= 1.6**2], pj[d2 <= 1.6**2]
    inner = np.bincount(ni, minlength=n) >= min_neighbourhood
    if np.count_nonzero(null & inner) < 2:
        return np.zeros(n)
    weight = inner[nj].astype(np.float64)
    x = log_i - np.bincount(ni, weights=weight * log_i[nj], minlength=n) / np.maximum(
        np.bincount(ni, weights=weight, minlength=n), 1.0
    )
    z = np.where(inner, np.clip(x / _robust_sd(x[null & inner]), -clip_sd, clip_sd), 0.0)
    window = d2 <= radius_spacings**2
    i, j, nint = pi[window], pj[window], pn[window]
    pattern = superlattice_design(nint)[:, 1:] @ _PARITY_SIGNS.T  # (P, 4): 3 on the bright site, -1 elsewhere
    weight = inner[j].astype(np.float64)
    score = np.max(
        [
            np.bincount(i, weights=pattern[:, h] * z[j], minlength=n)
            / np.sqrt(np.maximum(np.bincount(i, weights=weight * pattern[:, h] ** 2, minlength=n), 1e-12))
            for h in range(4)
        ],
        axis=0,
    )
    return np.where(np.bincount(i, weights=weight, minlength=n) >= min_window_columns, score, 0.0)


def own_intensity_llr(
    rc: np.ndarray,
    intensity: np.ndarray,
    ordered: np.ndarray,
    *,
    lattice_vectors_px: np.ndarray,
    radius_px: float,
    max_index_residual: float = 0.3,
) -> np.ndarray:
    """Log-likelihood ratio, ordered over uniform, of each column's own intensity against one-sided predictions.

    A column at a domain boundary sees a partial superlattice, so a fit over
    its whole neighbourhood is ambiguous. Here the column is left out and
    each phase predicts it from its own columns only, on whichever side they
    are: the superlattice fitted to the neighbours labelled ordered gives
    the intensity the column would have on its site (bright or dim), the
    mean of the neighbours labelled uniform the intensity of a uniform
    column. The column's own intensity decides between the two, with the
    spread of the same prediction in the interior of each phase; neither
    phase is favoured and no direction is assumed.

    Parameters
    ----------
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    intensity : (N,) array_like
        Column intensities (raw counts); only ratios are used.
    ordered : (N,) array_like of bool
        Current labels (True: ordered).
    lattice_vectors_px : (2, 2) array_like
        Column-grid vectors (row, col) [px].
    radius_px : float
        Neighbourhood of the predictions [px].
    max_index_residual : float
        As in :func:`indexed_pairs`.

    Returns
    -------
    (N,) ndarray of float64
        The log-likelihood ratio; nan where a phase has too few neighbours to
        predict the column, or where neither phase has ``MIN_INTERIOR_COLUMNS``
        interior columns (one phase with too few takes the other's spread).
    """
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    inten = np.asarray(intensity, dtype=np.float64).ravel()
    ordered = np.asarray(ordered, dtype=bool).ravel()
    n = len(rc)
    vectors = np.asarray(lattice_vectors_px, dtype=np.float64).reshape(2, 2)
    i, j, nint, _ = indexed_pairs(rc, vectors, radius_px, max_index_residual=max_index_residual)
    other = i != j
    scale = np.bincount(i, weights=inten[j], minlength=n) / np.maximum(np.bincount(i, minlength=n), 1)
    x = inten[j] / np.maximum(scale[i], 1e-12)
    own = inten / np.maximum(scale, 1e-12)
    # Ordered prediction: the superlattice fitted to the ordered neighbours, at the column's own site (0, 0).
    w_o = (other & ordered[j]).astype(np.float64)
    gram, rhs = normal_equations(i, n, superlattice_design(nint), w_o, x)
    n_o = np.bincount(i, weights=w_o, minlength=n)
    well_posed = (n_o >= 6) & (np.linalg.det(gram) > 1e-6 * np.maximum(n_o, 1) ** 4)
    gram[~well_posed] = np.eye(4)
    pred_o = np.where(well_posed, np.linalg.solve(gram, rhs[..., None])[..., 0].sum(axis=1), np.nan)
    # Uniform prediction: the mean of the uniform neighbours.
    w_u = (other & ~ordered[j]).astype(np.float64)
    n_u = np.bincount(i, weights=w_u, minlength=n)
    pred_u = np.where(n_u >= 3, np.bincount(i, weights=w_u * x, minlength=n) / np.maximum(n_u, 1), np.nan)
    # Spread of each prediction where it predicts its own phase's columns from a full neighbourhood.
    interior_o = ordered & (n_u == 0) & np.isfinite(pred_o)
    interior_u = ~ordered & (n_o == 0) & np.isfinite(pred_u)
    has_o, has_u = interior_o.sum() >= MIN_INTERIOR_COLUMNS, interior_u.sum() >= MIN_INTERIOR_COLUMNS
    if not (has_o or has_u):
        return np.full(n, np.nan)
    # A domain too small to have interior columns (each of its columns sees the other phase) takes the other
    # phase's spread: see MIN_INTERIOR_COLUMNS.
    sd_o = _robust_sd(own[interior_o] - pred_o[interior_o]) if has_o else 0.0
    sd_u = _robust_sd(own[interior_u] - pred_u[interior_u]) if has_u else sd_o
    sd_o = sd_o if has_o else sd_u
    return 0.5 * ((own - pred_u) ** 2 / sd_u**2 - (own - pred_o) ** 2 / sd_o**2) + np.log(sd_u / sd_o)


#: Fewest interior columns (none of the other phase in the neighbourhood) from which a phase's prediction
#: spread is measured. A phase with fewer, a domain of a few dozen columns, takes the other phase's spread:
#: both are mostly the column's own noise (the uniform spread over the ordered one: median 0.82-0.86 at 30,
#: 100 and 400 counts, 5-95 % 0.65-1.0, over 378 tuning classifications, seeds 30000-30139). Without a
#: spread such a dot had no own-intensity evidence at all, and the boundary pass fell back to the amplitude
#: midpoint, whose level for the small domain came from its boundary columns (pulled towards the other
#: phase): a 41-column uniform domain at 400 counts grew to 75-90 columns (``benchmarks/results/fields.md``).
MIN_INTERIOR_COLUMNS = 5


#: Least spread of a column's intensity about its phase's prediction (relative): even noise-free columns of one
#: phase differ by a few per cent in real dots (thickness, strain), and a noise-free simulation would otherwise
#: give a near-zero spread that turns the smallest misfit of a prediction into certainty.
_MIN_RELATIVE_SD = 0.02


def _robust_sd(residual: np.ndarray) -> float:
    """1.4826 times the median absolute deviation, floored at ``_MIN_RELATIVE_SD``."""
    return max(1.4826 * float(np.median(np.abs(residual - np.median(residual)))), _MIN_RELATIVE_SD)
