"""The synthetic generator's ground truth describes the image it draws."""

from __future__ import annotations

import numpy as np
import pytest

from stem_pipeline._types import LABELS, REGION_ORDERED, REGION_OUTSIDE, REGION_UNIFORM
from stem_pipeline.classify import region_map_from_columns
from stem_pipeline.synthetic import column_region_map, make_dot


@pytest.mark.parametrize("uniform_fraction, spacing_nm, n_columns", [(0.0, 0.3145, 39), (1.0, 0.32, 37)])
def test_pure_dot_truth_is_the_dot_and_cells_are_a_diagnostic(uniform_fraction, spacing_nm, n_columns):
    # A 12 nm dot holds 39 columns of 0.3145 nm a side (their cells reach 0.13 nm past its edge) but only 37 of
    # 0.32 nm (whose cells stop 0.08 nm short of it): the truth is the dot, the cells are kept beside it.
    dot = make_dot((448, 448), dose=None, rng=3, dot_size_nm=12.0, rotation_deg=17, uniform_fraction=uniform_fraction)
    assert len(dot.rc) == n_columns**2
    area_nm2 = np.count_nonzero(dot.region_map) * dot.pixel_size_nm**2
    assert area_nm2 == pytest.approx(12.0**2, rel=0.01)
    cells_nm2 = np.count_nonzero(dot.column_region_map) * dot.pixel_size_nm**2
    assert cells_nm2 == pytest.approx((n_columns * spacing_nm) ** 2, rel=0.02)
    assert dot.uniform_fraction == dot.column_uniform_fraction == uniform_fraction


def test_two_phase_truth_is_the_domain_area_and_columns_follow_it():
    dot = make_dot((448, 448), dose=None, rng=11, dot_size_nm=11.0, rotation_deg=-31, domain_size_nm=3.0)
    r, c = np.round(dot.rc).astype(int).T
    phase = np.where(dot.label == LABELS.index("uniform"), REGION_UNIFORM, REGION_ORDERED)
    assert np.mean(dot.region_map[r, c] == phase) > 0.99
    assert 0.1 < dot.uniform_fraction < 0.9
    inside = dot.region_map != REGION_OUTSIDE
    assert inside.sum() * dot.pixel_size_nm**2 == pytest.approx(11.0**2, rel=0.01)
    cells = np.where(dot.label == LABELS.index("uniform"), 0.32, 0.3145) ** 2
    by_cells = cells[dot.label == LABELS.index("uniform")].sum() / cells.sum()
    assert dot.column_uniform_fraction == pytest.approx(by_cells, abs=0.01)


def test_where_the_grids_meet_neither_phase_loses_columns():
    """Boundaries drawn midway between the true columns give the domain fraction: clashes drop either phase's.

    When the uniform columns next to an ordered one were always the ones dropped, these six dots read
    -0.008 on average (all six below -0.003).
    """
    errors = []
    for seed in range(21, 27):
        dot = make_dot((480, 480), dose=None, rng=seed, dot_size_nm=12.0, rotation_deg=7.0 * seed, domain_size_nm=3.0)
        inside = dot.region_map != REGION_OUTSIDE
        region, _ = region_map_from_columns(inside, dot.rc, dot.label)
        errors.append(np.mean(region[inside] == REGION_UNIFORM) - dot.uniform_fraction)
    assert abs(np.mean(errors)) <= 0.004
    assert np.max(np.abs(errors)) <= 0.008


def test_column_region_map_cells_and_holes():
    u, w = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    i, j = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    rc = 20.0 + 10.0 * np.stack([i.ravel(), j.ravel()], axis=1)
    label = (j.ravel() >= 5).astype(np.int8)
    keep = ~((i.ravel() == 4) & (j.ravel() == 4))  # one missing column inside: a hole, filled
    region = column_region_map((160, 160), rc[keep], label[keep], spacing_px=np.full(keep.sum(), 10.0), u=u, w=w)
    inside = region != REGION_OUTSIDE
    assert inside.sum() == pytest.approx(100 * 11**2, rel=0.25)  # 10x10 cells of 10 px (edges inclusive)
    assert not inside[:14].any() and not inside[:, 126:].any()
    assert region[60, 60] == REGION_ORDERED and region[60, 80] == REGION_UNIFORM
    assert np.all(
        column_region_map((50, 50), np.zeros((0, 2)), np.zeros(0, np.int8), spacing_px=np.zeros(0), u=u, w=w) == 0
    )
