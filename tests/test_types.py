"""Data containers: validation and lossless round trips."""

from __future__ import annotations

import numpy as np
import pytest

from stem_pipeline import AreaFractions, Columns, Lattice, Micrograph, PhaseLabels, PipelineResult
from stem_pipeline.io import to_dataframe

RNG = np.random.default_rng(3)


def _columns(n=7):
    return Columns(
        rc=RNG.random((n, 2)) * 100,
        amplitude=RNG.random(n),
        sigma=RNG.random((n, 2)),
        volume=RNG.random(n),
        fit_ok=RNG.random(n) > 0.3,
        pixel_size_nm=0.02,
    )


def test_micrograph_casts_to_float32_and_rejects_3d():
    m = Micrograph(np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert m.data.dtype == np.float32 and m.shape == (3, 4)
    with pytest.raises(ValueError, match="2-D"):
        Micrograph(np.zeros((2, 3, 4)))


def test_columns_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="amplitude has 2 entries, rc has 3"):
        Columns(rc=np.zeros((3, 2)), amplitude=np.zeros(2))


def test_columns_subset_and_dataframe_use_x_for_col():
    c = _columns()
    sub = c.subset(np.array([0, 2]))
    assert len(sub) == 2 and np.array_equal(sub.volume, c.volume[[0, 2]])
    df = to_dataframe(c)
    np.testing.assert_array_equal(df["x_px"], c.rc[:, 1])
    np.testing.assert_array_equal(df["y_px"], c.rc[:, 0])
    np.testing.assert_allclose(df["x_nm"], c.rc[:, 1] * 0.02)
    np.testing.assert_array_equal(df["intensity"], c.volume)


def test_intensity_without_measurement_is_a_clear_error():
    with pytest.raises(ValueError, match="measure_intensities"):
        _ = Columns(rc=np.zeros((2, 2))).intensity


def test_npz_round_trip_of_a_nested_result(tmp_path):
    n = 5
    labels = PhaseLabels(
        label=np.array([0, 1, 1, 0, 0], np.int8),
        contrast=np.array([0, 2, 2, 1, 1], np.int8),
        order_parameter=RNG.random(n),
        region_map=RNG.integers(0, 3, (8, 9)).astype(np.int8),
    )
    result = PipelineResult(
        micrograph=Micrograph(RNG.random((8, 9)), pixel_size_nm=0.03, source="a.tif", metadata={"k": 1}),
        status="ok",
        columns=_columns(n),
        labels=labels,
        fractions=AreaFractions(0.4, 0.6, (0.5, 0.7), crystal_area_nm2=12.0, method="block bootstrap"),
        lattices=(
            Lattice([[10.5, 0.0], [0.0, 10.5]], 10.5, 90.0, 60.0),
            Lattice([[0.0, 12.0], [11.0, 0.0]], 11.0, 90.0, 20.0, 3),
        ),
        config_hash="abc",
        timings_s={"total": 1.5},
    )
    back = PipelineResult.load_npz(result.save_npz(tmp_path / "r.npz"))
    assert back.status == "ok" and back.config_hash == "abc"
    np.testing.assert_array_equal(back.micrograph.data, result.micrograph.data)
    assert back.micrograph.metadata == {"k": 1}
    np.testing.assert_array_equal(back.columns.rc, result.columns.rc)
    np.testing.assert_array_equal(back.columns.fit_ok, result.columns.fit_ok)
    assert back.columns.amplitude is not None and back.columns.peak is None
    np.testing.assert_array_equal(back.labels.region_map, labels.region_map)
    assert list(back.labels.label_names) == ["ordered", "uniform", "uniform", "ordered", "ordered"]
    assert back.fractions.uniform_ci95 == (0.5, 0.7)
    assert back.fractions.method == "block bootstrap"
    assert [type(lat) for lat in back.lattices] == [Lattice, Lattice]
    assert [lat.to_dict() for lat in back.lattices] == [lat.to_dict() for lat in result.lattices]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npz"]
