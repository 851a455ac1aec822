"""Similarity of a (registered) simulation and an experimental cell.

All metrics take two images on the same grid; the simulation is first matched
to the experiment in intensity by a weighted affine fit (:func:`affine_match`),
since simulated and recorded intensities share no absolute scale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["affine_match", "chi2", "column_ratio", "ncc", "rmse", "site_intensities", "ssim"]


def affine_match(
    model: np.ndarray, data: np.ndarray, *, variance: np.ndarray | None = None
) -> tuple[np.ndarray, float, float]:
    """Scale and offset ``model`` to ``data`` by (weighted) least squares.

    Parameters
    ----------
    model, data : (M, N) ndarray
        Simulation and experiment on the same grid.
    variance : (M, N) ndarray, optional
        Variance of ``data``; weights are its inverse.

    Returns
    -------
    matched : (M, N) ndarray of float64
        ``gain * model + offset``.
    gain, offset : float
    """
    m = np.asarray(model, dtype=np.float64).ravel()
    d = np.asarray(data, dtype=np.float64).ravel()
    w = np.ones_like(d) if variance is None else 1.0 / np.maximum(np.asarray(variance, float).ravel(), 1e-12)
    sw = w.sum()
    mm, md = (w * m).sum() / sw, (w * d).sum() / sw
    cov = (w * (m - mm) * (d - md)).sum()
    var = (w * (m - mm) ** 2).sum()
    gain = cov / var if var > 0 else 0.0
    offset = md - gain * mm
    return (gain * np.asarray(model, dtype=np.float64) + offset), float(gain), float(offset)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation (Pearson coefficient) of two images, in [-1, 1]."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else 0.0


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image) of ``b`` against the reference ``a``.

    Parameters
    ----------
    a, b : (M, N) ndarray
        Reference (experiment) and test (matched simulation).
    data_range : float, optional
        Intensity range; by default the reference's peak-to-peak.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if data_range is None:
        data_range = float(np.ptp(a)) or 1.0
    win = min(7, min(a.shape) - (1 - min(a.shape) % 2))
    return float(structural_similarity(a, b, data_range=data_range, win_size=max(win, 3)))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two images (units of the images)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.sqrt(np.mean(d**2)))


def chi2(data: np.ndarray, model: np.ndarray, variance: np.ndarray) -> float:
    """Reduced chi-squared: the mean of ``(data - model)^2 / variance``.

    With Poisson counts the variance of a mean cell is the mean count over the
    number of cells (or the measured squared standard error, which includes it).
    """
    d = np.asarray(data, dtype=np.float64) - np.asarray(model, dtype=np.float64)
    v = np.maximum(np.asarray(variance, dtype=np.float64), 1e-12)
    return float(np.mean(d**2 / v))


def site_intensities(cell: np.ndarray, sites: np.ndarray, *, radius: float = 0.25) -> np.ndarray:
    """Background-subtracted intensity around column sites of a periodic cell.

    Parameters
    ----------
    cell : (n1, n2) ndarray
        One periodic cell on its fractional grid.
    sites : (S, 2) ndarray
        Fractional coordinates of the column sites.
    radius : float
        Half-width of the square window around each site, as a fraction of
        the site spacing (sites are assumed on a regular sub-grid).

    Returns
    -------
    (S,) ndarray
        Sum over the window minus the cell minimum times the window size.
    """
    cell = np.asarray(cell, dtype=np.float64)
    n1, n2 = cell.shape
    sites = np.asarray(sites, dtype=np.float64).reshape(-1, 2)
    spacing = np.array([1.0 / max(len(np.unique(np.round(sites[:, k], 6))), 1) for k in range(2)])
    h1 = max(1, int(round(radius * spacing[0] * n1)))
    h2 = max(1, int(round(radius * spacing[1] * n2)))
    background = float(np.percentile(cell, 5))
    out = np.empty(len(sites))
    for s, (f1, f2) in enumerate(sites):
        r = (int(round(f1 * n1)) + np.arange(-h1, h1 + 1)) % n1
        c = (int(round(f2 * n2)) + np.arange(-h2, h2 + 1)) % n2
        out[s] = np.sum(cell[np.ix_(r, c)] - background)
    return out


def column_ratio(cell: np.ndarray, sites: np.ndarray, *, radius: float = 0.25) -> float:
    """Bright-over-dim column ratio: the brightest site over the mean of the others.

    Parameters
    ----------
    cell : (n1, n2) ndarray
        One periodic cell on its fractional grid.
    sites : (S, 2) ndarray
        Fractional coordinates of the column sites (at least two).
    radius : float
        Window half-width as a fraction of the site spacing.

    Returns
    -------
    float
        Near 1 for uniform contrast; about 1.7 for CsPbI3 [001] (Pb-I over Cs, I).
    """
    values = site_intensities(cell, sites, radius=radius)
    if len(values) < 2:
        raise ValueError("column_ratio needs at least two sites")
    k = int(np.argmax(values))
    others = np.delete(values, k).mean()
    return float(values[k] / others) if others > 0 else float("nan")
