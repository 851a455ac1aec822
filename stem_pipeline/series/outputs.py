"""Writing a series analysis: ``series.csv``, ``series.json``, ``columns.csv`` and the two figures.

Every file is written atomically (:mod:`stem_pipeline._atomic`); nothing is
written outside the output folder. x = column, y = row in files and figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_write, atomic_write_text
from ._core import SeriesResult, one_phase_side
from .track import NOT_SEEN

SERIES_CSV, SERIES_JSON, COLUMNS_CSV = "series.csv", "series.json", "columns.csv"
CONVERSION_MAP_PNG, FRACTION_PNG = "conversion_map.png", "fraction_vs_dose.png"


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def series_table(result: SeriesResult):
    """One row per frame (the columns of ``series.csv``) as a pandas DataFrame."""
    import pandas as pd

    in_e = result.dose_unit == "e/A^2"
    return pd.DataFrame(
        {
            "frame": np.arange(len(result.status)),
            "cumulative_dose_e_per_A2": result.cumulative_dose if in_e else np.nan,
            "uniform_fraction": result.uniform_fraction,
            "uniform_ci95_lo": result.uniform_ci95[:, 0],
            "uniform_ci95_hi": result.uniform_ci95[:, 1],
            "n_columns": result.n_columns,
            "drift_x_px": result.drift_rc_px[:, 1],
            "drift_y_px": result.drift_rc_px[:, 0],
            "status": result.status,
            "in_fit": result.in_fit,
            "bound_in_fit": result.one_phase,  # a one-phase read: a bound at the detection limit in the fit
            "frame_uniform_fraction": result.frame_uniform_fraction,  # the frame's own read (not pooled)
            "reversals": result.history.reversals_per_frame,
        }
    )


def columns_table(result: SeriesResult):
    """One row per tracked column: id, position, labels per frame, conversion frame and dose, reversals."""
    import pandas as pd

    letters = np.array(["o", "u"])
    lab = result.history.label.T
    text = ["".join("-" if v == NOT_SEEN else letters[v] for v in row) for row in lab]
    change = result.change_points.frame
    n_frames = len(result.status)
    return pd.DataFrame(
        {
            "id": np.arange(len(result.reference_rc)),
            "x_px": result.reference_rc[:, 1],
            "y_px": result.reference_rc[:, 0],
            "labels": text,  # one letter per frame: o ordered, u uniform, - not seen
            "initially_uniform": change == 0,
            # the most likely first uniform frame over the whole series (-1: not converted, or never seen)
            "conversion_frame": np.where((change > 0) & (change < n_frames), change, -1),
            "conversion_dose": result.conversion_dose,
            "n_reversals": result.history.n_reversals,
        }
    )


def series_summary(result: SeriesResult) -> dict:
    """The content of ``series.json``."""
    fit = result.fit
    in_e = result.dose_unit == "e/A^2"
    summary = {
        "source": result.source,
        "pixel_size_nm": result.pixel_size_nm,
        "dose_unit": result.dose_unit,
        "dose_source": result.dose_source,
        "dose_per_frame": result.dose_per_frame,
        "dose_convention": "cumulative dose at the middle of each frame's exposure, (k + 0.5) * dose per frame",
        "zero_dose_uniform_fraction": fit.f0 if fit else None,
        "zero_dose_ci95": list(fit.f0_ci95) if fit else None,
        "critical_dose_e_per_A2": fit.critical_dose if fit and in_e else None,
        "critical_dose_e_per_A2_ci95": list(fit.critical_dose_ci95) if fit and in_e else None,
        "critical_dose_frames": fit.critical_dose if fit and not in_e else None,
        "critical_dose_frames_ci95": list(fit.critical_dose_ci95) if fit and not in_e else None,
        "critical_dose_constrained": fit.critical_dose_constrained if fit else None,
        "model": fit.model if fit else None,
        "uniform_fraction_pooled": result.pooled,
        "models": [f.to_dict() for f in result.fits],
        "drift_velocity_px_per_frame": {
            "x": _finite(result.drift_velocity_rc_px[1]),
            "y": _finite(result.drift_velocity_rc_px[0]),
        },
        "reference_frame": result.reference_frame,
        "n_columns_tracked": len(result.reference_rc),
        "columns_converted": int((result.conversion_dose > 0).sum()),
        "reversals": {
            "count": result.n_reversals,
            "columns": int((result.history.n_reversals > 0).sum()),
            "flag": "classification errors: the beam converts ordered to uniform only" if result.n_reversals else None,
        },
        "frames": [
            {
                "frame": k,
                "status": s,
                "message": m,
                "uniform_fraction": _finite(result.uniform_fraction[k]),
                "frame_uniform_fraction": _finite(result.frame_uniform_fraction[k]),
                "in_fit": bool(result.in_fit[k]),
                "bound_in_fit": bool(result.one_phase[k]),
            }
            for k, (s, m) in enumerate(zip(result.status, result.message))
        ],
    }
    return summary


def plot_fraction_vs_dose(result: SeriesResult):
    """The data with their intervals, the fitted curve, its 95 % band and f0 at zero dose."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    dose, frac, ci = result.cumulative_dose, result.uniform_fraction, result.uniform_ci95
    ok = result.in_fit
    ax.errorbar(
        dose[ok],
        frac[ok],
        yerr=[frac[ok] - ci[ok, 0], ci[ok, 1] - frac[ok]],
        fmt="o",
        color="k",
        ms=4,
        capsize=2,
        label="frames (pooled over the series, 95 % interval)"
        if result.pooled
        else "frames (each frame's own read, 95 % interval)",
    )
    if result.pooled:
        own = result.frame_uniform_fraction
        ax.plot(dose[ok], own[ok], "x", color="0.55", ms=4, label="each frame's own read")
    sides = one_phase_side(result.frame_uniform_fraction, result.one_phase)
    for side, marker, end, text in ((1, "v", 1, "at most"), (-1, "^", 0, "at least")):
        bound = sides == side
        if bound.any():
            ax.plot(
                dose[bound],
                result.frame_uniform_ci95[bound, end],
                marker,
                mfc="none",
                mec="k",
                ms=6,
                linestyle="none",
                label=f"one-phase read: {text} the detection limit (a bound in the fit)",
            )
    fit = result.fit
    unit = "e/Å²" if result.dose_unit == "e/A^2" else "frames"
    if fit is not None:
        grid = np.linspace(0, float(np.max(dose)) * 1.05, 200)
        lo, hi = fit.band(grid)
        ax.fill_between(grid, lo, hi, color="C0", alpha=0.25, label="fit, 95 % band")
        ax.plot(grid, fit.curve(grid), color="C0", label=f"fit: {fit.model}")
        ax.errorbar(
            [0],
            [fit.f0],
            yerr=[[fit.f0 - fit.f0_ci95[0]], [fit.f0_ci95[1] - fit.f0]],
            fmt="s",
            color="C3",
            capsize=3,
            label="zero-dose fraction f0",
        )
        ax.set_title(
            f"f0 = {fit.f0:.3f} [{fit.f0_ci95[0]:.3f}, {fit.f0_ci95[1]:.3f}];  "
            f"Dc = {fit.critical_dose:.3g} [{fit.critical_dose_ci95[0]:.3g}, {fit.critical_dose_ci95[1]:.3g}] {unit}",
            fontsize=9,
        )
    else:
        ax.set_title("too few frames with fractions to fit (5, with 3 values, are needed)", fontsize=9)
    ax.set_xlabel(f"cumulative dose [{unit}]")
    ax.set_ylabel("uniform (PbI2/FAPbI3-like) area fraction")
    ax.set_ylim(0, 1)
    ax.set_xlim(left=-0.02 * max(float(np.max(dose)), 1e-9))
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_conversion_map(result: SeriesResult):
    """The registered mean image with every column coloured by the dose at which it converted."""
    from matplotlib.figure import Figure

    image = result.reference_image
    fig = Figure(figsize=(6.5, 6.5 * image.shape[0] / image.shape[1] + 0.3), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = np.percentile(image, [0.5, 99.7])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    rc, dose, hist = result.reference_rc, result.conversion_dose, result.history
    initially_uniform = dose == 0
    unit = "e/Å²" if result.dose_unit == "e/A^2" else "frames"
    converted = dose > 0
    never = np.isnan(dose) & (result.change_points.frame >= 0)
    size = 10.0
    ax.scatter(
        rc[initially_uniform, 1],
        rc[initially_uniform, 0],
        s=size,
        c="#2ca02c",
        linewidths=0,
        label="uniform from the first frame",
    )
    ax.scatter(
        rc[never, 1],
        rc[never, 0],
        s=size,
        facecolors="none",
        edgecolors="0.85",
        linewidths=0.6,
        label="not converted (ordered in the last frame seen)",
    )
    if converted.any():
        sc = ax.scatter(rc[converted, 1], rc[converted, 0], s=size, c=dose[converted], cmap="plasma", linewidths=0)
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02, label=f"dose at conversion ordered → uniform [{unit}]")
    rev = hist.n_reversals > 0
    if rev.any():
        ax.scatter(
            rc[rev, 1],
            rc[rev, 0],
            s=2 * size,
            marker="x",
            c="white",
            linewidths=0.7,
            label=f"reversal uniform → ordered ({int(rev.sum())} columns; classification error)",
        )
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)
    ax.set_axis_off()
    ax.set_title(f"{len(rc)} columns tracked, {int(converted.sum())} converted", fontsize=9)
    return fig


def _save_figure(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", pad_inches=0.05))


def write_series(result: SeriesResult, out: str | os.PathLike) -> dict[str, Path]:
    """Write every output of a series analysis into the folder ``out`` (created if needed).

    Parameters
    ----------
    result : SeriesResult
        From :func:`analyze_series`.
    out : str or PathLike
        Output folder.

    Returns
    -------
    dict of str to Path
        The written files by name.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (SERIES_CSV, SERIES_JSON, COLUMNS_CSV, CONVERSION_MAP_PNG, FRACTION_PNG)}
    frame_table, col_table = series_table(result), columns_table(result)
    atomic_write(paths[SERIES_CSV], lambda tmp: frame_table.to_csv(tmp, index=False, float_format="%.6g"))
    atomic_write(paths[COLUMNS_CSV], lambda tmp: col_table.to_csv(tmp, index=False, float_format="%.6g"))
    atomic_write_text(paths[SERIES_JSON], json.dumps(series_summary(result), indent=2) + "\n")
    _save_figure(plot_conversion_map(result), paths[CONVERSION_MAP_PNG])
    _save_figure(plot_fraction_vs_dose(result), paths[FRACTION_PNG])
    return paths
