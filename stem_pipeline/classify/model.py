"""Unsupervised two-phase model: a Gaussian mixture with BIC, then spatial regularisation.

The mixture is fitted on the order-parameter feature; BIC decides between one
and two classes so that a pure dot is not split. A single class is called
ordered or uniform by an absolute threshold on the (scale-free) order
parameter. The per-column posteriors are then regularised by mean-field
inference in a Potts Markov random field on the column neighbour graph,
which removes salt-and-pepper labels without moving straight boundaries.
"""

from __future__ import annotations

import logging

import numpy as np

from .features import neighbour_pairs

__all__ = ["mixture_posterior", "regularise_posterior"]

log = logging.getLogger("stem_pipeline")


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def mixture_posterior(
    feature: np.ndarray,
    *,
    max_components: int = 2,
    pure_threshold: float = 0.35,
    min_separation: float = 0.2,
    fit_mask: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> tuple[np.ndarray, int]:
    """Probability of the ordered class for every column from a BIC-selected mixture.

    Parameters
    ----------
    feature : (N,) or (N, D) array_like
        Per-column features; the first column is the order parameter (larger
        means more ordered).
    max_components : {1, 2}
        Largest number of mixture components tried.
    pure_threshold : float
        Order parameter above which a single class is called ordered.
    min_separation : float
        Two components whose order-parameter means are closer than this, or
        lie on the same side of ``pure_threshold``, are treated as one class.
    fit_mask : (N,) array_like of bool, optional
        Columns the mixture is fitted on (e.g. those with complete
        neighbourhoods); every column gets a posterior.
    rng : Generator, int or None
        Random source for the mixture initialisation.

    Returns
    -------
    p_ordered : (N,) ndarray of float64
        Posterior probability of ``ordered``.
    n_classes : int
        Number of classes kept (1 or 2).
    """
    from sklearn.mixture import GaussianMixture  # heavy import, only here

    x = np.asarray(feature, dtype=np.float64)
    x = x.reshape(len(x), -1)
    n = len(x)
    fit = np.ones(n, bool) if fit_mask is None else np.asarray(fit_mask, dtype=bool).ravel()
    if fit.sum() < 10:
        fit = np.ones(n, bool)
    xf = x[fit]
    single = np.full(n, 1.0 if (n and np.median(xf[:, 0]) > pure_threshold) else 0.0)
    if len(xf) < 10 or max_components < 2:
        return single, 1
    seed = int(_as_rng(rng).integers(2**31 - 1))
    fits = []
    for k in (1, 2):
        gm = GaussianMixture(n_components=k, covariance_type="tied", n_init=2, random_state=seed, reg_covar=1e-4)
        gm.fit(xf)
        fits.append((gm.bic(xf), gm))
    bic1, bic2 = fits[0][0], fits[1][0]
    gm = fits[1][1]
    means = gm.means_[:, 0]
    hi, lo = int(np.argmax(means)), int(np.argmin(means))
    separated = (means[hi] - means[lo] >= min_separation) and means[lo] < pure_threshold < means[hi]
    log.debug("classify mixture: BIC1=%.1f BIC2=%.1f means=%s", bic1, bic2, np.round(means, 3))
    if bic2 >= bic1 or not separated:
        return single, 1
    return gm.predict_proba(x)[:, hi], 2


def regularise_posterior(
    rc: np.ndarray,
    p_ordered: np.ndarray,
    *,
    radius_px: float,
    confidence: np.ndarray | None = None,
    beta: float = 2.0,
    n_iter: int = 10,
) -> np.ndarray:
    """Mean-field Potts regularisation of per-column posteriors on the neighbour graph.

    Parameters
    ----------
    rc : (N, 2) array_like
        Column positions (row, col) [px].
    p_ordered : (N,) array_like
        Independent per-column probabilities of ``ordered``.
    radius_px : float
        Neighbourhood radius of the random field [px].
    confidence : (N,) array_like, optional
        Weight in [0, 1] of each column's own evidence (e.g. lower at the
        crystal edge where the local fit sees fewer neighbours); 1 when None.
    beta : float
        Coupling strength per unit of mean neighbour agreement (0 switches
        the regularisation off).
    n_iter : int
        Mean-field iterations.

    Returns
    -------
    (N,) ndarray of float64
        Regularised probabilities of ``ordered``.
    """
    p = np.clip(np.asarray(p_ordered, dtype=np.float64), 1e-6, 1 - 1e-6)
    if beta <= 0 or len(p) < 2:
        return p.copy()
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    i, j = neighbour_pairs(rc, radius_px)
    keep = i != j
    i, j = i[keep], j[keep]
    count = np.maximum(np.bincount(i, minlength=len(p)), 1)
    unary = np.log(p) - np.log1p(-p)
    if confidence is not None:
        unary = unary * np.clip(np.asarray(confidence, dtype=np.float64).ravel(), 0.0, 1.0)
    q = p.copy()
    for _ in range(n_iter):
        field = np.bincount(i, weights=2 * q[j] - 1, minlength=len(p)) / count
        q = 1.0 / (1.0 + np.exp(-(unary + 2 * beta * field)))
    return q
