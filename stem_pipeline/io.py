"""Reading and writing calibrated micrographs.

Every format HyperSpy/RosettaSciIO reads (dm3, dm4, emd, ser, mrc, hspy,
zspy, HyperSpy/atomap ``.hdf5``), TIFF (ImageJ or resolution tags, through
RosettaSciIO's tiff reader), 8-bit PNG/JPEG exports and ``.npy``. The result
is always a validated :class:`~stem_pipeline.Micrograph` with float32 data and
the pixel size in nm (or None, with a warning, when the file has none).

This is the only module that imports hyperspy/rsciio.
"""

from __future__ import annotations

import gc
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._atomic import atomic_write
from ._logs import quiet_loggers
from ._types import (
    CONTRAST_COLOURS,
    CONTRASTS,
    UNLABELLED_COLOUR,
    Columns,
    Micrograph,
    PhaseLabels,
    PipelineResult,
)
from .errors import InputError

logger = logging.getLogger("stem_pipeline")

#: Minimum image edge [px] the pipeline accepts.
MIN_SIZE_PX = 64

#: Extensions read through HyperSpy/RosettaSciIO.
HYPERSPY_EXTENSIONS = frozenset(
    {".dm3", ".dm4", ".emd", ".ser", ".mrc", ".hspy", ".zspy", ".hdf5", ".h5", ".tif", ".tiff"}
)
#: Extensions read as plain 8/16-bit raster exports.
RASTER_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
#: Every extension :func:`load` accepts.
EXTENSIONS = HYPERSPY_EXTENSIONS | RASTER_EXTENSIONS | {".npy"}
#: Extensions :func:`save` writes.
WRITE_EXTENSIONS = frozenset({".hspy", ".tif", ".tiff", ".npy"})

_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
    "m": 1e9,
}


class MissingCalibrationWarning(UserWarning):
    """The file carries no usable pixel size; processing continues in pixels."""


def unit_to_nm(units: str | None) -> float | None:
    """Return the factor converting a length unit to nm, or None if unknown.

    Examples
    --------
    >>> unit_to_nm("Å"), unit_to_nm("pm"), unit_to_nm("µm")
    (0.1, 0.001, 1000.0)
    """
    if not units or not isinstance(units, str):
        return None
    return _TO_NM.get(units.strip().lower())


def is_signal(obj: Any) -> bool:
    """True for a HyperSpy signal (checked without importing HyperSpy)."""
    return hasattr(obj, "axes_manager") and hasattr(obj, "metadata") and hasattr(obj, "data")


def as_micrograph(
    image: Micrograph | np.ndarray | Any,
    *,
    pixel_size_nm: float | None = None,
    source: str | None = None,
) -> Micrograph:
    """Return ``image`` as a validated :class:`Micrograph`.

    Parameters
    ----------
    image : Micrograph, HyperSpy Signal2D or (M, N) array_like
        A Micrograph is returned as it is (with ``pixel_size_nm`` replaced
        when given); a signal's calibration is read from its axes (A, pm, nm
        or um, converted to nm); an array is uncalibrated unless
        ``pixel_size_nm`` is given.
    pixel_size_nm : float, optional
        Pixel size [nm]; overrides the calibration of a Micrograph or signal.
    source : str, optional
        Where the image came from, for messages (default: the signal's file
        name or title, or ``"array"``).

    Returns
    -------
    Micrograph

    Raises
    ------
    InputError
        When the image is not a single valid 2-D image, or ``pixel_size_nm``
        is not a positive number.

    Warns
    -----
    MissingCalibrationWarning
        When neither the image nor ``pixel_size_nm`` gives a pixel size.

    Examples
    --------
    >>> import numpy as np
    >>> m = as_micrograph(np.random.default_rng(0).random((64, 64)), pixel_size_nm=0.03)
    >>> m.shape, m.pixel_size_nm
    ((64, 64), 0.03)
    """
    if isinstance(image, Micrograph):
        if pixel_size_nm is None:
            return image
        return image.replace(pixel_size_nm=_checked_pixel_size(image.source, pixel_size_nm))
    if is_signal(image):
        return from_signal(image, source=source, pixel_size_nm=pixel_size_nm)
    if isinstance(image, (str, os.PathLike)):
        raise TypeError(f"image is a path ({image!s}); load it first with stem_pipeline.load(path)")
    source = source or "array"
    data = _validate(Path(source), np.asarray(image), None)
    scale = None if pixel_size_nm is None else _checked_pixel_size(source, pixel_size_nm)
    if scale is None:
        _warn_uncalibrated(source, stacklevel=3)
    return Micrograph(data.astype(np.float32), pixel_size_nm=scale, source=source)


def _checked_pixel_size(source: str | os.PathLike | None, pixel_size_nm: float) -> float:
    if not (isinstance(pixel_size_nm, (int, float, np.number)) and np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise InputError(source, f"pixel_size_nm={pixel_size_nm!r} is not a positive number")
    return float(pixel_size_nm)


def _warn_uncalibrated(source: str | os.PathLike, *, stacklevel: int) -> None:
    warnings.warn(
        f"{source}: no pixel size in the file; results are in pixels. "
        "Pass pixel_size_nm (CLI: --pixel-size-nm) for nm.",
        MissingCalibrationWarning,
        stacklevel=stacklevel + 1,
    )


def load(
    path: str | os.PathLike | Any,
    *,
    pixel_size_nm: float | None = None,
    frame: int | Literal["sum", "mean"] | None = None,
) -> Micrograph:
    """Load a micrograph with its calibration.

    Parameters
    ----------
    path : str or PathLike or HyperSpy Signal2D
        The image file (see :data:`EXTENSIONS` for the formats), or a signal
        already loaded (e.g. with ``hs.load``), whose axes give the calibration.
    pixel_size_nm : float, optional
        Pixel size [nm]; overrides the file's calibration.
    frame : int or {"sum", "mean"}, optional
        For stacks (3-D data): the frame to take, or their sum or mean.

    Returns
    -------
    Micrograph
        float32 data, ``pixel_size_nm`` (None when unknown), ``source`` the
        path, ``metadata`` with the original units and calibration and the
        microscope fields the file has.

    Raises
    ------
    InputError
        Naming the file, the problem and the fix: missing, unreadable,
        corrupt or truncated file; unknown extension; not 2-D; NaN or inf
        pixels; constant image; smaller than 64x64; complex data.

    Warns
    -----
    MissingCalibrationWarning
        When the file has no usable pixel size and none is given.
    """
    if is_signal(path):
        return from_signal(path, pixel_size_nm=pixel_size_nm, frame=frame)
    path = Path(path)
    data, calibration = read_pixels(path)
    return _micrograph(path, data, calibration, pixel_size_nm=pixel_size_nm, frame=frame)


def _micrograph(
    source: str | os.PathLike, data: np.ndarray, calibration: dict[str, Any], *, pixel_size_nm, frame
) -> Micrograph:
    """Validate the pixels (picking ``frame`` of a stack) and calibrate: the common end of loading."""
    data = _validate(Path(str(source)), data, frame)
    scale_nm = calibration.get("pixel_size_nm")
    if pixel_size_nm is not None:
        scale_nm = _checked_pixel_size(source, pixel_size_nm)
    elif scale_nm is None:
        _warn_uncalibrated(source, stacklevel=3)  # the caller of load or from_signal
    return Micrograph(data.astype(np.float32), pixel_size_nm=scale_nm, source=str(source), metadata=calibration)


def read_pixels(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """The pixels of an image file, whatever their dimensions, and its calibration.

    The reading half of :func:`load` (which then checks for one 2-D, finite, non-constant
    image): a frame series (:mod:`stem_pipeline.series`) reads its 3-D stacks with it.

    Parameters
    ----------
    path : str or PathLike
        The image file. See :data:`EXTENSIONS` for the formats.

    Returns
    -------
    data : ndarray
        As stored (a grey image saved as RGB becomes its grey levels).
    calibration : dict
        ``pixel_size_nm`` when the file has one, original units and microscope fields.

    Raises
    ------
    InputError
        Missing, empty, unreadable, corrupt or truncated file; unknown extension; a colour image.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise InputError(
            path,
            f"unknown file extension {path.suffix!r}",
            f"Use one of {', '.join(sorted(EXTENSIONS))}",
        )
    if not path.is_file():
        raise InputError(path, "no such file", "Check the path")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty (0 bytes)", "Re-export or re-copy the image")
    failure = None
    calibration: dict[str, Any] = {}
    try:
        if ext == ".npy":
            data = np.load(path, allow_pickle=False)
        elif ext in RASTER_EXTENSIONS:
            data = _read_raster(path)
        else:
            data, calibration = _read_hyperspy(path)
    except InputError:
        raise
    except Exception as exc:  # every reader has its own exception types
        failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:
        # Some readers (tifffile through rsciio) leave their file open when they fail; the
        # traceback is gone now, so collect the handle here instead of warning somewhere later.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        plain = _read_tiff_pixels(path) if ext in (".tif", ".tiff") else None
        if plain is not None:  # readable, only not as a HyperSpy signal: say what the pixels are
            data, calibration, failure = plain, {}, None
    if failure is not None:
        raise InputError(
            path, f"cannot read the file, it may be corrupt or truncated ({failure})", "Re-export or re-copy the image"
        )
    data = np.asarray(data)
    if data.dtype.names and {"R", "G", "B"} <= set(data.dtype.names):  # RosettaSciIO's rgb8/rgba8 signals
        data = _grey_levels(path, np.stack([data[c] for c in "RGB"], axis=-1))
    return data, calibration


def _read_tiff_pixels(path: Path) -> np.ndarray | None:
    """The pixels of a TIFF that RosettaSciIO cannot map to a signal, e.g. a 3-frame float stack it
    takes for RGB (so the caller can say "not 2-D" instead of "corrupt"); None if tifffile fails too."""
    import tifffile

    try:
        with _quiet_readers():
            return np.asarray(tifffile.imread(path))
    except Exception:  # truncated or not a TIFF: the caller reports the reader's own error
        return None


#: Loggers of the file readers: a failed read is reported once, by our InputError naming the file.
_READER_LOGGERS = ("hyperspy", "rsciio", "tifffile")


def _quiet_readers():
    """Silence the readers' own log lines (e.g. tifffile's "invalid offset to first page") while reading."""
    return quiet_loggers(*_READER_LOGGERS)


def _read_raster(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    data = np.asarray(iio.imread(path))
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        return _grey_levels(path, data[..., :3])
    return data


#: Largest difference between the colour channels of a grey image saved as RGB, as a fraction
#: of the channels' full range: JPEG's chroma rounding stays within a few levels of 255, a
#: colour map (viridis, a false-colour export) differs by a large part of the range.
_GREY_CHANNEL_TOLERANCE = 0.02


def _grey_levels(path: Path, rgb: np.ndarray) -> np.ndarray:
    """The grey levels of an RGB image whose three channels agree; a colour image is refused.

    The colours of a false-colour rendering (e.g. viridis) are not the detector's counts, and
    no grey conversion gives them back: analysing one would give plausible-looking nonsense.
    """
    channels = rgb.astype(np.float64)
    full = (
        float(np.iinfo(rgb.dtype).max)
        if rgb.dtype.kind in "iu"
        else float(channels.max(initial=0.0) - channels.min(initial=0.0))
    )
    spread = float((channels.max(axis=-1) - channels.min(axis=-1)).max(initial=0.0))
    if spread > _GREY_CHANNEL_TOLERANCE * full:
        raise InputError(
            path,
            "the image is in colour (its red, green and blue channels differ, as in a false-colour rendering); "
            "its colours are not detector counts",
            "Analyse the raw data (dm3/dm4/emd/tif) or a greyscale export",
        )
    return channels.mean(axis=-1)


def _load_signal(hs, path: Path):
    # HDF5 files are claimed by several readers; HyperSpy's own (atomap's too) first.
    readers = ["HSPY", None] if path.suffix.lower() in (".hdf5", ".h5") else [None]
    for i, reader in enumerate(readers):
        try:
            return hs.load(path, lazy=False, reader=reader)
        except Exception:
            if i == len(readers) - 1:
                raise


def _read_tiff_direct(path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """A plain TIFF (ImageJ, resolution or DigitalMicrograph tags) through RosettaSciIO's reader alone.

    The same reader and axes HyperSpy's ``load`` would use, without importing HyperSpy
    (which brings zarr, scikit-learn and pandas: ~0.3 s CPU of a 1024^2 ``analyze`` process,
    benchmarks/process.py). None when the file needs HyperSpy: more than one image, RGB,
    or vendor metadata (FEI, Zeiss, ...) that HyperSpy maps onto microscope fields.
    """
    from rsciio.tiff import file_reader

    with _quiet_readers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reader warns about metadata it cannot map
        signals = file_reader(str(path))
    if len(signals) != 1 or signals[0]["mapping"] or signals[0]["data"].dtype.names:
        return None
    signal = signals[0]
    # HyperSpy's last signal axis is the rows' (its signal axes run x, y): the first non-navigation axis here.
    axis = next((a for a in signal["axes"] if not a.get("navigate", False)), None)
    calibration = {} if axis is None else _axis_calibration(axis.get("units"), axis.get("scale", 1.0))
    calibration["title"] = signal["metadata"].get("General", {}).get("title", "")
    _tiff_fallbacks(calibration, path)
    return np.asarray(signal["data"]), calibration


def _read_hyperspy(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    if path.suffix.lower() in (".tif", ".tiff"):
        direct = _read_tiff_direct(path)
        if direct is not None:
            return direct
    import hyperspy.api as hs

    with _quiet_readers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # readers warn about metadata they cannot map
        signal = _load_signal(hs, path)
    if isinstance(signal, list):
        images = [s for s in signal if s.axes_manager.signal_dimension == 2]
        if not images:
            raise InputError(path, "the file holds no 2-D image", "Export the HAADF image on its own")
        signal = images[0]
    calibration = _calibration(signal)
    _tiff_fallbacks(calibration, path)
    return np.asarray(signal.data), calibration


def _tiff_fallbacks(calibration: dict[str, Any], path: Path) -> None:
    """Where the reader found no nm calibration: the TIFF's own tags, then a unitless scale taken as nm."""
    if "pixel_size_nm" not in calibration and path.suffix.lower() in (".tif", ".tiff"):
        calibration.update(_tiff_calibration(path))
    _assume_nm_for_unitless_scale(calibration, path)


def _assume_nm_for_unitless_scale(calibration: dict[str, Any], source: str | os.PathLike) -> None:
    """A scale without units (atomap's files) in the range of an atomic-resolution pixel in nm is taken as nm."""
    scale = calibration.get("original_scale", 1.0)
    if "pixel_size_nm" not in calibration and not calibration.get("original_units") and 1e-3 <= scale < 1.0:
        logger.warning("%s: pixel size %g has no units; assuming nm", source, scale)
        calibration["pixel_size_nm"] = scale


#: Plausible range of an atomic-resolution pixel size [nm]; TIFF resolution
#: tags outside it (e.g. a 72 dpi default) are not a calibration.
_PLAUSIBLE_PIXEL_NM = (1e-4, 10.0)


def _tiff_calibration(path: Path) -> dict[str, Any]:
    """Pixel size from ImageJ metadata or the TIFF resolution tags."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page: Any = tif.pages[0]
        tag = page.tags.get("XResolution")
        unit_tag = page.tags.get("ResolutionUnit")
        imagej = tif.imagej_metadata or {}
    if tag is None:
        return {}
    num, den = tag.value
    if not num:
        return {}
    scale = den / num  # units per pixel
    units: str | None
    if "unit" in imagej:
        units = str(imagej["unit"])
        if "\\u" in units:  # ImageJ escapes non-ASCII units such as \u00c5
            units = units.encode().decode("unicode_escape")
        factor = unit_to_nm(units)
    else:
        units = {2: "inch", 3: "cm"}.get(int(unit_tag.value) if unit_tag is not None else 1)
        factor = {"inch": 2.54e7, "cm": 1e7}.get(units or "")
    if factor is None:
        return {}
    size = scale * factor
    if not (_PLAUSIBLE_PIXEL_NM[0] <= size <= _PLAUSIBLE_PIXEL_NM[1]):
        return {}
    return {"original_units": units, "original_scale": scale, "pixel_size_nm": size}


def _axis_calibration(units: Any, scale: float) -> dict[str, Any]:
    """``original_units``, ``original_scale`` and (for a length unit) ``pixel_size_nm`` of one image axis."""
    units = units if isinstance(units, str) else None
    out: dict[str, Any] = {"original_units": units, "original_scale": float(scale)}
    factor = unit_to_nm(units)
    if factor is not None and scale > 0:
        out["pixel_size_nm"] = float(scale) * factor
    return out


def _calibration(signal) -> dict[str, Any]:
    """Pixel size and microscope fields from a HyperSpy signal's axes and metadata."""
    axes = list(signal.axes_manager.signal_axes) or list(signal.axes_manager._axes)
    out: dict[str, Any] = _axis_calibration(axes[-1].units, axes[-1].scale) if axes else {}
    md = signal.metadata
    if md.has_item("stem_pipeline"):
        out["stem_pipeline"] = md.stem_pipeline.as_dictionary()
    fields = {
        "energy_kev": "Acquisition_instrument.TEM.beam_energy",
        "convergence_mrad": "Acquisition_instrument.TEM.convergence_angle",
        "camera_length_mm": "Acquisition_instrument.TEM.camera_length",
        "magnification": "Acquisition_instrument.TEM.magnification",
        "dwell_time_s": "Acquisition_instrument.TEM.dwell_time",
        "beam_current_na": "Acquisition_instrument.TEM.beam_current",
        "detector": "Acquisition_instrument.TEM.Detector.detector_type",
        "title": "General.title",
    }
    for key, node in fields.items():
        if md.has_item(node):
            value = md.get_item(node)
            if isinstance(value, (np.generic, int, float)):
                out[key] = float(value)
            elif isinstance(value, str):
                out[key] = value
    return out


def _validate(path: Path, data: np.ndarray, frame: int | str | None) -> np.ndarray:
    if np.iscomplexobj(data):
        raise InputError(path, "the image holds complex numbers", "Export the modulus or the real part of the image")
    if data.dtype.kind not in "biuf":
        raise InputError(path, f"the image has non-numeric data of type {data.dtype}")
    if data.ndim == 3 and frame is not None:
        if frame in ("sum", "mean"):
            data = data.astype(np.float64).sum(axis=0) if frame == "sum" else data.astype(np.float64).mean(axis=0)
        elif isinstance(frame, (int, np.integer)) and -data.shape[0] <= frame < data.shape[0]:
            data = data[frame]
        else:
            raise InputError(path, f"frame={frame!r} is not valid for a stack of {data.shape[0]} frames")
    if data.ndim != 2:
        fix = (
            f"Pass frame=N (0..{data.shape[0] - 1}) or frame='sum' (CLI: --frame) to pick from the stack"
            if data.ndim == 3
            else "The pipeline needs one 2-D image"
        )
        raise InputError(path, f"the image is not 2-D: shape {data.shape}", fix)
    if min(data.shape) < MIN_SIZE_PX:
        raise InputError(
            path,
            f"the image is too small: {data.shape[0]}x{data.shape[1]} px",
            f"The pipeline needs at least {MIN_SIZE_PX}x{MIN_SIZE_PX} px",
        )
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        n_bad = int(bad.sum())
        if n_bad:
            n_nan = int(np.isnan(data).sum())
            raise InputError(
                path,
                f"the image has {n_bad} non-finite pixels ({n_nan} NaN, {n_bad - n_nan} inf) of {data.size}",
                "Crop or inpaint the bad region before analysis",
            )
    if data.size and float(data.max()) == float(data.min()):
        raise InputError(path, f"the image is constant (every pixel is {data.flat[0]})", "Check the acquisition")
    return data


def to_signal(micrograph: Micrograph):
    """Return a calibrated HyperSpy ``Signal2D`` (axes ``x``/``y`` in nm, or px when uncalibrated)."""
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(micrograph.data.copy())
    _calibrate_axes(signal, micrograph.pixel_size_nm)
    if micrograph.source:
        signal.metadata.General.title = Path(micrograph.source).stem
        signal.metadata.General.original_filename = str(micrograph.source)
    md = micrograph.metadata
    if "energy_kev" in md:
        signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", md["energy_kev"])
    if "convergence_mrad" in md:
        signal.metadata.set_item("Acquisition_instrument.TEM.convergence_angle", md["convergence_mrad"])
    if md:
        signal.metadata.set_item("stem_pipeline", _storable(md))
    return signal


def _calibrate_axes(signal, pixel_size_nm: float | None) -> None:
    for ax, name in zip(signal.axes_manager.signal_axes, ("x", "y")):
        ax.name = name
        if pixel_size_nm is not None:
            ax.scale = pixel_size_nm
            ax.units = "nm"
        else:
            ax.units = "px"


def columns_markers(columns: Columns, labels: PhaseLabels | None = None, *, size: float = 6.0, alpha: float = 0.7):
    """Return the columns as one HyperSpy ``Points`` marker in calibrated coordinates.

    Parameters
    ----------
    columns : Columns
        Positions (row, col) [px]; placed in nm when ``columns.pixel_size_nm``
        is set (matching :func:`to_signal`'s axes), else in px.
    labels : PhaseLabels, optional
        Colours by contrast (red bright, purple dim, green uniform); without
        labels every column is drawn in :data:`~stem_pipeline._types.UNLABELLED_COLOUR`.
    size : float
        Marker size [points].
    alpha : float
        Marker opacity.

    Returns
    -------
    hyperspy.api.plot.markers.Points
        Add it with ``signal.add_marker(markers, permanent=True)``.
    """
    import hyperspy.api as hs

    scale = columns.pixel_size_nm if columns.pixel_size_nm is not None else 1.0
    offsets = columns.rc[:, ::-1] * scale  # x = col, y = row
    if labels is None:
        colour = np.full(len(columns), UNLABELLED_COLOUR)
    else:
        colour = np.asarray([CONTRAST_COLOURS[c] for c in CONTRASTS])[np.asarray(labels.contrast, int)]
    return hs.plot.markers.Points(offsets=offsets, sizes=size, color=colour, alpha=alpha, name="columns")


#: Images :func:`result_signal` can return.
RESULT_IMAGES = ("denoised", "raw", "region_map", "crystal_mask")


def result_signal(result, kind: str = "denoised", *, markers: bool = True):
    """Return a calibrated HyperSpy ``Signal2D`` of an image of a :class:`~stem_pipeline.PipelineResult`.

    Parameters
    ----------
    result : PipelineResult
        From :func:`stem_pipeline.analyze`.
    kind : {"denoised", "raw", "region_map", "crystal_mask"}
        The denoised or raw image (float32), the region map (int8: 0 outside
        the crystal, 1 ordered, 2 uniform) or the crystal mask (bool).
    markers : bool
        Add the columns as a permanent ``Points`` marker (see :func:`columns_markers`).

    Returns
    -------
    hyperspy.signals.Signal2D
        Axes ``x``/``y`` in nm (px when uncalibrated), title
        ``"<file stem> <kind>"``, the micrograph's microscope metadata.

    Raises
    ------
    ValueError
        For an unknown ``kind``, or one the result does not have (e.g. no
        region map when the two-phase model did not apply).
    """
    if kind not in RESULT_IMAGES:
        raise ValueError(f"kind={kind!r}; use one of {', '.join(RESULT_IMAGES)}")
    images = {
        "raw": result.micrograph.data,
        "denoised": result.denoised,
        "region_map": None if result.labels is None else result.labels.region_map,
        "crystal_mask": result.crystal_mask,
    }
    data = images[kind]
    if data is None:
        raise ValueError(f"this result has no {kind} (status {result.status!r}: {result.message or 'no message'})")
    signal = to_signal(result.micrograph)
    signal.data = np.asarray(data).copy()
    signal.metadata.General.title = f"{signal.metadata.get_item('General.title', 'image')} {kind}"
    if markers and result.columns is not None and len(result.columns):
        columns = result.columns.replace(pixel_size_nm=result.micrograph.pixel_size_nm)
        signal.add_marker(columns_markers(columns, result.labels), permanent=True, plot_marker=False)
    return signal


#: Units of the ``columns.csv`` / :func:`to_dataframe` columns (``df.attrs["units"]``).
COLUMN_UNITS: dict[str, str] = {
    "x_px": "px",
    "y_px": "px",
    "x_nm": "nm",
    "y_nm": "nm",
    "amplitude": "counts",
    "background": "counts",
    "volume": "counts px^2",
    "cell_intensity": "counts",
    "peak": "counts",
    "sigma_x_px": "px",
    "sigma_y_px": "px",
    "x_std_px": "px",
    "y_std_px": "px",
}


def to_dataframe(obj: Columns | PipelineResult, labels: PhaseLabels | None = None, *, phases: dict | None = None):
    """A pandas DataFrame with the columns of ``columns.csv``, one row per atom column.

    Parameters
    ----------
    obj : Columns or PipelineResult
        The columns, or a result (its columns, labels and the micrograph's calibration;
        no rows when it found no columns).
    labels : PhaseLabels, optional
        With :class:`Columns`: their phase labels (``PipelineResult.labels``); without
        them ``label`` and ``contrast`` are ``"n/a"`` and ``order_parameter`` NaN, as in
        ``columns.csv`` of an image the two-phase model does not apply to.
    phases : dict, optional
        With :class:`Columns`: the phase-library stage's result (``PipelineResult.phases``),
        whose ``phase`` and ``site`` become columns; a result's own is used.

    Returns
    -------
    pandas.DataFrame
        ``x_px, y_px`` (x = col, y = row), ``x_nm, y_nm`` (NaN when uncalibrated),
        ``intensity``, the fitted fields that are present, ``label``, ``contrast``,
        ``order_parameter``, and ``phase`` and ``site`` when the phase-library stage ran.
        ``df.attrs["units"]`` maps each column to its unit and
        ``df.attrs["pixel_size_nm"]`` holds the calibration.
    """
    import pandas as pd

    table, attrs = column_table(obj, labels, phases=phases)
    df = pd.DataFrame(table)
    df.attrs.update(attrs)
    return df


def column_table(
    obj: Columns | PipelineResult, labels: PhaseLabels | None = None, *, phases: dict | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The columns of ``columns.csv`` as arrays by name, in order, and their ``units``, ``pixel_size_nm`` and
    ``intensity`` source: :func:`to_dataframe`'s content without pandas (``columns.csv`` is written from it).

    Parameters
    ----------
    obj, labels, phases
        As for :func:`to_dataframe`.

    Returns
    -------
    table : dict of str to (K,) ndarray
    attrs : dict
    """
    if isinstance(obj, PipelineResult):
        columns = obj.columns if obj.columns is not None else Columns(rc=np.zeros((0, 2)))
        columns = columns.replace(pixel_size_nm=columns.pixel_size_nm or obj.micrograph.pixel_size_nm)
        labels, phases = obj.labels, obj.phases
    else:
        columns = obj
    k = len(columns)
    table: dict[str, np.ndarray] = {"x_px": np.asarray(columns.rc[:, 1]), "y_px": np.asarray(columns.rc[:, 0])}
    scale = columns.pixel_size_nm if columns.pixel_size_nm is not None else np.nan
    table["x_nm"] = table["x_px"] * scale
    table["y_nm"] = table["y_px"] * scale
    source = columns.intensity_source
    table["intensity"] = np.asarray(columns.intensity) if source else np.full(k, np.nan)
    for name in ("amplitude", "background", "volume", "cell_intensity", "peak", "fit_ok", "lattice"):
        value = getattr(columns, name)
        if value is not None:
            table[name] = np.asarray(value)
    if columns.sigma is not None:
        table["sigma_x_px"], table["sigma_y_px"] = columns.sigma[:, 1], columns.sigma[:, 0]
    if columns.rc_std is not None:
        table["x_std_px"], table["y_std_px"] = columns.rc_std[:, 1], columns.rc_std[:, 0]
    if labels is not None and len(labels.label) != k:
        raise ValueError(f"labels has {len(labels.label)} entries, the columns {k}")
    table["label"] = labels.label_names if labels is not None else np.full(k, "n/a", object)
    table["contrast"] = labels.contrast_names if labels is not None else np.full(k, "n/a", object)
    table["order_parameter"] = np.asarray(labels.order_parameter) if labels is not None else np.full(k, np.nan)
    if phases and len(phases["phase"]) == k:
        table["phase"], table["site"] = np.asarray(phases["phase"]), np.asarray(phases["site"])
    units = {name: COLUMN_UNITS.get(name, "") for name in table}
    units["intensity"] = COLUMN_UNITS.get(source or "", "")
    return table, {"units": units, "pixel_size_nm": columns.pixel_size_nm, "intensity": source}


def to_atomap(columns: Columns, image: np.ndarray | Micrograph | Any):
    """An atomap ``Sublattice`` of ``columns`` on ``image``, keeping the calibration.

    Parameters
    ----------
    columns : Columns
        Column positions (row, col) [px].
    image : (M, N) ndarray, Micrograph or HyperSpy Signal2D
        The image the columns were found on.

    Returns
    -------
    atomap.sublattice.Sublattice
        Positions in x/y (the (row, col) to (x, y) swap happens here); ``pixel_size``
        in nm and ``units`` ``"nm"`` when calibrated (from the columns, else the
        Micrograph), otherwise 1 pixel.
    """
    try:
        import atomap.api  # noqa: F401  (atomap 0.4.2: importing sublattice alone is circular)
        from atomap.sublattice import Sublattice
    except ImportError as exc:
        raise ImportError("to_atomap needs atomap: pip install 'stem-pipeline[notebooks]' (or atomap)") from exc

    scale = columns.pixel_size_nm
    if isinstance(image, Micrograph):
        scale = image.pixel_size_nm if scale is None else scale
        data = image.data
    elif is_signal(image):  # its pixels, our calibration
        data = np.asarray(image.data)
    else:
        data = np.asarray(image)
    calibration = {} if scale is None else {"pixel_size": scale, "units": "nm"}
    return Sublattice(atom_position_list=columns.rc[:, ::-1].copy(), image=data, **calibration)


def _storable(value: Any) -> Any:
    """Metadata made storable in HDF5 attributes (None becomes an empty string)."""
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value] if all(not isinstance(v, dict) for v in value) else str(value)
    return "" if value is None else value


def from_signal(
    signal,
    *,
    source: str | None = None,
    pixel_size_nm: float | None = None,
    frame: int | Literal["sum", "mean"] | None = None,
) -> Micrograph:
    """Build a :class:`Micrograph` from a HyperSpy ``Signal2D``, reading its calibration.

    Parameters
    ----------
    signal : hyperspy Signal2D
        The image; its last signal axis gives the pixel size (A, pm, nm or um
        are converted to nm), its metadata the microscope fields.
    source : str, optional
        Name for messages; default the signal's original file name or title.
    pixel_size_nm : float, optional
        Overrides the signal's calibration [nm].
    frame : int or {"sum", "mean"}, optional
        For a stack (one navigation axis): the frame, or their sum or mean.

    Returns
    -------
    Micrograph

    Raises
    ------
    InputError
        When the signal is not a single valid 2-D image.

    Warns
    -----
    MissingCalibrationWarning
        When the signal's axes carry no length unit and no ``pixel_size_nm`` is given.
    """
    md = signal.metadata
    source = source or md.get_item("General.original_filename", None) or md.get_item("General.title", None) or "signal"
    calibration = _calibration(signal)
    _assume_nm_for_unitless_scale(calibration, source)
    return _micrograph(source, np.asarray(signal.data), calibration, pixel_size_nm=pixel_size_nm, frame=frame)


def save(micrograph: Micrograph, path: str | os.PathLike) -> Path:
    """Write a micrograph with its calibration, atomically; the format follows the extension.

    Parameters
    ----------
    micrograph : Micrograph
        The image to write.
    path : str or PathLike
        ``.hspy``, ``.tif``/``.tiff`` (nm calibration through RosettaSciIO's
        ImageJ-compatible tags) or ``.npy`` (data only).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ValueError(f"{path}: cannot write {path.suffix!r}; use one of {', '.join(sorted(WRITE_EXTENSIONS))}")

    def write(tmp: str) -> None:
        if ext == ".npy":
            np.save(tmp, micrograph.data)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                to_signal(micrograph).save(tmp, overwrite=True)

    return atomic_write(path, write)
