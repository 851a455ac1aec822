"""The notebook-facing API: analyze/load at top level, on Micrographs, HyperSpy signals and arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import stem_pipeline as sp
from stem_pipeline import InputError, Micrograph, io
from stem_pipeline.io import result_signal, to_atomap, to_dataframe
from stem_pipeline.synthetic_field import make_field

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
DM4 = REALDATA / "SIM_vecmap_pto100_drprobe.dm4"  # simulated PbTiO3 [100], 0.016 nm/px in nm


def _set_axes(signal, scale, units):
    for ax in signal.axes_manager.signal_axes:
        ax.scale, ax.units = scale, units
    return signal


@pytest.fixture(scope="module")
def dot_result(small_dot):
    return small_dot, sp.analyze(small_dot.micrograph())


def test_top_level_names_are_the_library_functions():
    from stem_pipeline import io as io_module
    from stem_pipeline import pipeline

    assert sp.analyze is pipeline.analyze
    assert sp.load is io_module.load
    assert sp.PipelineConfig is pipeline.PipelineConfig
    from stem_pipeline.report import plot_overlay

    assert sp.report.plot_overlay is plot_overlay  # subpackages as attributes, imported on first use
    assert {"analyze", "load"} <= set(sp.__all__) and {"analyze", "load"} <= set(dir(sp))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sp.nope  # noqa: B018


@pytest.mark.parametrize(("units", "factor"), [("nm", 1.0), ("Å", 10.0), ("pm", 1000.0)])
def test_analyze_a_hyperspy_loaded_hspy_file_with_nm_or_angstrom_axes(tmp_path, dot_result, units, factor):
    import hyperspy.api as hs

    dot, reference = dot_result
    signal = _set_axes(hs.signals.Signal2D(dot.image.astype(np.float32)), dot.pixel_size_nm * factor, units)
    path = tmp_path / f"dot_{factor:g}.hspy"
    signal.save(path)
    loaded = hs.load(path)
    result = sp.analyze(loaded)
    assert result.micrograph.pixel_size_nm == pytest.approx(dot.pixel_size_nm, rel=1e-6)
    assert result.status == "ok" and result.fractions is not None
    assert result.fractions.uniform == pytest.approx(reference.fractions.uniform, abs=1e-9)
    assert len(result.columns) == len(reference.columns)
    # io.load takes the signal too, with the same calibration.
    assert sp.load(loaded).pixel_size_nm == pytest.approx(dot.pixel_size_nm, rel=1e-6)


@pytest.mark.skipif(not DM4.is_file(), reason="shared real-data set not present")
@pytest.mark.parametrize(("units", "factor"), [("nm", 1.0), ("Å", 10.0)])
def test_analyze_a_hyperspy_loaded_dm4_with_nm_and_angstrom_axes(units, factor):
    import hyperspy.api as hs

    signal = hs.load(DM4)
    assert signal.axes_manager.signal_axes[0].units == "nm"  # as the file has it
    scale_nm = signal.axes_manager.signal_axes[0].scale
    _set_axes(signal, scale_nm * factor, units)
    from_signal = sp.analyze(signal)
    from_file = sp.analyze(io.load(DM4))
    assert from_signal.micrograph.pixel_size_nm == pytest.approx(0.016, rel=1e-5)
    assert from_signal.status == from_file.status == "ok"
    np.testing.assert_allclose(from_signal.columns.rc, from_file.columns.rc)
    assert from_signal.micrograph.source.endswith(".dm4")


def test_analyze_an_array_with_pixel_size(dot_result):
    dot, reference = dot_result
    result = sp.analyze(dot.image, pixel_size_nm=dot.pixel_size_nm)
    assert result.micrograph.pixel_size_nm == dot.pixel_size_nm
    assert result.fractions.uniform == pytest.approx(reference.fractions.uniform, abs=1e-9)
    with pytest.warns(io.MissingCalibrationWarning, match="array"):
        uncalibrated = sp.analyze(dot.image)
    assert uncalibrated.micrograph.pixel_size_nm is None


def test_analyze_a_micrograph_with_an_override(small_dot):
    m = small_dot.micrograph()
    assert io.as_micrograph(m) is m
    assert io.as_micrograph(m, pixel_size_nm=0.05).pixel_size_nm == 0.05


@pytest.mark.parametrize(
    ("image", "kwargs", "error", "match"),
    [
        (np.ones((3, 80, 80)), {}, InputError, "not 2-D"),
        (np.random.default_rng(0).random((80, 80)), {"pixel_size_nm": -1.0}, InputError, "pixel_size_nm=-1.0"),
        ("dot.dm4", {}, TypeError, "stem_pipeline.load"),
    ],
)
def test_as_micrograph_rejects_bad_input(image, kwargs, error, match):
    with pytest.raises(error, match=match):
        io.as_micrograph(image, **kwargs)


def test_load_a_signal_stack_takes_frame_and_warns_without_calibration():
    import hyperspy.api as hs

    rng = np.random.default_rng(1)
    stack = hs.signals.Signal2D(rng.random((3, 80, 80)).astype(np.float32))
    with pytest.warns(io.MissingCalibrationWarning):
        m = io.load(stack, frame=2)
    np.testing.assert_array_equal(m.data, stack.data[2])
    assert isinstance(m, Micrograph) and m.pixel_size_nm is None


def test_region_map_and_denoised_signals_are_calibrated_with_column_markers(dot_result):
    dot, result = dot_result
    region = result_signal(result, "region_map")
    np.testing.assert_array_equal(region.data, result.labels.region_map)
    for kind in ("denoised", "raw", "crystal_mask"):
        signal = result_signal(result, kind, markers=False)
        assert signal.data.shape == dot.image.shape and not signal.metadata.has_item("Markers")
    for ax in region.axes_manager.signal_axes:
        assert (ax.scale, ax.units) == (pytest.approx(dot.pixel_size_nm), "nm")
    marker = region.metadata.Markers.columns
    # Markers sit on the columns in the signal's (nm) coordinates, x = col, y = row.
    np.testing.assert_allclose(marker.kwargs["offsets"], result.columns.rc[:, ::-1] * dot.pixel_size_nm)
    assert len(set(marker.kwargs["color"])) == 3  # bright, dim and uniform columns
    with pytest.raises(ValueError, match="kind='mask'"):
        result_signal(result, "mask")


def test_to_atomap_keeps_scale_and_units(dot_result):
    pytest.importorskip("atomap.api")
    dot, result = dot_result
    sub = to_atomap(result.columns.subset(np.arange(20)), result.micrograph)
    assert sub.pixel_size == pytest.approx(dot.pixel_size_nm) and sub.units == "nm"
    np.testing.assert_allclose(sub.x_position, result.columns.rc[:20, 1])
    uncalibrated = to_atomap(result.columns.subset(np.arange(5)).replace(pixel_size_nm=None), dot.image)
    assert uncalibrated.pixel_size == 1.0


def test_dataframe_carries_every_columns_csv_column_with_units(tmp_path, dot_result):
    import pandas as pd

    from stem_pipeline.outputs import COLUMNS_CSV, write_result

    _, result = dot_result
    df = to_dataframe(result)
    write_result(result, tmp_path, {"status": result.status})
    csv = pd.read_csv(tmp_path / COLUMNS_CSV)
    assert list(df.columns) == list(csv.columns)
    assert {"label", "contrast", "order_parameter"} <= set(df.columns)
    assert list(df["label"]) == list(csv["label"]) and list(df["contrast"]) == list(csv["contrast"])
    units = df.attrs["units"]
    assert set(units) == set(df.columns)
    assert (units["x_nm"], units["x_px"], units["intensity"]) == ("nm", "px", "counts px^2")
    assert df.attrs["pixel_size_nm"] == result.micrograph.pixel_size_nm
    unlabelled = to_dataframe(result.columns)
    assert set(unlabelled["label"]) == {"n/a"} and unlabelled["order_parameter"].isna().all()


def test_reprs_are_short_and_show_no_array_contents(dot_result):
    _, result = dot_result
    for text in (
        repr(result),
        result._repr_html_(),
        repr(result.columns),
        repr(result.labels),
        repr(result.micrograph),
    ):
        assert "array(" not in text and "[[" not in text and len(text) < 1000, text
    assert "status=ok" in repr(result) and f"columns={len(result.columns)}" in repr(result)
    assert f"{result.fractions.uniform:.3f}" in result._repr_html_()
    assert repr(result.columns).startswith(f"Columns({len(result.columns)} columns")
    assert "region_map=<256x256 int8>" in repr(result.labels)


def test_a_signal_with_a_unitless_atomic_scale_is_read_as_nm_like_its_file(tmp_path):
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(np.random.default_rng(2).random((80, 80)).astype(np.float32))
    for ax in signal.axes_manager.signal_axes:
        ax.scale = 0.0093  # atomap's test file: a scale, no units
    path = tmp_path / "unitless.hspy"
    signal.save(path)
    assert sp.load(path).pixel_size_nm == pytest.approx(0.0093)
    assert sp.load(hs.load(path)).pixel_size_nm == pytest.approx(0.0093)


def test_analyze_says_when_the_image_holds_several_dots():
    """The single-dot chain reads a field as one crystal; it must not leave the other dots out silently."""
    from stem_pipeline.errors import SeveralDotsWarning

    field = make_field((512, 512), n_dots=3, dot_sizes_nm=(5.0, 6.0), rotations_deg=(0.0, 27.0, 55.0), rng=4)
    with pytest.warns(SeveralDotsWarning, match="holds 3 dots") as caught:
        result = sp.analyze(field.micrograph())
    assert "holds 3 dots" in result.message
    assert "analyze_field" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the caller that split the field already: no check, no warning
        quiet = sp.analyze(field.micrograph(), check_dots=False)
    assert quiet.message is None or "dots" not in quiet.message
