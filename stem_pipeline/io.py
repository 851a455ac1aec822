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
from ._types import Micrograph
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


def load(
    path: str | os.PathLike,
    *,
    pixel_size_nm: float | None = None,
    frame: int | Literal["sum", "mean"] | None = None,
) -> Micrograph:
    """Load a micrograph with its calibration.

    Parameters
    ----------
    path : str or PathLike
        The image file. See :data:`EXTENSIONS` for the formats.
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
    try:
        if ext == ".npy":
            data, calibration = np.load(path, allow_pickle=False), {}
        elif ext in RASTER_EXTENSIONS:
            data, calibration = _read_raster(path), {}
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
    data = _validate(path, np.asarray(data), frame)
    scale_nm = calibration.get("pixel_size_nm")
    if pixel_size_nm is not None:
        if not (np.isfinite(pixel_size_nm) and pixel_size_nm > 0):
            raise InputError(path, f"pixel_size_nm={pixel_size_nm!r} is not a positive number")
        scale_nm = float(pixel_size_nm)
    elif scale_nm is None:
        warnings.warn(
            f"{path}: no pixel size in the file; results are in pixels. "
            "Pass pixel_size_nm (CLI: --pixel-size-nm) for nm.",
            MissingCalibrationWarning,
            stacklevel=2,
        )
    return Micrograph(data.astype(np.float32), pixel_size_nm=scale_nm, source=str(path), metadata=calibration)


def _read_tiff_pixels(path: Path) -> np.ndarray | None:
    """The pixels of a TIFF that RosettaSciIO cannot map to a signal, e.g. a 3-frame float stack it
    takes for RGB (so the caller can say "not 2-D" instead of "corrupt"); None if tifffile fails too."""
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception:  # truncated or not a TIFF: the caller reports the reader's own error
        return None


def _read_raster(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    data = np.asarray(iio.imread(path))
    if data.ndim == 3 and data.shape[-1] in (3, 4):  # RGB(A) export of a grey image
        rgb = data[..., :3].astype(np.float64)
        data = rgb @ np.array([0.299, 0.587, 0.114])
    return data


def _load_signal(hs, path: Path):
    # HDF5 files are claimed by several readers; HyperSpy's own (atomap's too) first.
    readers = ["HSPY", None] if path.suffix.lower() in (".hdf5", ".h5") else [None]
    for i, reader in enumerate(readers):
        try:
            return hs.load(path, lazy=False, reader=reader)
        except Exception:
            if i == len(readers) - 1:
                raise


def _read_hyperspy(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import hyperspy.api as hs

    hs_logger = logging.getLogger("hyperspy")
    level = hs_logger.level
    hs_logger.setLevel(logging.CRITICAL)  # our InputError says it better
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # readers warn about metadata they cannot map
        try:
            signal = _load_signal(hs, path)
        finally:
            hs_logger.setLevel(level)
    if isinstance(signal, list):
        images = [s for s in signal if s.axes_manager.signal_dimension == 2]
        if not images:
            raise InputError(path, "the file holds no 2-D image", "Export the HAADF image on its own")
        signal = images[0]
    calibration = _calibration(signal)
    if "pixel_size_nm" not in calibration and path.suffix.lower() in (".tif", ".tiff"):
        calibration.update(_tiff_calibration(path))
    scale = calibration.get("original_scale", 1.0)
    if "pixel_size_nm" not in calibration and not calibration.get("original_units") and 1e-3 <= scale < 1.0:
        # A scale without units (atomap's files): the size of an atomic-resolution pixel in nm.
        logger.warning("%s: pixel size %g has no units; assuming nm", path, scale)
        calibration["pixel_size_nm"] = scale
    return np.asarray(signal.data), calibration


#: Plausible range of an atomic-resolution pixel size [nm]; TIFF resolution
#: tags outside it (e.g. a 72 dpi default) are not a calibration.
_PLAUSIBLE_PIXEL_NM = (1e-4, 10.0)


def _tiff_calibration(path: Path) -> dict[str, Any]:
    """Pixel size from ImageJ metadata or the TIFF resolution tags."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tag = page.tags.get("XResolution")
        unit_tag = page.tags.get("ResolutionUnit")
        imagej = tif.imagej_metadata or {}
    if tag is None:
        return {}
    num, den = tag.value
    if not num:
        return {}
    scale = den / num  # units per pixel
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


def _calibration(signal) -> dict[str, Any]:
    """Pixel size and microscope fields from a HyperSpy signal's axes and metadata."""
    axes = list(signal.axes_manager.signal_axes) or list(signal.axes_manager._axes)
    out: dict[str, Any] = {}
    if axes:
        ax = axes[-1]
        units = ax.units if isinstance(ax.units, str) else None
        out["original_units"] = units
        out["original_scale"] = float(ax.scale)
        factor = unit_to_nm(units)
        if factor is not None and ax.scale > 0:
            out["pixel_size_nm"] = float(ax.scale) * factor
    md = signal.metadata
    if md.has_item("stem_pipeline"):
        out["stem_pipeline"] = md.stem_pipeline.as_dictionary()
    fields = {
        "voltage_kv": "Acquisition_instrument.TEM.beam_energy",
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
        raise InputError(
            path, "the image holds complex numbers", "Export the modulus or the real part of the image"
        )
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
    for ax, name in zip(signal.axes_manager.signal_axes, ("x", "y")):
        ax.name = name
        if micrograph.pixel_size_nm is not None:
            ax.scale = micrograph.pixel_size_nm
            ax.units = "nm"
        else:
            ax.units = "px"
    if micrograph.source:
        signal.metadata.General.title = Path(micrograph.source).stem
        signal.metadata.General.original_filename = str(micrograph.source)
    md = micrograph.metadata
    if "voltage_kv" in md:
        signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", md["voltage_kv"])
    if "convergence_mrad" in md:
        signal.metadata.set_item("Acquisition_instrument.TEM.convergence_angle", md["convergence_mrad"])
    if md:
        signal.metadata.set_item("stem_pipeline", _storable(md))
    return signal


def _storable(value: Any) -> Any:
    """Metadata made storable in HDF5 attributes (None becomes an empty string)."""
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value] if all(not isinstance(v, dict) for v in value) else str(value)
    return "" if value is None else value


def from_signal(signal, *, source: str | None = None) -> Micrograph:
    """Build a :class:`Micrograph` from a HyperSpy ``Signal2D``, reading its calibration.

    Raises
    ------
    InputError
        When the signal is not a single valid 2-D image.
    """
    md = signal.metadata
    source = source or md.get_item("General.original_filename", None) or md.get_item("General.title", None) or "signal"
    calibration = _calibration(signal)
    data = _validate(Path(str(source)), np.asarray(signal.data), None)
    return Micrograph(
        data.astype(np.float32),
        pixel_size_nm=calibration.get("pixel_size_nm"),
        source=str(source),
        metadata=calibration,
    )


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


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (searched recursively) into image files with known extensions.

    Hidden files and folders (starting with ``.``) are skipped. Files given
    explicitly are kept whatever their extension, so that an unknown one is
    reported as an error instead of being silently ignored.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if f.is_file() and f.suffix.lower() in EXTENSIONS and not any(
                    part.startswith(".") for part in rel.parts
                ):
                    found.append(f)
        else:
            found.append(p)
    unique: dict[Path, None] = {}
    for f in found:
        unique.setdefault(f, None)
    return list(unique)
