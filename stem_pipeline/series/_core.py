"""``analyze_series``: a frame series of one dot, from the raw stack to the zero-dose fraction.

Frames with non-finite pixels, constant frames, frames that cannot be
registered and frames showing another dot are listed with a reason and left
out; every other frame is analysed by :func:`stem_pipeline.pipeline.analyze`
(optionally as a running sum of ``sum_frames`` registered frames), its columns
are linked to the columns of the registered mean (:mod:`.track`), and the
uniform fraction against cumulative dose is fitted (:mod:`.fit`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from pathlib import Path

import numpy as np
from pydantic import Field
from scipy import ndimage
from scipy.spatial import cKDTree

from .._types import Micrograph
from ..classify import ClassifyConfig, hull_mask, region_map_from_columns
from ..config import StrictModel
from ..errors import InputError
from .fit import AICC_MARGIN, DamageFit, fit_damage, frame_sigma
from .load import (
    FrameSeries,
    NotASeriesError,
    dose_per_frame_from_metadata,
    load_series,
)
from .pool import ChangePoints, pooled_reads
from .register import linear_drift, register_frames
from .track import NOT_SEEN, ColumnHistory, column_histories, link_columns

logger = logging.getLogger("stem_pipeline")

#: Frame statuses set here (registration adds ``unregistered`` and ``different_dot``).
NON_FINITE, CONSTANT, NO_CRYSTAL, NO_FRACTIONS = "non_finite", "constant", "no_crystal", "no_fractions"


#: A fraction this close to 0 or 1 is a one-phase read.
_ONE_PHASE = 1e-6


class NoDoseWarning(UserWarning):
    """The series has no dose per frame: it is analysed against frame number."""


class SeriesConfig(StrictModel):
    """Configuration of :func:`analyze_series` (the per-frame analysis has its own ``PipelineConfig``)."""

    sum_frames: int = Field(
        1,
        ge=1,
        description="analyse running sums of this many registered frames (noisy frames; the first frames sum fewer)",
    )
    coarse_sigma_px: float = Field(
        6.0, gt=0, description="smoothing of the coarse registration step [px]: a lattice spacing or more"
    )
    upsample: int = Field(20, ge=1, description="sub-pixel precision of the registration: 1/upsample px")
    max_shift_fraction: float = Field(0.25, gt=0, le=1, description="largest accepted drift, of the frame edge")
    min_correlation: float = Field(
        0.8,
        ge=-1,
        le=1,
        description="smoothed frames correlating less with the registered series show another dot (frames of one "
        "synthetic dot correlate > 0.99 at 30 counts, a dot of another size, place and rotation 0.5)",
    )
    link_tolerance_spacings: float = Field(
        0.35, gt=0, le=0.5, description="largest distance between a frame's column and its reference column [spacings]"
    )
    common_error_fraction: float = Field(
        0.25,
        ge=0,
        le=1,
        description="share of the per-frame fraction variance common to all frames of a dot (added to f0's)",
    )
    pool_frames: bool = Field(
        True,
        description="fit the per-frame fractions pooled over the series (each column's conversion frame from its "
        "labels over all frames jointly with its own intensity series, :mod:`.pool`) rather than each frame's own "
        "read (on the 16 tuning series of benchmarks/series.py: f0 within 0.03 in 100 % against 69 %, Dc within "
        "20 % in 94 % against 60 %)",
    )
    choose_model_by_aicc: bool = Field(
        False,
        description="report an alternative damage model instead of the stated exponential when its AICc is lower "
        "by more than fit.AICC_MARGIN (else the alternatives are fitted, compared and a strong preference logged; "
        "on the 52 tuning and grid series of benchmarks/series.py, pooled reads: f0 within 0.03 in 96 % with the "
        "stated model always, 88 % with the choice, whose alternatives extrapolated worse on every series they won)",
    )
    gain_sd: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description=(
            "prior standard deviation of the classifier's gain on the converted share, allowed for in the f0 and "
            "Dc intervals (0: no allowance)"
        ),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class SeriesResult:
    """Everything :func:`analyze_series` measured.

    Attributes
    ----------
    source : str
        The stack, folder or a description.
    pixel_size_nm : float or None
        Pixel size [nm].
    dose_per_frame : float
        Dose of one frame, in ``dose_unit``.
    dose_unit : {"e/A^2", "frame"}
        ``"frame"`` when no dose was known (doses are then frame numbers).
    dose_source : str
        ``"argument"``, ``"metadata"`` or ``"none"``.
    cumulative_dose : (F,) ndarray
        Dose at the middle of each frame's exposure, ``(k + 0.5) * dose_per_frame``
        (with ``sum_frames`` > 1: the mean over the frames summed into frame ``k``'s image).
    status, message : list of str
        Per frame: ``"ok"`` or why it was left out.
    uniform_fraction, uniform_ci95 : (F,), (F, 2) ndarray
        The uniform area fraction per frame that was fitted and its 95 % interval (NaN when not measured):
        pooled over the series (``SeriesConfig.pool_frames``), else the frame's own.
    frame_uniform_fraction, frame_uniform_ci95 : (F,), (F, 2) ndarray
        Each frame's own read by the pipeline, classified independently of the other frames.
    n_columns : (F,) ndarray of int
        Columns found per frame.
    drift_rc_px : (F, 2) ndarray
        Drift (row, col) of each frame relative to the reference frame [px].
    drift_velocity_rc_px : (2,) ndarray
        The linear part of the drift per frame [px].
    reference_image : (M, N) ndarray
        Mean of the registered frames (reference frame coordinates).
    reference_rc : (K, 2) ndarray
        Positions of the tracked columns (ids are the row indices) [px].
    cell_area_px : (K,) ndarray
        Each tracked column's Voronoi cell in the crystal of the registered mean [px].
    column_intensity : (F, K) ndarray
        Each tracked column's intensity in each frame relative to the frame's mean column (NaN: not seen).
    history : ColumnHistory
        Label per frame, conversion frame (the last uniform run) and raw reversals of every column.
    change_points : ChangePoints
        Each column's conversion frame by maximum likelihood over all its frames (:mod:`.pool`).
    conversion_dose : (K,) ndarray
        Cumulative dose of each column's most likely first uniform frame
        (NaN: not converted; 0: uniform from the start).
    fit : DamageFit or None
        The chosen damage model (None with fewer than 5 measured frames).
    fits : list of DamageFit
        Every model fitted.
    in_fit : (F,) ndarray of bool
        Frames whose fraction went into the fit as a value (measured, and not a one-phase read).
    one_phase : (F,) ndarray of bool
        Frames read as one phase: they went into the fit as a bound at the classifier's detection limit.
    reference_frame : int
        The frame the drifts are relative to (and the tracked columns' coordinates).
    pooled : bool
        ``uniform_fraction`` is pooled over the series (``SeriesConfig.pool_frames``).
    """

    source: str
    pixel_size_nm: float | None
    dose_per_frame: float
    dose_unit: str
    dose_source: str
    cumulative_dose: np.ndarray
    status: list
    message: list
    uniform_fraction: np.ndarray
    uniform_ci95: np.ndarray
    frame_uniform_fraction: np.ndarray
    frame_uniform_ci95: np.ndarray
    n_columns: np.ndarray
    drift_rc_px: np.ndarray
    drift_velocity_rc_px: np.ndarray
    reference_image: np.ndarray
    reference_rc: np.ndarray
    cell_area_px: np.ndarray
    column_intensity: np.ndarray
    history: ColumnHistory
    change_points: ChangePoints
    conversion_dose: np.ndarray
    fit: DamageFit | None
    fits: list
    in_fit: np.ndarray
    one_phase: np.ndarray
    reference_frame: int
    pooled: bool

    @property
    def n_reversals(self) -> int:
        """Uniform -> ordered changes seen (classification errors: the physics runs one way)."""
        return int(self.history.n_reversals.sum())


def _as_series(stack, pixel_size_nm: float | None) -> FrameSeries:
    if isinstance(stack, FrameSeries):
        return stack if pixel_size_nm is None else dataclasses.replace(stack, pixel_size_nm=float(pixel_size_nm))
    if isinstance(stack, (str, Path)):
        return load_series(stack, pixel_size_nm=pixel_size_nm)
    data = np.asarray(stack)
    if data.ndim != 3 or data.shape[0] < 2:
        raise NotASeriesError(
            None,
            f"a frame series must be a 3-D stack (frames, rows, cols) of >= 2 frames, got shape {data.shape}",
            "Use stem_pipeline.pipeline.analyze for a single image",
        )
    return FrameSeries(data.astype(np.float32), pixel_size_nm, "array", {})


def _frame_checks(frames: np.ndarray) -> tuple[list, list]:
    status: list[str] = []
    message: list[str | None] = []
    for frame in frames:
        n_bad = int((~np.isfinite(frame)).sum())
        if n_bad:
            status.append(NON_FINITE)
            message.append(f"{n_bad} non-finite pixels ({int(np.isnan(frame).sum())} NaN) of {frame.size}")
        elif float(frame.max()) == float(frame.min()):
            status.append(CONSTANT)
            message.append(f"constant frame (every pixel {frame.flat[0]})")
        else:
            status.append("ok")
            message.append(None)
    return status, message


def _dose(series: FrameSeries, dose_per_frame: float | None) -> tuple[float, str, str]:
    if dose_per_frame is not None:
        if not dose_per_frame > 0:
            raise ValueError(f"dose_per_frame_e_per_A2={dose_per_frame}: must be positive")
        return float(dose_per_frame), "e/A^2", "argument"
    n_pixels = int(np.prod(series.frames.shape[1:]))
    meta = dose_per_frame_from_metadata(series.metadata, pixel_size_nm=series.pixel_size_nm, n_pixels=n_pixels)
    if meta is not None:
        return meta, "e/A^2", "metadata"
    warnings.warn(
        f"{series.source}: no dose per frame in the metadata and none given; the series is analysed against "
        "frame number. Pass dose_per_frame_e_per_A2 (CLI: --dose-per-frame) for doses in e/A^2.",
        NoDoseWarning,
        stacklevel=3,
    )
    return 1.0, "frame", "none"


def _frame_image(frames, k, ok_index, drift, sum_frames) -> tuple[np.ndarray, list[int]]:
    """Frame ``k``, or the sum of the last ``sum_frames`` registered frames moved into frame ``k``'s place,
    and the frames summed."""
    if sum_frames == 1:
        return frames[k], [k]
    earlier = [j for j in ok_index if j <= k][-sum_frames:]
    shifted = [ndimage.shift(frames[j], drift[k] - drift[j], order=1, mode="nearest") for j in earlier]
    return np.sum(shifted, axis=0), earlier


def analyze_series(
    stack,
    *,
    pixel_size_nm: float | None = None,
    dose_per_frame_e_per_A2: float | None = None,
    config: SeriesConfig | None = None,
    pipeline_config=None,
) -> SeriesResult:
    """Analyse a frame series of one dot: drift, per-frame phases with column ids, fraction vs dose, zero-dose fraction.

    Parameters
    ----------
    stack : (F, M, N) array_like, FrameSeries, str or Path
        The frames, or a stack file / folder of frames (see :func:`.load.load_series`). Not modified.
    pixel_size_nm : float, optional
        Pixel size [nm]; overrides the file's.
    dose_per_frame_e_per_A2 : float, optional
        Dose of one frame [e/A^2]; taken from the metadata (beam current,
        dwell time, pixel size) when None, else the series is analysed
        against frame number with a :class:`NoDoseWarning`.
    config : SeriesConfig, optional
        Registration, tracking and fit options.
    pipeline_config : PipelineConfig, optional
        Configuration of the per-frame :func:`stem_pipeline.pipeline.analyze`.

    Returns
    -------
    SeriesResult

    Raises
    ------
    NotASeriesError
        A single 2-D image, or anything not a 3-D stack of >= 2 frames.
    InputError
        An unreadable file, or fewer than 2 usable frames.
    """
    from ..pipeline import PipelineConfig, analyze, denoise_config_for

    config = config or SeriesConfig()
    series = _as_series(stack, pixel_size_nm)
    # The stack's optics decided once (logged once, not per frame), as a field does for its dots.
    pipeline_config = pipeline_config or PipelineConfig()
    stack_micrograph = Micrograph(
        series.frames[0], pixel_size_nm=series.pixel_size_nm, source=series.source, metadata=dict(series.metadata)
    )
    pipeline_config = pipeline_config.model_copy(
        update={"denoise": denoise_config_for(stack_micrograph, pipeline_config.denoise)}
    )
    frames = np.asarray(series.frames, np.float64)
    dose_per_frame, unit, dose_source = _dose(series, dose_per_frame_e_per_A2)
    status, message = _frame_checks(frames)
    reg, reference_image = _register(series.source, frames, status, message, config)
    ok_index = np.flatnonzero(reg.ok)
    reads = _analyze_frames(
        analyze,
        frames,
        ok_index,
        reg.drift_rc_px,
        (np.arange(len(frames)) + 0.5) * dose_per_frame,
        status,
        message,
        pixel_size_nm=series.pixel_size_nm,
        sum_frames=config.sum_frames,
        pipeline_config=pipeline_config,
    )
    ref = analyze(
        Micrograph(reference_image, pixel_size_nm=series.pixel_size_nm, source="registered mean"), pipeline_config
    )
    reference_rc = _reference_columns(ref, reads.results, reg.drift_rc_px)
    label, intensity = _track(reference_rc, reads.results, reg.drift_rc_px, len(frames), config)
    history = column_histories(label)
    _log_reversals(series.source, history)
    in_fit, one_phase = _fit_frames(reads.fraction)
    for k in np.flatnonzero(one_phase):
        message[k] = "read as one phase: a bound (the other phase below the detection limit) in the fit"
    reach = (pipeline_config.classify if pipeline_config is not None else ClassifyConfig()).edge_reach_spacings
    cell_area = _cell_areas(ref, reference_rc, reference_image.shape, reach)
    # One-phase reads are bounds (see _fit_frames): their labels are not evidence of the columns' states either.
    change, fraction, ci = pooled_reads(history.label, cell_area, reads.ci, use=in_fit, intensity=intensity)
    if not config.pool_frames:
        fraction, ci = reads.fraction, reads.ci
    chosen, fits = _fit(series.source, reads, fraction, ci, in_fit, one_phase, config)
    for k in np.flatnonzero(~np.array([s == "ok" for s in status])):
        logger.warning("%s: frame %d left out (%s): %s", series.source, k, status[k], message[k])
    return SeriesResult(
        source=series.source,
        pixel_size_nm=series.pixel_size_nm,
        dose_per_frame=dose_per_frame,
        dose_unit=unit,
        dose_source=dose_source,
        cumulative_dose=reads.dose,
        status=status,
        message=message,
        uniform_fraction=fraction,
        uniform_ci95=ci,
        frame_uniform_fraction=reads.fraction,
        frame_uniform_ci95=reads.ci,
        n_columns=reads.n_columns,
        drift_rc_px=reg.drift_rc_px,
        drift_velocity_rc_px=linear_drift(reg.drift_rc_px)[0],
        reference_image=reference_image.astype(np.float32),
        reference_rc=reference_rc,
        cell_area_px=cell_area,
        column_intensity=intensity,
        history=history,
        change_points=change,
        conversion_dose=_conversion_dose(change, reads.dose),
        fit=chosen,
        fits=fits,
        in_fit=in_fit,
        one_phase=one_phase,
        reference_frame=reg.reference,
        pooled=config.pool_frames,
    )


def _register(source, frames, status, message, config):
    """Registration of the usable frames (updates ``status`` and ``message``), and their registered mean."""
    usable = np.array([s == "ok" for s in status])
    if usable.sum() < 2:
        raise InputError(
            source,
            f"only {int(usable.sum())} of {len(frames)} frames are usable",
            "; ".join(f"frame {k}: {m}" for k, m in enumerate(message) if m),
        )
    reg = register_frames(
        np.where(usable[:, None, None], frames, 0.0),
        usable=usable,
        coarse_sigma_px=config.coarse_sigma_px,
        upsample=config.upsample,
        max_shift_fraction=config.max_shift_fraction,
        min_correlation=config.min_correlation,
    )
    for k in np.flatnonzero(usable & ~reg.ok):
        status[k], message[k] = reg.status[k], reg.message[k]
    shifted = [ndimage.shift(frames[k], -reg.drift_rc_px[k], order=1, mode="nearest") for k in np.flatnonzero(reg.ok)]
    return reg, np.mean(shifted, axis=0)


def _log_reversals(source: str, history: ColumnHistory) -> None:
    if history.n_reversals.sum():
        logger.warning(
            "%s: %d reversals (uniform -> ordered) in %d of %d columns: classification errors, the damage runs one way",
            source,
            int(history.n_reversals.sum()),
            int((history.n_reversals > 0).sum()),
            history.label.shape[1],
        )


def _conversion_dose(pooled: ChangePoints, dose: np.ndarray) -> np.ndarray:
    """Dose of each column's most likely first uniform frame (0: uniform from the start, NaN: not converted)."""
    n = len(dose)
    converted = (pooled.frame > 0) & (pooled.frame < n)
    out = np.where(converted, dose[np.clip(pooled.frame, 0, n - 1)], np.nan)
    out[pooled.frame == 0] = 0.0
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class _Reads:
    """What the per-frame analyses gave: results by frame, fraction and interval, columns, dose of each image."""

    results: dict
    fraction: np.ndarray
    ci: np.ndarray
    n_columns: np.ndarray
    dose: np.ndarray


def _analyze_frames(
    analyze, frames, ok_index, drift, cumulative, status, message, *, pixel_size_nm, sum_frames, pipeline_config
) -> _Reads:
    """``pipeline.analyze`` on every registered frame (or running sum); updates ``status`` and ``message``."""
    n = len(frames)
    results = {}
    fraction, ci = np.full(n, np.nan), np.full((n, 2), np.nan)
    n_columns = np.zeros(n, int)
    dose = np.array(cumulative, float)
    for k in ok_index:
        image, summed = _frame_image(frames, k, ok_index, drift, sum_frames)
        dose[k] = float(np.mean(cumulative[summed]))  # a running sum shows the state at its frames' mean dose
        res = analyze(
            Micrograph(image, pixel_size_nm=pixel_size_nm, source=f"frame {k}"), pipeline_config, check_dots=False
        )
        results[k] = res
        n_columns[k] = 0 if res.columns is None else len(res.columns)
        if res.status != "ok":
            status[k], message[k] = NO_CRYSTAL, res.message or "no crystal"
        elif res.fractions is None:
            status[k], message[k] = NO_FRACTIONS, res.message
        else:
            fraction[k], ci[k] = res.fractions.uniform, res.fractions.uniform_ci95
    return _Reads(results, fraction, ci, n_columns, dose)


def _cell_areas(ref, reference_rc: np.ndarray, shape: tuple, reach_spacings: float) -> np.ndarray:
    """Each tracked column's Voronoi cell in the crystal of the registered mean [px].

    The crystal is the registered mean's crystal mask (the area its fractions are of) within ``reach_spacings``
    of the tracked columns' hull, as a frame's classification clips it; without a mask, the hull grown by half a
    spacing.
    """
    if len(reference_rc) < 3:
        return np.ones(len(reference_rc))
    spacing = float(np.median(cKDTree(reference_rc).query(reference_rc, k=2)[0][:, 1]))
    if ref.crystal_mask is None:
        mask = hull_mask(shape, reference_rc, margin_px=0.5 * spacing)
    else:
        mask = hull_mask(shape, reference_rc, margin_px=reach_spacings * spacing) & ref.crystal_mask
    return region_map_from_columns(mask, reference_rc, np.zeros(len(reference_rc), np.int8))[1].astype(float)


def fit_reads(
    dose: np.ndarray,
    frame_fraction: np.ndarray,
    frame_ci95: np.ndarray,
    fraction: np.ndarray,
    ci95: np.ndarray,
    *,
    common_error_fraction: float = 0.25,
    gain_sd: float = 0.0,
    aicc_margin: float = AICC_MARGIN,
) -> tuple[DamageFit | None, list[DamageFit]]:
    """The damage fit of a series' reads: the frames with a value as values, the one-phase reads as bounds.

    A frame read all ordered enters as "the uniform fraction is at most its interval's upper end" (the
    classifier's detection limit), one read all uniform as "at least the lower end" (see :func:`_fit_frames`).

    Parameters
    ----------
    dose : (F,) ndarray
        Cumulative dose of each frame.
    frame_fraction, frame_ci95 : (F,), (F, 2) ndarray
        Each frame's own read and its 95 % interval (NaN: not read): they decide which frames are one-phase
        reads, and give their bounds.
    fraction, ci95 : (F,), (F, 2) ndarray
        The reads to fit as values (pooled over the series, or the frames' own).
    common_error_fraction, gain_sd, aicc_margin : float
        As in :func:`.fit.fit_damage`.

    Returns
    -------
    chosen, fits
        As :func:`.fit.fit_damage`.
    """
    frame_fraction, frame_ci95 = np.asarray(frame_fraction, float), np.asarray(frame_ci95, float)
    in_fit, one_phase = _fit_frames(frame_fraction)
    bound = one_phase_side(frame_fraction, one_phase)
    value = np.where(bound > 0, frame_ci95[:, 1], np.where(bound < 0, frame_ci95[:, 0], fraction))
    sigma = np.where(one_phase, frame_sigma(np.nan_to_num(frame_ci95)), frame_sigma(np.nan_to_num(ci95)))
    use = in_fit | one_phase
    return fit_damage(
        np.asarray(dose, float)[use],
        value[use],
        sigma[use],
        bound=bound[use],
        common_error_fraction=common_error_fraction,
        gain_sd=gain_sd,
        aicc_margin=aicc_margin,
    )


def _fit(source, reads: _Reads, fraction, ci, in_fit, one_phase, config):
    """:func:`fit_reads` of the series, with warnings when the fit is weak."""
    chosen, fits = fit_reads(
        reads.dose,
        reads.fraction,
        reads.ci,
        fraction,
        ci,
        common_error_fraction=config.common_error_fraction,
        gain_sd=config.gain_sd,
        aicc_margin=AICC_MARGIN if config.choose_model_by_aicc else math.inf,
    )
    if chosen is None:
        logger.warning(
            "%s: %d frames to fit (%d of them one-phase bounds); at least 5 with 3 values are needed",
            source,
            int((in_fit | one_phase).sum()),
            int(one_phase.sum()),
        )
        return chosen, fits
    best = min(fits, key=lambda f: f.aicc)
    if best.model != chosen.model and best.aicc < chosen.aicc - AICC_MARGIN:
        logger.warning(
            "%s: the %s model fits better than the stated %s (AICc lower by %.1f); f0 and Dc are the %s model's",
            source,
            best.model,
            chosen.model,
            chosen.aicc - best.aicc,
            chosen.model,
        )
    if not chosen.critical_dose_constrained:
        logger.warning(
            "%s: the critical dose is not constrained by the data (%.3g, 95 %% interval %.3g-%.3g): the fraction "
            "changes too little over the series",
            source,
            chosen.critical_dose,
            *chosen.critical_dose_ci95,
        )
    return chosen, fits


def one_phase_side(frame_fraction: np.ndarray, one_phase: np.ndarray) -> np.ndarray:
    """The side of each frame's bound in the fit: +1 for a one-phase read all ordered (the fraction at most its
    interval's upper end), -1 for one all uniform (at least its lower end), 0 for every other frame."""
    return np.where(one_phase, np.where(np.asarray(frame_fraction) <= 0.5, 1, -1), 0)


def _fit_frames(fraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose fraction is a value (not NaN, not a one-phase read), and the one-phase reads.

    A frame read as all uniform (or all ordered) says that the other phase is below the classifier's
    detection limit (``ClassifyConfig.undetected_*_columns``: the frame's own interval reaches that far),
    so its fraction is a bound, not a value: on synthetic series such reads came 0.1-0.15 above the truth
    once the ordered remnant fell below ~15 %, and a dot all ordered at zero dose (f0 = 0, pure CsPbI3
    before damage) reads all ordered in its first frame while the beam has already converted a rim at its
    edge (0.04-0.14 of the dot on the 12 f0 = 0 tuning dots of benchmarks/series.py). A one-phase read
    enters the fit as a censored observation (:func:`.fit.fit_model`'s ``bound``): the fraction is at most
    (all ordered) or at least (all uniform) the end of the frame's interval, a term that costs nothing on
    its side. So a series whose first frame is all ordered is still fitted (5 frames: 4 values and the
    bound), and since ``f0 <= f(D)`` the bound holds f0 below the detection limit. Chosen on those tuning
    dots over three alternatives: the 4 values alone (the 5-frame 30-count dots f0 +0.10, +0.13), the
    frame's read pooled over the series as a value (+0.09, +0.10: frame 0 is the 30-count weak spot of
    benchmarks/results/series_diagnosis.md), and its labels pooled too (f0 right, but its read 0.000 with
    an interval [0, 0.008] against a truth of 0.14: a false value). The bound at the classifier's limit
    (0.024) is below the truth at the first frame's dose there (the rim is read late), which pulls the
    curve down at that dose: Dc 0-6 % high on those dots. The labels of a one-phase read are not evidence
    of the columns' states either (:func:`.pool.pooled_reads`' ``use``).
    """
    one_phase = np.isfinite(fraction) & ((fraction >= 1 - _ONE_PHASE) | (fraction <= _ONE_PHASE))
    return np.isfinite(fraction) & ~one_phase, one_phase


def _reference_columns(ref, results, drift) -> np.ndarray:
    """Columns of the registered mean (``ref``); else those of the frame with the most columns, moved to the reference."""
    if ref.columns is not None and len(ref.columns):
        return ref.columns.rc
    found = {k: r for k, r in results.items() if r.columns is not None and len(r.columns)}
    if not found:
        return np.zeros((0, 2))
    k = max(found, key=lambda j: len(found[j].columns))
    return found[k].columns.rc - drift[k]


def _track(reference_rc, results, drift, n_frames, config: SeriesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Label (F, K) of every reference column in every frame (-1: not seen or no labels), and its intensity
    relative to the frame's mean column (NaN: not seen; the mean stays put as ordered columns convert: a bright
    and a dim column become two uniform ones of about their mean height)."""
    labels = np.full((n_frames, len(reference_rc)), NOT_SEEN, np.int8)
    intensity = np.full((n_frames, len(reference_rc)), np.nan)
    if len(reference_rc) < 2:
        return labels, intensity
    spacing = float(np.median(cKDTree(reference_rc).query(reference_rc, k=2)[0][:, 1]))
    for k, res in results.items():
        if res.labels is None:
            continue
        link = link_columns(
            reference_rc, res.columns.rc - drift[k], tolerance_px=config.link_tolerance_spacings * spacing
        )
        seen = link >= 0
        labels[k, seen] = res.labels.label[link[seen]]
        own = np.asarray(res.columns.intensity, float)
        intensity[k, seen] = own[link[seen]] / np.mean(own)
    return labels, intensity
