"""Raster drawing for the figures the pipeline writes: an RGB array drawn on with Pillow, written as PNG.

The overlay and the thumbnail are drawn straight into an array instead of through matplotlib: for a
one-dot ``analyze`` process, matplotlib's import and Agg render of the overlay took 0.66 of 4.4 s CPU
(benchmarks/process.py), while the drawing here takes a few hundredths of a second. matplotlib stays for
the interactive :func:`stem_pipeline.report.plot_overlay` and the batch histograms.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .._atomic import atomic_write

__all__ = ["dashed_line", "font", "rgba", "save_png", "text_size"]

#: zlib level of the PNG files (1: fastest; matplotlib's default, 6, took ~4x the CPU for ~0.75x the bytes).
PNG_COMPRESS_LEVEL = 1
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
    picture = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
    return atomic_write(Path(path), lambda tmp: picture.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL))
