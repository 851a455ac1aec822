"""Where a result came from: the versions of the libraries its numbers depend on, and input hashes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from importlib import metadata as _metadata

#: Packages whose versions every summary records: stem_pipeline and the libraries its numbers depend on.
VERSIONED = ("stem-pipeline", "numpy", "scipy", "scikit-image", "scikit-learn", "hyperspy", "rosettasciio")


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of :data:`VERSIONED` and of the ``extra`` packages (``"not installed"`` if absent)."""
    out = {}
    for name in (*VERSIONED, *extra):
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_hash(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]
