"""The overlay drawn straight into an RGB array (Pillow), for the ``overlay.png`` files.

The same picture as :func:`stem_pipeline.report.overlay.plot_overlay` draws with matplotlib: the grey
image (one image pixel per screen pixel up to :data:`~stem_pipeline.report.overlay.MAX_FIGURE_IN`), the
translucent region map, one disc per column, the scale bar, the title above and the legend below, and
a field's dots outlined and numbered. What is drawn is decided in :mod:`~stem_pipeline.report.overlay`
and :func:`~stem_pipeline.report.dots.dot_marks`; only how is here. It replaces matplotlib's import and
Agg render (0.66 of 4.4 s CPU of a one-dot ``analyze`` process, benchmarks/process.py).
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .._types import AreaFractions, Columns, Micrograph, PhaseLabels
from .dots import STATUS_COLOURS, dot_marks
from .overlay import (
    _LEGEND_IN,
    _TITLE_IN,
    DPI,
    MARKER_ALPHA,
    MARKER_SPACING_FRACTION,
    REGION_COLOURS,
    _inputs,
    _marks,
    _scale_bar,
    _shown,
    _spacing_px,
    figure_size_in,
)
from .raster import dashed_line, font, rgba, text_size

__all__ = ["render_overlay"]

#: White margin around the picture [in].
PAD_IN = 0.02


def _px(points: float, dpi: float) -> int:
    """A font size [pt] in pixels at ``dpi``."""
    return round(points * dpi / 72)


def _grey(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image as drawn: (rows, cols) = ``size`` uint8 grey, nearest-neighbour from the (block-averaged) image."""
    shown, _, lo, hi = _shown(data)
    rows = ((np.arange(size[0]) + 0.5) * shown.shape[0] / size[0]).astype(int)
    cols = ((np.arange(size[1]) + 0.5) * shown.shape[1] / size[1]).astype(int)
    scaled = (np.nan_to_num(shown[np.ix_(rows, cols)], nan=lo) - lo) * (255 / (hi - lo))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _tinted(grey: np.ndarray, region_map: np.ndarray | None) -> np.ndarray:
    """RGB of ``grey`` with the translucent region colours over the region map (resampled to it).

    One look-up per pixel in a (region code, grey level) -> RGB table of the blended colours, as a ``take``
    of its rows at ``256 code + grey``: indexing the table with the two maps took ~4x the CPU (~0.01 s of
    a 1024^2 ``analyze`` process, benchmarks/process.py).
    """
    if region_map is None:
        return np.repeat(grey[..., None], 3, axis=2)
    rows = ((np.arange(grey.shape[0]) + 0.5) * region_map.shape[0] / grey.shape[0]).astype(int)
    cols = ((np.arange(grey.shape[1]) + 0.5) * region_map.shape[1] / grey.shape[1]).astype(int)
    levels = np.arange(256.0)[:, None]
    table = np.repeat(levels, 3, axis=1)[None].repeat(1 + max(REGION_COLOURS), axis=0)
    for code, (r, g, b, alpha) in REGION_COLOURS.items():
        table[code] = levels * (1 - alpha) + np.array([r, g, b]) * 255 * alpha
    at = np.asarray(region_map)[np.ix_(rows, cols)].astype(np.intp) * 256
    at += grey
    return np.take(table.round().astype(np.uint8).reshape(-1, 3), at, axis=0)


def _draw_columns(picture: Image.Image, rc: np.ndarray, groups: list, scale: float) -> Image.Image:
    """One translucent disc per column, its diameter :data:`MARKER_SPACING_FRACTION` of the column spacing."""
    layer = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    radius = max(MARKER_SPACING_FRACTION * _spacing_px(rc) * scale / 2, 0.75)
    for colour, sel in groups:
        fill = rgba(colour, MARKER_ALPHA)
        for y, x in (rc[sel] + 0.5) * scale:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
    return Image.alpha_composite(picture.convert("RGBA"), layer).convert("RGB")


def _draw_dots(draw: ImageDraw.ImageDraw, marks: list, scale: float, dpi: float) -> None:
    """A field's dots (:func:`~stem_pipeline.report.dots.dot_marks`): outlines, numbers, phase labels."""
    for mark in marks:
        colour = rgba(mark.colour)
        for line in mark.lines:
            xy = (line[:, ::-1] + 0.5) * scale
            if mark.dashed:
                dashed_line(draw, xy, fill=colour)
            else:
                draw.line([tuple(p) for p in xy], fill=colour, width=1)
        at = ((mark.x_px + 0.5) * scale, (mark.y_px + 0.5) * scale)
        draw.text(
            at, mark.number, fill=colour, font=font(_px(11, dpi)), anchor="mm", stroke_width=1, stroke_fill=colour
        )
        if mark.phase is not None:
            below = (at[0], at[1] + _px(9, dpi))
            draw.multiline_text(below, mark.phase, fill=colour, font=font(_px(8, dpi)), anchor="ma", align="center")


def _draw_scale_bar(draw: ImageDraw.ImageDraw, bar, scale: float, shape: tuple[int, int], dpi: float) -> None:
    """The scale bar of :func:`~stem_pipeline.report.overlay._scale_bar`, white with a black edge."""
    if bar is None:
        return
    x0, y0, length_px, h, text = bar
    box = np.array([x0, y0, x0 + length_px, y0 + h]) * scale
    draw.rectangle(tuple(box), fill=(255, 255, 255), outline=(0, 0, 0), width=1)
    at = ((x0 + length_px / 2) * scale, (y0 - 0.01 * shape[0]) * scale)
    draw.text(at, text, fill=(255, 255, 255), font=font(_px(10, dpi)), anchor="mb", stroke_width=1, stroke_fill="white")


def _legend(legend: list, size_px: int) -> tuple[list[tuple[int, int, str, Any, str]], int, int]:
    """The legend entries laid out in up to three columns: ``(x, y, kind, colour, text)``, width, height."""
    ncol = min(len(legend), 3)
    key = size_px + size_px // 2  # the marker or patch, then a gap
    widths = [key + text_size(text, size_px)[0] for _, _, text in legend]
    col_w = [max(widths[i::ncol]) + size_px for i in range(ncol)]
    row_h = round(1.6 * size_px)
    placed = []
    for i, (kind, colour, text) in enumerate(legend):
        placed.append((sum(col_w[: i % ncol]), (i // ncol) * row_h, kind, colour, text))
    return placed, sum(col_w), row_h * -(-len(legend) // ncol)


def render_overlay(
    image: np.ndarray | Micrograph,
    columns: Columns | None,
    labels: PhaseLabels | None,
    fractions: AreaFractions | None = None,
    *,
    pixel_size_nm: float | None = None,
    title: str | None = None,
    dpi: int = DPI,
    dots: tuple[np.ndarray, list[dict]] | None = None,
    phases: dict | None = None,
) -> np.ndarray:
    """The overlay of :func:`~stem_pipeline.report.overlay.plot_overlay` as an RGB picture.

    Parameters
    ----------
    image, columns, labels, fractions, pixel_size_nm, title, phases
        As for :func:`~stem_pipeline.report.overlay.plot_overlay`.
    dpi : int
        Pixels per inch of :func:`~stem_pipeline.report.overlay.figure_size_in`'s figure (and of the fonts).
    dots : (labels, records), optional
        A field's dot labels and ``dots.csv`` records, outlined and numbered.

    Returns
    -------
    (H, W, 3) ndarray of uint8
        The picture: title, image with its marks, legend and notes below, on white.
    """
    data, pixel_size_nm, title = _inputs(image, columns, pixel_size_nm, title)
    width_in, height_in = figure_size_in(data.shape, dpi=dpi)
    size = (round((height_in - _LEGEND_IN - _TITLE_IN) * dpi), round(width_in * dpi))  # the image area (rows, cols)
    scale = size[1] / data.shape[1]
    region_map = labels.region_map if labels is not None and np.shape(labels.region_map) == data.shape else None
    picture = Image.fromarray(_tinted(_grey(data, size), region_map))
    groups, legend = _marks(columns, labels, fractions, phases)
    if groups and columns is not None:
        picture = _draw_columns(picture, columns.rc, groups, scale)
    draw = ImageDraw.Draw(picture)
    note = None
    if dots is not None:
        marks, note = dot_marks(*dots)
        _draw_dots(draw, marks, scale, dpi)
    _draw_scale_bar(draw, _scale_bar(data.shape, pixel_size_nm), scale, data.shape, dpi)
    return _page(picture, title, legend, note, dpi)


def _page(picture: Image.Image, title: str | None, legend: list, note: str | None, dpi: float) -> np.ndarray:
    """The image with its title above and its legend and note below, on white, as tight as the text allows."""
    pad, gap = round(PAD_IN * dpi), _px(4, dpi)
    title = textwrap.fill(title, 90) if title else None
    title_w, title_h = text_size(title, _px(10, dpi)) if title else (0, 0)
    placed, legend_w, legend_h = _legend(legend, _px(8, dpi)) if legend else ([], 0, 0)
    note_w, note_h = text_size(note, _px(7, dpi)) if note else (0, 0)
    width = max(picture.width, title_w, legend_w, note_w) + 2 * pad
    top = pad + (title_h + gap if title else 0)
    height = top + picture.height + (gap + legend_h if placed else 0) + (gap + note_h if note else 0) + pad
    page = Image.new("RGB", (width, height), (255, 255, 255))
    left = (width - picture.width) // 2
    page.paste(picture, (left, top))
    draw = ImageDraw.Draw(page)
    if title:
        draw.multiline_text(
            (width / 2, pad), title, fill=(0, 0, 0), font=font(_px(10, dpi)), anchor="ma", align="center"
        )
    y = top + picture.height + gap
    size_px, x0 = _px(8, dpi), (width - legend_w) // 2
    for x, dy, kind, colour, text in placed:
        cx, cy = x0 + x + size_px / 2, y + dy + size_px / 2
        if kind == "marker":
            draw.ellipse((cx - size_px / 3, cy - size_px / 3, cx + size_px / 3, cy + size_px / 3), fill=rgba(colour))
        else:
            draw.rectangle(
                (cx - size_px / 2, cy - size_px / 3, cx + size_px / 2, cy + size_px / 3), fill=_on_white(colour)
            )
        draw.text((x0 + x + size_px + size_px // 2, cy), text, fill=(0, 0, 0), font=font(size_px), anchor="lm")
    if note:
        y += legend_h + gap if placed else 0
        draw.multiline_text((left, y), note, fill=rgba(STATUS_COLOURS["refused"]), font=font(_px(7, dpi)))
    return np.asarray(page)


def _on_white(colour) -> tuple[int, int, int]:
    """A translucent colour as it shows on white."""
    r, g, b, a = rgba(colour)
    return round(r * a / 255 + 255 - a), round(g * a / 255 + 255 - a), round(b * a / 255 + 255 - a)
