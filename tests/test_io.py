"""Loading and saving calibrated micrographs, and every input error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

from stem_pipeline import InputError, Micrograph, io

RNG = np.random.default_rng(0)
IMAGE = RNG.random((96, 80)).astype(np.float32)


def _load_quiet(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", io.MissingCalibrationWarning)
        return io.load(path, **kw)


@pytest.mark.parametrize("ext", ["hspy", "tif", "npy"])
def test_round_trip_keeps_data_and_calibration(tmp_path, ext):
    m = Micrograph(IMAGE, pixel_size_nm=0.0213, source="x", metadata={"energy_kev": 200.0})
    path = io.save(m, tmp_path / f"img.{ext}")
    back = _load_quiet(path)
    np.testing.assert_array_equal(back.data, IMAGE)
    assert back.data.dtype == np.float32
    assert back.source == str(path)
    if ext == "npy":  # .npy holds data only
        assert back.pixel_size_nm is None
    else:
        assert back.pixel_size_nm == pytest.approx(0.0213, rel=1e-6)


def test_hspy_round_trip_keeps_microscope_metadata(tmp_path):
    m = Micrograph(IMAGE, pixel_size_nm=0.02, metadata={"energy_kev": 200.0, "note": {"steps": ["a"]}})
    back = io.load(io.save(m, tmp_path / "m.hspy"))
    assert back.metadata["energy_kev"] == 200.0
    assert back.metadata["stem_pipeline"]["note"]["steps"] == ["a"]


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    import os

    path = io.save(Micrograph(IMAGE, pixel_size_nm=0.02), tmp_path / "a.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a temporary file


@pytest.mark.parametrize(
    ("unit", "pixel_in_unit", "expected_nm"),
    [("nm", 0.02, 0.02), ("\\u00c5", 0.2, 0.02), ("um", 2e-5, 0.02), ("micron", 2e-5, 0.02), ("pm", 20.0, 0.02)],
)
def test_imagej_tiff_calibration_is_converted_to_nm(tmp_path, unit, pixel_in_unit, expected_nm):
    path = tmp_path / "ij.tif"
    res = 1 / pixel_in_unit
    tifffile.imwrite(path, IMAGE, imagej=True, resolution=(res, res), metadata={"unit": unit})
    assert io.load(path).pixel_size_nm == pytest.approx(expected_nm, rel=1e-6)


def test_tiff_resolution_tag_in_cm(tmp_path):
    path = tmp_path / "cm.tif"
    tifffile.imwrite(path, IMAGE, resolution=(1 / 3e-8, 1 / 3e-8), resolutionunit="CENTIMETER")
    assert io.load(path).pixel_size_nm == pytest.approx(0.3)


def _tiffs(tmp_path):
    """TIFFs of every calibration style the readers know: ours (ImageJ + DM tags), ImageJ units, cm tags, none."""
    yield io.save(Micrograph(IMAGE, pixel_size_nm=0.02), tmp_path / "ours.tif")
    for i, unit in enumerate(("nm", "\\u00c5", "micron")):
        tifffile.imwrite(tmp_path / f"ij{i}.tif", IMAGE, imagej=True, resolution=(50, 50), metadata={"unit": unit})
        yield tmp_path / f"ij{i}.tif"
    tifffile.imwrite(tmp_path / "cm.tif", IMAGE, resolution=(1 / 3e-8, 1 / 3e-8), resolutionunit="CENTIMETER")
    yield tmp_path / "cm.tif"
    tifffile.imwrite(tmp_path / "plain.tif", IMAGE.astype(np.uint16))
    yield tmp_path / "plain.tif"
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([IMAGE, IMAGE]), imagej=True, resolution=(50, 50))
    yield tmp_path / "stack.tif"


def test_tiffs_read_without_hyperspy_as_hyperspy_reads_them(tmp_path):
    """The direct RosettaSciIO path gives HyperSpy's pixels and calibration, so it can skip importing HyperSpy."""
    import hyperspy.api as hs

    for path in _tiffs(tmp_path):
        direct = io._read_tiff_direct(path)
        assert direct is not None, path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signal = io._load_signal(hs, path)
        calibration = io._calibration(signal)
        io._tiff_fallbacks(calibration, path)
        np.testing.assert_array_equal(direct[0], signal.data)
        assert direct[0].dtype == signal.data.dtype
        assert direct[1] == calibration, path


def test_explicit_pixel_size_wins(tmp_path):
    path = io.save(Micrograph(IMAGE, pixel_size_nm=0.02), tmp_path / "a.hspy")
    assert io.load(path, pixel_size_nm=0.05).pixel_size_nm == 0.05


def test_missing_calibration_warns_and_continues_in_pixels(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, IMAGE)
    with pytest.warns(io.MissingCalibrationWarning, match="plain.npy"):
        m = io.load(path)
    assert m.pixel_size_nm is None


def test_png_export_is_read_as_grey_float32(tmp_path):
    import imageio.v3 as iio

    path = tmp_path / "export.png"
    grey = (IMAGE * 255).astype(np.uint8)
    iio.imwrite(path, np.stack([grey] * 3, axis=-1))
    m = _load_quiet(path)
    assert m.data.dtype == np.float32 and m.shape == IMAGE.shape
    np.testing.assert_allclose(m.data, grey, atol=1)


def test_stack_frame_selection(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, np.stack([IMAGE, 2 * IMAGE, 3 * IMAGE]))
    np.testing.assert_allclose(_load_quiet(path, frame=1).data, 2 * IMAGE)
    np.testing.assert_allclose(_load_quiet(path, frame="sum").data, 6 * IMAGE, rtol=1e-6)


def _truncated_tiff(path):
    full = path.with_name("full.tif")
    tifffile.imwrite(full, RNG.random((256, 256)).astype(np.float32))
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write(path, array):
    np.save(path, array)


@pytest.mark.parametrize(
    ("name", "make", "kwargs", "message"),
    [
        ("trunc.tif", _truncated_tiff, {}, "corrupt or truncated"),
        ("garbage.dm4", lambda p: p.write_bytes(b"not a dm4 file at all" * 10), {}, "corrupt or truncated"),
        ("empty.tif", lambda p: p.write_bytes(b""), {}, "empty"),
        ("image.xyz", lambda p: p.write_bytes(b"1"), {}, "unknown file extension"),
        ("stack.npy", lambda p: _write(p, np.ones((3, 80, 80))), {}, r"not 2-D: shape \(3, 80, 80\).*frame="),
        ("cube.npy", lambda p: _write(p, np.ones((2, 2, 80, 80))), {}, "not 2-D"),
        # RosettaSciIO takes a 3-frame float TIFF for RGB and fails: still a stack, not a corrupt file.
        (
            "stack3.tif",
            lambda p: tifffile.imwrite(p, np.ones((3, 80, 80), np.float32), photometric="rgb", planarconfig="separate"),
            {},
            r"not 2-D: shape \(3, 80, 80\)",
        ),
        ("nan.npy", lambda p: _write(p, np.where(IMAGE > 0.99, np.nan, IMAGE)), {}, r"\d+ non-finite pixels \(\d+ NaN"),
        ("inf.npy", lambda p: _write(p, np.where(IMAGE > 0.99, np.inf, IMAGE)), {}, "inf"),
        ("flat.npy", lambda p: _write(p, np.full((80, 80), 3.0)), {}, "constant"),
        ("tiny.npy", lambda p: _write(p, RNG.random((32, 80))), {}, "too small: 32x80"),
        ("complex.npy", lambda p: _write(p, IMAGE + 1j * IMAGE), {}, "complex"),
        ("stack2.npy", lambda p: _write(p, np.ones((3, 80, 80))), {"frame": 7}, "frame=7"),
    ],
)
def test_bad_input_raises_input_error_naming_the_file(tmp_path, name, make, kwargs, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError, match=message) as info:
        _load_quiet(path, **kwargs)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.load(tmp_path / "nope.tif")


def test_load_never_modifies_the_input_file(tmp_path):
    path = io.save(Micrograph(IMAGE, pixel_size_nm=0.02), tmp_path / "a.tif")
    before = path.read_bytes(), path.stat().st_mtime_ns
    io.load(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_signal_round_trip():
    m = Micrograph(IMAGE, pixel_size_nm=0.031, source="dot.dm4")
    s = io.to_signal(m)
    ax = s.axes_manager.signal_axes[0]
    assert (ax.scale, ax.units, ax.name) == (pytest.approx(0.031), "nm", "x")
    back = io.from_signal(s)
    np.testing.assert_array_equal(back.data, IMAGE)
    assert back.pixel_size_nm == pytest.approx(0.031)


def test_from_signal_converts_angstrom():
    import hyperspy.api as hs

    s = hs.signals.Signal2D(IMAGE)
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 0.25, "Å"
    assert io.from_signal(s).pixel_size_nm == pytest.approx(0.025)
