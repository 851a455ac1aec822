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
            out[name] = _version(name)
        except _metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _version(name: str) -> str:
    """``importlib.metadata.version(name)``, read from the metadata's headers alone.

    ``version()`` parses the whole metadata file as an e-mail message, licence texts and READMEs
    included: ~0.015 s CPU of an ``analyze`` process for these packages (benchmarks/process.py).
    """
    dist = _metadata.distribution(name)
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line:  # the headers end at the first empty line
            break
        key, _, value = line.partition(":")
        if key == "Version":
            return value.strip()
    return dist.version


def file_hash(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]
