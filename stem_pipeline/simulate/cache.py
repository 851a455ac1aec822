"""On-disk cache of simulated images, keyed by the configuration hash.

The folder is ``platformdirs.user_cache_dir("stem_pipeline")/simulate`` unless
the environment variable ``STEM_PIPELINE_CACHE`` names another folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger("stem_pipeline")

#: Bump when the simulation code changes what a config produces.
CACHE_VERSION = "sim-v2"


def cache_dir() -> Path:
    """Return the simulation cache folder (created on demand)."""
    env = os.environ.get("STEM_PIPELINE_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("stem_pipeline")) / "simulate"


def cache_key(config_hash: str, **parts: object) -> str:
    """Key from a config hash (or a label) plus JSON-able run options (method, thickness, ...)."""
    text = json.dumps({"config": config_hash, "version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(key: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """Return (arrays, metadata) stored under ``key``, or None."""
    path = cache_dir() / f"{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["__meta__"].tobytes().decode())
            arrays = {k: npz[k] for k in npz.files if k != "__meta__"}
    except (OSError, ValueError, KeyError) as exc:  # a broken entry is a miss
        logger.warning("ignoring unreadable simulation cache entry %s: %s", path, exc)
        return None
    logger.info("simulation cache hit: %s", path)
    return arrays, meta


def save(key: str, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Store ``arrays`` and JSON-able ``meta`` under ``key`` (atomic write)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npz"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        payload = dict(arrays)
        payload["__meta__"] = np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8)
        np.savez_compressed(tmp, allow_pickle=False, **payload)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
