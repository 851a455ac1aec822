"""Atomic file writing: a reader never sees half a file, a crash leaves the old one."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("stem_pipeline")

#: Marks the temporary files of :func:`atomic_write`, so that a clean-up after a killed run can
#: tell them from a user's own files (a fault-injection run had ``.notes.tmp`` deleted).
TEMPORARY_MARK = "stem-pipeline-tmp"
#: Names of the temporary files of :func:`atomic_write`: ``.<name>.<8 random>.stem-pipeline-tmp[.ext]``.
TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\." + re.escape(TEMPORARY_MARK) + r"(\.[^.]+)?")

# The process umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The temporary name (see :data:`TEMPORARY`) ends with ``path``'s extension (``.png``, ``.npz``, ...)
    so that writers choosing the format from the extension work. The file gets the
    usual permissions (0666 less the umask), not the private ones of a temporary
    file. On failure the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or PathLike
        The final file; its folder is created if needed.
    write : callable
        Writes the content to the path it is given.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".{TEMPORARY_MARK}{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays as Python numbers and lists, else ``str``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def atomic_write_json(path: str | os.PathLike, document: Any) -> Path:
    """Write ``document`` as indented JSON (numpy values converted, see :func:`json_default`) atomically."""
    return atomic_write_text(path, json.dumps(document, indent=2, default=json_default) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` that a killed run left in ``folder``.

    Only names matching :data:`TEMPORARY` are touched: never a user's own file. Call only while
    no other process writes into ``folder`` (see :mod:`stem_pipeline._lock`).

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{TEMPORARY_MARK}*"):
        if not TEMPORARY.fullmatch(tmp.name):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), folder)
    return removed
