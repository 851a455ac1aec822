"""The default run's uniform fraction against the domain area, on held-out mixed dots (issue 14).

Seeds 15000-15005 were never used to choose a default (the tuning seeds were 9000-9059, 30000-30139 and 57000-57059;
``benchmarks/unbiased.py`` measures the same on 360 held-out dots, seeds 82000-82119 at three doses, and recorded
the previous rounds' 72000-72119, 62000-62119, 52000-52119, 42000-42119 and 32000-32059). Measured here with the column heights, the crystal edge at the
diffuse intensity step, faint maxima beyond it dropped, the mixture's small domains kept through the random field
and the interval's noise term re-set on the tuning dots (issue 14, sixth round): errors +0.0023, +0.0083 at 30
counts, -0.0070, +0.0006 at 100, 0.0000, -0.0017 at 400; all 6 intervals hold the truth (widths 0.018-0.048; fifth
round +0.0023, +0.0082, -0.0070, +0.0007, 0.0000, -0.0017, widths 0.018-0.050); the superlattice scan on
(seventh round): the same six errors and widths.
"""

from __future__ import annotations

import numpy as np
import pytest

from stem_pipeline.pipeline import analyze
from stem_pipeline.synthetic import make_dot

#: Largest error of issue 14: 0.04 at 30 counts, 0.02 at 100 counts or more.
LIMITS = {30.0: 0.04, 100.0: 0.02, 400.0: 0.02}


def held_out_dot(seed: int, dose: float):
    """A mixed 9-14 nm dot with a random rotation, domain size, share and thickness gradient."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(9, 14)
    side = int(np.ceil((size * np.sqrt(2) + 1.5) / 0.035 / 16)) * 16
    return make_dot(
        (side, side),
        dot_size_nm=size,
        rotation_deg=rng.uniform(0, 90),
        domain_size_nm=rng.uniform(2.5, 6),
        uniform_fraction=rng.uniform(0.25, 0.75),
        thickness_gradient=rng.uniform(0, 0.4),
        dose=dose,
        rng=rng,
    )


@pytest.fixture(scope="module")
def results():
    rows = []
    for k, dose in enumerate((30.0, 30.0, 100.0, 100.0, 400.0, 400.0)):
        dot = held_out_dot(15000 + k, dose)
        fractions = analyze(dot.micrograph()).fractions
        assert fractions is not None
        rows.append((dose, fractions.uniform - dot.uniform_fraction, fractions.uniform_ci95, dot.uniform_fraction))
    return rows


def test_no_held_out_dot_beyond_the_error_limits(results):
    for dose, err, _, _ in results:
        assert abs(err) <= LIMITS[dose], (dose, err)


def test_the_mean_signed_error_is_within_the_limit(results):
    """Issue 14: mean signed error within +-0.005 (before it, the fractions were over-estimated on 9 of 9 held-out
    dots, mean +0.019). Measured here: +0.0004 over the 6 dots (the same in the fifth round; -0.0020 before it), errors of both signs; on 120 held-out dots per dose
    see ``benchmarks/results/unbiased.md``."""
    errors = np.array([err for _, err, _, _ in results])
    assert (errors > 0).any() and (errors < 0).any()
    assert abs(errors.mean()) <= 0.005


def test_the_intervals_hold_the_truth(results):
    """Issue 14 asks for coverage 0.93-0.97, which 6 dots cannot resolve (5 of 6 is 0.83, 6 of 6 is 1): at least 5
    of 6 here; the benchmark measures the coverage on 360 held-out dots."""
    covered = [lo <= truth <= hi for _, _, (lo, hi), truth in results]
    assert sum(covered) >= 5
