"""Shared fixtures: small synthetic dots with known truth, a temporary cache."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep simulation caches and demo data out of the user's cache folder."""
    monkeypatch.setenv("STEM_PIPELINE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def small_dot():
    """A 256x256 two-phase dot at 400 counts (seeded)."""
    from stem_pipeline.synthetic import make_dot

    return make_dot((256, 256), dot_size_nm=6.0, domain_size_nm=2.5, rng=11)
