"""The batch report: ``report.csv``, ``report.json`` and ``report.html`` over many images.

Every file is written atomically. The HTML report (:mod:`~stem_pipeline.report.html`) links
each image's thumbnail and overlay by relative paths, so the output folder can
be moved or shared as a whole.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import math
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("stem_pipeline")

REPORT_CSV, REPORT_JSON, REPORT_HTML = "report.csv", "report.json", "report.html"
#: One row per dot of every image (``file`` first, then the per-image ``dots.csv`` columns).
DOTS_CSV = "dots.csv"
#: Histograms of the dots' edge lengths and per-dot uniform fractions over the run.
DOT_HISTOGRAM = "dot_histograms.png"
#: The histogram of per-image uniform fractions linked from the HTML report.
HISTOGRAM = "uniform_fraction_histogram.png"
#: Fewest values that get a histogram: one value's histogram shows nothing the table does not, and drawing
#: it (matplotlib's import and two figures) took 0.3 of 4.4 s CPU of a one-image run (benchmarks/process.py).
MIN_HISTOGRAM_VALUES = 2
#: Columns of ``report.csv``, one row per input image.
CSV_COLUMNS = (
    "file",
    "folder",
    "status",
    "error",
    "message",
    "n_columns",
    "ordered_fraction",
    "uniform_fraction",
    "uniform_ci95_low",
    "uniform_ci95_high",
    "ci_method",
    "crystal_area_nm2",
    "pixel_size_nm",
    "config_hash",
    "input_hash",
    "skipped",
    "time_s",
    "calibration_status",
)
#: Calibration statuses of the phase-library stage whose pixel size is not the file's (left out of batch means).
UNCALIBRATED = ("uncalibrated_implied", "uncalibrated_ambiguous")
_EXTRA_VERSIONS = ("dask", "distributed", "matplotlib")


def save_thumbnail(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    max_size_px: int = 192,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> Path:
    """Write a small grey-scale PNG of ``image`` atomically.

    Parameters
    ----------
    path : str or PathLike
        The PNG file.
    image : (M, N) ndarray or Micrograph
        The image (not modified).
    max_size_px : int
        Longest edge of the thumbnail [px]; smaller images keep their size.
    percentiles : (float, float)
        Intensity percentiles mapped to black and white.

    Returns
    -------
    Path
        ``path``.
    """
    from skimage.transform import resize

    from .raster import save_png

    data = np.asarray(getattr(image, "data", image), dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    # Images with an edge of twice the thumbnail's or more are block-averaged to about the thumbnail's edge
    # before the anti-aliased resize, which scikit-image does by smoothing the whole image in float64 (2+ float32
    # image copies; 0.024 s CPU of benchmarks/process.py's 1024^2 dot, 0.008 s so).
    factor = min(max(data.shape) // max_size_px, min(data.shape))  # a strip keeps a row of blocks
    if factor > 1:
        from .overlay import _block_mean

        data = _block_mean(data, factor)
    scale = min(1.0, max_size_px / max(data.shape))
    if scale < 1.0:
        shape = tuple(max(1, round(s * scale)) for s in data.shape)
        data = resize(data, shape, anti_aliasing=True, preserve_range=True).astype(np.float32)
    finite = data[np.isfinite(data)]
    lo, hi = np.percentile(finite, percentiles) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(data, nan=lo) - lo) / max(float(hi - lo), 1e-12), 0.0, 1.0)
    return save_png(path, np.round(255 * scaled).astype(np.uint8))  # grey PNG (Pillow: no matplotlib import)


def batch_statistics(
    rows: Sequence[dict[str, Any]], *, confidence: float = 0.95, include_uncalibrated: bool = False
) -> dict[str, Any]:
    """Counts of statuses and the batch means of the uniform fraction and of the phase fractions, with intervals.

    The mean is the unweighted mean over the images with status ``"ok"`` of
    their uniform fractions; its interval is the Student-t interval of that
    mean (``mean +- t_{(1+confidence)/2, n-1} * sd / sqrt(n)``), i.e. it
    describes the image-to-image spread, not the per-image counting
    uncertainty (given per image as ``uniform_fraction_ci95``). The
    crystal-area-weighted pooled fraction is given beside it. The phase-library
    fractions are averaged the same way, phase by phase, over the images with
    phase fractions (an image without a phase counts 0 for it).

    Parameters
    ----------
    rows : sequence of dict
        Image summaries (the output of :func:`stem_pipeline.batch.run_batch`).
    confidence : float
        Confidence level of the interval, in (0, 1).
    include_uncalibrated : bool
        Let images without a pixel size (``pixel_size_nm`` null, or a
        calibration check ``uncalibrated_*``: the pixel size their matched phase
        implies) into the means; by default they are left out, counted in
        ``n_uncalibrated_left_out`` (uniform fraction) and listed in
        ``uncalibrated_left_out`` (phase fractions), and the ``method`` says so.

    Returns
    -------
    dict
        ``n_images``, ``counts`` (per status), ``n_skipped``, ``n_fractions``,
        ``mean_uniform_fraction``, ``mean_ci`` (``[lo, hi]``, None for fewer
        than two images), ``sd_uniform_fraction``, ``pooled_uniform_fraction``,
        ``confidence``, ``method`` (a sentence saying how), ``include_uncalibrated``,
        ``mean_phase_fractions`` ({phase: {"mean", "ci", "sd"}}), ``n_phase_images``,
        ``uncalibrated_left_out`` (files of the images with phase fractions left out)
        and ``phase_method``.
    """
    # The t quantile (in _mean_interval) from scipy.special (already loaded with scipy.ndimage), not scipy.stats:
    # its import took ~0.3 s CPU of a one-image ``analyze`` process (benchmarks/process.py); the values are the same.
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    counts = {status: 0 for status in ("ok", "no_crystal", "error")}
    for row in rows:
        counts[row.get("status", "error")] = counts.get(row.get("status", "error"), 0) + 1
    calibrated = [r for r in rows if include_uncalibrated or not ("pixel_size_nm" in r and r["pixel_size_nm"] is None)]
    fractions = [f for r in calibrated if r.get("status") == "ok" and (f := _uniform(r)) is not None]
    left_out = sum(1 for r in rows if r.get("status") == "ok" and _uniform(r) is not None) - len(fractions)
    n = len(fractions)
    mean, sd, ci = _mean_interval(fractions, confidence)
    areas: list[tuple[float, float]] = []
    for r in calibrated:
        area, fraction = r.get("crystal_area_nm2"), _uniform(r)
        if r.get("status") == "ok" and area and fraction is not None:
            areas.append((float(area), fraction))
    pooled = sum(a * f for a, f in areas) / sum(a for a, _ in areas) if areas else None
    return {
        "n_images": len(rows),
        "counts": counts,
        "n_skipped": sum(bool(r.get("skipped")) for r in rows),
        "n_fractions": n,
        "n_uncalibrated_left_out": left_out,
        "mean_uniform_fraction": mean,
        "mean_ci": ci,
        "sd_uniform_fraction": sd,
        "pooled_uniform_fraction": pooled,
        "confidence": confidence,
        "method": (
            f"unweighted mean over the {n} images with status ok of their uniform fractions; "
            f"{confidence:.0%} Student-t interval of the mean (image-to-image spread, n-1 = {max(n - 1, 0)} "
            "degrees of freedom; needs at least 2 images); pooled = weighted by crystal area"
            + (f"; {left_out} uncalibrated image(s) left out" if left_out else "")
            + ("; uncalibrated images included (--include-uncalibrated)" if include_uncalibrated else "")
        ),
        "include_uncalibrated": include_uncalibrated,
        **_phase_statistics(rows, confidence, include_uncalibrated),
    }


def _mean_interval(values: Sequence[float], confidence: float) -> tuple[float | None, float | None, list | None]:
    """Mean, sd and the Student-t interval of the mean (clipped to [0, 1]) of ``values``; None where undefined."""
    from scipy.special import stdtrit

    x = np.asarray(values, dtype=np.float64)
    n = x.size
    mean = float(x.mean()) if n else None
    sd = float(x.std(ddof=1)) if n > 1 else None
    if mean is None or sd is None:
        return mean, sd, None
    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)
    return mean, sd, [max(0.0, mean - half), min(1.0, mean + half)]


def is_uncalibrated(row: dict[str, Any]) -> bool:
    """Whether an image summary's lengths are not the file's calibration (no pixel size, or implied by a phase)."""
    status = (row.get("calibration") or {}).get("status")
    return status in UNCALIBRATED or ("pixel_size_nm" in row and row["pixel_size_nm"] is None)


def _phase_statistics(rows: Sequence[dict[str, Any]], confidence: float, include_uncalibrated: bool) -> dict:
    """The batch means of the phase-library fractions (see :func:`batch_statistics`)."""
    with_phases = [r for r in rows if r.get("status") == "ok" and r.get("phase_fractions")]
    left_out = [] if include_uncalibrated else [str(r.get("file")) for r in with_phases if is_uncalibrated(r)]
    used = [r for r in with_phases if include_uncalibrated or not is_uncalibrated(r)]
    names = list(dict.fromkeys(name for r in used for name in r["phase_fractions"]))
    means = {}
    for name in names:
        values = [(r["phase_fractions"].get(name) or {}).get("fraction", 0.0) for r in used]
        mean, sd, ci = _mean_interval(values, confidence)
        means[name] = {"mean": mean, "ci": ci, "sd": sd}
    n = len(used)
    if left_out:
        note = (
            f"; {len(left_out)} uncalibrated image(s) left out (no pixel size in the file: their lattice was "
            "scaled to a library phase, so their phases were not checked against a calibration; "
            "--include-uncalibrated lets them in)"
        )
    else:
        note = "; uncalibrated images included (--include-uncalibrated)" if include_uncalibrated else ""
    return {
        "mean_phase_fractions": means,
        "n_phase_images": n,
        "uncalibrated_left_out": left_out,
        "phase_method": f"unweighted mean over the {n} images with phase fractions (a phase an image lacks counts "
        f"0); {confidence:.0%} Student-t interval of the mean (image-to-image spread, needs at least 2 images)" + note,
    }


def _uniform(row: dict[str, Any]) -> float | None:
    fractions = row.get("fractions") or {}
    value = fractions.get("uniform")
    return None if value is None else float(value)


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """Flatten one image summary into the columns of ``report.csv``: :data:`CSV_COLUMNS`, then the image's
    phase fractions (``phase_fraction:NAME``, ``phase_ci95_lo:NAME``, ``phase_ci95_hi:NAME``)."""
    from ..dots.shape import phase_record

    fractions = row.get("fractions") or {}
    ci = row.get("uniform_fraction_ci95") or [None, None]
    timings = row.get("timings_s") or {}
    flat = {
        **{key: row.get(key) for key in CSV_COLUMNS},
        "ordered_fraction": fractions.get("ordered"),
        "uniform_fraction": fractions.get("uniform"),
        "uniform_ci95_low": ci[0],
        "uniform_ci95_high": ci[1],
        "skipped": bool(row.get("skipped", False)),
        "time_s": timings.get("total"),
        **phase_record(row),
    }
    return {key: "" if value is None else value for key, value in flat.items()}


def dots_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The run's ``dots.csv``: every image's dots (its summary's ``dots`` records), with a ``file`` column.

    Images without dots (failed, or no crystal) have no rows here; ``report.csv`` lists them. The columns
    are :func:`stem_pipeline._types.dot_columns` of all the dots (the phase columns of every phase found).
    """
    from .._types import dot_columns

    buffer = _io.StringIO()
    columns = dot_columns([dot for row in rows for dot in row.get("dots") or []])
    writer = csv.DictWriter(buffer, fieldnames=("file", *columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for dot in row.get("dots") or []:
            writer.writerow({k: "" if v is None else v for k, v in {"file": row.get("file"), **dot}.items()})
    return buffer.getvalue()


def _versions() -> dict[str, str]:
    """:func:`stem_pipeline.provenance.versions` with those of the batch machinery."""
    from ..provenance import versions

    return versions(_EXTRA_VERSIONS)


def write_reports(
    rows: Sequence[dict[str, Any]],
    out: str | os.PathLike,
    *,
    config=None,
    html: bool = True,
    skipped_inputs: Sequence[dict[str, str]] = (),
    include_uncalibrated: bool = False,
) -> dict[str, Path]:
    """Write ``report.csv`` and ``report.json`` (and ``report.html``) into ``out``, atomically.

    Parameters
    ----------
    rows : sequence of dict
        One image summary per input, with ``folder`` the name of its output
        folder inside ``out`` (as returned by :func:`stem_pipeline.batch.run_batch`).
    out : str or PathLike
        The batch output folder.
    config : PipelineConfig, optional
        The configuration, dumped into the JSON and HTML reports.
    html : bool
        Also write the HTML report and its histogram (slower: matplotlib).
    skipped_inputs : sequence of dict
        Entries of the input folders that were not analysed, each ``{"path", "reason"}``
        (``report.json``'s ``skipped_inputs`` and a list in the HTML report).
    include_uncalibrated : bool
        Let uncalibrated images into the batch means (:func:`batch_statistics`); the reports say so.

    Returns
    -------
    dict of str to Path
        The files written, keyed ``"csv"``, ``"dots"`` (``dots.csv``), ``"json"`` and ``"html"``,
        ``"histogram"`` (with :data:`MIN_HISTOGRAM_VALUES` fractions or more), ``"dot_histogram"``
        (with as many dots; ``report.json`` has ``dot_statistics`` when any image has dots, see
        :func:`stem_pipeline.report.dots.dot_statistics`).
    """
    from .._atomic import atomic_write_json, atomic_write_text

    out = Path(out)
    rows = list(rows)
    stats = batch_statistics(rows, include_uncalibrated=include_uncalibrated)
    config_dump = config.model_dump(mode="json") if config is not None else None
    versions = _versions()
    buffer = _io.StringIO()
    flat = [csv_row(r) for r in rows]
    columns = [*CSV_COLUMNS, *dict.fromkeys(k for r in flat for k in r if k not in CSV_COLUMNS)]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(flat)
    written = {"csv": atomic_write_text(out / REPORT_CSV, buffer.getvalue())}
    written["dots"] = atomic_write_text(out / DOTS_CSV, dots_csv(rows))
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "statistics": stats,
        "config_hash": config.config_hash() if config is not None else None,
        "config": config_dump,
        "versions": versions,
        "images": rows,
        "skipped_inputs": list(skipped_inputs),
    }
    dots = [dot for row in rows for dot in row.get("dots") or []]
    if dots:
        from .dots import dot_statistics

        document["dot_statistics"] = dot_statistics(dots)
    written["json"] = atomic_write_json(out / REPORT_JSON, document)
    if html:
        enough = stats["n_fractions"] >= MIN_HISTOGRAM_VALUES
        histogram = save_histogram(out / HISTOGRAM, rows, stats=stats) if enough else None
        dot_histogram = None
        if len(dots) >= MIN_HISTOGRAM_VALUES:
            from .dots import save_dot_histograms

            dot_histogram = written["dot_histogram"] = save_dot_histograms(out / DOT_HISTOGRAM, dots)
        text = render_html(
            rows,
            out=out,
            stats=stats,
            config=config_dump,
            versions=versions,
            histogram=histogram,
            skipped_inputs=skipped_inputs,
            dot_histogram=dot_histogram,
        )
        written["html"] = atomic_write_text(out / REPORT_HTML, text)
        if histogram is not None:
            written["histogram"] = histogram
    return written


def save_histogram(
    path: str | os.PathLike, rows: Sequence[dict[str, Any]], *, stats: dict[str, Any] | None = None
) -> Path:
    """Write a histogram of the per-image uniform fractions (PNG) atomically, with the batch mean.

    Parameters
    ----------
    path : str or PathLike
        The PNG file.
    rows : sequence of dict
        Image summaries; those with status ``"ok"`` are counted.
    stats : dict, optional
        :func:`batch_statistics` of ``rows`` for the batch mean (computed with the defaults when None).

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from .._atomic import atomic_write

    values = [f for r in rows if r.get("status") == "ok" and (f := _uniform(r)) is not None]
    stats = stats or batch_statistics(rows)
    fig = Figure(figsize=(5.0, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(values, bins=list(np.linspace(0.0, 1.0, 21)), color="tab:green", edgecolor="black")
    if stats["mean_uniform_fraction"] is not None:
        ax.axvline(stats["mean_uniform_fraction"], color="black", label="batch mean")
    if stats["mean_ci"] is not None:
        ax.axvspan(*stats["mean_ci"], color="grey", alpha=0.3, label="95% CI of the mean")
    ax.set_xlim(0.0, 1.0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("uniform (PbI2/FAPbI3-like) area fraction")
    ax.set_ylabel("images")
    ax.set_title(f"{len(values)} images")
    if values:
        ax.legend(loc="best", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def render_html(
    rows: Sequence[dict[str, Any]],
    *,
    out: str | os.PathLike,
    stats: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    histogram: str | os.PathLike | None = None,
    skipped_inputs: Sequence[dict[str, str]] = (),
    dot_histogram: str | os.PathLike | None = None,
) -> str:
    """The HTML batch report (:func:`stem_pipeline.report.html.report_html`).

    Parameters
    ----------
    rows : sequence of dict
        Image summaries with their ``folder`` names.
    out : str or PathLike
        The batch output folder; links are relative to it.
    stats : dict, optional
        :func:`batch_statistics` of ``rows`` (computed when None).
    config : dict, optional
        The configuration as plain data, shown as YAML.
    versions : dict, optional
        Package versions.
    histogram : str or PathLike, optional
        The histogram PNG inside ``out``.
    skipped_inputs : sequence of dict
        Input entries not analysed, each ``{"path", "reason"}``.
    dot_histogram : str or PathLike, optional
        The PNG of dot sizes and per-dot fractions inside ``out`` (linked with ``dots.csv``).

    Returns
    -------
    str
        The HTML document.
    """
    import yaml

    from .html import report_html

    out = Path(out)
    stats = stats or batch_statistics(rows)
    images = []
    for row in rows:
        folder = out / row["folder"]
        images.append(
            {
                **{key: None for key in ("error", "message", "fractions", "n_columns", "skipped")},
                **row,
                "name": Path(str(row["file"])).name,
                "thumbnail": _link(out, folder / "thumbnail.png"),
                "overlay": _link(out, folder / "overlay.png"),
                "summary_link": _link(out, folder / "summary.json"),
                "columns_link": _link(out, folder / "columns.csv"),
                "uniform": _uniform(row),
                "ci": row.get("uniform_fraction_ci95"),
                "phase_fractions": row.get("phase_fractions") or {},
                "calibration": (row.get("calibration") or {}).get("status"),
                "left_out": str(row.get("file")) in stats["uncalibrated_left_out"],
            }
        )
    return report_html(
        title=f"stem_pipeline batch report: {out.name}",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        images=images,
        stats=stats,
        histogram=_link(out, Path(histogram)) if histogram else None,
        dot_histogram=_link(out, Path(dot_histogram)) if dot_histogram else None,
        config_yaml=yaml.safe_dump(config, sort_keys=False) if config is not None else "(defaults)",
        versions=versions or _versions(),
        skipped_inputs=list(skipped_inputs),
    )


def _link(out: Path, target: Path) -> str | None:
    """URL of ``target`` relative to ``out``, or None when it does not exist."""
    from urllib.parse import quote

    if not target.is_file():
        return None
    return quote(target.relative_to(out).as_posix())
