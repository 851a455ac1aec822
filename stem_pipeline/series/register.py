"""Rigid registration of a frame series, with the slow linear drift separated out.

The shifts come from scikit-image's :func:`skimage.registration.phase_cross_correlation`
(sub-pixel, by upsampled cross-correlation); nothing here re-implements it.

A crystal lattice correlates with itself at every lattice vector, so each frame is
registered in two steps: on images smoothed beyond the lattice (``coarse_sigma_px``)
only the dot's outline correlates, which fixes the shift to the nearest lattice
vector; then on lightly smoothed images (``fine_sigma_px``, Poisson noise only) the
lattice fixes it to a fraction of a pixel. The fine step is kept only within half a
lattice spacing of the coarse one. Frames are registered to a reference frame and
then, in a second pass, to the mean of all registered frames (less noise).

A constant drift velocity shears every frame the same way (row ``r`` of ``M`` is
displaced by ``v (r / M - 0.5)``), so it leaves the shifts between frames rigid; the
velocity is the slope of a straight line fitted to the shifts (:func:`linear_drift`)
and is reported, not corrected.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

#: Frame statuses set by registration.
UNREGISTERED, DIFFERENT_DOT = "unregistered", "different_dot"


@dataclasses.dataclass(frozen=True, eq=False)
class Registration:
    """Drift of every frame relative to the reference.

    Attributes
    ----------
    drift_rc_px : (F, 2) ndarray
        Displacement (row, col) of each frame's content relative to the
        reference frame [px]; NaN for frames not registered.
    correlation : (F,) ndarray
        Normalised cross-correlation of each (smoothed, shifted) frame with
        the registered mean; NaN where not measured.
    ok : (F,) ndarray of bool
        Frames registered and showing the same dot.
    status : list of str
        ``"ok"``, ``"unregistered"``, ``"different_dot"`` or the status given on input.
    message : list of str or None
        Why a frame was refused.
    reference : int
        Index of the reference frame.
    """

    drift_rc_px: np.ndarray
    correlation: np.ndarray
    ok: np.ndarray
    status: list
    message: list
    reference: int


def _shift(reference: np.ndarray, moving: np.ndarray, *, upsample: int) -> np.ndarray:
    """Displacement (row, col) of ``moving``'s content relative to ``reference``."""
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(reference, moving, upsample_factor=upsample, normalization=None)
    return -np.asarray(shift, float)  # skimage returns the shift that registers moving onto reference


def _ncc(reference: np.ndarray, moving: np.ndarray, drift: np.ndarray) -> float:
    """Normalised cross-correlation of ``moving`` shifted back by ``drift`` with ``reference``, on the overlap."""
    back = ndimage.shift(moving, -drift, order=1, mode="constant", cval=np.nan)
    m = int(np.ceil(np.abs(drift).max())) + 1
    a, b = reference[m:-m, m:-m], back[m:-m, m:-m]
    sel = np.isfinite(b)
    if sel.sum() < 16:
        return float("nan")
    a, b = a[sel] - a[sel].mean(), b[sel] - b[sel].mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b) + 1e-30))


def _register_to(
    reference: np.ndarray,
    frames: np.ndarray,
    index: np.ndarray,
    *,
    coarse_sigma_px: float,
    fine_sigma_px: float,
    upsample: int,
    max_shift_px: float,
) -> np.ndarray:
    """Drift of ``frames[index]`` relative to ``reference`` (coarse, then fine); NaN beyond ``max_shift_px``."""
    ref_c = ndimage.gaussian_filter(reference, coarse_sigma_px)
    ref_f = ndimage.gaussian_filter(reference, fine_sigma_px)
    drift = np.full((len(frames), 2), np.nan)
    for k in index:
        coarse = _shift(ref_c, ndimage.gaussian_filter(frames[k], coarse_sigma_px), upsample=1)
        fine = _shift(ref_f, ndimage.gaussian_filter(frames[k], fine_sigma_px), upsample=upsample)
        best = fine if np.all(np.abs(fine - coarse) <= coarse_sigma_px) else coarse
        drift[k] = best if np.all(np.abs(best) <= max_shift_px) else np.nan
    return drift


def register_frames(
    frames: np.ndarray,
    *,
    usable: np.ndarray | None = None,
    coarse_sigma_px: float = 6.0,
    fine_sigma_px: float = 1.0,
    upsample: int = 20,
    max_shift_fraction: float = 0.25,
    min_correlation: float = 0.8,
) -> Registration:
    """Register a frame series rigidly (phase correlation) and refuse frames that do not belong.

    Parameters
    ----------
    frames : (F, M, N) ndarray
        The frames; not modified.
    usable : (F,) ndarray of bool, optional
        Frames to register (e.g. without NaN pixels); all when None.
    coarse_sigma_px : float
        Gaussian smoothing of the coarse step [px]; a lattice spacing or more,
        so that only the dot's outline correlates.
    fine_sigma_px : float
        Gaussian smoothing of the fine step [px].
    upsample : int
        Sub-pixel precision of the fine step is 1/``upsample`` px.
    max_shift_fraction : float
        Drifts beyond this fraction of the frame edge are not accepted (the
        frame is ``"unregistered"``).
    min_correlation : float
        Frames whose correlation with the registered mean (both smoothed at
        ``coarse_sigma_px``) is below this show something else: a different dot
        or field (``"different_dot"``). A dot with the same outline at the same
        place is not told apart.

    Returns
    -------
    Registration
    """
    frames = np.asarray(frames, dtype=np.float64)
    n = len(frames)
    usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool).copy()
    status = ["ok" if u else "unusable" for u in usable]
    message: list = [None] * n
    max_shift = max_shift_fraction * min(frames.shape[1:])
    kwargs = {
        "coarse_sigma_px": coarse_sigma_px,
        "fine_sigma_px": fine_sigma_px,
        "upsample": upsample,
        "max_shift_px": max_shift,
    }
    candidates = np.flatnonzero(usable)
    best = None
    # The first frame that most of the others match is the reference (a stray first frame is not).
    for ref in candidates:
        drift, corr = _pass(frames, candidates, frames[ref], min_correlation=min_correlation, **kwargs)
        good = np.isfinite(drift[:, 0]) & (corr >= min_correlation)
        if best is None or good.sum() > best[2].sum():
            best = (ref, drift, good, corr)
        if good.sum() > len(candidates) / 2:
            break
    if best is None:
        return Registration(np.full((n, 2), np.nan), np.full(n, np.nan), np.zeros(n, bool), status, message, -1)
    ref, drift, good, corr = best
    # Second pass: register to the mean of the registered frames, then express drifts relative to the reference.
    mean = np.mean([ndimage.shift(frames[k], -drift[k], order=1, mode="nearest") for k in np.flatnonzero(good)], axis=0)
    drift2, corr2 = _pass(frames, candidates, mean, min_correlation=min_correlation, **kwargs)
    good2 = np.isfinite(drift2[:, 0]) & (corr2 >= min_correlation)
    if good2[ref] and good2.sum() >= good.sum():
        drift, corr, good = drift2 - drift2[ref], corr2, good2
    for k in candidates:
        if not np.isfinite(drift[k, 0]):
            status[k] = UNREGISTERED
            message[k] = (
                f"no shift within {max_shift:.0f} px (a quarter of the frame) matches the reference frame {ref}"
            )
        elif not good[k]:
            status[k] = DIFFERENT_DOT
            message[k] = (
                f"frame shows a different dot or field: correlation {corr[k]:.2f} with the registered series "
                f"(< {min_correlation:g}) after the best shift"
            )
    drift[~good] = np.nan
    return Registration(drift, corr, good, status, message, int(ref))


def _pass(frames, index, reference, *, min_correlation, coarse_sigma_px, **kwargs):
    """One registration pass of ``frames[index]`` to ``reference``: drifts and smoothed correlations."""
    drift = _register_to(reference, frames, index, coarse_sigma_px=coarse_sigma_px, **kwargs)
    ref_c = ndimage.gaussian_filter(reference, coarse_sigma_px)
    corr = np.full(len(frames), np.nan)
    for k in index:
        if np.isfinite(drift[k, 0]):
            corr[k] = _ncc(ref_c, ndimage.gaussian_filter(frames[k], coarse_sigma_px), drift[k])
    return drift, corr


def linear_drift(drift_rc_px: np.ndarray, time: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The slow linear part of the drift: a straight line fitted to the registered shifts.

    Parameters
    ----------
    drift_rc_px : (F, 2) ndarray
        Drift per frame (row, col) [px]; NaN rows are ignored.
    time : (F,) ndarray, optional
        Frame times (default: frame index).

    Returns
    -------
    velocity : (2,) ndarray
        Drift (row, col) per unit of ``time`` [px]; NaN with fewer than 2 frames.
    residual : (F, 2) ndarray
        The drift less the straight line: the random part [px].
    """
    drift = np.asarray(drift_rc_px, float)
    t = np.arange(len(drift), dtype=float) if time is None else np.asarray(time, float)
    ok = np.isfinite(drift).all(axis=1)
    if ok.sum() < 2:
        return np.full(2, np.nan), np.full_like(drift, np.nan)
    design = np.stack([np.ones(ok.sum()), t[ok]], axis=1)
    coef, *_ = np.linalg.lstsq(design, drift[ok], rcond=None)
    return coef[1], drift - (coef[0] + t[:, None] * coef[1])
