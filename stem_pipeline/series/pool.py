"""Evidence pooled over frames: each tracked column's conversion frame by maximum likelihood.

The physics runs one way (ordered -> uniform), so a column's labels over the
series are explained by a single change point ``c``: ordered in frames
``k < c``, uniform from frame ``c`` on (``c = 0``: uniform from the start,
``c = F``: not converted within the series). Each frame's label is a noisy
read: an ordered column is read uniform with probability ``a``, a uniform one
ordered with probability ``b``, independently from frame to frame. The
log-likelihood of every ``c`` is a sum over the column's frames, so a column
seen in ``F`` frames is decided on ``F`` times the evidence of one frame, and
a reversal (a uniform read followed by an ordered one) is absorbed as a
misread instead of a change of state. ``a``, ``b`` and the prior over ``c``
(the share of the columns converting in each frame) are estimated from the
series itself by expectation-maximisation over all its columns.

Labels alone leave a persistent misread: an ordered column next to converted
ones is read uniform in every frame until it converts itself (the local fit
and the random field of the classifier see its converted neighbours), which
no pooling of labels can undo. A column's own intensity does not look at its
neighbours: a bright (Pb-I) or dim (Cs, I) column of the ordered phase steps
to the uniform level when it converts. For every column whose labels say it
converted within the series, :func:`refine_by_intensity` moves the change
point to the step of its own intensity series (a two-segment mean fit) when
that step is significant (``INTENSITY_EVIDENCE``).

The per-frame uniform fraction is then the expected share of the crystal
area (each column's Voronoi cell) whose column has converted by that frame,
under each column's posterior over ``c``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._stats import WIDTH95_SD, Z95
from .._types import LABELS
from .track import NOT_SEEN

_ORDERED, _UNIFORM = LABELS.index("ordered"), LABELS.index("uniform")
#: Range of the estimated misread probabilities (a read is better than a coin toss).
_RATE_BOUNDS = (1e-3, 0.45)
#: Smallest reduction of a column's intensity residual sum of squares, in noise variances, that moves its
#: change point to its intensity step (a chi-square of 1 degree of freedom at p = 0.0016 per frame). On 4
#: tuning series (seeds 6001-6004 of benchmarks/series.py, 100 counts) 5, 10 and 20 gave the same fractions.
INTENSITY_EVIDENCE = 10.0


@dataclasses.dataclass(frozen=True, eq=False)
class ChangePoints:
    """Conversion frames of the tracked columns, from their labels over the whole series.

    Attributes
    ----------
    frame : (K,) ndarray of int
        Most likely first uniform frame of each column (0: uniform from the start, ``F``: not
        converted within the series, -1: never seen).
    p_converted : (F, K) ndarray
        Posterior probability that column ``j`` is uniform in frame ``k`` (NaN: never seen).
    misread_ordered, misread_uniform : float
        Estimated probabilities that an ordered column is read uniform, and a uniform one ordered.
    """

    frame: np.ndarray
    p_converted: np.ndarray
    misread_ordered: float
    misread_uniform: float


def _log_likelihood(ordered: np.ndarray, uniform: np.ndarray, a: float, b: float) -> np.ndarray:
    """(F + 1, K) log-likelihood of each change point ``c`` from the ordered / uniform read indicators (F, K)."""
    zero = np.zeros((1, ordered.shape[1]))
    before_o = np.vstack([zero, np.cumsum(ordered, axis=0)])  # ordered reads in frames k < c
    before_u = np.vstack([zero, np.cumsum(uniform, axis=0)])
    after_o, after_u = before_o[-1] - before_o, before_u[-1] - before_u
    return before_o * np.log(1 - a) + before_u * np.log(a) + after_o * np.log(b) + after_u * np.log(1 - b)


def _posterior(ll: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    p = ll + log_prior[:, None]
    p = np.exp(p - p.max(axis=0))
    return p / p.sum(axis=0)


def change_points(label: np.ndarray, *, n_iter: int = 30) -> ChangePoints:
    """Each column's conversion frame by maximum likelihood over all its frames.

    Parameters
    ----------
    label : (F, K) array_like of int
        Label codes per frame and column (index into ``LABELS``; -1 not seen or frame not analysed).
    n_iter : int
        Expectation-maximisation rounds for the misread probabilities and the prior over the change point.

    Returns
    -------
    ChangePoints
    """
    label = np.asarray(label)
    n_frames = len(label)
    seen = (label != NOT_SEEN).any(axis=0)
    ordered = (label[:, seen] == _ORDERED).astype(float)
    uniform = (label[:, seen] == _UNIFORM).astype(float)
    zero = np.zeros((1, int(seen.sum())))
    before_o = np.vstack([zero, np.cumsum(ordered, axis=0)])  # ordered reads in frames k < c
    before_u = np.vstack([zero, np.cumsum(uniform, axis=0)])
    a, b = 0.05, 0.05
    log_prior = np.full(n_frames + 1, -np.log(n_frames + 1))
    for _ in range(n_iter):
        post = _posterior(_log_likelihood(ordered, uniform, a, b), log_prior)
        # Expected reads made while ordered (frames before c) and while uniform, over the posterior of c.
        uo, oo = float(np.sum(post * before_u)), float(np.sum(post * before_o))
        ou = float(np.sum(post * (before_o[-1] - before_o)))
        uu = float(np.sum(post * (before_u[-1] - before_u)))
        a = float(np.clip(uo / max(uo + oo, 1e-12), *_RATE_BOUNDS))
        b = float(np.clip(ou / max(ou + uu, 1e-12), *_RATE_BOUNDS))
        log_prior = np.log(np.maximum(post.mean(axis=1), 1e-9))
    post = _posterior(_log_likelihood(ordered, uniform, a, b), log_prior)
    p_converted = np.full((n_frames, label.shape[1]), np.nan)
    # P(uniform in frame k) = P(c <= k); the sum can pass 1 by a rounding error.
    p_converted[:, seen] = np.clip(np.cumsum(post, axis=0)[:n_frames], 0.0, 1.0)
    frame = np.full(label.shape[1], -1)
    frame[seen] = np.argmax(post, axis=0)
    return ChangePoints(frame, p_converted, a, b)


def pooled_fractions(
    p_converted: np.ndarray, cell_area: np.ndarray, *, analysed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform area fraction per frame from the columns' conversion posteriors, and its standard error.

    Parameters
    ----------
    p_converted : (F, K) ndarray
        :attr:`ChangePoints.p_converted`.
    cell_area : (K,) ndarray
        Each column's share of the crystal area (its Voronoi cell) [px].
    analysed : (F,) ndarray of bool
        Frames with labels; the others get NaN.

    Returns
    -------
    fraction, sd : (F,) ndarray
        Expected uniform fraction and the standard error from the columns' posteriors alone.
    """
    area = np.where(np.isfinite(p_converted[0]), np.asarray(cell_area, float), 0.0)
    total = float(area.sum())
    fraction, sd = np.full(len(p_converted), np.nan), np.full(len(p_converted), np.nan)
    if total <= 0:
        return fraction, sd
    p = np.nan_to_num(p_converted[analysed])
    fraction[analysed] = p @ area / total
    sd[analysed] = np.sqrt((p * (1 - p)) @ area**2) / total
    return fraction, sd


def intensity_steps(intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best single step of each column's intensity series and its evidence.

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).

    Returns
    -------
    frame : (K,) ndarray of int
        First frame after the step (1 .. F - 1; -1 when no split leaves a sighting on both sides).
    evidence : (K,) ndarray
        Reduction of the residual sum of squares by the step, in noise variances (the noise from the
        frame-to-frame differences of all columns, median absolute deviation).
    """
    intensity = np.asarray(intensity, float)
    seen = np.isfinite(intensity)
    count = np.vstack([np.zeros((1, intensity.shape[1])), np.cumsum(seen, axis=0)])
    total = np.vstack([np.zeros((1, intensity.shape[1])), np.cumsum(np.where(seen, intensity, 0.0), axis=0)])
    n, x = count[-1], total[-1]
    best, frame = np.zeros(intensity.shape[1]), np.full(intensity.shape[1], -1)
    for c in range(1, len(intensity)):
        n1, n2 = count[c], n - count[c]
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = n1 * n2 / n * (total[c] / n1 - (x - total[c]) / n2) ** 2
        gain = np.where((n1 > 0) & (n2 > 0), gain, 0.0)
        frame = np.where(gain > best, c, frame)
        best = np.maximum(gain, best)
    diffs = np.diff(intensity, axis=0)
    sd = float(np.nanmedian(np.abs(diffs))) / (0.6745 * np.sqrt(2)) if np.isfinite(diffs).any() else np.nan
    return frame, best / sd**2 if sd > 0 else np.zeros_like(best)


def refine_by_intensity(change: ChangePoints, intensity: np.ndarray) -> ChangePoints:
    """Move the change point of every column converted within the series to its own intensity step,
    where that step is significant (see the module docstring).

    Parameters
    ----------
    change : ChangePoints
        From the labels (:func:`change_points`).
    intensity : (F, K) array_like
        Each column's intensity per frame, on a scale common to all frames (NaN: not seen).

    Returns
    -------
    ChangePoints
        With ``frame`` and ``p_converted`` (a step at the new frame) of the refined columns replaced.
    """
    n_frames = len(change.p_converted)
    step, evidence = intensity_steps(intensity)
    refine = (change.frame > 0) & (change.frame < n_frames) & (step > 0) & (evidence > INTENSITY_EVIDENCE)
    frame = np.where(refine, step, change.frame)
    p = change.p_converted.copy()
    p[:, refine] = (np.arange(n_frames)[:, None] >= step[None, refine]).astype(float)
    return dataclasses.replace(change, frame=frame, p_converted=p)


def pooled_reads(
    label: np.ndarray,
    cell_area: np.ndarray,
    frame_ci95: np.ndarray,
    *,
    use: np.ndarray,
    intensity: np.ndarray | None = None,
) -> tuple[ChangePoints, np.ndarray, np.ndarray]:
    """Change points from the labels of the frames ``use``, the pooled fraction of every frame read, and its interval.

    Parameters
    ----------
    label : (F, K) array_like of int
        Label codes per frame and tracked column (-1: not seen).
    cell_area : (K,) array_like
        Each column's share of the crystal area [px].
    frame_ci95 : (F, 2) array_like
        Each frame's own 95 % interval (NaN: frame not read).
    use : (F,) array_like of bool
        Frames whose labels are evidence (e.g. not one-phase reads).
    intensity : (F, K) array_like, optional
        Each column's intensity per frame on a common scale: the change points are refined by it
        (:func:`refine_by_intensity`).

    Returns
    -------
    change : ChangePoints
    fraction : (F,) ndarray
        Pooled uniform fraction of every frame with a read (NaN elsewhere).
    ci95 : (F, 2) ndarray
        Its 95 % interval: the columns' posterior spread and the frame's own error combined (the
        boundary and edge placement of a frame do not average out over the series).
    """
    frame_ci95 = np.asarray(frame_ci95, float)
    change = change_points(np.where(np.asarray(use, bool)[:, None], label, NOT_SEEN))
    if intensity is not None:
        change = refine_by_intensity(change, intensity)
    fraction, sd = pooled_fractions(change.p_converted, cell_area, analysed=np.isfinite(frame_ci95[:, 0]))
    frame_sd = (frame_ci95[:, 1] - frame_ci95[:, 0]) / WIDTH95_SD
    half = Z95 * np.sqrt(sd**2 + frame_sd**2)
    return change, fraction, np.clip(np.stack([fraction - half, fraction + half], axis=1), 0.0, 1.0)
