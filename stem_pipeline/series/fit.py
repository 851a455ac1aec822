"""Damage models of the uniform fraction against cumulative dose, their fits and intervals.

Models (``D``: cumulative dose [e/A^2]; ``f0``: the zero-dose, as-synthesised uniform fraction)

``exponential`` (the stated model)
    ``f(D) = 1 - (1 - f0) exp(-D / Dc)``: every ordered column converts at the
    same rate ``1 / Dc``, independently of the others.
``two_rates``
    ``f(D) = 1 - (1 - f0) [a exp(-D / D1) + (1 - a) exp(-D / D2)]``: two
    populations of ordered columns (e.g. surface and core) with their own rates.
``boundary_front``
    ``f(D) = 1 - (1 - f0) exp(-(D / Dc)^n)``: the Avrami (JMAK) form of
    conversion that starts at domain boundaries and spreads as fronts (``n > 1``:
    accelerating, ``n < 1``: slowing down; ``0.5 <= n <= 4``); ``n = 1`` is the exponential.

Gain allowance (``gain_sd > 0``, the default of ``SeriesConfig``)
    The classifier may read a partly converted dot with a gain ``g`` on the
    converted share: ``f0 + g (f(D) - f0)``. :func:`fit_damage` keeps the
    chosen model's estimates (``g = 1``) and widens its intervals to their union
    with those of the same model fitted with ``g`` free within ``GAIN_BOUNDS``
    under a Gaussian prior of mean 1 and standard deviation ``gain_sd`` (one more
    observation). On synthetic series the per-frame reads of the issue-14
    classifier are unbiased at zero dose but come out 0.01-0.02 high once 10 % or
    more of the dot has converted (benchmarks/results/series.md): a fit with
    ``g = 1`` reads that as a faster conversion, Dc 4-13 % low (median), with an
    interval that covered it on 50 % of the tuning dots. The prior's width (0.1) was chosen on the
    tuning series (seeds 6000+ of benchmarks/series.py).

For every model the reported critical dose is the dose at which the ordered
share has fallen to ``1/e`` (``Dc`` for the first and third models).

Fit and intervals
    Weighted least squares (:func:`scipy.optimize.least_squares`) with each
    frame's standard error from its 95 % interval, ``(hi - lo) / WIDTH95_SD`` (3.92), and a
    soft-L1 loss beyond ``ROBUST_SCALE`` standard errors (a misread frame weighs less). The
    parameter covariance is ``(J^T J)^-1`` scaled up by the reduced chi-square
    when the scatter exceeds the stated errors, and by ``(1 + rho) / (1 - rho)`` when
    the residuals of consecutive frames are correlated (lag-1 autocorrelation ``rho``
    in dose order: a classifier bias that lasts several frames); intervals are the delta method
    with Student's t (``n - p`` degrees of freedom), on a log scale for the
    critical dose. Part of a frame's error is shared by all frames of one dot
    (the classifier's bias on that dot, the boundary placement), and extrapolation
    cannot average it away: ``common_error_fraction`` of the median per-frame
    variance is added to the variance of ``f0``.
    A frame read as one phase is a censored observation (``bound``): the fraction is at most (read all
    ordered) or at least (read all uniform) the classifier's detection limit, a residual that is zero on
    the bound's side and ``(f(D) - bound) / sigma`` beyond it. Bounds exclude curves but are no measure
    of the scatter: the reduced chi-square, the autocorrelation and the degrees of freedom
    are the values' (a fit needs ``p + MIN_DOF`` observations, values and bounds, and more values than
    parameters). See :func:`stem_pipeline.series._core._fit_frames` for why and what it does on
    synthetic series.
    Models are compared by the small-sample Akaike criterion (AICc, with the
    error scale as a free parameter); an alternative replaces the stated model
    only when its AICc is lower by more than 10 (very strong evidence: frame-to-frame
    classification errors alone often make a more flexible curve look better by a few units, and a
    flexible curve extrapolates to zero dose less stably). :func:`stem_pipeline.series.analyze_series`
    reports the stated model whatever the AICc (``SeriesConfig.choose_model_by_aicc``) and logs a strong
    preference: with the reads pooled over the series, an alternative won on 9 of 52 tuning and grid
    series of benchmarks/series.py and extrapolated to f0 worse than the stated model on every one of them
    (twice by 0.26, with an f0 interval of [0, 1]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats

from .._stats import WIDTH95_SD

#: Residuals beyond this many standard errors weigh less (soft-L1 loss): one misread frame
#: (e.g. 0.98 where the truth is 0.84, seen on synthetic series) must not bend the whole curve.
ROBUST_SCALE = 2.0
#: Smallest standard error of a frame's fraction in the fit: the rms error of the reads pooled over the
#: series on synthetic series (benchmarks/series.py) is ~0.01 (a frame's own read: ~0.02), while the pipeline's
#: interval of a near one-phase read can be 0.01 wide. On the 52 tuning and grid series, 0.015 gave f0
#: intervals 0.096 wide with every error below 0.6 of the half-width; 0.01, 0.074 wide and below 0.8.
MIN_FRAME_SD = 0.01
#: Fewest observations (values and bounds, and the gain's prior) beyond the parameters for a fit.
MIN_DOF = 3
#: Largest lag-1 autocorrelation of the residuals taken into the intervals.
MAX_AUTOCORRELATION = 0.9
#: A critical dose whose 95 % interval spans more than this factor is reported as not constrained.
MAX_DC_CI_RATIO = 10.0
#: Range of the classifier's gain on the converted share (when it is fitted).
GAIN_BOUNDS = (0.5, 1.5)
#: The stated model; alternatives must beat it by this much AICc to replace it.
STATED_MODEL, AICC_MARGIN = "exponential", 10.0


def _exponential(d, p):
    f0, dc = p
    return 1 - (1 - f0) * np.exp(-d / dc)


def _two_rates(d, p):
    f0, d1, d2, a = p
    return 1 - (1 - f0) * (a * np.exp(-d / d1) + (1 - a) * np.exp(-d / d2))


def _boundary_front(d, p):
    f0, dc, n = p
    return 1 - (1 - f0) * np.exp(-((np.maximum(d, 0) / dc) ** n))


def _char_two_rates(p):
    """Dose at which a e^(-D/D1) + (1-a) e^(-D/D2) = 1/e."""
    _, d1, d2, a = p

    def excess(x):
        return a * np.exp(-x / d1) + (1 - a) * np.exp(-x / d2) - np.exp(-1)

    return float(optimize.brentq(excess, 0.0, 50 * max(d1, d2)))


@dataclasses.dataclass(frozen=True)
class _Model:
    name: str
    curve: Callable
    names: tuple
    critical: Callable  # params -> critical dose (ordered share 1/e)


MODELS = {
    "exponential": _Model("exponential", _exponential, ("f0", "Dc"), lambda p: float(p[1])),
    "two_rates": _Model("two_rates", _two_rates, ("f0", "D1", "D2", "a"), _char_two_rates),
    "boundary_front": _Model("boundary_front", _boundary_front, ("f0", "Dc", "n"), lambda p: float(p[1])),
}


@dataclasses.dataclass(frozen=True, eq=False)
class DamageFit:
    """One model fitted to the fraction-vs-dose data.

    Attributes
    ----------
    model : str
        Model name (see the module docstring).
    params : dict
        Fitted parameters by name.
    cov : (P, P) ndarray
        Their covariance (scaled, see the module docstring).
    f0, f0_ci95 : float, tuple of float
        Zero-dose uniform fraction and its 95 % interval.
    critical_dose, critical_dose_ci95 : float, tuple of float
        Dose at which the ordered share is ``1/e`` [e/A^2] and its 95 % interval.
    chi2, aicc : float
        Weighted residual sum of squares and the small-sample Akaike criterion.
    n_points : int
        Values fitted (frames, and the gain's prior when there is one): ``n_points - len(params)`` is the
        intervals' degrees of freedom.
    n_bounds : int
        Frames fitted as bounds (read as one phase: censored observations).
    critical_dose_constrained : bool
        False when the data do not pin the critical dose down: it ran to its upper bound
        (1000x the dose range), or its interval spans more than ``MAX_DC_CI_RATIO`` (e.g. a dot
        almost all uniform from the start, whose small ordered share barely changes).
    gain : float or None
        The classifier's gain on the converted share fitted for the intervals' allowance (None: none).
    """

    model: str
    params: dict
    cov: np.ndarray
    f0: float
    f0_ci95: tuple
    critical_dose: float
    critical_dose_ci95: tuple
    chi2: float
    aicc: float
    n_points: int
    n_bounds: int = 0
    critical_dose_constrained: bool = True
    gain: float | None = None

    def curve(self, dose: np.ndarray) -> np.ndarray:
        """The fitted uniform fraction at ``dose`` [e/A^2] (as the classifier reads it: with the gain)."""
        return _measured_curve(self.model, "gain" in self.params)(
            np.asarray(dose, float), np.array(list(self.params.values()))
        )

    def band(self, dose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise 95 % band of the fitted curve (delta method, Student's t)."""
        dose = np.asarray(dose, float)
        p = np.array(list(self.params.values()))
        grad = _gradient(lambda q: _measured_curve(self.model, "gain" in self.params)(dose, q), p)
        sd = np.sqrt(np.einsum("ij,jk,ik->i", grad, self.cov, grad))
        t = stats.t.ppf(0.975, max(self.n_points - len(p), 1))
        mid = self.curve(dose)
        return np.clip(mid - t * sd, 0, 1), np.clip(mid + t * sd, 0, 1)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "model": self.model,
            "params": {k: float(v) for k, v in self.params.items()},
            "zero_dose_uniform_fraction": self.f0,
            "zero_dose_ci95": list(self.f0_ci95),
            "critical_dose_e_per_A2": self.critical_dose,
            "critical_dose_ci95": list(self.critical_dose_ci95),
            "chi2": self.chi2,
            "aicc": self.aicc,
            "n_points": self.n_points,
            "n_bounds": self.n_bounds,
            "critical_dose_constrained": self.critical_dose_constrained,
            "gain": self.gain,
        }


def _measured_curve(name: str, with_gain: bool) -> Callable:
    """The model's curve; with a gain ``g`` (the last parameter), ``f0 + g (f(D) - f0)``."""
    model = MODELS[name]
    if not with_gain:
        return model.curve

    def curve(d, p):
        return p[0] + p[-1] * (model.curve(d, p[:-1]) - p[0])

    return curve


def _gradient(fun: Callable, p: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of ``fun`` at ``p`` (columns: parameters)."""
    cols = []
    for i in range(len(p)):
        h = 1e-6 * max(abs(p[i]), 1e-3)
        up, down = p.copy(), p.copy()
        up[i] += h
        down[i] -= h
        cols.append((np.atleast_1d(fun(up)) - np.atleast_1d(fun(down))) / (2 * h))
    return np.stack(cols, axis=-1)


def frame_sigma(ci95: np.ndarray) -> np.ndarray:
    """Standard error of each frame's fraction from its 95 % interval: ``(hi - lo) / 3.92``, at least ``MIN_FRAME_SD``.

    Parameters
    ----------
    ci95 : (n, 2) ndarray
        Each frame's 95 % interval of the uniform fraction.

    Returns
    -------
    (n,) ndarray
    """
    ci95 = np.asarray(ci95, float)
    return np.maximum((ci95[:, 1] - ci95[:, 0]) / WIDTH95_SD, MIN_FRAME_SD)


def _autocorrelation_inflation(residuals: np.ndarray) -> float:
    """Variance inflation ``(1 + rho) / (1 - rho)`` for residuals correlated from frame to frame.

    ``rho`` is the lag-1 autocorrelation of the residuals in dose order, clipped to [0, 0.9]:
    a classifier that reads a dot too high for several frames in a row gives fewer independent
    points than frames (the AR(1) effective sample size ``n (1 - rho) / (1 + rho)``).
    """
    r = np.asarray(residuals, float)
    denom = float(np.sum(r * r))
    rho = float(np.sum(r[:-1] * r[1:])) / denom if denom > 0 and len(r) > 2 else 0.0
    rho = min(max(rho, 0.0), MAX_AUTOCORRELATION)
    return (1 + rho) / (1 - rho)


def _start_and_bounds(name: str, dose: np.ndarray, frac: np.ndarray):
    span = float(np.max(dose)) if np.max(dose) > 0 else 1.0
    f0 = float(np.clip(np.min(frac), 0.0, 0.95))
    if name == "exponential":
        return [f0, span], ([0.0, 1e-3 * span], [1.0, 1e3 * span])
    if name == "two_rates":
        return [f0, 0.3 * span, 3 * span, 0.5], (
            [0.0, 1e-3 * span, 1e-3 * span, 0.0],
            [1.0, 1e3 * span, 1e3 * span, 1.0],
        )
    return [f0, span, 1.0], ([0.0, 1e-3 * span, 0.5], [1.0, 1e3 * span, 4.0])


def fit_model(
    name: str,
    dose: np.ndarray,
    fraction: np.ndarray,
    sigma: np.ndarray,
    *,
    bound: np.ndarray | None = None,
    common_error_fraction: float = 0.25,
    gain_sd: float = 0.0,
) -> DamageFit | None:
    """Fit one damage model (see the module docstring for the model, the fit and the intervals).

    Parameters
    ----------
    name : {"exponential", "two_rates", "boundary_front"}
        The model.
    dose : (n,) ndarray
        Cumulative dose of each frame [e/A^2].
    fraction : (n,) ndarray
        Uniform area fraction of each frame.
    sigma : (n,) ndarray
        Standard error of each fraction (> 0).
    bound : (n,) array_like of int, optional
        Censored observations (see the module docstring): ``+1`` where the fraction is at most
        ``fraction`` (a frame read all ordered: the uniform share below the classifier's detection
        limit), ``-1`` where it is at least ``fraction`` (read all uniform), 0 for a value (the default
        for every point).
    common_error_fraction : float
        Share of the per-frame variance common to all frames (added to ``f0``'s variance).
    gain_sd : float
        Prior standard deviation of the classifier's gain on the converted share (0: no gain, the
        model as stated; see the module docstring).

    Returns
    -------
    DamageFit or None
        None when there are too few points for the model (fewer than ``p + MIN_DOF`` observations,
        values and bounds, or no more values than parameters) or the fit fails.
    """
    model = MODELS[name]
    dose, frac, sigma = (np.asarray(x, float) for x in (dose, fraction, sigma))
    side = np.zeros(len(dose), int) if bound is None else np.sign(np.asarray(bound, int))
    value = side == 0
    with_gain = gain_sd > 0
    curve = _measured_curve(name, with_gain)
    names = model.names + (("gain",) if with_gain else ())
    p_count = len(names)
    n_obs = len(dose) + with_gain  # the gain's prior is one more observation
    dof = int(value.sum()) + with_gain - p_count  # bounds exclude curves but do not measure the scatter
    if n_obs - p_count < MIN_DOF or dof < 1:
        return None
    start, bounds = _start_and_bounds(name, dose[value], frac[value])
    if with_gain:
        start, bounds = [*start, 1.0], ([*bounds[0], GAIN_BOUNDS[0]], [*bounds[1], GAIN_BOUNDS[1]])

    def residuals(q):
        data = (curve(dose, q) - frac) / sigma
        # A bound costs nothing on its side: max(r, 0) for "at most", min(r, 0) for "at least".
        data = np.where(side > 0, np.maximum(data, 0.0), np.where(side < 0, np.minimum(data, 0.0), data))
        return np.append(data, (q[-1] - 1.0) / gain_sd) if with_gain else data

    res = optimize.least_squares(
        residuals,
        start,
        bounds=bounds,
        method="trf",
        loss="soft_l1",
        f_scale=ROBUST_SCALE,
    )
    if not res.success:
        return None
    p = res.x
    chi2 = float(np.sum(res.fun**2))
    # The scatter about the curve is measured by the values (and the gain's prior): a bound is no measure of it.
    measured = np.append(value, True) if with_gain else value
    scatter = float(np.sum(res.fun[measured] ** 2))
    jac = _gradient(residuals, p)
    in_order = np.argsort(dose[value])
    inflation = _autocorrelation_inflation(res.fun[: len(dose)][value][in_order])
    cov = np.linalg.pinv(jac.T @ jac) * max(1.0, scatter / dof) * inflation
    t = stats.t.ppf(0.975, dof)
    f0 = float(p[0])
    var_common = common_error_fraction * float(np.median(sigma[value])) ** 2
    sd_f0 = float(np.sqrt(cov[0, 0] + var_common))
    dc = model.critical(p[: len(model.names)])
    g = _gradient(lambda q: np.log(model.critical(q[: len(model.names)])), p)[0]
    sd_log_dc = float(np.sqrt(max(g @ cov @ g, 0.0)))
    dose_params = [(v, hi) for key, v, hi in zip(names, p, bounds[1]) if key.startswith("D")]
    at_bound = any(np.isclose(v, hi, rtol=1e-3) for v, hi in dose_params)
    k = p_count + 1  # the error scale is estimated too
    # A model whose critical dose the data do not constrain can have sd_log_dc in the hundreds: no overflow.
    spread = float(np.exp(min(t * sd_log_dc, 700.0)))
    aicc = n_obs * np.log(max(chi2, 1e-12) / n_obs) + 2 * k + 2 * k * (k + 1) / max(n_obs - k - 1, 1)
    return DamageFit(
        model=name,
        params=dict(zip(names, (float(v) for v in p))),
        cov=cov,
        f0=f0,
        f0_ci95=(float(max(0.0, f0 - t * sd_f0)), float(min(1.0, f0 + t * sd_f0))),
        critical_dose=dc,
        critical_dose_ci95=(dc / spread, dc * spread),
        chi2=chi2,
        aicc=float(aicc),
        n_points=dof + p_count,
        n_bounds=int((~value).sum()),
        critical_dose_constrained=bool(np.isfinite(sd_log_dc) and t * sd_log_dc < np.log(MAX_DC_CI_RATIO) / 2)
        and not at_bound,
    )


def fit_damage(
    dose: np.ndarray,
    fraction: np.ndarray,
    sigma: np.ndarray,
    *,
    bound: np.ndarray | None = None,
    common_error_fraction: float = 0.25,
    gain_sd: float = 0.0,
    aicc_margin: float = AICC_MARGIN,
) -> tuple[DamageFit | None, list[DamageFit]]:
    """Fit every model and choose one: the stated model unless an alternative's AICc is lower by more than 10.

    Parameters
    ----------
    dose, fraction, sigma, bound : (n,) ndarray
        As in :func:`fit_model`.
    common_error_fraction, gain_sd : float
        As in :func:`fit_model`.
    aicc_margin : float
        AICc by which an alternative must beat the stated model to be chosen (``inf``: the stated model always).

    Returns
    -------
    chosen : DamageFit or None
        None when not even the stated model could be fitted (fewer than 5 frames, values and bounds, or 3 values). With
        ``gain_sd > 0`` its intervals allow for a gain (see the module docstring) and ``gain`` is set.
    fits : list of DamageFit
        Every model that could be fitted, the chosen one included.
    """
    fits = [
        f
        for name in MODELS
        if (f := fit_model(name, dose, fraction, sigma, bound=bound, common_error_fraction=common_error_fraction))
        is not None
    ]
    stated = next((f for f in fits if f.model == STATED_MODEL), None)
    if stated is None:
        return None, fits
    best = min(fits, key=lambda f: f.aicc)
    chosen = best if best.aicc < stated.aicc - aicc_margin else stated
    read = (
        fit_model(
            chosen.model,
            dose,
            fraction,
            sigma,
            bound=bound,
            common_error_fraction=common_error_fraction,
            gain_sd=gain_sd,
        )
        if gain_sd > 0
        else None
    )
    if read is None:
        return chosen, fits
    widened = _allow_for_gain(chosen, read)
    return widened, [widened if f is chosen else f for f in fits]


def _allow_for_gain(fit: DamageFit, read: DamageFit) -> DamageFit:
    """``fit`` with its intervals widened to the union with those of ``read`` (the same model with a gain)."""
    f0_ci = (min(fit.f0_ci95[0], read.f0_ci95[0]), max(fit.f0_ci95[1], read.f0_ci95[1]))
    lo = min(fit.critical_dose_ci95[0], read.critical_dose_ci95[0])
    hi = max(fit.critical_dose_ci95[1], read.critical_dose_ci95[1])
    return dataclasses.replace(
        fit,
        f0_ci95=f0_ci,
        critical_dose_ci95=(lo, hi),
        gain=read.params["gain"],
        critical_dose_constrained=fit.critical_dose_constrained and hi / lo <= MAX_DC_CI_RATIO,
    )
