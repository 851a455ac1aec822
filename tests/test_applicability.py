"""When the two-phase model does not apply, fractions are not reported and the reason is given."""

from __future__ import annotations

import numpy as np
import pytest

from stem_pipeline.classify import TwoPhaseModelConfig, two_phase_model_reasons
from stem_pipeline.pipeline import analyze
from stem_pipeline.synthetic import make_dot


def _grid(length_px, angle_deg, ratio=1.0):
    a = np.deg2rad(angle_deg)
    return np.array([[0.0, length_px], [length_px * ratio * np.sin(a), length_px * ratio * np.cos(a)]])


@pytest.mark.parametrize(
    ("vectors", "pixel_size_nm", "expected"),
    [
        (_grid(10.5, 90), 0.03, []),
        (_grid(10.5, 88), None, []),
        (_grid(10.5, 70.5), None, ["not square"]),  # Si [110], fcc [110]
        (_grid(10.5, 109.5), None, ["not square"]),
        (_grid(10.5, 90, ratio=1.41), None, ["rectangular"]),  # SrTiO3 [110]
        (_grid(6.5, 90), 0.03, ["spacing 0.195 nm"]),  # oxide perovskite a/2
        (_grid(13.0, 90), 0.03, ["spacing 0.390 nm"]),  # oxide perovskite a
    ],
)
def test_reasons(vectors, pixel_size_nm, expected):
    reasons = two_phase_model_reasons(vectors, pixel_size_nm=pixel_size_nm)
    assert len(reasons) == len(expected)
    for reason, fragment in zip(reasons, expected):
        assert fragment in reason


def test_tolerances_are_configurable():
    loose = TwoPhaseModelConfig(max_angle_deviation_deg=25.0)
    assert two_phase_model_reasons(_grid(10.5, 70.5), pixel_size_nm=None, config=loose) == []


def test_oxide_like_grid_gets_columns_but_no_fractions():
    # A calibrated dot whose columns sit 0.2 nm apart, like an oxide perovskite's a/2.
    dot = make_dot(
        (256, 256), pixel_size_nm=0.02, dot_size_nm=4.0, spacing_ordered_nm=0.2, spacing_uniform_nm=0.2,
        column_sigma_nm=0.03, rng=3,
    )
    result = analyze(dot.micrograph())
    assert result.status == "ok"
    assert len(result.columns) > 100
    assert result.labels is None and result.fractions is None
    assert "two-phase model does not apply" in result.message and "0.200 nm" in result.message
