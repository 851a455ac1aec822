"""Dots on the overlay: every dot outlined and numbered, refused dots drawn with their reason.

A dot whose phases are not the paper's two-phase case (:data:`PAPER_PHASES`) is also labelled with its
phase (or its phases and their fractions) under its number.

:func:`dot_marks` says what is drawn; :func:`draw_dots` adds it to axes that
:func:`stem_pipeline.report.overlay.plot_overlay` drew; :func:`save_field_overlay` draws a field's
overlay PNG with its dots (without matplotlib) and writes it atomically.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._atomic import atomic_write
from .._types import PHASE_DOT_PREFIXES

__all__ = [
    "PAPER_PHASES",
    "DotMark",
    "dot_marks",
    "dot_phase_label",
    "dot_statistics",
    "draw_dots",
    "save_dot_histograms",
    "save_field_overlay",
]

#: Outline colours by dot status.
STATUS_COLOURS = {"ok": "#ffd92f", "refused": "#ff7f00", "overview": "#66c2a5"}
#: The library phases of the paper's two-phase case (its ordered and uniform phases): a dot of only these
#: is drawn as before the phase library (number only; the columns' colours say the rest).
PAPER_PHASES = ("CsPbI3 [001]", "uniform 0.32 nm")


def dot_phase_label(record: dict) -> str | None:
    """The phase label of a dot on the overlay, from its ``dots.csv`` record; None for the paper's case.

    Parameters
    ----------
    record : dict
        A ``dots.csv`` record, with its ``phase_fraction:NAME`` columns where the phase-library stage ran.

    Returns
    -------
    str or None
        The phase's name when one phase covers the dot, else one ``NAME f%`` line per phase (largest
        first); None without phase fractions or when every phase is one of :data:`PAPER_PHASES`.
    """
    prefix = PHASE_DOT_PREFIXES[0]
    shares = {k[len(prefix) :]: v for k, v in record.items() if k.startswith(prefix) and v}
    if not shares or set(shares) <= set(PAPER_PHASES):
        return None
    if len(shares) == 1:
        return next(iter(shares))
    return "\n".join(f"{name} {f:.0%}" for name, f in sorted(shares.items(), key=lambda kv: -kv[1]))


class DotMark(NamedTuple):
    """How one dot is drawn on the overlay (image pixel coordinates)."""

    colour: str
    lines: list[np.ndarray]  # outline pieces, (K, 2) (row, col)
    dashed: bool  # refused dots
    x_px: float
    y_px: float
    number: str
    phase: str | None  # :func:`dot_phase_label`


def dot_marks(labels: np.ndarray, records: list[dict]) -> tuple[list[DotMark], str | None]:
    """What :func:`draw_dots` and the PNG overlay draw for a field's dots: one mark per dot, and the note
    listing the refused dots with their reasons (None when none was refused).

    Parameters
    ----------
    labels : (M, N) ndarray of int
        0 on the support, ``k`` on dot ``k``.
    records : list of dict
        One ``dots.csv`` record per dot (``dot``, ``x_px``, ``y_px``, ``status``, ``message``).
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    marks, notes = [], []
    boxes = ndimage.find_objects(labels)
    for rec in records:
        box = boxes[rec["dot"] - 1] if rec["dot"] <= len(boxes) else None
        lines = []
        if box is not None:
            # Traced on the dot's own box (a whole-image contour per dot took ~8 image copies each at 4096^2).
            mine = np.pad(labels[box] == rec["dot"], 1).astype(np.float32)
            offset = np.array([box[0].start - 1, box[1].start - 1])
            lines = [line + offset for line in find_contours(mine, 0.5)]
        refused = rec["status"] == "refused"
        colour = STATUS_COLOURS.get(rec["status"], "white")
        marks.append(DotMark(colour, lines, refused, rec["x_px"], rec["y_px"], str(rec["dot"]), dot_phase_label(rec)))
        if refused:
            notes.append(f"dot {rec['dot']}: {rec['message']}")
    if not notes:
        return marks, None
    text = "\n".join(textwrap.shorten(n, 110) for n in notes[:12])
    if len(notes) > 12:
        text += f"\n... and {len(notes) - 12} more (dots.csv)"
    return marks, "refused " + text


def draw_dots(ax, labels: np.ndarray, records: list[dict]) -> None:
    """Outline and number every dot on ``ax``; refused dots dashed, with their reason below the image.

    A dot whose phases are not the paper's two-phase case gets its phase under its number (:func:`dot_phase_label`).

    Parameters
    ----------
    ax : matplotlib Axes
        Axes showing the image in pixel coordinates (as :func:`plot_overlay` draws it).
    labels : (M, N) ndarray of int
        0 on the support, ``k`` on dot ``k``.
    records : list of dict
        One ``dots.csv`` record per dot (``dot``, ``x_px``, ``y_px``, ``status``, ``message``).
    """
    marks, note = dot_marks(labels, records)
    for mark in marks:
        for line in mark.lines:
            ax.plot(line[:, 1], line[:, 0], color=mark.colour, linewidth=1.0, linestyle="--" if mark.dashed else "-")
        ax.text(
            mark.x_px,
            mark.y_px,
            mark.number,
            color=mark.colour,
            fontsize=11,
            fontweight="bold",
            ha="center",
            va="center",
        )
        if mark.phase is not None:
            ax.annotate(
                mark.phase,
                (mark.x_px, mark.y_px),
                xytext=(0, -9),
                textcoords="offset points",
                color=mark.colour,
                fontsize=8,
                ha="center",
                va="top",
            )
    if note is not None:
        ax.text(
            0.0, -0.01, note, transform=ax.transAxes, ha="left", va="top", fontsize=7, color=STATUS_COLOURS["refused"]
        )


def save_field_overlay(
    path: str | os.PathLike, field, display: np.ndarray, *, title: str | None = None, dpi: int = 110
) -> Path:
    """The overlay of a field (columns, labels, field fractions) with its dots, written atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file (format from the suffix).
    field : FieldResult
        From :func:`stem_pipeline.field.analyze_field`.
    display : (M, N) ndarray
        The image to draw on.
    title : str, optional
        Axes title.
    dpi : int
        Resolution [dots per inch].
    """
    from .overlay import save_overlay

    result = field.result
    return save_overlay(
        path,
        display,
        result.columns,
        result.labels,
        result.fractions,
        pixel_size_nm=result.micrograph.pixel_size_nm,
        title=title,
        dpi=dpi,
        dots=(field.labels, field.records()),
    )


def dot_statistics(records: list[dict]) -> dict:
    """Counts by status and the edge length's mean and sd over the dots that were not cut by the frame.

    Parameters
    ----------
    records : list of dict
        ``dots.csv`` records (of one image or of a whole run).

    Returns
    -------
    dict
        ``n_dots``, ``counts`` (per status), ``n_sized`` (dots wholly inside the frame with an edge
        length), ``edge_nm_mean``, ``edge_nm_sd`` (None for fewer than 1 / 2 sized dots).
    """
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    edges = np.array([r["edge_nm"] for r in records if r.get("edge_nm") is not None and not r["touches_border"]], float)
    return {
        "n_dots": len(records),
        "counts": counts,
        "n_sized": int(edges.size),
        "edge_nm_mean": round(float(edges.mean()), 3) if edges.size else None,
        "edge_nm_sd": round(float(edges.std(ddof=1)), 3) if edges.size > 1 else None,
    }


def save_dot_histograms(path: str | os.PathLike, records: list[dict]) -> Path:
    """Histograms of the dots' edge lengths (mean +- sd) and of their uniform fractions, as one PNG (atomic).

    Parameters
    ----------
    path : str or PathLike
        The PNG file.
    records : list of dict
        ``dots.csv`` records.

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stats = dot_statistics(records)
    edges = [r["edge_nm"] for r in records if r.get("edge_nm") is not None and not r["touches_border"]]
    fractions = [r["uniform_fraction"] for r in records if r.get("uniform_fraction") is not None]
    fig = Figure(figsize=(9.0, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.hist(edges, bins=20, color="tab:blue", edgecolor="black")
    title = f"{len(edges)} dots inside the frame"
    if stats["edge_nm_sd"] is not None:
        title += f": {stats['edge_nm_mean']:.1f} +- {stats['edge_nm_sd']:.1f} nm"
    ax1.set_title(title, fontsize=10)
    ax1.set_xlabel("edge length [nm]")
    ax1.set_ylabel("dots")
    ax2.hist(fractions, bins=np.linspace(0.0, 1.0, 21), color="tab:green", edgecolor="black")
    ax2.set_xlim(0.0, 1.0)
    ax2.set_title(f"{len(fractions)} analysed dots", fontsize=10)
    ax2.set_xlabel("uniform (PbI2/FAPbI3-like) area fraction per dot")
    fig.tight_layout()
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
