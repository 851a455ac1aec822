"""The colour-coded overlay figure (the paper's Fig. 2D, made automatically).

Green dots mark the columns of uniform (PbI2/FAPbI3-like) regions, red the
bright and purple the dim columns of ordered (CsPbI3-like) regions, over the
(denoised) image with a translucent region map, a scale bar in nm and a
legend with the area fractions and their 95 % interval. matplotlib is
imported inside the functions (Agg backend, no display needed).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .._types import CONTRASTS, REGION_ORDERED, REGION_UNIFORM, AreaFractions, Columns, Micrograph, PhaseLabels

__all__ = ["plot_overlay", "save_overlay"]

#: Dot colours by contrast name (the paper's: red bright, purple dim, green uniform).
COLOURS = {"bright": "#e41a1c", "dim": "#8e44ad", "uniform": "#2ca02c"}
#: Translucent region colours (ordered, uniform).
REGION_COLOURS = {REGION_ORDERED: (0.85, 0.25, 0.55, 0.22), REGION_UNIFORM: (0.17, 0.63, 0.17, 0.22)}


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
        Axes to draw on; a new figure when None.
    title : str, optional
        Axes title.
    dot_size : float, optional
        Marker area [points^2]; scaled with the column density when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
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

    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 7.5 * data.shape[0] / data.shape[1] + 0.4), dpi=110)
        ax = fig.add_subplot(1, 1, 1)
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
            # Marker diameter about 0.45 of the column spacing on screen.
            from scipy.spatial import cKDTree

            spacing = float(np.median(cKDTree(rc).query(rc, k=2)[0][:, 1])) if len(rc) > 1 else 5.0
            pts_per_px = 72 * fig.get_size_inches()[0] * 0.9 / data.shape[1]
            dot_size = float(np.clip((0.45 * spacing * pts_per_px) ** 2, 1.0, 80.0))
        if labels is None:
            ax.scatter(rc[:, 1], rc[:, 0], s=dot_size, c="0.7", linewidths=0)
        else:
            names = np.asarray(CONTRASTS)[np.asarray(labels.contrast)]
            for name in CONTRASTS:
                sel = names == name
                if sel.any():
                    ax.scatter(rc[sel, 1], rc[sel, 0], s=dot_size, c=COLOURS[name], linewidths=0)
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
        ax.text(x0 + length_px / 2, y0 - 0.01 * m, text, color="white", ha="center", va="bottom", fontsize=10,
                fontweight="bold")
    if handles:
        if data.shape[1] > 2 * data.shape[0]:  # a wide strip: the legend would hide it, put it below
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2, fontsize=8)
        else:
            ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.8)
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=10)
    ax.set_xlim(-0.5, data.shape[1] - 0.5)
    ax.set_ylim(data.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return fig


def save_overlay(
    path: str | os.PathLike,
    image: np.ndarray | Micrograph,
    columns: Columns | None,
    labels: PhaseLabels | None,
    fractions: AreaFractions | None = None,
    *,
    pixel_size_nm: float | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Draw the overlay (see :func:`plot_overlay`) and write it to ``path`` atomically.

    The figure goes to a temporary file in the same folder first, then
    replaces ``path`` (``os.replace``), so a reader never sees half a file.

    Parameters
    ----------
    path : str or PathLike
        Output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    image, columns, labels, fractions, pixel_size_nm, title
        As for :func:`plot_overlay`.
    dpi : int
        Resolution [dots per inch].

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    fig = plot_overlay(image, columns, labels, fractions, pixel_size_nm=pixel_size_nm, title=title)
    FigureCanvasAgg(fig)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", pad_inches=0.05))
