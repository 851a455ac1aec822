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

Labels alone leave a persistent misread: the classifier sees a column's
neighbours (its local fit and random field), so a minority column among
columns of the other state takes their label frame after frame. An ordered
column next to converted ones is read uniform until it converts itself; early
in a series, a column converted before the first frame, among ordered
neighbours, is read ordered there (the first frame reads low, and no earlier
frame can outvote it); late in a series, the last ordered islands are read
uniform in the last frame (it reads high); and a whole domain can flip in
one frame and stay flipped. No pooling of labels undoes a misread that
persists or sits at the series' end. A column's own intensity
does not look at its neighbours: a bright (Pb-I) or dim (Cs, I) column of
the ordered phase steps to the uniform level when it converts, and a column
that does not change state within the series has no step at all. The
change point's log-likelihood is therefore the labels', weighted by
``LABEL_WEIGHT`` (their misreads are not independent from frame to frame),
plus the intensity series' (:func:`intensity_log_likelihood`: a step of the
typical size at ``c`` against none): a change within the series needs its
intensity step, and a column with a flat intensity is put in one state all
along (``c = 0`` or ``c = F``), which its labels over all frames choose. On
the tuning series of benchmarks/series.py (seeds 6000-6015) the frames'
rms error fell from 0.025 (labels, changes moved to significant intensity
steps) to 0.012.

A step says nothing between the two one-state histories (``c = 0`` and
``c = F``), and in a short noisy series the first frame's state rests on one
label and one intensity difference. The column's intensity *level* speaks to
both: the ordered phase alternates dim and bright columns, the uniform one
sits between them. After the step rounds, the levels of each state are
estimated from the series' own columns under their change points
(:func:`state_levels`) and each segment's level is weighed under its state's
(:func:`level_log_likelihood`, weighted ``LEVEL_WEIGHT``), on intensities
rescaled frame by frame (:func:`frame_scale`: the frame's mean column drifts as
the dot converts). On the 132 seen two-phase series of benchmarks/series.py
f0 came within 0.03 in all (the three 5-frame, 30-count misses of +0.034 to
+0.039 among them), and the frames' rms error fell from 0.0079 to 0.0061.

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
#: Weight of the labels' log-likelihood against the intensity's: a column's misreads persist from frame to
#: frame (its neighbours' state), so its labels over F frames carry less than F independent reads.
LABEL_WEIGHT = 0.5
#: Spread of a column's intensity step at conversion about the typical step, relative to it (columns
#: differ: bright or dim, and their neighbourhood).
STEP_SPREAD = 0.15
#: A column's best intensity step above this many noise variances is clear: the clear steps set the typical one.
CLEAR_STEP = 25.0
#: Fewest clear steps to measure the typical step from (else 3 noise standard deviations).
MIN_CLEAR_STEPS = 10
#: Share of a frame's own standard error kept in its pooled read's (with the columns' posterior spread):
#: the boundary and edge placement of a frame do not average out over the series, but the pooled reads
#: err less than a frame's own. On the 52 tuning and grid series of benchmarks/series.py, 1, 0.7, 0.5
#: and 0.3 gave per-frame coverage 0.98, 0.965, 0.90 and 0.74.
FRAME_ERROR_SHARE = 0.7
#: Rounds of change points, each with the typical step estimated from the last (the first from the clear steps).
STEP_ROUNDS = 3
#: Weight of the intensity levels' log-likelihood (:func:`level_log_likelihood`): a column's level in a state
#: also depends on its neighbourhood, which its state's level distribution only roughly describes. Chosen on
#: the 132 seen two-phase series of benchmarks/series.py (frames rescaled, :func:`frame_scale`) from 0.3, 0.5,
#: 0.7 and 1: f0 within 0.03 in 99 %, 100 %, 100 %, - (largest error 0.031, 0.027, 0.028; the 39 at 30 counts:
#: 97 %, 100 %, 100 %, 100 %, largest 0.031, 0.027, 0.028, 0.030).
LEVEL_WEIGHT = 0.5
#: Rounds of change points with the levels, each with the levels and the frames' scale estimated from the last.
LEVEL_ROUNDS = 3
#: Smallest spread of a state's column level [relative intensity].
_MIN_LEVEL_SD = 0.02


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


def change_points(
    label: np.ndarray,
    *,
    extra_log_likelihood: np.ndarray | None = None,
    label_weight: float = 1.0,
    n_iter: int = 30,
) -> ChangePoints:
    """Each column's conversion frame by maximum likelihood over all its frames.

    Parameters
    ----------
    label : (F, K) array_like of int
        Label codes per frame and column (index into ``LABELS``; -1 not seen or frame not analysed).
    extra_log_likelihood : (F + 1, K) array_like, optional
        Log-likelihood of each change point from evidence independent of the labels (e.g.
        :func:`intensity_log_likelihood`), added to the labels'.
    label_weight : float
        Weight of the labels' log-likelihood (1: independent reads; less where misreads persist over
        frames, e.g. ``LABEL_WEIGHT`` beside the intensity's).
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
    extra = 0.0 if extra_log_likelihood is None else np.asarray(extra_log_likelihood, float)[:, seen]
    a, b = 0.05, 0.05
    log_prior = np.full(n_frames + 1, -np.log(n_frames + 1))
    for _ in range(n_iter):
        post = _posterior(label_weight * _log_likelihood(ordered, uniform, a, b) + extra, log_prior)
        # Expected reads made while ordered (frames before c) and while uniform, over the posterior of c.
        uo, oo = float(np.sum(post * before_u)), float(np.sum(post * before_o))
        ou = float(np.sum(post * (before_o[-1] - before_o)))
        uu = float(np.sum(post * (before_u[-1] - before_u)))
        a = float(np.clip(uo / max(uo + oo, 1e-12), *_RATE_BOUNDS))
        b = float(np.clip(ou / max(ou + uu, 1e-12), *_RATE_BOUNDS))
        log_prior = np.log(np.maximum(post.mean(axis=1), 1e-9))
    post = _posterior(label_weight * _log_likelihood(ordered, uniform, a, b) + extra, log_prior)
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


def _before_split(values: np.ndarray) -> np.ndarray:
    """(F + 1, K) sums of an (F, K) array over the frames before every split ``c = 0 .. F`` of each column."""
    return np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])


def _segment_differences(intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """For every split ``c`` of each column's intensity series: the difference of the segments' means
    (after minus before) and its variance, ``sd^2 (1 / n1 + 1 / n2)`` (NaN where one segment is empty);
    and the noise standard deviation ``sd`` (from the frame-to-frame differences of all columns, median
    absolute deviation)."""
    intensity = np.asarray(intensity, float)
    seen = np.isfinite(intensity)
    count, total = _before_split(seen), _before_split(np.where(seen, intensity, 0.0))
    n1, n2 = count, count[-1] - count
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where((n1 > 0) & (n2 > 0), (total[-1] - total) / n2 - total / n1, np.nan)
        var = np.where((n1 > 0) & (n2 > 0), 1 / n1 + 1 / n2, np.nan)
    diffs = np.diff(intensity, axis=0)
    sd = float(np.nanmedian(np.abs(diffs))) / (0.6745 * np.sqrt(2)) if np.isfinite(diffs).any() else np.nan
    return diff, var * sd**2, sd


def step_evidence(intensity: np.ndarray) -> np.ndarray:
    """The evidence of every single step of each column's intensity series.

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).

    Returns
    -------
    (F + 1, K) ndarray
        For every split ``c`` (the first frame after the step), the reduction of the column's residual
        sum of squares by a two-segment mean fit, in noise variances (the noise from the frame-to-frame
        differences of all columns); 0 where no step is possible (``c = 0``, ``c = F``, no sighting on
        one side, or no noise estimate).
    """
    diff, var, _ = _segment_differences(intensity)
    with np.errstate(invalid="ignore", divide="ignore"):
        evidence = diff**2 / var
    return np.where(np.isfinite(evidence), evidence, 0.0)


def typical_step(intensity: np.ndarray, change: ChangePoints | None = None) -> float:
    """The typical size of a column's intensity step at conversion.

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).
    change : ChangePoints, optional
        The columns' change points: the step is the mean size of the segment difference at each split,
        weighted by the posterior of a change there (within the series). Without them: the median
        size of the clear steps (best split above ``CLEAR_STEP`` noise variances: an estimate biased high
        where the noise is large, refined by the former), or 3 noise standard deviations when fewer than
        ``MIN_CLEAR_STEPS`` columns have one.

    Returns
    -------
    float
    """
    diff, var, sd = _segment_differences(intensity)
    size = np.abs(diff)
    if change is not None:
        p = np.nan_to_num(change.p_converted)
        weight = np.diff(p, axis=0)  # posterior of a change at c = 1 .. F - 1
        inner = size[1:-1]
        use = np.isfinite(inner)
        total = float(weight[use].sum())
        return float((weight[use] * inner[use]).sum() / total) if total > 0 else typical_step(intensity)
    with np.errstate(invalid="ignore", divide="ignore"):
        evidence = np.where(np.isfinite(diff) & (var > 0), diff**2 / var, 0.0)
    best = np.argmax(evidence, axis=0)
    columns = np.arange(evidence.shape[1])
    clear = evidence[best, columns] > CLEAR_STEP
    if clear.sum() >= MIN_CLEAR_STEPS:
        return float(np.median(size[best, columns][clear]))
    return 3.0 * sd


def intensity_log_likelihood(intensity: np.ndarray, step_size: float) -> np.ndarray:
    """Log-likelihood of each change point from each column's own intensity series, against no change.

    A column keeps one intensity level in each state (its own: a bright or dim ordered column, a
    uniform column in its neighbourhood), with Gaussian noise; at its change point the level steps up
    or down by about ``step_size`` (Gaussian spread ``STEP_SPREAD * step_size``). The log-likelihood of
    a change at ``c`` against none is that of the difference ``d`` of the segments' means (the levels
    integrated out): ``N(d; +-step_size, v + s^2)`` (either sign equally likely) against ``N(d; 0, v)``,
    ``v`` the difference's noise variance. A flat series speaks against a change within the series, a
    clear step for it.

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).
    step_size : float
        The typical step at conversion (:func:`typical_step`).

    Returns
    -------
    (F + 1, K) ndarray
        0 for ``c = 0`` and ``c = F`` (one state all along: the labels decide between them) and where
        a segment is empty.
    """
    diff, var, _ = _segment_differences(intensity)
    out = np.zeros_like(diff)
    ok = np.isfinite(diff) & (var > 0)
    if not np.isfinite(step_size) or not ok.any():
        return out
    d, v = diff[ok], var[ok]
    w = v + (STEP_SPREAD * step_size) ** 2
    up, down = -((d - step_size) ** 2) / (2 * w), -((d + step_size) ** 2) / (2 * w)
    step = np.logaddexp(up, down) - np.log(2) - 0.5 * np.log(w)
    flat = -(d**2) / (2 * v) - 0.5 * np.log(v)
    out[ok] = step - flat
    return out


@dataclasses.dataclass(frozen=True)
class Level:
    """One component of a state's column-level distribution: weight, mean and variance (without the frame noise)."""

    weight: float
    mean: float
    var: float


def state_levels(intensity: np.ndarray, change: ChangePoints) -> tuple[list[Level], list[Level]]:
    """The distributions of a column's intensity level in each state, from the series' own columns.

    Every frame's intensity of every column is weighted by the posterior that the column is uniform there
    (``change.p_converted``), or ordered. The uniform level is one Gaussian; the ordered one two, dim and
    bright (the intensities below and above the uniform mean): the ordered phase alternates dim and bright
    columns, which become alike on conversion. Variances are the weighted ones less the frame-to-frame noise
    variance (at least ``_MIN_LEVEL_SD`` squared).

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).
    change : ChangePoints
        The columns' change points (e.g. from the steps alone).

    Returns
    -------
    uniform, ordered : list of Level
        Empty when the series shows one state only.
    """
    intensity = np.asarray(intensity, float)
    noise_var = _segment_differences(intensity)[2] ** 2
    ok = np.isfinite(intensity) & np.isfinite(change.p_converted)
    x, p = intensity[ok], change.p_converted[ok]

    def level(w: np.ndarray, weight: float) -> Level:
        mean = float((w * x).sum() / w.sum())
        var = float((w * (x - mean) ** 2).sum() / w.sum()) - noise_var
        return Level(weight, mean, max(var, _MIN_LEVEL_SD**2))

    if not p.sum() > 0 or not (1 - p).sum() > 0:
        return [], []  # one state only: no levels to tell them apart
    uniform = level(p, 1.0)
    parts = [(1 - p) * (x < uniform.mean), (1 - p) * (x >= uniform.mean)]
    total = sum(float(w.sum()) for w in parts)
    return [uniform], [level(w, float(w.sum()) / total) for w in parts if w.sum() > 0]


def _mixture_log_density(mean: np.ndarray, noise_var: np.ndarray, levels: list[Level]) -> np.ndarray:
    """log density of a segment's mean under the levels, each seen through the noise variance of the mean."""
    terms = []
    for c in levels:
        v = c.var + noise_var
        terms.append(np.log(c.weight) - (mean - c.mean) ** 2 / (2 * v) - 0.5 * np.log(2 * np.pi * v))
    return np.logaddexp.reduce(terms, axis=0)


def level_log_likelihood(intensity: np.ndarray, uniform: list[Level], ordered: list[Level]) -> np.ndarray:
    """Log-likelihood of each change point from a column's intensity levels: ordered before, uniform after.

    The intensity of a column is its state's level plus Gaussian frame noise; the level of each segment
    (frames ``k < c`` ordered, ``k >= c`` uniform) is drawn from its state's distribution
    (:func:`state_levels`) and integrated out. Unlike :func:`intensity_log_likelihood` (a step against
    none), this also weighs the two one-state histories: a column dim or bright all along is ordered
    (``c = F``), one at the uniform level all along uniform (``c = 0``); and the first frame is no longer
    decided on its own difference from the others but on its level too.

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).
    uniform, ordered : list of Level
        The level distributions of the two states.

    Returns
    -------
    (F + 1, K) ndarray
        Relative to ``c = 0`` (a constant per column, which no posterior sees); 0 for a column never seen, and
        everywhere without a noise estimate.
    """
    intensity = np.asarray(intensity, float)
    noise_var = _segment_differences(intensity)[2] ** 2
    if not noise_var > 0:  # no noise estimate (NaN), or none: nothing to weigh the levels against
        return np.zeros((len(intensity) + 1, intensity.shape[1]))
    seen = np.isfinite(intensity)
    x = np.where(seen, intensity, 0.0)
    n1, s1, q1 = _before_split(seen), _before_split(x), _before_split(x**2)
    n2, s2, q2 = n1[-1] - n1, s1[-1] - s1, q1[-1] - q1
    out = np.zeros_like(n1)
    for n, s, q, levels in ((n1, s1, q1, ordered), (n2, s2, q2, uniform)):
        some = n > 0
        m = s / np.maximum(n, 1)
        # The segment's own scatter about its mean, and its mean under the state's levels.
        seg = -(q - n * m**2) / (2 * noise_var) + 0.5 * np.log(2 * np.pi * noise_var) - 0.5 * np.log(np.maximum(n, 1))
        seg += _mixture_log_density(m, noise_var / np.maximum(n, 1), levels)
        out += np.where(some, seg, 0.0)
    out = np.where(np.isfinite(out), out, 0.0)
    return out - out[0]


def frame_scale(intensity: np.ndarray, change: ChangePoints) -> np.ndarray:
    """The scale of each frame's column intensities, relative to the whole series'.

    A column's intensity is relative to its frame's mean column (``_core._track``), and that mean
    drifts as the dot converts (the ordered phase's mean column is not quite the uniform one's): on the
    synthetic series the uniform columns read 1.16 of the mean column in the first frame of a dot with
    little uniform area at zero dose, 1.04 in its last, and the ordered ones drift alike (their ratio
    1.39-1.47). Unscaled, the uniform columns of the first frame look like a step down and, under one
    level for the series, like bright ordered ones. The scale is each frame's intensities relative to their
    state's mean over the series (weighted by the posterior of each state under ``change``), averaged.

    Parameters
    ----------
    intensity : (F, K) array_like
        Intensity per frame and column (NaN: not seen).
    change : ChangePoints
        The columns' change points.

    Returns
    -------
    (F,) ndarray
        1 for a frame without intensities.
    """
    intensity = np.asarray(intensity, float)
    ok = np.isfinite(intensity) & np.isfinite(change.p_converted)
    x = np.where(ok, intensity, 0.0)
    relative = np.zeros_like(x)
    for weight in (np.where(ok, change.p_converted, 0.0), np.where(ok, 1 - change.p_converted, 0.0)):
        if weight.sum() > 0:
            relative += weight * x / ((weight * x).sum() / weight.sum())
    count = ok.sum(axis=1)
    return np.where(count > 0, relative.sum(axis=1) / np.maximum(count, 1), 1.0)


def _joint_change_points(
    label: np.ndarray, intensity: np.ndarray, change: ChangePoints | None, *, levels: bool = False
) -> ChangePoints:
    """Change points from the labels (weighted ``LABEL_WEIGHT``) and the intensity: its steps of the typical
    size (from the clear steps, else under ``change``) and, with ``levels``, its levels under ``change``
    (weighted ``LEVEL_WEIGHT``)."""
    ill = intensity_log_likelihood(intensity, typical_step(intensity, change))
    uniform, ordered = state_levels(intensity, change) if levels and change is not None else ([], [])
    if uniform and ordered:
        ill = ill + LEVEL_WEIGHT * level_log_likelihood(intensity, uniform, ordered)
    return change_points(label, extra_log_likelihood=ill, label_weight=LABEL_WEIGHT)


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
        Each column's intensity per frame on a common scale (all frames, one-phase reads too): its
        likelihood (:func:`intensity_log_likelihood`) joins the labels', weighted by ``LABEL_WEIGHT``.

    Returns
    -------
    change : ChangePoints
    fraction : (F,) ndarray
        Pooled uniform fraction of every frame with a read (NaN elsewhere).
    ci95 : (F, 2) ndarray
        Its 95 % interval: the columns' posterior spread and ``FRAME_ERROR_SHARE`` of the frame's own
        error combined.
    """
    frame_ci95 = np.asarray(frame_ci95, float)
    use = np.asarray(use, bool)
    label = np.where(use[:, None], label, NOT_SEEN)
    if intensity is None:
        change = change_points(label)
    else:
        change = _joint_change_points(label, intensity, None)
        for _ in range(STEP_ROUNDS - 1):
            change = _joint_change_points(label, intensity, change)
        for _ in range(LEVEL_ROUNDS):
            scaled = np.asarray(intensity, float) / frame_scale(intensity, change)[:, None]
            change = _joint_change_points(label, scaled, change, levels=True)
    fraction, sd = pooled_fractions(change.p_converted, cell_area, analysed=np.isfinite(frame_ci95[:, 0]))
    frame_sd = (frame_ci95[:, 1] - frame_ci95[:, 0]) / WIDTH95_SD
    half = Z95 * np.sqrt(sd**2 + (FRAME_ERROR_SHARE * frame_sd) ** 2)
    return change, fraction, np.clip(np.stack([fraction - half, fraction + half], axis=1), 0.0, 1.0)
