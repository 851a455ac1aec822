"""Raster drawing for the figures the pipeline writes: an RGB array drawn on with Pillow, written as PNG.

The overlay and the thumbnail are drawn straight into an array instead of through matplotlib: for a
one-dot ``analyze`` process, matplotlib's import and Agg render of the overlay took 0.66 of 4.4 s CPU
(benchmarks/process.py), while the drawing here takes a few hundredths of a second. matplotlib stays for
the interactive :func:`stem_pipeline.report.plot_overlay` and the batch histograms.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._atomic import atomic_write

__all__ = ["dashed_line", "font", "rgba", "save_png", "text_size"]

#: zlib level of the PNG files (1: fastest; matplotlib's default, 6, took ~4x the CPU for ~0.75x the bytes).
PNG_COMPRESS_LEVEL = 1
#: The PNG signature, and the filter type of every row (2, "Up": the difference to the row above).
_PNG_SIGNATURE, _PNG_UP = b"\x89PNG\r\n\x1a\n", 2
#: Dash and gap length of a dashed line [px].
DASH_PX = 6


@functools.lru_cache(maxsize=16)
def font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size_px`` pixels (its bitmap font where Pillow lacks FreeType)."""
    return ImageFont.load_default(size=max(int(size_px), 6))


def text_size(text: str, size_px: int) -> tuple[int, int]:
    """Width and height [px] of (possibly multi-line) ``text`` in :func:`font` at ``size_px``."""
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox(
        (0, 0), text, font=font(size_px)
    )
    return int(np.ceil(right - min(left, 0))), int(np.ceil(bottom - min(top, 0)))


def rgba(colour: str | tuple, alpha: float | None = None) -> tuple[int, int, int, int]:
    """An 8-bit RGBA tuple from a ``#rrggbb`` string or a 0-1 RGB(A) tuple; ``alpha`` replaces its opacity.

    Examples
    --------
    >>> rgba("#e41a1c", 0.5)
    (228, 26, 28, 128)
    >>> rgba((0.0, 1.0, 0.0, 0.25))
    (0, 255, 0, 64)
    """
    if isinstance(colour, str):
        values = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)] + [1.0]
    else:
        values = [*map(float, colour), 1.0][:4]
    if alpha is not None:
        values[3] = alpha
    r, g, b, a = (round(255 * v) for v in values)
    return r, g, b, a


def dashed_line(draw: ImageDraw.ImageDraw, xy: np.ndarray, *, fill, width: int = 1, dash_px: int = DASH_PX) -> None:
    """Draw the polyline ``xy`` ((K, 2) screen x, y) in dashes of ``dash_px`` with gaps of the same length."""
    steps = np.hypot(*np.diff(xy, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    if along[-1] == 0:
        return
    for start in np.arange(0.0, along[-1], 2 * dash_px):
        at = np.linspace(start, min(start + dash_px, along[-1]), 4)
        pts = np.column_stack([np.interp(at, along, xy[:, 0]), np.interp(at, along, xy[:, 1])])
        draw.line([tuple(p) for p in pts], fill=fill, width=width)


def save_png(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    """Write ``pixels`` ((M, N) grey or (M, N, 3) RGB, uint8) as a PNG file, atomically.

    Encoded here (:func:`png_bytes`), not by Pillow: Pillow tries all five PNG row filters on every row
    to pick one, which took as long as the compression itself (the overlay of benchmarks/process.py's
    1024^2 dot: 0.053 s CPU, 0.030 s here, for 1.02 MB against Pillow's 1.05 MB).

    Parameters
    ----------
    path : str or PathLike
        The PNG file.
    pixels : (M, N) or (M, N, 3) ndarray of uint8
        The picture.

    Returns
    -------
    Path
        ``path``.
    """
    data = png_bytes(pixels)
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def png_bytes(pixels: np.ndarray) -> bytes:
    """The PNG file of an 8-bit grey (M, N) or RGB (M, N, 3) picture: every row "Up"-filtered, zlib at
    :data:`PNG_COMPRESS_LEVEL`, in one IDAT chunk.

    Parameters
    ----------
    pixels : (M, N) or (M, N, 3) array_like of uint8
        The picture.

    Returns
    -------
    bytes
        The file's content.

    Raises
    ------
    ValueError
        If ``pixels`` is neither (M, N) nor (M, N, 3), or empty.

    Examples
    --------
    >>> png_bytes(np.zeros((2, 3), np.uint8))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    picture = np.asarray(pixels, dtype=np.uint8)
    if not (picture.ndim == 2 or (picture.ndim == 3 and picture.shape[2] == 3)) or not picture.size:
        raise ValueError(f"pixels must be a non-empty (M, N) grey or (M, N, 3) RGB picture, got shape {picture.shape}")
    rows, cols = picture.shape[:2]
    flat = picture.reshape(rows, -1)
    filtered = np.empty((rows, 1 + flat.shape[1]), np.uint8)
    filtered[:, 0] = _PNG_UP
    filtered[0, 1:] = flat[0]  # the row above the first is zeros
    np.subtract(flat[1:], flat[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    colour_type = 0 if picture.ndim == 2 else 2  # grey or RGB, 8 bits per sample
    header = struct.pack(">IIBBBBB", cols, rows, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(filtered.data, PNG_COMPRESS_LEVEL)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: its length, type, data and the CRC of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
