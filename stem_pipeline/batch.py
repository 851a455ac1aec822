"""Folders in, per-file results and one report out: Dask, resume, per-file error isolation.

:func:`run_batch` expands the inputs into image files, gives each a unique
output folder ``OUT/<name>``, and runs :func:`stem_pipeline.outputs.analyze_file`
on each image as one Dask task: on a local cluster of worker processes by
default, in this process for ``workers=1``, or on an existing
``dask.distributed`` cluster when given its scheduler address. Images already
done with the same configuration and input bytes are recognised before any
worker starts, so a re-run of a finished batch costs only the file hashes.
A bad file becomes an ``error`` row; a worker that dies is retried once and
then recorded as an ``error`` row naming the file; the other images finish.
The batch report (``OUT/report.csv``, ``report.json``, ``report.html``) is
written atomically, the CSV and JSON also after every finished image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .outputs import THUMBNAIL

logger = logging.getLogger("stem_pipeline")

#: How many times a task whose worker died is run again before it is recorded as failed.
WORKER_RETRIES = 1
#: Names of the temporary files of :func:`stem_pipeline._atomic.atomic_write`.
TEMPORARY = re.compile(r"\..+\.tmp(\.[^.]+)?")


def output_names(files: Sequence[str | os.PathLike]) -> list[str]:
    """Unique output-folder names for image files: their stems, disambiguated deterministically.

    Files whose stems are unique (ignoring case) keep them. Files sharing a stem are named
    after their path relative to the deepest folder they share, with ``__``
    between the parts (``a/img.tif``, ``b/img.tif`` -> ``a__img``,
    ``b__img``); the extension is added when that is still ambiguous
    (``img.tif``, ``img.npy`` -> ``img_tif``, ``img_npy``). Any name still
    taken gets the first digits of the SHA-1 of the absolute path.

    Parameters
    ----------
    files : sequence of str or PathLike
        The image files, each listed once.

    Returns
    -------
    list of str
        One folder name per file, in the same order; the same files always
        get the same names, whatever their order.

    Examples
    --------
    >>> output_names(["x/a.tif", "y/a.tif", "y/b.dm4"])
    ['x__a', 'y__a', 'b']
    """
    paths = [Path(os.path.abspath(f)) for f in files]
    by_stem: dict[str, list[int]] = {}  # case-insensitive: "A" and "a" are one folder on macOS and Windows
    for i, p in enumerate(paths):
        by_stem.setdefault(p.stem.lower(), []).append(i)
    names = [p.stem for p in paths]
    for indices in by_stem.values():
        if len(indices) < 2:
            continue
        group = [paths[i] for i in indices]
        root = Path(os.path.commonpath([str(p.parent) for p in group]))
        rel = ["__".join(p.parent.relative_to(root).parts + (p.stem,)) for p in group]
        if len({r.lower() for r in rel}) < len(rel):
            rel = [f"{r}_{p.suffix.lstrip('.').lower() or 'noext'}" for r, p in zip(rel, group)]
        for i, name in zip(indices, rel):
            names[i] = name
    counts: dict[str, int] = {}
    for name in names:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return [
        name if counts[name.lower()] == 1 else f"{name}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
        for name, p in zip(names, paths)
    ]


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, **kwargs: Any) -> Iterator[Any]:
    """A ``dask.distributed.LocalCluster`` configured as :func:`run_batch` uses it.

    One single-threaded worker process per core (the pipeline stages are
    numpy-bound and hold the GIL), no dashboard, glibc's default memory
    trimming (not Dask's aggressive one, which slows the stages down), and a
    task whose worker dies retried :data:`WORKER_RETRIES` time(s) before it
    fails with ``KilledWorker``.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; the number of cores when None.
    **kwargs
        Passed to ``LocalCluster`` (override the defaults above).

    Yields
    ------
    distributed.LocalCluster
        Closed on exit.
    """
    import dask
    from distributed import LocalCluster

    options = {
        "n_workers": n_workers or os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "silence_logs": logging.ERROR,
        **kwargs,
    }
    settings = {
        "distributed.scheduler.allowed-failures": WORKER_RETRIES,
        # Dask's default MALLOC_TRIM_THRESHOLD_=65536 returns every freed image-sized buffer to the OS
        # and maps it again: measured 1.6-1.8x slower per image than in one process (column refinement).
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }
    with dask.config.set(settings):
        with LocalCluster(**options) as cluster:
            yield cluster


def analyze_task(
    path: str | os.PathLike, folder: str | os.PathLike, config=None, *, log_level: int | None = None, **options: Any
) -> dict[str, Any]:
    """The unit of work of a batch: :func:`~stem_pipeline.outputs.analyze_file` (which writes the thumbnail too).

    Parameters
    ----------
    path : str or PathLike
        The image file (never modified).
    folder : str or PathLike
        Its output folder; temporary files a killed run left there are removed first.
    config : PipelineConfig, optional
        The pipeline configuration.
    log_level : int, optional
        Level of the ``stem_pipeline`` logger in this process (so that a
        worker process logs like the command that started it).
    **options
        Keyword options of :func:`~stem_pipeline.outputs.analyze_file`
        (``pixel_size_nm``, ``frame``, ``overwrite``).

    Returns
    -------
    dict
        The image summary.
    """
    from .outputs import analyze_file

    if log_level is not None:
        logger.setLevel(log_level)
    remove_stale_temporaries(folder)
    summary = analyze_file(path, folder, config, **options)
    thumbnail = Path(folder) / THUMBNAIL
    if summary.get("skipped") and not thumbnail.is_file():  # finished by an older run that wrote none
        _write_thumbnail(path, thumbnail, pixel_size_nm=options.get("pixel_size_nm"), frame=options.get("frame"))
    return summary


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp[.ext]`` files a killed run left in ``folder``.

    Atomic writes go through such temporary files; a process killed (e.g. by
    SIGKILL) during a write leaves one behind. Call only when no other
    process writes into ``folder``.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp*"):
        if not TEMPORARY.fullmatch(tmp.name):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), folder)
    return removed


def _write_thumbnail(path, target: Path, *, pixel_size_nm, frame) -> None:
    """Best effort: the thumbnail is for the report only; failing to make one is logged, not fatal."""
    from . import io
    from .errors import InputError
    from .report.batch import save_thumbnail

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            micrograph = io.load(path, pixel_size_nm=pixel_size_nm, frame=frame)
        save_thumbnail(target, micrograph.data)
    except (InputError, OSError, ValueError) as exc:
        logger.warning("%s: no thumbnail (%s)", path, exc)


def run_batch(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config=None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    pixel_size_nm: float | None = None,
    frame: int | str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Analyse every image in ``inputs`` into ``out`` and write the batch report.

    Parameters
    ----------
    inputs : sequence of str or PathLike
        Image files and folders (searched recursively for known extensions,
        see :func:`stem_pipeline.io.find_images`). Never modified.
    out : str or PathLike
        Output folder: ``out/<name>/{summary.json, columns.csv, overlay.png,
        thumbnail.png}`` per image (``name`` from :func:`output_names`) and
        ``out/report.{csv,json,html}``.
    config : PipelineConfig, optional
        The pipeline configuration (defaults when None).
    workers : int, optional
        Local worker processes (the number of cores when None). With 1, or
        when only one image is to be analysed, the images are analysed one
        after another in this process.
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (e.g.
        ``"tcp://host:8786"``); its workers need stem_pipeline installed and
        read access to the inputs and ``out``. Overrides ``workers``.
    pixel_size_nm : float, optional
        Pixel size [nm] for every input (overrides the files' calibration).
    frame : int or {"sum", "mean"}, optional
        Frame of stacks.
    overwrite : bool
        Redo images already done with the same configuration.
    progress : bool
        Show a progress bar over images on stderr.

    Returns
    -------
    list of dict
        One summary per input image, in input order: the keys of
        ``summary.json`` (``file``, ``status`` in {"ok", "no_crystal",
        "error"}, ``error``, ``message``, ``n_columns``, ``fractions``,
        ``uniform_fraction_ci95``, ...) plus ``folder`` (the name of its
        output folder) and ``skipped`` (True when an earlier result was reused).

    Notes
    -----
    On the default local cluster, a task whose worker process dies (e.g.
    killed for memory) is run once more, then recorded as failed. On an
    external scheduler that number is the cluster's own
    ``distributed.scheduler.allowed-failures`` setting.

    Local worker processes are started with ``spawn``: a script that calls
    ``run_batch`` must do so under ``if __name__ == "__main__":``.
    """
    from . import io
    from .pipeline import PipelineConfig
    from .report.batch import write_reports

    config = config or PipelineConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    files = io.find_images(list(inputs))
    names = output_names(files)
    options = {"pixel_size_nm": pixel_size_nm, "frame": frame, "overwrite": overwrite}
    rows: list[dict[str, Any] | None] = [None] * len(files)
    todo = []
    for i, (path, name) in enumerate(zip(files, names)):
        done = None if overwrite else _finished(path, out / name, config.config_hash(), options)
        if done is not None:
            rows[i] = {**done, "skipped": True}
        else:
            todo.append(i)
    logger.info("%d images, %d already done, %d to analyse", len(files), len(files) - len(todo), len(todo))

    def finish(i: int, summary: dict[str, Any]) -> None:
        rows[i] = {**summary, "skipped": bool(summary.get("skipped", False))}
        write_reports(_complete(rows, names), out, config=config, html=False)

    bar = _progress_bar(len(files), initial=len(files) - len(todo), enabled=progress)
    try:
        if todo:
            # A cluster costs seconds to start: not worth it for one image or one worker.
            in_process = scheduler is None and (workers == 1 or len(todo) == 1 or not _has_distributed())
            run = _run_local if in_process else _run_dask
            run(todo, files, names, out, config, options, finish, bar, workers=workers, scheduler=scheduler)
    finally:
        bar.close()
    report = _complete(rows, names)
    write_reports(report, out, config=config, html=True)
    n_error = sum(r["status"] == "error" for r in report)
    logger.info("batch done: %d images, %d errors; report in %s", len(report), n_error, out / "report.html")
    return report


def _finished(path: Path, folder: Path, config_hash: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of an image already done with this config and these bytes, else None.

    A run killed after the summary was written may have left a temporary
    file or no thumbnail: both are put right here.
    """
    from .outputs import file_hash, is_done, read_summary, run_options

    try:
        input_hash = file_hash(path)
    except OSError:
        return None
    key = run_options(pixel_size_nm=options["pixel_size_nm"], frame=options["frame"])
    if not is_done(folder, config_hash=config_hash, input_hash=input_hash, options=key):
        return None
    remove_stale_temporaries(folder)
    if not (folder / THUMBNAIL).is_file():
        _write_thumbnail(path, folder / THUMBNAIL, pixel_size_nm=options["pixel_size_nm"], frame=options["frame"])
    return read_summary(folder)


def _complete(rows: list[dict[str, Any] | None], names: list[str]) -> list[dict[str, Any]]:
    """Finished rows, each with its folder name, in input order."""
    return [{**row, "folder": name} for row, name in zip(rows, names) if row is not None]


def _progress_bar(total: int, *, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="image", desc="analyze", file=sys.stderr, disable=not enabled)


def _failed_row(path: Path, folder: Path, config, exc: BaseException) -> dict[str, Any]:
    """Record a task that raised or whose worker died as an ``error`` summary in its folder."""
    from ._atomic import atomic_write_text
    from .outputs import SUMMARY, build_summary

    if type(exc).__name__ == "KilledWorker":
        error = (
            f"{path}: the worker analysing this file died {WORKER_RETRIES + 1} times "
            "(out of memory or a crash in a reader); the file was skipped"
        )
    else:
        error = f"{path}: analysis failed: {type(exc).__name__}: {exc}"
    logger.error("%s", error)
    summary = build_summary(str(path), status="error", error=error, config_hash=config.config_hash(), input_hash=None)
    with contextlib.suppress(OSError):
        atomic_write_text(folder / SUMMARY, json.dumps(summary, indent=2, default=str))
    return summary


def _run_local(todo, files, names, out, config, options, finish, bar, **_) -> None:
    """Analyse the images one after another in this process."""
    for i in todo:
        try:
            summary = analyze_task(files[i], out / names[i], config, **options)
        except Exception as exc:  # a bug in a stage: recorded, the batch goes on
            summary = _failed_row(files[i], out / names[i], config, exc)
        finish(i, summary)
        bar.update()


def _has_distributed() -> bool:
    """True when dask.distributed is installed; else say that the images are analysed one at a time."""
    import importlib.util

    if importlib.util.find_spec("distributed") is not None:
        return True
    logger.warning("dask.distributed is not installed (pip install 'stem-pipeline[distributed]'): "
                   "analysing the images one after another in this process")
    return False


def _run_dask(todo, files, names, out, config, options, finish, bar, *, workers, scheduler) -> None:
    """One Dask task per image on a local cluster or the cluster at ``scheduler``."""
    from distributed import Client, as_completed

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(local_cluster(workers))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        logger.info("dask: %s", client)
        run_id = uuid.uuid4().hex[:12]  # keys unique to this run: batches may share a cluster
        futures = {}
        for i in todo:
            future = client.submit(
                analyze_task,
                str(files[i]),
                str(out / names[i]),
                config,
                **options,
                log_level=logger.getEffectiveLevel(),
                key=f"stem-pipeline-{names[i]}-{run_id}",
                pure=False,
                retries=WORKER_RETRIES,
            )
            futures[future] = i
        for future in as_completed(futures):
            i = futures[future]
            try:
                summary = future.result()
            except Exception as exc:  # KilledWorker or an exception raised twice in the task
                summary = _failed_row(files[i], out / names[i], config, exc)
            finish(i, summary)
            bar.update()
            future.release()
