"""The colour-coded overlay figure (the paper's Fig. 2D, made automatically).

Green dots mark the columns of uniform (PbI2/FAPbI3-like) regions, red the
bright and purple the dim columns of ordered (CsPbI3-like) regions, over the
(denoised) image with a translucent region map, a scale bar in nm and a
legend with the area fractions and their 95 % interval below the image.
matplotlib is imported inside the functions: :func:`plot_overlay` makes a
pyplot figure (shown by ``plt.show()`` or Jupyter), :func:`save_overlay` an
Agg figure that no display or pyplot state is involved in.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write
from .._types import (
    CONTRAST_COLOURS,
    CONTRASTS,
    REGION_ORDERED,
    REGION_UNIFORM,
    UNLABELLED_COLOUR,
    AreaFractions,
    Columns,
    Micrograph,
    PhaseLabels,
)

__all__ = ["plot_overlay", "save_overlay"]

#: Dot colours by contrast name (the paper's: red bright, purple dim, green uniform).
COLOURS = CONTRAST_COLOURS
#: Translucent region colours (ordered, uniform).
REGION_COLOURS = {REGION_ORDERED: (0.85, 0.25, 0.55, 0.22), REGION_UNIFORM: (0.17, 0.63, 0.17, 0.22)}
#: Resolution of the figure [dots per inch]; at it the image is drawn one image pixel per screen pixel
#: up to :data:`MAX_FIGURE_IN`.
DPI = 110
#: Largest edge of the image area [in] (1760 px at 110 dpi): a larger image is scaled down to fit.
MAX_FIGURE_IN = 16.0
#: Smallest width of the image area [in], so that the legend and scale bar stay readable on a small image.
MIN_FIGURE_IN = 5.0
#: Marker diameter as a fraction of the column spacing: neighbours never touch, the image shows between.
MARKER_SPACING_FRACTION = 0.5
#: Marker opacity: the column underneath stays visible.
MARKER_ALPHA = 0.75
#: zlib level of the PNG files (1: fastest; matplotlib's default is 6).
PNG_COMPRESS_LEVEL = 1
#: Room below the image for the legend, and above it for the title [in].
_LEGEND_IN, _TITLE_IN = 1.0, 0.35


def figure_size_in(shape: tuple[int, int], *, dpi: float = DPI) -> tuple[float, float]:
    """Figure size [in] that shows an image of ``shape`` (rows, cols) at one pixel per pixel, up to a limit.

    The image area is ``cols / dpi`` wide (at least :data:`MIN_FIGURE_IN`, and
    both edges at most :data:`MAX_FIGURE_IN`), with room for the title above
    and the legend below.

    Examples
    --------
    >>> figure_size_in((224, 1312))
    (11.927272727272728, 3.386363636363636)
    """
    rows, cols = shape
    width = float(np.clip(cols / dpi, MIN_FIGURE_IN, MAX_FIGURE_IN))
    height = width * rows / cols
    if height > MAX_FIGURE_IN:
        width, height = width * MAX_FIGURE_IN / height, MAX_FIGURE_IN
    return width, height + _LEGEND_IN + _TITLE_IN


def _default_title(image, title: str | None) -> str | None:
    if title is None and isinstance(image, Micrograph) and image.source:
        return Path(str(image.source)).name
    return title


#: Longest edge of the image as drawn [px]: the figure is ~830 px wide at 110 dpi, so a larger image is
#: block-averaged by an integer factor before drawing. matplotlib needs ~24 bytes per drawn pixel
#: (a 4096^2 image took 1.6 GB to draw, benchmarks/memory.py); images up to this edge are drawn as they are.
MAX_DRAWN_PX = 1024


def _block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks (float32; rows/cols past the last whole block dropped)."""
    m, n = data.shape[0] // factor, data.shape[1] // factor
    out = np.empty((m, n), np.float32)
    for i in range(m):  # one strip of blocks at a time: no full-size temporary
        strip = np.asarray(data[i * factor : (i + 1) * factor, : n * factor], dtype=np.float32)
        out[i] = strip.reshape(factor, n, factor).mean(axis=(0, 2))
    return out


def _nice_length_nm(width_nm: float) -> float:
    """A round scale-bar length near a fifth of the field of view [nm]."""
    target = width_nm / 5
    base = 10 ** np.floor(np.log10(target))
    for m in (5, 2, 1):
        if m * base <= target:
            return float(m * base)
    return float(base)


def plot_overlay(
    image: np.ndarray | Micrograph,
    columns: Columns | None,
    labels: PhaseLabels | None,
    fractions: AreaFractions | None = None,
    *,
    pixel_size_nm: float | None = None,
    ax=None,
    title: str | None = None,
    dot_size: float | None = None,
    phases: dict | None = None,
):
    """Draw the colour-coded overlay of the phase labels on the image.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The image to show (preferably denoised). Not modified.
    columns : Columns or None
        Column positions ``rc`` (row, col) [px]; None draws the image only.
    labels : PhaseLabels or None
        From :func:`stem_pipeline.classify.classify_columns`; None draws the
        image (and columns, in grey) only.
    fractions : AreaFractions, optional
        Shown in the legend with the interval of the uniform fraction.
    pixel_size_nm : float, optional
        Pixel size [nm] for the scale bar; taken from a Micrograph or the
        columns when None; no scale bar without calibration.
    ax : matplotlib Axes, optional
        Axes to draw on; when None, a new pyplot figure (``plt.show()``
        displays it; close it with ``plt.close(fig)``) sized to the image, one
        image pixel per screen pixel up to :data:`MAX_FIGURE_IN`.
    title : str, optional
        Axes title; the file name of a Micrograph's ``source`` when None.
    dot_size : float, optional
        Marker area [points^2]; when None the marker diameter is
        :data:`MARKER_SPACING_FRACTION` of the median column spacing on screen.
    phases : dict, optional
        The phase-library stage's result (``PipelineResult.phases``): without
        two-phase ``labels``, the columns are coloured by phase and site, with
        the phase fractions in the legend (with ``labels``, the paper's colours stay).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes. The legend sits below the image; columns
        without labels are drawn in :data:`~stem_pipeline._types.UNLABELLED_COLOUR`.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    if isinstance(image, Micrograph):
        pixel_size_nm = image.pixel_size_nm if pixel_size_nm is None else pixel_size_nm
        data = image.data
    else:
        data = np.asarray(image)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    if pixel_size_nm is None and columns is not None:
        pixel_size_nm = columns.pixel_size_nm

    title = _default_title(image, title)
    if ax is None:  # a pyplot figure, so that plt.show() (and Jupyter) displays it
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figure_size_in(data.shape), dpi=DPI)
        ax = _image_axes(fig, data.shape)
    else:
        fig = ax.figure
    # Large images are drawn block-averaged (the region map subsampled), in the full image's pixel coordinates.
    factor = max(1, -(-max(data.shape) // MAX_DRAWN_PX))
    shown = _block_mean(data, factor) if factor > 1 else data
    extent = None if factor == 1 else (-0.5, shown.shape[1] * factor - 0.5, shown.shape[0] * factor - 0.5, -0.5)
    finite = shown[np.isfinite(shown)]
    lo, hi = np.percentile(finite, [0.5, 99.7]) if finite.size else (0.0, 1.0)
    del finite
    ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest", extent=extent)

    handles = []
    if labels is not None:
        region = np.asarray(labels.region_map)
        if region.shape == data.shape:
            cmap = ListedColormap([(0, 0, 0, 0), REGION_COLOURS[REGION_ORDERED], REGION_COLOURS[REGION_UNIFORM]])
            region = region[factor // 2 :: factor, factor // 2 :: factor][: shown.shape[0], : shown.shape[1]]
            ax.imshow(region, cmap=cmap, vmin=-0.5, vmax=2.5, interpolation="nearest", extent=extent)
    if columns is not None and len(columns):
        rc = columns.rc
        if dot_size is None:
            dot_size = _marker_area(ax, rc, data.shape)
        if labels is None and phases and len(phases.get("phase", ())) == len(rc) and any(phases["phase"]):
            handles = _draw_phase_sites(ax, rc, phases, dot_size)
        elif labels is None:  # refused (or not yet classified): every column, in a colour a grey image lacks
            ax.scatter(rc[:, 1], rc[:, 0], s=dot_size, c=UNLABELLED_COLOUR, alpha=MARKER_ALPHA, linewidths=0)
            handles = [Line2D([], [], ls="", marker="o", color=UNLABELLED_COLOUR, label="column (not classified)")]
        else:
            names = np.asarray(CONTRASTS)[np.asarray(labels.contrast)]
            for name in CONTRASTS:
                sel = names == name
                if sel.any():
                    ax.scatter(rc[sel, 1], rc[sel, 0], s=dot_size, c=COLOURS[name], alpha=MARKER_ALPHA, linewidths=0)
            ordered_label = "ordered (CsPbI3-like)"
            uniform_label = "uniform (PbI2/FAPbI3-like)"
            if fractions is not None and np.isfinite(fractions.uniform):
                lo_ci, hi_ci = fractions.uniform_ci95
                ordered_label += f": {fractions.ordered:.1%} [{1 - hi_ci:.1%}, {1 - lo_ci:.1%}]"
                uniform_label += f": {fractions.uniform:.1%} [{lo_ci:.1%}, {hi_ci:.1%}]"
            handles = [
                Line2D([], [], ls="", marker="o", color=COLOURS["bright"], label="bright column"),
                Line2D([], [], ls="", marker="o", color=COLOURS["dim"], label="dim column"),
                Line2D([], [], ls="", marker="o", color=COLOURS["uniform"], label="uniform column"),
                Patch(color=REGION_COLOURS[REGION_ORDERED][:3], alpha=0.5, label=ordered_label),
                Patch(color=REGION_COLOURS[REGION_UNIFORM][:3], alpha=0.5, label=uniform_label),
            ]
    if pixel_size_nm:
        length_nm = _nice_length_nm(data.shape[1] * pixel_size_nm)
        length_px = length_nm / pixel_size_nm
        m, n = data.shape
        x0, y0, h = 0.05 * n, 0.94 * m, max(0.012 * m, 2)
        ax.add_patch(Rectangle((x0, y0), length_px, h, color="white", ec="black", lw=0.5))
        text = f"{length_nm:g} nm"
        ax.text(
            x0 + length_px / 2,
            y0 - 0.01 * m,
            text,
            color="white",
            ha="center",
            va="bottom",
            fontsize=10,
            fontweight="bold",
        )
    if handles:  # below the image, never over it
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.01),
            ncol=min(len(handles), 3),
            fontsize=8,
            frameon=False,
        )
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=10)
    ax.set_xlim(-0.5, data.shape[1] - 0.5)
    ax.set_ylim(data.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return fig


#: Marker colours of (phase, site) pairs when the columns are coloured by the phase library (none of the
#: paper's green/red/purple, which keep their two-phase meaning).
SITE_COLOURS = ("#1f77b4", "#ff7f0e", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f", "#ffffff")


def _draw_phase_sites(ax, rc: np.ndarray, phases: dict, dot_size: float) -> list:
    """Columns coloured by (phase, site), and their legend handles with the phase fractions."""
    from matplotlib.lines import Line2D

    keys = np.char.add(np.char.add(np.asarray(phases["phase"], str), ": "), np.asarray(phases["site"], str))
    fractions = phases.get("phase_fractions") or {}
    handles = []
    for i, key in enumerate(dict.fromkeys(keys)):
        sel = keys == key
        colour = SITE_COLOURS[i % len(SITE_COLOURS)]
        ax.scatter(rc[sel, 1], rc[sel, 0], s=dot_size, c=colour, alpha=MARKER_ALPHA, linewidths=0)
        name = str(key).split(": ")[0]
        label = str(key).rstrip(": ")
        if name in fractions:
            f = fractions[name]
            label += f" ({f['fraction']:.1%} [{f['ci95'][0]:.1%}, {f['ci95'][1]:.1%}])"
        handles.append(Line2D([], [], ls="", marker="o", color=colour, label=label))
    return handles


def _image_axes(fig, shape: tuple[int, int]):
    """Axes filling the figure's width, with the title's room above and the legend's below."""
    height = fig.get_size_inches()[1]
    bottom, top = _LEGEND_IN / height, _TITLE_IN / height
    return fig.add_axes((0.0, bottom, 1.0, 1.0 - bottom - top))


def _marker_area(ax, rc: np.ndarray, shape: tuple[int, int]) -> float:
    """Marker area [points^2] whose diameter is :data:`MARKER_SPACING_FRACTION` of the column spacing on screen."""
    from scipy.spatial import cKDTree

    spacing_px = float(np.median(cKDTree(rc).query(rc, k=2)[0][:, 1])) if len(rc) > 1 else 5.0
    fig = ax.figure
    bbox = ax.get_position()  # in figure fractions; the image fills the axes' width or height
    axes_in = (bbox.width * fig.get_size_inches()[0], bbox.height * fig.get_size_inches()[1])
    pts_per_px = 72 * min(axes_in[0] / shape[1], axes_in[1] / shape[0])
    return float(np.clip((MARKER_SPACING_FRACTION * spacing_px * pts_per_px) ** 2, 1.0, 400.0))


def save_overlay(
    path: str | os.PathLike,
    image: np.ndarray | Micrograph,
    columns: Columns | None,
    labels: PhaseLabels | None,
    fractions: AreaFractions | None = None,
    *,
    pixel_size_nm: float | None = None,
    title: str | None = None,
    dpi: int = DPI,
    decorate: Callable[[Any], None] | None = None,
    phases: dict | None = None,
) -> Path:
    """Draw the overlay (see :func:`plot_overlay`) and write it to ``path`` atomically.

    The figure goes to a temporary file in the same folder first, then
    replaces ``path`` (``os.replace``), so a reader never sees half a file.

    Parameters
    ----------
    path : str or PathLike
        Output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    image, columns, labels, fractions, pixel_size_nm, title, phases
        As for :func:`plot_overlay`.
    dpi : int
        Resolution [dots per inch].
    decorate : callable, optional
        Called with the image axes before the file is written (e.g. the outlines of a field's dots).

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    shape = np.shape(image.data if isinstance(image, Micrograph) else image)
    # Not a pyplot figure: nothing to close, nothing kept after the file is written (batch workers).
    fig = Figure(figsize=figure_size_in(shape, dpi=dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = _image_axes(fig, shape)
    plot_overlay(image, columns, labels, fractions, pixel_size_nm=pixel_size_nm, title=title, ax=ax, phases=phases)
    if decorate is not None:
        decorate(ax)
    # Rendered once: ``bbox_inches="tight"`` would draw the whole figure twice (once to measure it), so the
    # tight box is measured without drawing the image; PNGs are written at zlib level 1, ~4x faster than
    # the default 6 for ~1.3x the bytes (the two took 0.55 of 0.9 s CPU of a 1024^2 overlay, benchmarks/process.py).
    bbox = fig.get_tightbbox(canvas.get_renderer()).padded(0.05)
    png = path.suffix.lower() == ".png"
    options: dict[str, Any] = {"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}} if png else {}
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches=bbox, **options))
