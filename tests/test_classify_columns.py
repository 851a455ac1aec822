"""End-to-end classification through the lattice and columns modules (found, not true, positions)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stem_pipeline import Columns
from stem_pipeline.classify import ClassifyConfig, classification_intensity, classify_columns
from stem_pipeline.columns import find_columns, measure_intensities, refine_columns
from stem_pipeline.lattice import crystal_mask, find_lattice
from stem_pipeline.synthetic import make_dot


def found_columns(dot):
    """Columns as the pipeline finds them: lattice, mask, detection, refinement, raw-count intensities."""
    image = dot.image
    lattice = find_lattice(image)
    assert lattice is not None
    mask = crystal_mask(image, lattice)
    cols = find_columns(image, lattice=lattice, mask=mask)
    cols = refine_columns(image, cols, lattice=lattice)
    return measure_intensities(image, cols).replace(pixel_size_nm=dot.pixel_size_nm)


@pytest.mark.parametrize("dose, tolerance", [(400.0, 0.03), (60.0, 0.06), (30.0, 0.06)])
def test_through_columns_module(dose, tolerance):
    dot = make_dot(
        (400, 400), dose=dose, rng=3003, rotation_deg=14, dot_size_nm=11.0, domain_size_nm=4.0, thickness_gradient=0.3
    )
    cols = found_columns(dot)
    labels, fractions = classify_columns(cols, shape=dot.image.shape, crystal_mask=dot.region_map > 0)
    assert abs(fractions.uniform - dot.uniform_fraction) <= tolerance
    lo, hi = fractions.uniform_ci95
    assert lo <= dot.uniform_fraction <= hi
    assert hi - lo < 0.15
    # Label accuracy of found columns matched to true columns far from a boundary.
    dist, idx = cKDTree(dot.rc).query(cols.rc)
    matched = dist < 2.0
    far = dot.boundary_distance_nm()[idx] > 1.0
    sel = matched & far
    assert sel.sum() > 200
    assert np.mean(labels.label[sel] == dot.label[idx[sel]]) >= 0.95


def _coverage(seeds, doses):
    hits, widths, errors = [], [], []
    for k, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        dot = make_dot(
            (288, 288),
            dose=doses[k % len(doses)],
            rng=seed,
            dot_size_nm=8.0,
            domain_size_nm=3.0,
            rotation_deg=float(rng.uniform(-45, 45)),
            thickness_gradient=0.3,
        )
        if not 0.05 < dot.uniform_fraction < 0.95:
            continue
        _, fractions = classify_columns(found_columns(dot), shape=dot.image.shape, crystal_mask=dot.region_map > 0)
        lo, hi = fractions.uniform_ci95
        hits.append(lo <= dot.uniform_fraction <= hi)
        widths.append(hi - lo)
        errors.append(fractions.uniform - dot.uniform_fraction)
    return np.array(hits), np.array(widths), np.array(errors)


def test_interval_coverage_through_columns_module():
    """The interval holds the dot's own fraction on most dots and is narrow (small default-run sample)."""
    hits, widths, errors = _coverage(range(4100, 4112), (400.0, 100.0, 30.0))
    assert len(hits) >= 9
    assert hits.mean() >= 0.75
    assert np.median(widths) < 0.15
    assert np.abs(errors).max() <= 0.06


@pytest.mark.slow
def test_interval_coverage_many_dots():
    """36 seeded dots at three doses: coverage between 0.85 and 1, median width under 0.15 (was 0.4)."""
    hits, widths, _ = _coverage(range(4200, 4236), (400.0, 100.0, 30.0))
    assert len(hits) >= 30
    assert 0.85 <= hits.mean() <= 1.0
    assert np.median(widths) < 0.15


def test_the_lattice_found_indexes_the_neighbours():
    """What the pipeline runs: the column grid found from the FFT indexes the neighbours (no re-estimate)."""
    dot = make_dot((320, 320), dose=100, rng=3004, rotation_deg=23, dot_size_nm=9.0, domain_size_nm=3.5)
    lattice = find_lattice(dot.image)
    cols = found_columns(dot)
    kwargs = dict(shape=dot.image.shape, crystal_mask=dot.region_map > 0)
    given, given_fractions = classify_columns(cols, lattice_vectors_px=lattice.vectors_px, **kwargs)
    estimated, estimated_fractions = classify_columns(cols, **kwargs)
    assert np.mean(given.label == estimated.label) >= 0.99
    assert given_fractions.uniform == pytest.approx(estimated_fractions.uniform, abs=0.01)
    assert 0.2 < given_fractions.uniform < 0.8
    # The given vectors are used: the superlattice's (twice the grid) leaves no bright/dim pattern to fit.
    _, wrong = classify_columns(cols, lattice_vectors_px=2 * lattice.vectors_px, **kwargs)
    assert wrong.uniform > 0.95


def test_classification_intensity_is_the_height_at_the_fitted_width():
    rng = np.random.default_rng(5)
    sigma = rng.uniform(1.0, 2.0, (20, 2))
    height = rng.uniform(50.0, 100.0, 20)
    cols = Columns(rc=rng.uniform(0, 100, (20, 2)), sigma=sigma, volume=2 * np.pi * height * sigma[:, 0] * sigma[:, 1])
    np.testing.assert_allclose(classification_intensity(cols, "height"), height)
    np.testing.assert_allclose(classification_intensity(cols), cols.volume)
    # Without fitted widths the height cannot be formed: the columns' own intensity.
    np.testing.assert_allclose(classification_intensity(cols.replace(sigma=None), "height"), cols.volume)
    np.testing.assert_allclose(classification_intensity(Columns(rc=cols.rc, peak=height), "height"), height)


def test_heights_label_boundary_columns_better_than_volumes():
    """The volume carries each column's fitted width squared; with the height fewer columns near a domain
    boundary are mislabelled (found columns, 400 counts)."""
    dot = make_dot((400, 400), dose=400.0, rng=3005, rotation_deg=31, dot_size_nm=11.0, domain_size_nm=3.0)
    cols = found_columns(dot)
    dist, idx = cKDTree(dot.rc).query(cols.rc)
    near = (dist < 2.0) & (dot.boundary_distance_nm()[idx] < 1.0)
    wrong = {}
    for source in ("height", "volume"):
        labels, _ = classify_columns(
            cols, shape=dot.image.shape, crystal_mask=dot.region_map > 0, config=ClassifyConfig(intensity=source)
        )
        wrong[source] = int(np.sum(near & (labels.label != dot.label[idx])))
    assert wrong["height"] < 0.7 * wrong["volume"]
