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


@pytest.fixture(scope="session")
def two_lattice_dot():
    """Uniform domains on a 0.347 nm grid (like PbI2 <1 -1 1>) beside CsPbI3's 0.3145 nm one, and its analysis."""
    from stem_pipeline.pipeline import analyze
    from stem_pipeline.synthetic import make_dot

    dot = make_dot(
        (384, 384),
        pixel_size_nm=0.03,
        dot_size_nm=9.0,
        uniform_fraction=0.5,
        spacing_uniform_nm=0.347,
        rotation_deg=40.0,
        dose=400.0,
        dim_ratio=0.3,
        rng=3,
    )
    return dot, analyze(dot.micrograph())
