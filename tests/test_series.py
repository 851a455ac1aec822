"""Frame series and beam damage: generator truth, registration, tracking, fit, CLI and bad input."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import cKDTree

from stem_pipeline import cli
from stem_pipeline.errors import InputError
from stem_pipeline.series import (
    FrameSeries,
    NoDoseWarning,
    NotASeriesError,
    SeriesConfig,
    analyze_series,
    column_histories,
    dose_per_frame_from_metadata,
    fit_damage,
    link_columns,
    load_series,
    pool,
)
from stem_pipeline.series.pool import (
    CLEAR_STEP,
    ChangePoints,
    change_points,
    frame_scale,
    intensity_log_likelihood,
    level_log_likelihood,
    pooled_fractions,
    pooled_reads,
    state_levels,
    step_evidence,
    typical_step,
)
from stem_pipeline.series.track import NOT_SEEN
from stem_pipeline.synthetic import make_dot
from stem_pipeline.synthetic_series import make_series

#: The issue's tolerances.
F0_TOL, DC_RTOL, DRIFT_TOL_PX = 0.03, 0.20, 0.3
SERIES_CSV_COLUMNS = [
    "frame",
    "cumulative_dose_e_per_A2",
    "uniform_fraction",
    "uniform_ci95_lo",
    "uniform_ci95_hi",
    "n_columns",
    "drift_x_px",
    "drift_y_px",
]


def model(dose, f0, dc):
    return 1 - (1 - f0) * np.exp(-dose / dc)


@pytest.fixture(scope="module")
def series():
    """10 frames of a two-phase dot at 100 counts per frame, drifting up to 5 px per frame."""
    return make_series((320, 320), n_frames=10, counts=100.0, zero_dose_uniform_fraction=0.35, rng=104)


@pytest.fixture(scope="module")
def result(series):
    return analyze_series(
        series.frames, pixel_size_nm=series.pixel_size_nm, dose_per_frame_e_per_A2=series.dose_per_frame_e_per_A2
    )


# --- the generator -------------------------------------------------------------------------------------------


def test_generator_fraction_follows_the_damage_model(series):
    f0, dc = series.zero_dose_uniform_fraction, series.critical_dose_e_per_A2
    assert 0.05 < f0 < 0.95  # both phases
    expected = model(series.cumulative_dose_e_per_A2, f0, dc)
    assert np.max(np.abs(series.uniform_fraction - expected)) < 0.02
    assert np.all(np.diff(series.uniform_fraction) > 0)


def test_generator_conversion_starts_at_the_boundaries(series):
    ordered = series.initial_label == 0
    uniform_rc = series.rc[~ordered]
    distance = cKDTree(uniform_rc).query(series.rc[ordered])[0]
    rho = stats.spearmanr(distance, series.conversion_dose_e_per_A2[ordered]).statistic
    assert rho > 0.7
    # ... and the physics runs one way: no column turns back.
    assert np.all(np.diff(series.label.astype(int), axis=0) >= 0)


def test_generator_drift_and_counts(series):
    steps = np.linalg.norm(np.diff(series.drift_rc_px, axis=0), axis=1)
    assert steps.max() <= 5.0 + 1e-9 and steps.mean() > 0.5
    assert series.frames.shape == (10, 320, 320)
    assert 50 < np.percentile(series.frames[0], 99.9) < 250  # ~100 counts at a bright column


# --- the analysis against the truth --------------------------------------------------------------------------


def test_f0_and_critical_dose_recovered(series, result):
    fit = result.fit
    assert fit is not None and fit.model == "exponential"
    assert abs(fit.f0 - series.zero_dose_uniform_fraction) <= F0_TOL
    assert abs(fit.critical_dose / series.critical_dose_e_per_A2 - 1) <= DC_RTOL
    # A fraction read off the first frame alone is no zero-dose estimate: the fit must go below it.
    assert fit.f0 < result.uniform_fraction[0]


@pytest.fixture(scope="module", params=[8000, 8001])
def held_out(request):
    """Two dots (seeds chosen before any run; 8001 since looked at, see below): 5 frames, 100 counts."""
    series = make_series((320, 320), n_frames=5, counts=100.0, dose_per_frame_e_per_A2=500.0, rng=request.param)
    result = analyze_series(
        series.frames, pixel_size_nm=series.pixel_size_nm, dose_per_frame_e_per_A2=series.dose_per_frame_e_per_A2
    )
    return series, result


def test_held_out_series_within_their_intervals(held_out):
    """The truth lies within the reported 95 % intervals on the two dots, and the estimates within the
    issue's limits (f0 within 0.03, Dc within 20 %).

    Seed 8001 missed both before the change points used each column's intensity jointly with its labels
    (f0 -0.092, Dc -22 %: its first frame read 0.05 low, the columns converted before it read ordered among
    ordered neighbours, and its last 0.09 high); it now gives f0 -0.029, Dc -7 % (seed 8000: f0 +0.007,
    Dc -0.4 %; +0.010, -0.3 % before).
    Seed 8001 was looked at while finding that cause, so it is no longer held out: the held-out claims are
    in benchmarks/results/series.md.
    """
    series, result = held_out
    fit = result.fit
    f0, dc = series.zero_dose_uniform_fraction, series.critical_dose_e_per_A2
    assert fit.f0_ci95[0] <= f0 <= fit.f0_ci95[1]
    assert fit.critical_dose_ci95[0] <= dc <= fit.critical_dose_ci95[1]
    assert abs(fit.f0 - f0) <= F0_TOL
    assert abs(fit.critical_dose / dc - 1) <= DC_RTOL


def test_pooled_reads_scatter_less_about_the_truth_than_each_frames_own(series, result):
    """Pooling the column labels over the frames takes out the frame-to-frame label noise: the pooled reads' errors
    scatter less than the frames' own (sd 0.0021 against 0.0047 here). With the crystal edge at the diffuse
    intensity step (issue 14) the pooled reads sit 0.006 low on this series (cell areas in the registered mean's
    outline) while the frames' own sit 0.002 low, so their rms is no longer the smaller (0.0062 against 0.0050);
    the offset is asserted within 0.01."""
    ok = result.in_fit
    pooled = result.uniform_fraction[ok] - series.uniform_fraction[ok]
    own = result.frame_uniform_fraction[ok] - series.uniform_fraction[ok]
    assert np.std(pooled) < np.std(own)
    assert abs(np.mean(pooled)) < 0.01
    # Each column has one conversion frame: its posterior state never turns back to ordered.
    assert np.all(np.diff((result.change_points.p_converted > 0.5).astype(int), axis=0) >= 0)


def test_intervals_are_sensible(series, result):
    fit = result.fit
    lo, hi = fit.f0_ci95
    assert lo < fit.f0 < hi and 0.01 < hi - lo < 0.3
    assert lo <= series.zero_dose_uniform_fraction <= hi
    dlo, dhi = fit.critical_dose_ci95
    assert dlo < fit.critical_dose < dhi and dhi / dlo < 3
    band_lo, band_hi = fit.band(result.cumulative_dose)
    assert np.all(band_lo <= fit.curve(result.cumulative_dose)) and np.all(band_hi >= fit.curve(result.cumulative_dose))


def test_drift_recovered(series, result):
    truth = series.drift_rc_px - series.drift_rc_px[0]  # relative to the reference, frame 0
    assert all(s == "ok" for s in result.status)
    assert np.max(np.abs(result.drift_rc_px - truth)) <= DRIFT_TOL_PX
    assert np.all(np.isfinite(result.drift_velocity_rc_px))


def test_columns_followed_with_their_conversion(series, result):
    hist = result.history
    assert hist.label.shape == (10, len(result.reference_rc))
    # Reference columns are in frame 0's coordinates; the true ones there include the scan shear.
    shear = (series.rc[:, :1] / series.frames.shape[1] - 0.5) * series.scan_velocity_px
    link = link_columns(series.rc + shear, result.reference_rc, tolerance_px=2.0)
    found = link >= 0
    assert found.mean() > 0.9
    truth_dose = series.conversion_dose_e_per_A2[found]
    measured = result.conversion_dose[link[found]]
    converted = np.isfinite(measured) & (measured > 0) & (series.initial_label[found] == 0)
    assert converted.sum() > 100
    rho = stats.spearmanr(truth_dose[converted], measured[converted]).statistic
    assert rho > 0.6
    # Columns uniform from the start are mostly truly uniform at zero dose.
    initially = hist.initially_uniform[link[found]]
    assert np.mean(series.initial_label[found][initially] == 1) > 0.85


# --- pure parts ----------------------------------------------------------------------------------------------


def test_column_histories_conversion_and_reversals():
    o, u, x = 0, 1, -1
    labels = np.array(
        [
            [o, o, u, o, x],
            [o, u, u, o, u],
            [x, o, u, o, u],
            [u, u, u, o, x],
        ]
    )
    hist = column_histories(labels)
    assert hist.conversion_frame.tolist() == [3, 3, -1, -1, -1]
    assert hist.initially_uniform.tolist() == [False, False, True, False, True]
    assert hist.n_reversals.tolist() == [0, 1, 0, 0, 0]
    assert hist.reversals_per_frame.tolist() == [0, 0, 1, 0]


def test_change_points_absorb_independent_misreads():
    rng = np.random.default_rng(3)
    n_frames, n_cols = 12, 400
    truth = rng.integers(0, n_frames + 1, n_cols)  # first uniform frame; n_frames: not converted
    state = (np.arange(n_frames)[:, None] >= truth[None, :]).astype(np.int8)  # 1 uniform
    flip = rng.random(state.shape) < np.where(state == 0, 0.12, 0.04)
    labels = np.where(flip, 1 - state, state).astype(np.int8)
    labels[rng.random(state.shape) < 0.05] = NOT_SEEN
    labels[:, 0] = NOT_SEEN  # a column never seen
    change = change_points(labels)
    seen = np.arange(n_cols) > 0
    assert change.frame[0] == -1 and np.isnan(change.p_converted[:, 0]).all()
    assert (
        np.nanmin(change.p_converted) >= 0 and np.nanmax(change.p_converted) <= 1
    )  # probabilities, no rounding past 1
    # Raw labels put a column's state wrong in ~8 % of frames; the pooled change points in under half as many.
    pooled_state = np.arange(n_frames)[:, None] >= change.frame[None, :]
    read = labels[:, seen] >= 0
    raw_error = np.mean(labels[:, seen][read] != state[:, seen][read])
    assert raw_error > 0.06
    assert np.mean(pooled_state[:, seen] != state[:, seen]) < 0.5 * raw_error
    assert abs(change.misread_ordered - 0.12) < 0.03 and abs(change.misread_uniform - 0.04) < 0.02
    # Pooled fractions (equal areas) follow the true converted share; frames without labels are NaN.
    analysed = np.ones(n_frames, bool)
    analysed[5] = False
    fraction, sd = pooled_fractions(change.p_converted, np.ones(n_cols), analysed=analysed)
    true_fraction = state[:, seen].mean(axis=1)
    assert np.isnan(fraction[5])
    assert np.nanmax(np.abs(fraction - true_fraction)) < 0.03
    assert np.all(sd[analysed] > 0)


def _intensity_series(rng, truth, n_frames):
    """Intensity (F, K) of columns converting at ``truth`` (first uniform frame), and their states."""
    bright = rng.random(len(truth)) < 0.5
    before = np.where(bright, 1.25, 0.75)  # relative to the mean column; uniform columns sit at 1.0
    state = np.arange(n_frames)[:, None] >= truth[None, :]
    return np.where(state, 1.0, before[None, :]) + rng.normal(0, 0.06, state.shape), state


def _pooled(labels, intensity):
    """Pooled reads of equal-area columns, every frame used, each frame's own interval +-0.02."""
    n_frames, n_cols = labels.shape
    ci = np.full((n_frames, 2), [0.48, 0.52])
    return pooled_reads(labels, np.ones(n_cols), ci, use=np.ones(n_frames, bool), intensity=intensity)


def test_intensity_steps_correct_persistent_misreads():
    rng = np.random.default_rng(5)
    n_frames, n_cols = 10, 300
    truth = rng.integers(1, n_frames, n_cols)  # every column converts within the series
    intensity, state = _intensity_series(rng, truth, n_frames)
    # A persistent misread: every column is read uniform two frames before it converts (its neighbours did).
    early = np.maximum(truth - 2, 1)
    labels = (np.arange(n_frames)[:, None] >= early[None, :]).astype(np.int8)
    assert np.mean(change_points(labels).frame == truth) < 0.2  # labels alone: no pooling moves a consistent misread
    evidence = step_evidence(intensity)
    assert evidence.shape == (n_frames + 1, n_cols) and np.all(evidence[[0, -1]] == 0)
    assert np.mean(np.argmax(evidence, axis=0) == truth) > 0.9
    assert np.median(evidence.max(axis=0)) > CLEAR_STEP
    joint, _, _ = _pooled(labels, intensity)
    assert abs(typical_step(intensity, joint) - 0.25) < 0.02
    assert np.mean(joint.frame == truth) > 0.85 and np.mean(np.abs(joint.frame - truth) <= 1) > 0.93
    assert np.mean((joint.p_converted > 0.5) == state) > 0.97


def test_flat_intensity_puts_end_misreads_in_one_state():
    """The series' ends: columns converted before the first frame but read ordered there (among ordered
    neighbours), and ordered columns read uniform in the last frame only (among converted ones). Their
    intensity has no step, so the joint change point puts most of them in one state all along, as their
    labels over the other frames say; labels alone keep the misread first and last frames (the first
    frame reads low, the last high, and the fit's f0 comes out low)."""
    rng = np.random.default_rng(11)
    n_frames, n_cols = 5, 600
    truth = rng.integers(0, n_frames + 1, n_cols)  # 0: uniform from the start, n_frames: never converted
    intensity, state = _intensity_series(rng, truth, n_frames)
    labels = state.astype(np.int8)
    first_misread = (truth == 0) & (rng.random(n_cols) < 0.5)
    last_misread = (truth == n_frames) & (rng.random(n_cols) < 0.5)
    labels[0, first_misread] = 0
    labels[-1, last_misread] = 1
    true_fraction = state.mean(axis=1)
    by_labels = change_points(labels)
    assert np.mean(by_labels.frame[first_misread] == 1) > 0.9 and np.mean(by_labels.frame[last_misread] == 4) > 0.9
    labels_error = pooled_fractions(by_labels.p_converted, np.ones(n_cols), analysed=np.ones(n_frames, bool))[0]
    labels_error -= true_fraction
    assert labels_error[0] < -0.08 and labels_error[-1] > 0.07
    joint, fraction, ci = _pooled(labels, intensity)
    assert np.mean(joint.frame[first_misread] == 0) > 0.75
    assert np.mean(joint.frame[last_misread] == n_frames) > 0.4
    assert np.mean(joint.frame == truth) > 0.9
    error = fraction - true_fraction
    assert abs(error[0]) < 0.5 * abs(labels_error[0]) and abs(error[-1]) < 0.7 * labels_error[-1]
    assert np.max(np.abs(error[1:-1])) < 0.015
    assert np.all((ci[:, 0] < fraction) & (fraction < ci[:, 1]))
    # A flat intensity speaks against a change within the series, and decides nothing between the two
    # states (c = 0 or c = F: the labels do).
    flat = intensity_log_likelihood(np.ones((n_frames, n_cols)) + rng.normal(0, 0.06, (n_frames, n_cols)), 0.25)
    assert np.all(flat[[0, -1]] == 0) and np.mean(flat[1:-1] < 0) > 0.95


def _level_series(rng, n_frames, n_cols):
    """Columns converting at ``truth``: ordered dim (0.75) or bright (1.35), uniform at 1.0, each column's level
    spread about its state's, frame noise 0.12 (a 30-count series); labels right but for a converting column
    read uniform a frame early (its neighbours did), some first-frame uniform columns read ordered, and 3 %
    random misreads."""
    truth = rng.choice(np.arange(n_frames + 1), n_cols, p=[0.4, 0.15, 0.1, 0.1, 0.05, 0.2])
    before = np.where(rng.random(n_cols) < 0.35, 1.35, 0.75) + rng.normal(0, 0.04, n_cols)
    after = 1.0 + rng.normal(0, 0.08, n_cols)
    state = np.arange(n_frames)[:, None] >= truth[None, :]
    intensity = np.where(state, after, before) + rng.normal(0, 0.12, state.shape)
    labels = state.astype(np.int8)
    early = (truth >= 1) & (truth < n_frames) & (rng.random(n_cols) < 0.25)
    labels[truth[early] - 1, np.flatnonzero(early)] = 1
    labels[0, (truth == 0) & (rng.random(n_cols) < 0.15)] = 0
    labels = np.where(rng.random(state.shape) < 0.03, 1 - labels, labels).astype(np.int8)
    return truth, state, intensity, labels


def test_state_levels_and_their_likelihood():
    rng = np.random.default_rng(2)
    n_frames, n_cols = 5, 800
    truth, state, intensity, _ = _level_series(rng, n_frames, n_cols)
    known = ChangePoints(truth, state.astype(float), 0.0, 0.0)
    uniform, ordered = state_levels(intensity, known)
    assert len(uniform) == 1 and abs(uniform[0].mean - 1.0) < 0.02 and 0.05 < np.sqrt(uniform[0].var) < 0.11
    assert len(ordered) == 2 and abs(ordered[0].mean - 0.75) < 0.05 and abs(ordered[1].mean - 1.35) < 0.05
    assert abs(ordered[0].weight - 0.65) < 0.05 and abs(sum(c.weight for c in ordered) - 1) < 1e-9
    assert state_levels(intensity, ChangePoints(truth, np.zeros_like(intensity), 0.0, 0.0)) == ([], [])
    # Flat columns: dim or bright all along is ordered (c = F), at the uniform level all along uniform (c = 0);
    # a column at the uniform level from frame 1 on converted there.
    kinds = np.repeat(np.arange(4), 50)
    flat = np.array([0.75, 1.35, 1.0, 0.75])[kinds] + rng.normal(0, 0.12, (n_frames, len(kinds)))
    flat[1:, kinds == 3] += 0.25
    ll = level_log_likelihood(flat, uniform, ordered)
    assert ll.shape == (n_frames + 1, len(kinds)) and np.all(ll[0] == 0)
    median = [np.median(ll[:, kinds == k], axis=1) for k in range(4)]
    assert median[0][n_frames] > 2 and median[1][n_frames] > 2 and median[2][n_frames] < -2
    assert np.argmax(median[3]) == 1


def test_frame_scale_follows_the_drift_of_the_mean_column():
    """The frames' mean column drifts as the dot converts: every column's intensity is scaled by its frame's
    factor, which the scale recovers from both states' columns (known or posterior states)."""
    rng = np.random.default_rng(4)
    n_frames, n_cols = 5, 800
    truth, state, intensity, _ = _level_series(rng, n_frames, n_cols)
    drift = np.linspace(1.12, 0.98, n_frames)
    scaled = intensity * drift[:, None]
    scaled[2, :10] = np.nan
    known = ChangePoints(truth, state.astype(float), 0.0, 0.0)
    scale = frame_scale(scaled, known)
    assert np.allclose(scale / scale.mean(), drift / drift.mean(), atol=0.02)
    assert np.allclose(frame_scale(intensity, known), 1.0, atol=0.01)
    scaled[3] = np.nan  # a frame without intensities keeps its scale
    assert frame_scale(scaled, known)[3] == 1.0


def test_levels_read_the_first_frame_closer_than_the_steps_alone(monkeypatch):
    """The first frame of a short noisy series is decided on one label and one intensity difference: the
    columns' levels (a converted column sits at the uniform level) add evidence there (issue 19: the 5-frame
    30-count series' misses)."""
    n_frames, n_cols = 5, 800
    errors, right = {}, {}
    for rounds in (0, pool.LEVEL_ROUNDS):
        monkeypatch.setattr(pool, "LEVEL_ROUNDS", rounds)
        errors[rounds], right[rounds] = [], []
        for seed in range(3):
            truth, state, intensity, labels = _level_series(np.random.default_rng(seed), n_frames, n_cols)
            joint, fraction, _ = _pooled(labels, intensity)
            errors[rounds].append(abs(fraction[0] - state[0].mean()))
            right[rounds].append(np.mean(joint.frame == truth))
    assert np.mean(errors[pool.LEVEL_ROUNDS]) < 0.85 * np.mean(errors[0])
    assert np.mean(right[pool.LEVEL_ROUNDS]) > np.mean(right[0]) + 0.01


def test_fit_recovers_a_noiseless_curve_and_prefers_the_true_model():
    dose = (np.arange(12) + 0.5) * 300.0
    sigma = np.full(12, 0.01)
    chosen, fits = fit_damage(dose, model(dose, 0.2, 1500.0), sigma)
    assert chosen.model == "exponential"
    assert abs(chosen.f0 - 0.2) < 1e-3 and abs(chosen.critical_dose / 1500.0 - 1) < 1e-3
    assert {f.model for f in fits} >= {"exponential", "two_rates", "boundary_front"}
    # Two clearly different rates: the alternative wins by AICc.
    two = 1 - 0.8 * (0.5 * np.exp(-dose / 200.0) + 0.5 * np.exp(-dose / 5000.0))
    chosen, fits = fit_damage(dose, two, sigma)
    assert chosen.model == "two_rates"
    aicc = {f.model: f.aicc for f in fits}
    assert aicc["two_rates"] < aicc["exponential"] - 10


def test_one_phase_reads_enter_the_fit_as_bounds():
    dose = (np.arange(9) + 0.5) * 300.0
    sigma = np.full(9, 0.01)
    noisy = model(dose, 0.2, 2000.0) + 0.01 * np.random.default_rng(3).standard_normal(9)
    values, _ = fit_damage(dose[1:], noisy[1:], sigma[1:])
    # A bound on the data's side costs nothing: the values' estimates and intervals stay.
    kept, _ = fit_damage(dose, np.append(0.5, noisy[1:]), sigma, bound=np.array([1] + [0] * 8))
    assert kept.n_bounds == 1 and kept.n_points == values.n_points
    assert kept.f0 == pytest.approx(values.f0, abs=1e-6) and kept.f0_ci95 == pytest.approx(values.f0_ci95, abs=1e-6)
    # A frame read all ordered (at most 0.024) pulls the curve down at its dose, where the values alone do not.
    held, _ = fit_damage(dose, np.append(0.024, noisy[1:]), sigma, bound=np.array([1] + [0] * 8))
    assert held.f0 < values.f0 - 0.03 and held.curve(dose[:1])[0] < values.curve(dose[:1])[0] - 0.03
    # Four values are too few for the stated model; four values and the bound are a fit.
    assert fit_damage(dose[[0, 2, 4, 6, 8]][1:], noisy[[2, 4, 6, 8]], sigma[:4])[0] is None
    five, _ = fit_damage(
        dose[[0, 2, 4, 6, 8]], np.append(0.5, noisy[[2, 4, 6, 8]]), sigma[:5], bound=np.array([1, 0, 0, 0, 0])
    )
    assert five is not None and five.n_bounds == 1


def test_dot_all_ordered_before_damage_is_fitted():
    """f0 = 0 (pure CsPbI3 before damage) in 5 frames: the first frame reads all ordered, a bound, not a value."""
    series = make_series(
        (320, 320),
        n_frames=5,
        counts=100.0,
        zero_dose_uniform_fraction=0.0,
        dose_per_frame_e_per_A2=500.0,
        rng=9019,
    )
    assert series.zero_dose_uniform_fraction == 0.0
    result = analyze_series(
        series.frames, pixel_size_nm=series.pixel_size_nm, dose_per_frame_e_per_A2=series.dose_per_frame_e_per_A2
    )
    assert result.one_phase[0] and result.frame_uniform_fraction[0] == 0.0 and result.in_fit.sum() == 4
    fit = result.fit
    assert fit is not None and fit.n_bounds == 1
    assert abs(fit.f0) <= F0_TOL and fit.f0_ci95[0] <= 0.0 <= fit.f0_ci95[1]
    assert abs(fit.critical_dose / series.critical_dose_e_per_A2 - 1) <= DC_RTOL


def test_critical_dose_flagged_when_the_data_do_not_pin_it():
    dose = (np.arange(10) + 0.5) * 250.0
    sigma = np.full(10, 0.02)
    good, _ = fit_damage(dose, model(dose, 0.3, 2000.0), sigma)
    assert good.critical_dose_constrained
    # A dot almost all uniform from the start: its fraction barely moves within the noise.
    flat = 0.9 + 0.02 * np.random.default_rng(1).standard_normal(10)
    chosen, _ = fit_damage(dose, flat, sigma)
    assert not chosen.critical_dose_constrained


def test_intervals_widen_when_frame_errors_persist():
    dose = (np.arange(12) + 0.5) * 250.0
    sigma = np.full(12, 0.02)
    alternating = 0.02 * np.array([1, -1] * 6)
    persistent = 0.02 * np.array([1] * 6 + [-1] * 6)  # the same errors, several frames in a row
    widths = []
    for noise in (alternating, persistent):
        fit, _ = fit_damage(dose, model(dose, 0.3, 2000.0) + noise, sigma)
        widths.append(np.log(fit.critical_dose_ci95[1] / fit.critical_dose_ci95[0]))
    assert widths[1] > 1.3 * widths[0]


def test_a_classifier_gain_on_the_converted_share_is_fitted_not_read_as_a_faster_conversion():
    dose = (np.arange(10) + 0.5) * 250.0
    sigma = np.full(10, 0.015)
    noise = 0.01 * np.random.default_rng(3).standard_normal(10)
    read = 0.3 + 1.1 * (model(dose, 0.3, 2000.0) - 0.3) + noise  # converted share read 10 % high
    stated, _ = fit_damage(dose, read, sigma)
    with_gain, _ = fit_damage(dose, read, sigma, gain_sd=SeriesConfig().gain_sd)
    assert stated.critical_dose_ci95[1] < 2000.0  # g = 1: Dc read low, the interval misses it
    lo, hi = with_gain.critical_dose_ci95
    assert lo <= 2000.0 <= hi and hi / lo < 3
    assert abs(with_gain.gain - 1.1) < abs(with_gain.gain - 1.0)
    # The estimates stay the stated model's; only the intervals allow for the gain.
    assert with_gain.critical_dose == stated.critical_dose and stated.gain is None


def test_dose_from_metadata():
    current_na, dwell_s, pixel_nm = 0.0264, 2e-6, 0.035
    expected = current_na * 1e-9 * dwell_s / 1.602176634e-19 / (pixel_nm * 10) ** 2
    md = {"beam_current_na": current_na, "dwell_time_s": dwell_s}
    got = dose_per_frame_from_metadata(md, pixel_size_nm=pixel_nm, n_pixels=100)
    assert got == pytest.approx(expected, rel=1e-9)
    assert dose_per_frame_from_metadata({"dwell_time_s": dwell_s}, pixel_size_nm=pixel_nm, n_pixels=100) is None


def test_dose_from_a_hyperspy_stack(tmp_path, series):
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(series.frames[:3])
    for ax in signal.axes_manager.signal_axes:
        ax.scale, ax.units = series.pixel_size_nm, "nm"
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_current", 0.05)
    signal.metadata.set_item("Acquisition_instrument.TEM.dwell_time", 1e-6)
    path = tmp_path / "stack.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signal.save(path)
    loaded = load_series(path)
    assert loaded.frames.shape == (3, 320, 320)
    assert loaded.pixel_size_nm == pytest.approx(series.pixel_size_nm)
    dose = dose_per_frame_from_metadata(loaded.metadata, pixel_size_nm=loaded.pixel_size_nm, n_pixels=320 * 320)
    assert dose == pytest.approx(0.05e-9 * 1e-6 / 1.602176634e-19 / 0.35**2, rel=1e-6)


def test_stack_optics_decided_once_for_every_frame(series, caplog):
    """The stack's beam energy and convergence reach every frame's deconvolution; without them, one warning."""
    import logging

    frames = series.frames[:2]

    def rl_warnings(stack) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stem_pipeline"):
            analyze_series(stack, dose_per_frame_e_per_A2=250.0)
        return [r.getMessage() for r in caplog.records if "'rl' deconvolution" in r.getMessage()]

    optics = {"energy_kev": 200.0, "convergence_mrad": 25.0}
    assert rl_warnings(FrameSeries(frames, series.pixel_size_nm, "stack.hspy", optics)) == []
    missing = rl_warnings(FrameSeries(frames, series.pixel_size_nm, "stack.tif", {}))
    assert len(missing) == 1 and missing[0].startswith("stack.tif: the file gives no energy_kev")


def test_folder_of_frames_in_natural_order_and_tiff_stack(tmp_path, series):
    import tifffile

    folder = tmp_path / "frames"
    folder.mkdir()
    for name, k in (("frame_1", 1), ("frame_2", 2), ("frame_10", 3)):  # frame_10 sorts after frame_2
        np.save(folder / f"{name}.npy", series.frames[k])
    loaded = load_series(folder, pixel_size_nm=series.pixel_size_nm)
    np.testing.assert_array_equal(loaded.frames, series.frames[1:4])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, series.frames[:3], photometric="minisblack")
    np.testing.assert_array_equal(load_series(path).frames, series.frames[:3])


# --- bad input -----------------------------------------------------------------------------------------------


def test_single_image_is_refused_with_a_clear_message(tmp_path, series, capsys):
    with pytest.raises(NotASeriesError, match="single 2-D image"):
        load_series(_save(tmp_path / "one.npy", series.frames[0]))
    with pytest.raises(InputError, match="3-D stack"):
        analyze_series(series.frames[0])
    assert cli.main(["series", str(tmp_path / "one.npy"), "--out", str(tmp_path / "out")]) == 2
    assert "single 2-D image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def bad_result(series):
    """The first 8 frames with a NaN patch in frame 2 and another dot (size, place, rotation) as frame 6."""
    frames = series.frames[:8].copy()
    frames[2, 10:40, 10:40] = np.nan
    other = make_dot((320, 320), dot_size_nm=7.0, rotation_deg=25.0, center_offset_nm=(1.5, -1.0), dose=100.0, rng=7)
    frames[6] = other.image
    given = frames.copy()
    result = analyze_series(frames, pixel_size_nm=series.pixel_size_nm, dose_per_frame_e_per_A2=250.0)
    np.testing.assert_array_equal(frames, given)  # the caller's array is not changed
    return result


def test_nan_frames_are_listed(bad_result):
    assert bad_result.status[2] == "non_finite"
    assert "900 non-finite pixels (900 NaN)" in bad_result.message[2]
    assert np.isnan(bad_result.uniform_fraction[2]) and np.isnan(bad_result.drift_rc_px[2]).all()


def test_frames_of_another_dot_are_refused(series, bad_result):
    assert bad_result.status[6] == "different_dot"
    assert "different dot" in bad_result.message[6]
    others = [k for k in range(8) if k not in (2, 6)]
    assert all(bad_result.status[k] == "ok" for k in others)
    lo, hi = bad_result.fit.f0_ci95  # the other frames still give the zero-dose fraction
    assert lo <= series.zero_dose_uniform_fraction <= hi and hi - lo < 0.2


def test_no_dose_warns_and_uses_frame_number(series):
    with pytest.warns(NoDoseWarning, match="frame number"):
        res = analyze_series(series.frames[:5], pixel_size_nm=series.pixel_size_nm)
    assert res.dose_unit == "frame" and res.cumulative_dose.tolist() == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert res.fit is not None and res.fit.critical_dose > 0


def test_running_sum_of_frames(series):
    res = analyze_series(
        series.frames[:6],
        pixel_size_nm=series.pixel_size_nm,
        dose_per_frame_e_per_A2=250.0,
        config=SeriesConfig(sum_frames=2),
    )
    # Frame k shows the sum of frames k-1 and k: its fraction lies between theirs, at their mean dose.
    truth = series.uniform_fraction[:6]
    for k in range(1, 6):
        assert truth[k - 1] - 0.04 <= res.uniform_fraction[k] <= truth[k] + 0.04
    assert res.cumulative_dose[1:].tolist() == [250.0 * k for k in range(1, 6)]


# --- the command ---------------------------------------------------------------------------------------------


def _save(path, array):
    np.save(path, array)
    return path


def test_cli_writes_every_output_and_leaves_the_input_alone(tmp_path, series, capsys):
    import pandas as pd

    stack = _save(tmp_path / "stack.npy", series.frames[:6])
    digest = hashlib.sha256(stack.read_bytes()).hexdigest()
    out = tmp_path / "out"
    code = cli.main(
        [
            "series",
            str(stack),
            "--out",
            str(out),
            "--dose-per-frame",
            "250",
            "--pixel-size-nm",
            "0.035",
        ]
    )
    assert code == 0
    assert "zero-dose uniform fraction" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "stack.npy"]
    assert hashlib.sha256(stack.read_bytes()).hexdigest() == digest
    names = {"series.csv", "series.json", "columns.csv", "conversion_map.png", "fraction_vs_dose.png"}
    assert {p.name for p in out.iterdir()} == names  # no temporary files left
    table = pd.read_csv(out / "series.csv")
    assert list(table.columns[: len(SERIES_CSV_COLUMNS)]) == SERIES_CSV_COLUMNS
    assert len(table) == 6 and table["cumulative_dose_e_per_A2"].tolist() == [125 + 250 * k for k in range(6)]
    summary = json.loads((out / "series.json").read_text())
    assert abs(summary["zero_dose_uniform_fraction"] - series.zero_dose_uniform_fraction) <= F0_TOL
    lo, hi = summary["zero_dose_ci95"]
    assert lo < summary["zero_dose_uniform_fraction"] < hi
    assert summary["critical_dose_e_per_A2"] > 0 and len(summary["critical_dose_e_per_A2_ci95"]) == 2
    assert summary["model"] == "exponential" and len(summary["models"]) >= 2
    assert summary["critical_dose_constrained"] is True
    assert [f["status"] for f in summary["frames"]] == ["ok"] * 6
    columns = pd.read_csv(out / "columns.csv")
    assert columns["labels"].str.len().eq(6).all() and columns["id"].is_unique
    for name in ("conversion_map.png", "fraction_vs_dose.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_series_subcommand_has_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["series", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: stem-pipeline series" in text and "--dose-per-frame" in text and "--sum-frames" in text
