"""Where stem_pipeline keeps generated data: the user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the cache folder (tests point it to a temporary one).
CACHE_ENV = "STEM_PIPELINE_CACHE"


def cache_dir(*parts: str) -> Path:
    """The cache folder (``$STEM_PIPELINE_CACHE`` or the platform's user cache), created if needed.

    Parameters
    ----------
    *parts : str
        Sub-folders, e.g. ``cache_dir("simulations")``.
    """
    root = os.environ.get(CACHE_ENV)
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("stem_pipeline")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
