"""The colour-coded overlay figure (the paper's Fig. 2D, made automatically).

Green dots mark the columns of uniform (PbI2/FAPbI3-like) regions, red the
bright and purple the dim columns of ordered (CsPbI3-like) regions, over the
(denoised) image with a translucent region map, a scale bar in nm and a
legend with the area fractions and their 95 % interval below the image.
matplotlib is imported inside :func:`plot_overlay`, which makes a pyplot figure
(shown by ``plt.show()`` or Jupyter) or draws on given axes; :func:`save_overlay`
draws the same overlay straight into an RGB array and writes a PNG without
matplotlib (:mod:`stem_pipeline.report.overlay_png`). What is drawn (marker groups,
legend entries, scale bar, grey range) is decided once here, for both.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

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


def _inputs(
    image: np.ndarray | Micrograph, columns: Columns | None, pixel_size_nm: float | None, title: str | None
) -> tuple[np.ndarray, float | None, str | None]:
    """The image's data, its pixel size [nm] (argument, Micrograph, then columns) and the title."""
    if isinstance(image, Micrograph):
        pixel_size_nm = image.pixel_size_nm if pixel_size_nm is None else pixel_size_nm
        data = image.data
    else:
        data = np.asarray(image)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    if pixel_size_nm is None and columns is not None:
        pixel_size_nm = columns.pixel_size_nm
    return data, pixel_size_nm, _default_title(image, title)


def _shown(data: np.ndarray) -> tuple[np.ndarray, int, float, float]:
    """The image as drawn (block-averaged by the returned factor past :data:`MAX_DRAWN_PX`), and its grey range."""
    factor = max(1, -(-max(data.shape) // MAX_DRAWN_PX))
    shown = _block_mean(data, factor) if factor > 1 else data
    finite = shown[np.isfinite(shown)]
    lo, hi = np.percentile(finite, [0.5, 99.7]) if finite.size else (0.0, 1.0)
    return shown, factor, float(lo), float(hi if hi > lo else lo + 1)


def _marks(
    columns: Columns | None, labels: PhaseLabels | None, fractions: AreaFractions | None, phases: dict | None
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, Any, str]]]:
    """What the columns are drawn as: ``(colour, selection)`` per marker group, and the legend entries
    ``(kind, colour, text)`` (kind ``"marker"`` or ``"patch"``); both empty without columns."""
    if columns is None or not len(columns):
        return [], []
    if labels is None and phases and len(phases.get("phase", ())) == len(columns.rc) and any(phases["phase"]):
        return _phase_site_marks(phases)
    if labels is None:  # refused (or not yet classified): every column, in a colour a grey image lacks
        everything = np.ones(len(columns.rc), bool)
        return [(UNLABELLED_COLOUR, everything)], [("marker", UNLABELLED_COLOUR, "column (not classified)")]
    names = np.asarray(CONTRASTS)[np.asarray(labels.contrast)]
    groups = [(COLOURS[name], names == name) for name in CONTRASTS if (names == name).any()]
    ordered_label, uniform_label = "ordered (CsPbI3-like)", "uniform (PbI2/FAPbI3-like)"
    if fractions is not None and np.isfinite(fractions.uniform):
        lo_ci, hi_ci = fractions.uniform_ci95
        ordered_label += f": {fractions.ordered:.1%} [{1 - hi_ci:.1%}, {1 - lo_ci:.1%}]"
        uniform_label += f": {fractions.uniform:.1%} [{lo_ci:.1%}, {hi_ci:.1%}]"
    legend = [
        ("marker", COLOURS["bright"], "bright column"),
        ("marker", COLOURS["dim"], "dim column"),
        ("marker", COLOURS["uniform"], "uniform column"),
        ("patch", (*REGION_COLOURS[REGION_ORDERED][:3], 0.5), ordered_label),
        ("patch", (*REGION_COLOURS[REGION_UNIFORM][:3], 0.5), uniform_label),
    ]
    return groups, legend


def _scale_bar(shape: tuple[int, int], pixel_size_nm: float | None) -> tuple[float, float, float, float, str] | None:
    """The scale bar: its corner (x, y), length and height [image px] and its label; None without calibration."""
    if not pixel_size_nm:
        return None
    length_nm = _nice_length_nm(shape[1] * pixel_size_nm)
    m, n = shape
    return 0.05 * n, 0.94 * m, length_nm / pixel_size_nm, max(0.012 * m, 2), f"{length_nm:g} nm"


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
    """Draw the colour-coded overlay of the phase labels on the image (matplotlib).

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

    data, pixel_size_nm, title = _inputs(image, columns, pixel_size_nm, title)
    if ax is None:  # a pyplot figure, so that plt.show() (and Jupyter) displays it
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figure_size_in(data.shape), dpi=DPI)
        ax = _image_axes(fig, data.shape)
    # Large images are drawn block-averaged (the region map subsampled), in the full image's pixel coordinates.
    shown, factor, lo, hi = _shown(data)
    extent = None if factor == 1 else (-0.5, shown.shape[1] * factor - 0.5, shown.shape[0] * factor - 0.5, -0.5)
    ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", extent=extent)
    if labels is not None and np.shape(labels.region_map) == data.shape:
        cmap = ListedColormap([(0, 0, 0, 0), REGION_COLOURS[REGION_ORDERED], REGION_COLOURS[REGION_UNIFORM]])
        region = np.asarray(labels.region_map)[factor // 2 :: factor, factor // 2 :: factor]
        region = region[: shown.shape[0], : shown.shape[1]]
        ax.imshow(region, cmap=cmap, vmin=-0.5, vmax=2.5, interpolation="nearest", extent=extent)
    groups, legend = _marks(columns, labels, fractions, phases)
    if groups and columns is not None:
        rc = columns.rc
        dot_size = _marker_area(ax, rc, data.shape) if dot_size is None else dot_size
        for colour, sel in groups:
            ax.scatter(rc[sel, 1], rc[sel, 0], s=dot_size, c=colour, alpha=MARKER_ALPHA, linewidths=0)
    _draw_scale_bar(ax, _scale_bar(data.shape, pixel_size_nm), data.shape)
    if legend:  # below the image, never over it
        _draw_legend(ax, legend)
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=10)
    ax.set_xlim(-0.5, data.shape[1] - 0.5)
    ax.set_ylim(data.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return ax.figure


def _draw_scale_bar(ax, bar: tuple[float, float, float, float, str] | None, shape: tuple[int, int]) -> None:
    """The scale bar of :func:`_scale_bar` on matplotlib axes."""
    from matplotlib.patches import Rectangle

    if bar is None:
        return
    x0, y0, length_px, h, text = bar
    ax.add_patch(Rectangle((x0, y0), length_px, h, color="white", ec="black", lw=0.5))
    ax.text(
        x0 + length_px / 2,
        y0 - 0.01 * shape[0],
        text,
        color="white",
        ha="center",
        va="bottom",
        fontsize=10,
        fontweight="bold",
    )


def _draw_legend(ax, legend: list[tuple[str, Any, str]]) -> None:
    """The legend entries of :func:`_marks` below matplotlib axes."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], ls="", marker="o", color=colour, label=text)
        if kind == "marker"
        else Patch(color=colour[:3], alpha=colour[3], label=text)
        for kind, colour, text in legend
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.01),
        ncol=min(len(handles), 3),
        fontsize=8,
        frameon=False,
    )


#: Marker colours of (phase, site) pairs when the columns are coloured by the phase library (none of the
#: paper's green/red/purple, which keep their two-phase meaning).
SITE_COLOURS = ("#1f77b4", "#ff7f0e", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f", "#ffffff")


def _phase_site_marks(phases: dict) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, Any, str]]]:
    """Columns coloured by (phase, site): the marker groups and legend entries (with the phase fractions)."""
    keys = np.char.add(np.char.add(np.asarray(phases["phase"], str), ": "), np.asarray(phases["site"], str))
    fractions = phases.get("phase_fractions") or {}
    groups, legend = [], []
    for i, key in enumerate(dict.fromkeys(keys)):
        colour = SITE_COLOURS[i % len(SITE_COLOURS)]
        name = str(key).split(": ")[0]
        label = str(key).rstrip(": ")
        if name in fractions:
            f = fractions[name]
            label += f" ({f['fraction']:.1%} [{f['ci95'][0]:.1%}, {f['ci95'][1]:.1%}])"
        groups.append((colour, keys == key))
        legend.append(("marker", colour, label))
    return groups, legend


def _image_axes(fig, shape: tuple[int, int]):
    """Axes filling the figure's width, with the title's room above and the legend's below."""
    height = fig.get_size_inches()[1]
    bottom, top = _LEGEND_IN / height, _TITLE_IN / height
    return fig.add_axes((0.0, bottom, 1.0, 1.0 - bottom - top))


def _spacing_px(rc: np.ndarray) -> float:
    """Median nearest-neighbour distance of the columns [px] (5 for a single column)."""
    from scipy.spatial import cKDTree

    return float(np.median(cKDTree(rc).query(rc, k=2)[0][:, 1])) if len(rc) > 1 else 5.0


def _marker_area(ax, rc: np.ndarray, shape: tuple[int, int]) -> float:
    """Marker area [points^2] whose diameter is :data:`MARKER_SPACING_FRACTION` of the column spacing on screen."""
    fig = ax.figure
    bbox = ax.get_position()  # in figure fractions; the image fills the axes' width or height
    axes_in = (bbox.width * fig.get_size_inches()[0], bbox.height * fig.get_size_inches()[1])
    pts_per_px = 72 * min(axes_in[0] / shape[1], axes_in[1] / shape[0])
    return float(np.clip((MARKER_SPACING_FRACTION * _spacing_px(rc) * pts_per_px) ** 2, 1.0, 400.0))


def save_overlay(
    path: str | os.PathLike,
    image: np.ndarray | Micrograph,
    columns: Columns | None,
    labels: PhaseLabels | None,
    fractions: AreaFractions | None = None,
    **options: Any,
) -> Path:
    """Draw the overlay as :func:`plot_overlay` does and write it to ``path`` as a PNG, atomically.

    Drawn straight into an RGB array (:func:`stem_pipeline.report.overlay_png.render_overlay`), not
    through matplotlib (whose import and render were the largest output cost, benchmarks/process.py).
    The file goes to a temporary file in the same folder first, then replaces ``path``
    (``os.replace``), so a reader never sees half a file.

    Parameters
    ----------
    path : str or PathLike
        The PNG file.
    image, columns, labels, fractions
        As for :func:`plot_overlay`.
    **options
        Keyword arguments of :func:`~stem_pipeline.report.overlay_png.render_overlay`:
        ``pixel_size_nm``, ``title``, ``phases`` (as for :func:`plot_overlay`), ``dpi``, and
        ``dots``, a field's dot labels and ``dots.csv`` records, outlined and numbered.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.png`` (for PDF or SVG, ``plot_overlay(...).savefig(path)``).
    """
    from .overlay_png import render_overlay
    from .raster import save_png

    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"{path}: save_overlay writes PNG files; for PDF or SVG use plot_overlay(...).savefig(path)")
    return save_png(path, render_overlay(image, columns, labels, fractions, **options))
