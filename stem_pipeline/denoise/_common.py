"""Input checks and small helpers shared by the denoising filters."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._threads import FFT_WORKERS

logger = logging.getLogger("stem_pipeline")

__all__ = ["FFT_WORKERS", "check_image", "logger", "pixel_size_of"]


def check_image(image: Any, *, name: str = "image") -> tuple[np.ndarray, np.dtype]:
    """Validate a 2-D image and return it as a float array plus the output dtype.

    Accepts an ndarray or anything with a ``.data`` array (a ``Micrograph``).
    float32 and float64 keep their precision; every other dtype works in and
    returns float32. The returned array may share memory with the input: callers
    must not write into it.

    Raises
    ------
    ValueError
        If the image is not 2-D, is empty, or holds NaN or infinite values.
    """
    data = image.data if hasattr(image, "data") and not isinstance(image, np.ndarray) else image
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D image (rows, cols), got an array of shape {arr.shape}; pass one frame at a time"
        )
    if arr.size == 0 or min(arr.shape) < 2:
        raise ValueError(f"{name} is empty or degenerate (shape {arr.shape}); it needs at least 2x2 pixels")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real-valued numbers, got dtype {arr.dtype}")
    out_dtype = np.dtype(np.float64) if arr.dtype == np.float64 else np.dtype(np.float32)
    arr = arr.astype(out_dtype, copy=False)
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} NaN or infinite pixels; replace or crop them before denoising")
    return arr, out_dtype


def pixel_size_of(image: Any, pixel_size_nm: float | None) -> float | None:
    """``pixel_size_nm`` if given, else the ``pixel_size_nm`` attribute of a Micrograph, else None."""
    if pixel_size_nm is not None:
        return float(pixel_size_nm)
    value = getattr(image, "pixel_size_nm", None)
    return None if value is None else float(value)
