"""Reading a frame series: a 3-D stack in any format :mod:`stem_pipeline.io` reads, or a folder of frames.

Frames are returned as they are (NaN pixels included) so that bad frames can be
listed one by one instead of refusing the whole series. The dose per frame comes
from the file's metadata where it has the beam current and dwell time.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np

from .. import io
from ..errors import InputError
from ..inputs import scan_inputs

logger = logging.getLogger("stem_pipeline")

#: Elementary charge [C].
_E_CHARGE_C = 1.602176634e-19


class NotASeriesError(InputError):
    """The input is a single image (or not 3-D), not a frame series."""


@dataclasses.dataclass(frozen=True, eq=False)
class FrameSeries:
    """A stack of frames with its calibration.

    Attributes
    ----------
    frames : (F, M, N) ndarray of float32
        The frames as read (NaN pixels kept).
    pixel_size_nm : float or None
        Pixel size [nm].
    source : str
        The file or folder.
    metadata : dict
        Calibration and microscope fields (see :func:`stem_pipeline.io.load`).
    """

    frames: np.ndarray
    pixel_size_nm: float | None
    source: str
    metadata: dict


def _natural_key(path: Path) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def load_series(path: str | Path, *, pixel_size_nm: float | None = None) -> FrameSeries:
    """Read a frame series from a 3-D stack file or a folder of 2-D frames (in natural name order).

    Parameters
    ----------
    path : str or Path
        A stack (dm4, emd, tif, hspy, npy, ...: any format :func:`stem_pipeline.io.load`
        reads) or a folder of single frames.
    pixel_size_nm : float, optional
        Pixel size [nm]; overrides the file's calibration.

    Returns
    -------
    FrameSeries

    Raises
    ------
    NotASeriesError
        The file holds a single 2-D image (a series needs a stack) or is not 3-D.
    InputError
        The file cannot be read, the folder has frames of different shapes, complex or non-numeric data, or
        frames smaller than :data:`stem_pipeline.io.MIN_SIZE_PX`.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(scan_inputs([path]).files, key=_natural_key)
        if len(files) < 2:
            raise InputError(path, f"the folder holds {len(files)} image file(s)", "A series needs at least 2 frames")
        parts = [io.read_pixels(f) for f in files]
        shapes = {np.shape(d) for d, _ in parts}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise InputError(path, f"the frames are not 2-D images of one shape: {sorted(shapes)}", "Crop them alike")
        data, calibration = np.stack([d for d, _ in parts]), parts[0][1]
    else:
        data, calibration = io.read_pixels(path)
        data = np.asarray(data)
        if data.ndim == 2:
            raise NotASeriesError(
                path,
                f"this is a single 2-D image ({data.shape[0]}x{data.shape[1]} px), not a frame series",
                "Give a 3-D stack (frames, rows, cols) or a folder of frames; use `stem-pipeline analyze` for one image",
            )
        if data.ndim != 3 or data.shape[0] < 2:
            raise NotASeriesError(path, f"a frame series must be a 3-D stack of >= 2 frames, got shape {data.shape}")
    if np.iscomplexobj(data) or data.dtype.kind not in "biuf":
        raise InputError(path, f"the frames hold {data.dtype} data", "Export real-valued intensities")
    if min(data.shape[1:]) < io.MIN_SIZE_PX:
        raise InputError(
            path,
            f"the frames are too small: {data.shape[1]}x{data.shape[2]} px",
            f"The pipeline needs at least {io.MIN_SIZE_PX}x{io.MIN_SIZE_PX} px",
        )
    scale = calibration.get("pixel_size_nm") if pixel_size_nm is None else float(pixel_size_nm)
    if scale is None:
        logger.warning("%s: no pixel size in the file; results are in pixels (pass pixel_size_nm for nm)", path)
    return FrameSeries(data.astype(np.float32), scale, str(path), dict(calibration))


def dose_per_frame_from_metadata(metadata: dict, *, pixel_size_nm: float | None, n_pixels: int) -> float | None:
    """Dose of one frame [e/A^2] from the beam current and the dwell time, where the metadata has both.

    ``dose = I t_dwell / e / (pixel size)^2``: every pixel of a frame is
    exposed for the dwell time, so the dose per area does not depend on the
    number of pixels (``n_pixels`` is used when only a frame time is known:
    ``t_dwell = t_frame / n_pixels``).

    Parameters
    ----------
    metadata : dict
        ``beam_current_na`` (HyperSpy's ``Acquisition_instrument.TEM.beam_current``),
        ``dwell_time_s`` or ``frame_time_s``; or a ready ``dose_per_frame_e_per_A2``.
    pixel_size_nm : float or None
        Pixel size [nm].
    n_pixels : int
        Pixels per frame.

    Returns
    -------
    float or None
        None when the metadata do not give a dose.
    """
    md = {**metadata.get("stem_pipeline", {}), **metadata}
    if md.get("dose_per_frame_e_per_A2"):
        return float(md["dose_per_frame_e_per_A2"])
    current_na, dwell_s = md.get("beam_current_na"), md.get("dwell_time_s")
    if not dwell_s and md.get("frame_time_s"):
        dwell_s = float(md["frame_time_s"]) / n_pixels
    if not (current_na and dwell_s and pixel_size_nm):
        return None
    pixel_a = 10.0 * pixel_size_nm
    return float(current_na) * 1e-9 * float(dwell_s) / _E_CHARGE_C / pixel_a**2
