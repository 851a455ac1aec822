"""The per-image output contract, written atomically, and the one-file analysis unit.

For an image ``IMG`` the folder ``OUT/<IMG stem>/`` holds ``columns.csv``,
``dots.csv`` (one row per dot of the field, see :mod:`stem_pipeline.field`),
``overlay.png`` and, written last, ``summary.json``: a summary on disk means
the image is done, so an interrupted run redoes only the unfinished images.
"""

from __future__ import annotations

import csv
import json
import logging
import numbers
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._atomic import atomic_write, atomic_write_json
from ._types import Lattice, PipelineResult
from .errors import InputError
from .io import column_table
from .provenance import file_hash, versions

logger = logging.getLogger("stem_pipeline")

SUMMARY, COLUMNS_CSV, OVERLAY, THUMBNAIL = "summary.json", "columns.csv", "overlay.png", "thumbnail.png"
DOTS_CSV = "dots.csv"
#: Statuses that count as processed (not retried by a re-run).
DONE_STATUSES = ("ok", "no_crystal")


def read_summary(folder: str | os.PathLike) -> dict | None:
    """The summary of a finished image folder, or None if absent or unreadable."""
    try:
        return json.loads((Path(folder) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def run_options(*, pixel_size_nm: float | None = None, frame: int | str | None = None) -> dict[str, Any]:
    """What besides the config and the input bytes decides a result: overrides and the code version."""
    from . import __version__

    return {"pixel_size_nm": pixel_size_nm, "frame": frame, "stem_pipeline": __version__}


def is_done(
    folder: str | os.PathLike, *, config_hash: str, input_hash: str, options: dict[str, Any] | None = None
) -> bool:
    """True when ``folder`` holds a finished result of the same input, config and run options.

    Every file the summary lists under ``outputs`` must be there too: a folder whose
    ``columns.csv`` or ``overlay.png`` was deleted is redone, not skipped. ``options``
    defaults to :func:`run_options` without overrides.
    """
    summary = read_summary(folder)
    return bool(
        summary
        and summary.get("status") in DONE_STATUSES
        and summary.get("config_hash") == config_hash
        and summary.get("input_hash") == input_hash
        and summary.get("run_options") == (options if options is not None else run_options())
        and isinstance(summary.get("outputs"), list)
        and all((Path(folder) / name).is_file() for name in summary["outputs"])
    )


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def build_summary(
    source: str,
    *,
    status: str,
    error: str | None = None,
    result: PipelineResult | None = None,
    config_hash: str,
    input_hash: str | None,
    options: dict[str, Any] | None = None,
    timings_s: dict | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` mapping of the output contract."""
    fractions = result.fractions if result is not None else None
    summary: dict[str, Any] = {
        "file": str(source),
        "status": status,
        "error": error,
        "message": result.message if result is not None else None,
        "pixel_size_nm": result.micrograph.pixel_size_nm if result is not None else None,
        "shape": list(result.micrograph.shape) if result is not None else None,
        "n_columns": len(result.columns) if result is not None and result.columns is not None else 0,
        "fractions": (
            {"ordered": _round(fractions.ordered), "uniform": _round(fractions.uniform)} if fractions else None
        ),
        "uniform_fraction_ci95": [_round(v) for v in fractions.uniform_ci95] if fractions else None,
        "ci_method": fractions.method if fractions else None,
        "crystal_area_nm2": _round(fractions.crystal_area_nm2, 3) if fractions else None,
        "lattice": _lattice_summary(result.lattices) if result is not None else None,
        **_phase_summary(result),
        "n_dots": 0,
        "dots": [],
        "config_hash": config_hash,
        "input_hash": input_hash,
        "run_options": options if options is not None else run_options(),
        "versions": versions(),
        "timings_s": timings_s or (result.timings_s if result is not None else {}),
    }
    return summary


def _lattice_summary(lattices: Sequence[Lattice]) -> dict[str, Any]:
    """``summary.json``'s ``lattice``: the strongest lattice's fields, the others' under ``"others"``; {} for none."""
    if not lattices:
        return {}
    return {**lattices[0].to_dict(), "others": [lat.to_dict() for lat in lattices[1:]]}


def _phase_summary(result: PipelineResult | None) -> dict[str, Any]:
    """``phase_fractions`` ({phase: {fraction, ci95}}; null when not reported), ``calibration`` and ``phase_groups``."""
    phases = result.phases if result is not None else {}
    fractions = phases.get("phase_fractions") or None
    if fractions:
        fractions = {
            name: {"fraction": _round(v["fraction"]), "ci95": [_round(x) for x in v["ci95"]]}
            for name, v in fractions.items()
        }
    return {
        "phase_fractions": fractions,
        "calibration": phases.get("calibration"),
        "phase_groups": phases.get("groups"),
    }


def _with_phases(table: dict[str, np.ndarray], results) -> dict[str, np.ndarray]:
    """A field's column ``table`` with the ``phase`` and ``site`` of each dot's columns (in the rows' order),
    when the stage ran."""
    found = [r.phases for r in results]
    if not any(found):
        return table
    n = [len(r.columns) for r in results]
    table["phase"] = np.concatenate([p["phase"] if p else np.full(k, "") for p, k in zip(found, n)])
    table["site"] = np.concatenate([p["site"] if p else np.full(k, "") for p, k in zip(found, n)])
    return table


def field_column_table(field) -> dict[str, np.ndarray] | None:
    """Every dot's ``columns.csv`` columns (field coordinates) with ``dot`` first, the dots' rows in order.

    :meth:`stem_pipeline.field.FieldResult.columns_dataframe`'s content without pandas: a column that
    some dots lack is empty (NaN) in their rows. None when no dot has columns.
    """
    parts = []
    for d in field.dots:
        if d.columns is not None:
            table = {"dot": np.full(len(d.columns), d.dot), **column_table(d.columns, d.result.labels)[0]}
            parts.append(table)
    if not parts:
        return None
    names = list(dict.fromkeys(name for part in parts for name in part))
    table = {}
    for name in names:
        have = [part[name] for part in parts if name in part]
        numeric = all(np.asarray(v).dtype.kind in "iuf" for v in have)
        fill = np.nan if numeric else None  # as pandas' concat: a number column with gaps is float, others object
        table[name] = np.concatenate(
            [
                part[name] if name in part else np.full(len(part["x_px"]), fill, object if fill is None else float)
                for part in parts
            ]
        )
    return _with_phases(table, [d.result for d in field.dots if d.columns is not None])


def _column_texts(values, float_format: str | None) -> list[str]:
    """One column's cells as pandas' ``to_csv`` writes them (its dtype inferred as pandas infers it)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return _float_texts(values, float_format) if values.dtype.kind == "f" else [str(v) for v in values.tolist()]
    values = list(values)
    present = [v for v in values if not (v is None or (isinstance(v, float | np.floating) and np.isnan(v)))]
    if present and all(isinstance(v, bool | np.bool_) for v in present) and len(present) == len(values):
        return [str(bool(v)) for v in values]
    if present and all(isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_) for v in present):
        if len(present) == len(values) and all(isinstance(v, numbers.Integral) for v in present):
            return [str(int(v)) for v in values]  # an int column
        floats = [np.nan if v is None else v for v in values]
        kind = np.result_type(*[np.asarray(v).dtype for v in floats]) if len(floats) else np.float64
        return _float_texts(np.asarray(floats, dtype=np.float32 if kind == np.float32 else np.float64), float_format)
    return ["" if v is None or (isinstance(v, float | np.floating) and np.isnan(v)) else str(v) for v in values]


def _float_texts(array: np.ndarray, float_format: str | None) -> list[str]:
    """A float column's cells: empty for NaN, else ``float_format`` or the shortest repr of its dtype."""
    if float_format or array.dtype == np.float64:  # Python floats: their repr is float64's shortest one
        return ["" if x != x else (float_format % x if float_format else repr(x)) for x in array.tolist()]
    return ["" if np.isnan(x) else str(x) for x in array]


def write_csv(path: str | os.PathLike, table: dict[str, Any], *, float_format: str | None = None) -> None:
    """Write ``table`` (column name -> values) as a CSV, byte for byte as ``pandas.DataFrame(table).to_csv(path,
    index=False, float_format=float_format)`` does.

    Replaces pandas for ``columns.csv`` and ``dots.csv``: importing pandas took ~0.2 s CPU of a 1024^2
    ``analyze`` process (benchmarks/process.py); a test checks the bytes against pandas.
    """
    names = list(table)
    cells = [_column_texts(table[name], float_format) for name in names]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*cells))


def field_summary(field) -> dict[str, Any]:
    """The per-dot part of ``summary.json``: ``n_dots``, ``dots`` (the ``dots.csv`` records), ``n_columns``
    over all dots and ``dot_statistics`` (edge length mean and sd, counts by status)."""
    from .report.dots import dot_statistics

    records = field.records()
    return {
        "n_dots": len(records),
        "dots": records,
        "n_columns": sum(r["n_columns"] for r in records),
        "dot_statistics": dot_statistics(records),
    }


def write_result(result: PipelineResult, folder: str | os.PathLike, summary: dict, field=None) -> dict[str, Any]:
    """Write ``columns.csv``, ``overlay.png`` and ``thumbnail.png`` (and ``dots.csv``), then ``summary.json``.

    Each file is written atomically. With ``field`` (a :class:`stem_pipeline.field.FieldResult`
    whose ``result`` is ``result``), ``columns.csv`` lists every dot's columns with a ``dot``
    column, ``dots.csv`` one row per dot, and the overlay outlines and numbers the dots. The
    summary gets ``outputs``, the files written beside it, which :func:`is_done` checks; the
    summary as written is returned.
    """
    from .report.batch import save_thumbnail
    from .report.overlay import save_overlay

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = []
    if field is not None:
        from ._types import dot_columns

        records = field.records()  # DOT_COLUMNS, then the phase columns the dots hold
        dots = {name: [r.get(name) for r in records] for name in dot_columns(records)}
        atomic_write(folder / DOTS_CSV, lambda tmp: write_csv(tmp, dots))
        outputs.append(DOTS_CSV)
        field_table = field_column_table(field)
        if field_table is not None:
            atomic_write(folder / COLUMNS_CSV, lambda tmp: write_csv(tmp, field_table, float_format="%.6g"))
            outputs.append(COLUMNS_CSV)
    elif result.columns is not None:
        table = column_table(result.columns, result.labels, phases=result.phases)[0]
        atomic_write(folder / COLUMNS_CSV, lambda tmp: write_csv(tmp, table, float_format="%.6g"))
        outputs.append(COLUMNS_CSV)
    outputs += [OVERLAY, THUMBNAIL]
    display = result.denoised if result.denoised is not None else result.micrograph.data
    title = f"{Path(str(result.micrograph.source)).name}: {result.status}" + (
        f" ({result.message})" if result.message else ""
    )
    if field is not None and field.dots:
        from .report.dots import save_field_overlay

        save_field_overlay(folder / OVERLAY, field, display, title=title)
    else:
        save_overlay(
            folder / OVERLAY,
            display,
            result.columns,
            result.labels,
            result.fractions,
            pixel_size_nm=result.micrograph.pixel_size_nm,
            title=title,
            phases=result.phases,
        )
    save_thumbnail(folder / THUMBNAIL, result.micrograph.data)  # for the batch report, from the image in memory
    summary = {**summary, "outputs": outputs}
    atomic_write_json(folder / SUMMARY, summary)
    return summary


def analyze_file(
    path: str | os.PathLike,
    folder: str | os.PathLike,
    config=None,
    *,
    pixel_size_nm: float | None = None,
    frame: int | Literal["sum", "mean"] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Analyse one file into ``folder`` and return its summary; never raises for bad input.

    Parameters
    ----------
    path : str or PathLike
        The image file (read only; never modified).
    folder : str or PathLike
        Its output folder (``OUT/<stem>``).
    config : PipelineConfig, optional
        The pipeline configuration (defaults when None).
    pixel_size_nm : float, optional
        Overrides the file's calibration [nm].
    frame : int or {"sum", "mean"}, optional
        Frame of a stack.
    overwrite : bool
        Redo the image even if ``folder`` already holds a finished result
        of the same input and config.

    Returns
    -------
    dict
        The summary (also written to ``folder/summary.json``), with
        ``"skipped": True`` added when an earlier result was reused.
    """
    import warnings

    from . import io
    from .field import analyze_field
    from .pipeline import PipelineConfig

    config = config or PipelineConfig()
    chash = config.config_hash()
    options = run_options(pixel_size_nm=pixel_size_nm, frame=frame)
    folder = Path(folder)
    start = time.perf_counter()
    try:
        input_hash = file_hash(path)
    except OSError as exc:
        error = str(InputError(path, f"cannot read the file ({exc.strerror or exc})", "Check the path"))
        return _write_error(path, folder, error, chash, None, options, start)
    if not overwrite and is_done(folder, config_hash=chash, input_hash=input_hash, options=options):
        summary = read_summary(folder) or {}
        return {**summary, "skipped": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", io.MissingCalibrationWarning)  # summary shows pixel_size_nm null
            micrograph = io.load(path, pixel_size_nm=pixel_size_nm, frame=frame)
    except InputError as exc:
        return _write_error(path, folder, str(exc), chash, input_hash, options, start)
    try:
        field = analyze_field(micrograph, config)
        result = field.result
    except Exception as exc:  # a bug or a pathological image: recorded, the batch goes on
        logger.debug("%s: analysis failed", path, exc_info=True)
        error = f"{path}: analysis failed: {type(exc).__name__}: {exc}"
        return _write_error(path, folder, error, chash, input_hash, options, start)
    timings = {**result.timings_s, "total": round(time.perf_counter() - start, 4)}
    summary = build_summary(
        str(path),
        status=result.status,
        result=result,
        config_hash=chash,
        input_hash=input_hash,
        options=options,
        timings_s=timings,
    )
    summary.update(field_summary(field))
    return write_result(result, folder, summary, field)


def _write_error(
    path, folder: Path, error: str, chash: str, input_hash: str | None, options: dict, start: float
) -> dict:
    """Write and return an ``error`` summary (the caller reports it: a batch logs it in its client)."""
    summary = build_summary(
        str(path),
        status="error",
        error=error,
        config_hash=chash,
        input_hash=input_hash,
        options=options,
        timings_s={"total": round(time.perf_counter() - start, 4)},
    )
    atomic_write_json(Path(folder) / SUMMARY, summary)
    return summary
