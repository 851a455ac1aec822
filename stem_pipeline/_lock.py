"""One run at a time per output folder: an advisory lock held while a batch writes into it.

Two runs into one ``--out`` used to delete each other's temporary files and leave a
``report.csv`` that contradicted an image's ``summary.json``. The lock is an exclusive
``flock`` on ``OUT/.stem-pipeline.lock``: the kernel releases it when the holder exits,
however it exits (Ctrl-C, SIGKILL), so an interrupted run never blocks the re-run that
resumes it. The lock file itself is left in place (removing it would race a waiting run).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

#: The lock file inside the output folder.
LOCK_NAME = ".stem-pipeline.lock"


class OutputBusyError(UsageError):
    """Another run is writing into the output folder."""


class OutputFolderError(UsageError):
    """The output folder cannot be created or written."""


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` if needed and hold its lock for the duration of the ``with`` block.

    Parameters
    ----------
    folder : str or PathLike
        The output folder.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    OutputFolderError
        ``folder`` is a file, or cannot be created or written (the message names it and why).
    OutputBusyError
        Another process holds the lock (the message gives its process id).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: the output folder is an existing file; choose a folder for --out")
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputFolderError(f"{folder}: cannot write the output folder ({reason}); choose another --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise OutputBusyError(
                f"{folder}: another stem-pipeline run (process {holder}) is writing into this output folder; "
                "wait for it to finish, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
