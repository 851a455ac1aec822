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
written atomically at the end; the CSV and JSON also while the batch runs, after
a finished image once the time since the last such write is at least
:data:`REPORT_COST_FACTOR` times that write's cost (after every image, a batch of
n images rewrote n growing reports: O(n^2)), and when the batch is interrupted.
A killed run's report may lag its last images by that interval; a re-run finds
every finished image from its ``summary.json`` anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._atomic import remove_stale_temporaries
from ._lock import output_lock
from ._logs import quiet_loggers
from .errors import UsageError

logger = logging.getLogger("stem_pipeline")

#: How many times a task whose worker died is run again before it is recorded as failed.
WORKER_RETRIES = 1
#: Seconds to wait for a ``--scheduler`` to answer (Dask's own default, 30 s, left a typo'd
#: address hanging for half a minute before a raw OSError).
SCHEDULER_CONNECT_TIMEOUT_S = 10.0
#: Seconds a batch waits while the cluster has no worker at all before it gives up on the
#: images not yet done (they become ``error`` rows; a re-run resumes them).
NO_WORKER_TIMEOUT_S = 60.0
#: How often the client checks on the cluster while it waits for results [s].
POLL_S = 0.5
#: While a batch runs, its report is rewritten after a finished image only when the time since the
#: last rewrite is at least this many times that rewrite's cost: rewriting it takes at most ~1/10 of
#: the batch's time, however long the batch (its cost grows with the images done).
REPORT_COST_FACTOR = 10.0
#: How long the client waits for the result of a finished task [s]: a result held by a worker
#: that has died since is recomputed, and without a timeout the client waited for it forever.
RESULT_TIMEOUT_S = 10.0
#: Characters allowed in an output-folder name (letters and digits of any script, ``_.+-``);
#: anything else (separators, spaces, shell and Windows specials) becomes ``_``.
_UNSAFE = re.compile(r"[^\w.+-]")
#: Longest output-folder name kept as it is; longer ones are cut and get a hash.
_MAX_NAME = 96


def output_names(files: Sequence[str | os.PathLike]) -> list[str]:
    """Unique output-folder names for image files: their stems, disambiguated deterministically.

    A stem is first made safe as a folder name inside the output folder: characters other than
    letters, digits and ``_.+-`` become ``_``, leading dots become ``_`` (so ``...tif`` and
    ``..tif`` cannot name the output folder's parent or itself, and no name is hidden), and
    names over 96 characters are cut. Files whose safe stems are unique (ignoring case) keep them. Files sharing a stem are named
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
    >>> output_names(["...tif", "..tif", "a b.tif"])
    ['__', '_', 'a_b']
    """
    paths = [Path(os.path.abspath(f)) for f in files]
    stems = [_safe_name(p.stem) for p in paths]
    by_stem: dict[str, list[int]] = {}  # case-insensitive: "A" and "a" are one folder on macOS and Windows
    for i, stem in enumerate(stems):
        by_stem.setdefault(stem.lower(), []).append(i)
    names = list(stems)
    for indices in by_stem.values():
        if len(indices) < 2:
            continue
        group = [paths[i] for i in indices]
        root = Path(os.path.commonpath([str(p.parent) for p in group]))
        rel = [_safe_name("__".join(p.parent.relative_to(root).parts + (p.stem,))) for p in group]
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


def _safe_name(name: str) -> str:
    """``name`` as a plain, visible folder name (see :func:`output_names`)."""
    safe = _UNSAFE.sub("_", name)
    safe = "_" * (len(safe) - len(safe.lstrip("."))) + safe.lstrip(".")
    if not safe:
        return "_"
    if len(safe) > _MAX_NAME:
        safe = f"{safe[: _MAX_NAME - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe


#: Environment variables that set a worker process's thread budget (OpenMP, OpenBLAS, MKL; the FFTs follow
#: OMP_NUM_THREADS, see :func:`stem_pipeline._threads.fft_workers`).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def local_cluster(
    n_workers: int | None = None, *, scratch: str | os.PathLike | None = None, **kwargs: Any
) -> Iterator[Any]:
    """A ``dask.distributed.LocalCluster`` configured as :func:`run_batch` uses it.

    One single-threaded worker process per core (the pipeline stages are
    numpy-bound and hold the GIL), whose BLAS and FFT threads share the cores
    (``cores // n_workers`` each, at least 1, unless ``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set in the environment,
    which Dask passes on instead), no dashboard, glibc's default memory
    trimming (not Dask's aggressive one, which slows the stages down), and a
    task whose worker dies retried :data:`WORKER_RETRIES` time(s) before it
    fails with ``KilledWorker``.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes; the number of cores when None.
    scratch : str or PathLike, optional
        Folder for the scheduler's and workers' scratch space and lock files
        (Dask's ``temporary-directory``; Dask's default, the system's temporary
        folder, when None). :func:`run_batch` gives one inside its ``out``.
    **kwargs
        Passed to ``LocalCluster`` (override the defaults above).

    Yields
    ------
    distributed.LocalCluster
        Closed on exit.
    """
    import dask
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    options = {
        "n_workers": n_workers or cores,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        # Without a dashboard the scheduler still serves its health/metrics routes, on port 8787 by default:
        # a second cluster on the machine then warned that the port was taken. Any free port will do.
        "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
        "silence_logs": logging.CRITICAL,  # the batch reports every outcome itself
        "preload": ["stem_pipeline._worker_setup"],  # Ctrl-C is the command's to handle
        **kwargs,
    }
    threads = max(1, cores // options["n_workers"])
    settings = {
        "distributed.scheduler.allowed-failures": WORKER_RETRIES,
        # Dask's default MALLOC_TRIM_THRESHOLD_=65536 returns every freed image-sized buffer to the OS
        # and maps it again: measured 1.6-1.8x slower per image than in one process (column refinement).
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        # Each worker's share of the cores for its BLAS and FFT threads (Dask's default is 1 each; the
        # FFTs used 2 regardless, 2N threads on N cores): see stem_pipeline._threads.
        **{f"distributed.nanny.pre-spawn-environ.{name}": threads for name in _THREAD_VARIABLES},
        **({"temporary-directory": os.fspath(scratch)} if scratch is not None else {}),
    }
    with dask.config.set(settings), LocalCluster(**options) as cluster:
        yield cluster


def analyze_task(
    path: str | os.PathLike, folder: str | os.PathLike, config=None, *, log_level: int | None = None, **options: Any
) -> dict[str, Any]:
    """The unit of work of a batch: :func:`~stem_pipeline.outputs.analyze_file` into its folder.

    Parameters
    ----------
    path : str or PathLike
        The image file (never modified), absolute when run on a cluster.
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
    return analyze_file(path, folder, config, **options)


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
    no_worker_timeout_s: float = NO_WORKER_TIMEOUT_S,
    include_uncalibrated: bool = False,
) -> list[dict[str, Any]]:
    """Analyse every image in ``inputs`` into ``out`` and write the batch report.

    Parameters
    ----------
    inputs : sequence of str or PathLike
        Image files and folders (searched recursively, see
        :func:`stem_pipeline.inputs.scan_inputs`; ``out`` itself is never read). Never modified.
    out : str or PathLike
        Output folder: ``out/<name>/{summary.json, columns.csv, overlay.png,
        thumbnail.png}`` per image (``name`` from :func:`output_names`, always a plain
        folder inside ``out``) and ``out/report.{csv,json,html}``. Nothing is written
        elsewhere. One run at a time may write into it (:func:`stem_pipeline._lock.output_lock`).
    config : PipelineConfig, optional
        The pipeline configuration (defaults when None).
    workers : int, optional
        Local worker processes (the number of cores when None). With 1, or
        when only one image is to be analysed, the images are analysed one
        after another in this process.
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (e.g.
        ``"tcp://host:8786"``); its workers need stem_pipeline installed and
        read access to the inputs and ``out`` under the same absolute paths
        (relative paths are resolved here, before any work is sent). Overrides ``workers``.
    pixel_size_nm : float, optional
        Pixel size [nm] for every input (overrides the files' calibration); positive.
    frame : int or {"sum", "mean"}, optional
        Frame of stacks.
    overwrite : bool
        Redo images already done with the same configuration.
    progress : bool
        Show a progress bar over images on stderr.
    no_worker_timeout_s : float
        On a cluster: how long to wait while it has no worker at all before the images not
        yet done are recorded as ``error`` rows (the finished ones are kept; a re-run resumes).
    include_uncalibrated : bool
        Let uncalibrated images (no pixel size, or one implied by a library phase) into the report's
        batch means; by default they are left out and listed
        (:func:`stem_pipeline.report.batch.batch_statistics`). Not part of the analysis: a re-run reuses
        the images and rewrites the report.

    Returns
    -------
    list of dict
        One summary per input image, in input order: the keys of
        ``summary.json`` (``file``, ``status`` in {"ok", "no_crystal",
        "error"}, ``error``, ``message``, ``n_columns``, ``fractions``,
        ``uniform_fraction_ci95``, ...) plus ``folder`` (the name of its
        output folder) and ``skipped`` (True when an earlier result was reused).
        Entries of the input folders that are not analysed are listed, with
        their reasons, in ``report.json`` (``skipped_inputs``) and logged.

    Raises
    ------
    UsageError
        No image among the inputs; ``out`` is a file, cannot be written, or is in use
        by another run; ``pixel_size_nm`` is not positive; ``scheduler`` cannot be reached.

    Notes
    -----
    On the default local cluster, a task whose worker process dies (e.g.
    killed for memory) is run once more, then recorded as failed. On an
    external scheduler that number is the cluster's own
    ``distributed.scheduler.allowed-failures`` setting.

    Local worker processes are started with ``spawn``: a script that calls
    ``run_batch`` must do so under ``if __name__ == "__main__":``.
    """
    from .inputs import scan_inputs
    from .pipeline import PipelineConfig
    from .report import batch as batch_report

    if pixel_size_nm is not None and not (pixel_size_nm > 0 and pixel_size_nm < float("inf")):
        raise UsageError(f"the pixel size must be a positive number of nm, not {pixel_size_nm}")
    config = config or PipelineConfig()
    out = Path(os.path.abspath(out))  # workers elsewhere (another folder, another machine) see the same paths
    scan = scan_inputs(inputs, exclude=[out])
    _log_skipped(scan)
    if not scan.files:
        reasons = "; ".join(f"{s.path} ({s.reason})" for s in scan.skipped) or "no input given"
        raise UsageError(f"no images to analyse: {reasons}")
    files = scan.files
    names = output_names(files)
    options = {"pixel_size_nm": pixel_size_nm, "frame": frame, "overwrite": overwrite}
    skipped_inputs = [{"path": s.path, "reason": s.reason} for s in scan.skipped]
    with output_lock(out), contextlib.ExitStack() as stack:
        remove_stale_temporaries(out)
        rows: list[dict[str, Any] | None] = [None] * len(files)
        todo = []
        for i, (path, name) in enumerate(zip(files, names)):
            done = None if overwrite else _finished(path, out / name, config.config_hash(), options)
            if done is not None:
                rows[i] = {**done, "skipped": True}
            else:
                todo.append(i)
        logger.info("%d images, %d already done, %d to analyse", len(files), len(files) - len(todo), len(todo))

        def write_interim() -> None:
            batch_report.write_reports(
                _complete(rows, names),
                out,
                config=config,
                html=False,
                skipped_inputs=skipped_inputs,
                include_uncalibrated=include_uncalibrated,
            )

        last_write = {"end": -float("inf"), "cost": 0.0}

        def finish(i: int, summary: dict[str, Any]) -> None:
            rows[i] = {**summary, "skipped": bool(summary.get("skipped", False))}
            if summary["status"] == "error":  # logged here, in the client: workers' logs may never reach it
                logger.error("%s", summary["error"])
            start = time.perf_counter()
            if None in rows and start - last_write["end"] >= REPORT_COST_FACTOR * last_write["cost"]:
                write_interim()  # (the last image's report is the final one, written next)
                last_write.update(end=time.perf_counter(), cost=time.perf_counter() - start)

        # A cluster costs seconds to start: not worth it for one image or one worker.
        in_process = scheduler is None and (workers == 1 or len(todo) <= 1 or not _has_distributed())
        client = None if in_process or not todo else stack.enter_context(_dask_client(workers, scheduler, out))
        bar = stack.enter_context(_progress_bar(len(files), initial=len(files) - len(todo), enabled=progress))
        tasks = [(i, files[i], out / names[i]) for i in todo]
        try:
            if client is None:
                _run_local(tasks, config, options, finish, bar)
            else:
                _run_dask(client, tasks, config, options, finish, bar, no_worker_timeout_s=no_worker_timeout_s)
        except BaseException:  # interrupted: the report lists every image finished so far
            with contextlib.suppress(Exception):
                write_interim()
            raise
        report = _complete(rows, names)
        batch_report.write_reports(
            report,
            out,
            config=config,
            html=True,
            skipped_inputs=skipped_inputs,
            include_uncalibrated=include_uncalibrated,
        )
    n_error = sum(r["status"] == "error" for r in report)
    logger.info("batch done: %d images, %d errors; report in %s", len(report), n_error, out / "report.html")
    return report


def _log_skipped(scan) -> None:
    """One warning line counting the entries passed over by reason; each entry at INFO level."""
    for s in scan.skipped:
        logger.info("skipped %s: %s", s.path, s.reason)
    if scan.skipped:
        counts = ", ".join(f"{n} {reason}" for reason, n in scan.skipped_counts().items())
        logger.warning("skipped %d input entries (%s); listed in report.json", len(scan.skipped), counts)


def _finished(path: Path, folder: Path, config_hash: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of an image already done with this config and these bytes, else None."""
    from .outputs import is_done, read_summary, run_options
    from .provenance import file_hash

    try:
        input_hash = file_hash(path)
    except OSError:
        return None
    key = run_options(pixel_size_nm=options["pixel_size_nm"], frame=options["frame"])
    if not is_done(folder, config_hash=config_hash, input_hash=input_hash, options=key):
        return None
    remove_stale_temporaries(folder)
    return read_summary(folder)


def _complete(rows: list[dict[str, Any] | None], names: list[str]) -> list[dict[str, Any]]:
    """Finished rows, each with its folder name, in input order."""
    return [{**row, "folder": name} for row, name in zip(rows, names) if row is not None]


def _progress_bar(total: int, *, initial: int, enabled: bool):
    if not enabled:  # no bar: no tqdm import either (~0.01 s CPU of a one-image process, benchmarks/process.py)
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="image", desc="analyze", file=sys.stderr)


class _NoBar:
    """The progress bar of a quiet run: shows nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        """Nothing to show."""


def _failed_row(path: Path, folder: Path, config, error: str) -> dict[str, Any]:
    """Record a task that raised, whose worker died or that no worker ran as an ``error`` summary in its folder."""
    from ._atomic import atomic_write_json
    from .outputs import SUMMARY, build_summary

    summary = build_summary(str(path), status="error", error=error, config_hash=config.config_hash(), input_hash=None)
    with contextlib.suppress(OSError):
        atomic_write_json(folder / SUMMARY, summary)
    return summary


def _task_error(path: Path, exc: BaseException) -> str:
    if type(exc).__name__ == "KilledWorker":
        return (
            f"{path}: the worker analysing this file died {WORKER_RETRIES + 1} times "
            "(out of memory or a crash in a reader); the file was skipped"
        )
    return f"{path}: analysis failed: {type(exc).__name__}: {exc}"


def _run_local(tasks, config, options, finish, bar) -> None:
    """Analyse the images one after another in this process."""
    for i, path, folder in tasks:
        try:
            summary = analyze_task(path, folder, config, **options)
        except Exception as exc:  # a bug in a stage: recorded, the batch goes on
            logger.debug("%s: analysis failed", path, exc_info=True)
            summary = _failed_row(path, folder, config, _task_error(path, exc))
        finish(i, summary)
        bar.update()


def _has_distributed() -> bool:
    """True when dask.distributed is installed; else say that the images are analysed one at a time."""
    import importlib.util

    if importlib.util.find_spec("distributed") is not None:
        return True
    logger.warning(
        "dask.distributed is not installed (pip install 'stem-pipeline[distributed]'): "
        "analysing the images one after another in this process"
    )
    return False


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Keep Dask's own log lines (scheduler, nanny, client) off the terminal unless debugging.

    The batch reports every per-file outcome itself; Dask's lines about the same events
    (a worker lost, a task retried) only repeated them in another format.
    """
    with quiet_loggers(*(("distributed", "dask") if logger.getEffectiveLevel() > logging.DEBUG else ())):
        yield


@contextlib.contextmanager
def _dask_client(workers: int | None, scheduler: str | None, out: Path | None = None) -> Iterator[Any]:
    """A client of a new local cluster, or of the scheduler at ``scheduler`` (a UsageError says why not).

    Given ``out``, a local cluster keeps its scratch space and lock files in a temporary folder inside it,
    removed when it closes: nothing is written outside the output folder (Dask's default is the system's
    temporary folder).
    """
    import tempfile

    from distributed import Client

    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet_dask())
        if scheduler is None:
            scratch = (
                None
                if out is None
                else stack.enter_context(tempfile.TemporaryDirectory(prefix=".dask-scratch-", dir=out))
            )
            client = stack.enter_context(Client(stack.enter_context(local_cluster(workers, scratch=scratch))))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=SCHEDULER_CONNECT_TIMEOUT_S))
            except (OSError, ValueError, TypeError) as exc:  # TimeoutError is an OSError
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise UsageError(
                    f"cannot reach the Dask scheduler at {scheduler!r} ({reason}); "
                    "give its address as tcp://HOST:PORT and check that it is running"
                ) from None
        logger.info("dask: %s", client)
        yield client


def _run_dask(client, tasks, config, options, finish, bar, *, no_worker_timeout_s: float) -> None:
    """One Dask task per image; give up on the rest once the cluster has had no worker for a while."""
    from distributed import wait

    run_id = uuid.uuid4().hex[:12]  # keys unique to this run: batches may share a cluster
    futures = {
        client.submit(
            analyze_task,
            str(path),
            str(folder),
            config,
            **options,
            log_level=logger.getEffectiveLevel(),
            key=f"stem-pipeline-{folder.name}-{run_id}",
            pure=False,
            retries=WORKER_RETRIES,
        ): (i, path, folder)
        for i, path, folder in tasks
    }
    pending = set(futures)
    no_worker_since: float | None = None
    while pending:
        try:
            done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        finished = 0
        for future in done:
            i, path, folder = futures[future]
            try:
                summary = future.result(timeout=RESULT_TIMEOUT_S)
            except TimeoutError:  # finished, but its result went with a worker that died since: wait again
                pending.add(future)
                continue
            except Exception as exc:  # KilledWorker or an exception raised twice in the task
                summary = _failed_row(path, folder, config, _task_error(path, exc))
            finish(i, summary)
            bar.update()
            future.release()
            finished += 1
        if finished or client.scheduler_info(n_workers=1)["workers"]:
            no_worker_since = None
            continue
        no_worker_since = no_worker_since or time.monotonic()
        if time.monotonic() - no_worker_since < no_worker_timeout_s:
            continue
        logger.error(
            "the Dask cluster has had no worker for %.0f s: %d image(s) still pending; "
            "start workers and run the same command again to resume",
            no_worker_timeout_s,
            len(pending),
        )
        for future in pending:
            future.cancel()
            i, path, folder = futures[future]
            # A worker lost after writing its image's outputs but before returning: the result stands.
            summary = _finished(path, folder, config.config_hash(), options)
            if summary is None:
                error = f"{path}: not analysed: the Dask cluster had no worker left (re-run to resume)"
                summary = _failed_row(path, folder, config, error)
            finish(i, summary)
        return
