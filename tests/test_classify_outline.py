"""The crystal outline at the diffuse intensity step (issue 14: the crystal's edge goes where the dot ends)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stem_pipeline import Columns
from stem_pipeline._types import REGION_OUTSIDE
from stem_pipeline.classify import (
    ClassifyConfig,
    classify_columns,
    diffuse_outline,
    hull_mask,
    outline,
    pixel_noise,
    render_columns,
    without_columns,
)
from stem_pipeline.classify.convex import deeper_than, grown_by
from stem_pipeline.pipeline import PipelineConfig, analyze
from stem_pipeline.synthetic import make_dot

PIXEL_NM = 0.035
SIGMA_PX = 0.045 / PIXEL_NM  # make_dot's column width


def true_columns(dot, scale: float = 1.0) -> Columns:
    """The generator's columns with their heights and widths, as a fit would give them."""
    n = len(dot.rc)
    return Columns(rc=dot.rc, amplitude=dot.amplitude * scale, sigma=np.full((n, 2), SIGMA_PX))


def edge_dot(depth_spacings: float, *, dose: float | None = None, rotation: float = 0.0, rng: int = 0):
    """A pure ordered dot whose outermost columns lie ``depth_spacings`` inside its edge on every side."""
    n = 11  # columns from the centre to the outermost ones
    size = 2 * (n + depth_spacings) * 0.3145
    return make_dot((320, 320), dot_size_nm=size, uniform_fraction=0.0, rotation_deg=rotation, dose=dose, rng=rng)


def area_ratio(mask: np.ndarray, dot) -> float:
    """Area of ``mask`` over the dot's true area."""
    return float(mask.sum()) / float(np.count_nonzero(dot.region_map != REGION_OUTSIDE))


def test_render_columns_gives_each_gaussian_its_height_and_volume():
    cols = Columns(
        rc=np.array([[20.0, 20.0], [40.3, 10.7]]), amplitude=np.array([2.0, 1.0]), sigma=np.full((2, 2), 1.5)
    )
    image = render_columns((64, 64), cols)
    assert image[20, 20] == pytest.approx(2.0, rel=1e-6)
    assert image.sum() == pytest.approx(2 * np.pi * 1.5**2 * 3.0, rel=1e-3)


@pytest.mark.parametrize("depth, rotation, seed", [(0.9, 0.0, 11), (0.1, 33.0, 12)])
def test_outline_follows_the_dot_not_the_columns(depth, rotation, seed):
    """The outermost columns lie 0-1 spacing inside the dot; the diffuse step is at the dot's edge."""
    dot = edge_dot(depth, rotation=rotation, rng=seed)
    spacing = float(np.linalg.norm(dot.lattice_vectors_px[0]))
    outline = diffuse_outline(without_columns(dot.image, true_columns(dot)), dot.rc, spacing)
    assert outline is not None
    hull = hull_mask(dot.image.shape, dot.rc, margin_px=0.5 * spacing)
    assert abs(area_ratio(hull, dot) - 1) > 0.05  # half a spacing beyond the columns is 0.4 spacing off
    assert abs(area_ratio(outline.mask, dot) - 1) < 0.03  # measured 0.985 and 1.026


def test_no_outline_without_a_diffuse_step_or_without_carbon():
    flat = make_dot((320, 320), dot_size_nm=8.0, dot_background=0.0, dose=None, rng=13)
    spacing = float(np.linalg.norm(flat.lattice_vectors_px[0]))
    assert diffuse_outline(without_columns(flat.image, true_columns(flat)), flat.rc, spacing) is None
    # A crystal that fills the frame has no carbon to step down to.
    full = make_dot((160, 160), dot_size_nm=12.0, dose=None, rng=14)
    assert diffuse_outline(without_columns(full.image, true_columns(full)), full.rc, spacing) is None


@pytest.mark.parametrize("edge", [True, False])
def test_the_pipeline_places_the_edge_at_the_step(edge):
    dot = edge_dot(0.9, rotation=21.0, dose=100.0, rng=15)
    config = PipelineConfig(classify=ClassifyConfig(edge_from_intensity=edge))
    found = analyze(dot.micrograph(), config)
    assert found.labels is not None
    measured = found.labels.region_map != REGION_OUTSIDE
    if edge:
        assert abs(area_ratio(measured, dot) - 1) < 0.03
        # The region map fills the outline, which is the result's crystal mask.
        assert not (measured & ~found.crystal_mask).any()
        assert measured.sum() >= 0.995 * found.crystal_mask.sum()
    else:  # the columns' hull half a spacing out: 0.4 spacing short of the edge
        assert area_ratio(measured, dot) < 0.96


def test_pixel_noise_falls_as_the_root_of_the_dose_and_ignores_the_scale():
    """Pixel noise over the column height: ~1/sqrt(dose) for counts; the same for any scale of the image."""
    noise = {}
    for dose in (30.0, 400.0):
        dot = make_dot((320, 320), dot_size_nm=8.0, dose=dose, rng=16)
        spacing = float(np.linalg.norm(dot.lattice_vectors_px[0]))
        cols = true_columns(dot)
        noise[dose] = pixel_noise(without_columns(dot.image, cols), cols, spacing)
        scaled = true_columns(dot, 7.0)
        assert pixel_noise(without_columns(7.0 * dot.image, scaled), scaled, spacing) == pytest.approx(noise[dose])
    assert 2.5 < noise[30.0] / noise[400.0] < 4.5  # sqrt(400 / 30) = 3.7


def test_the_interval_widens_with_the_pixel_noise():
    dot = make_dot((320, 320), dot_size_nm=8.0, domain_size_nm=3.0, dose=None, rng=17)
    cols = Columns(rc=dot.rc, peak=dot.amplitude)
    widths = []
    for noise in (0.0, 0.04, 0.15, None):
        _, fractions = classify_columns(cols, shape=dot.image.shape, pixel_noise=noise)
        widths.append(fractions.uniform_ci95[1] - fractions.uniform_ci95[0])
    assert widths[0] < widths[1] < widths[2]
    # An unknown noise is taken as a 30-count image's (ClassifyConfig.unknown_pixel_noise, 0.13): wide, not narrow.
    assert widths[1] < widths[3] < widths[2]
    _, quiet = classify_columns(
        cols, shape=dot.image.shape, pixel_noise=0.15, config=ClassifyConfig(boundary_noise_spacings=0.0)
    )
    assert quiet.uniform_ci95[1] - quiet.uniform_ci95[0] == pytest.approx(widths[0])


def test_an_edge_at_the_columns_hull_carries_its_larger_placement_error_in_the_interval():
    """Where the edge is the columns' hull grown by half a spacing (no diffuse step, or the step not used), the
    interval takes that edge's error (``hull_edge_sd_spacings``); at the step, ``edge_sd_spacings`` alone."""
    dot = make_dot((320, 320), dot_size_nm=8.0, domain_size_nm=3.0, dose=100.0, rng=18)

    def interval(edge: bool, hull_sd: float) -> tuple[float, tuple[float, float]]:
        classify = ClassifyConfig(edge_from_intensity=edge, hull_edge_sd_spacings=hull_sd)
        found = analyze(dot.micrograph(), PipelineConfig(classify=classify))
        assert found.fractions is not None
        return found.fractions.uniform, found.fractions.uniform_ci95

    default = ClassifyConfig()
    hull, hull_as_step = interval(False, default.hull_edge_sd_spacings), interval(False, default.edge_sd_spacings)
    assert hull[0] == hull_as_step[0]
    assert hull[1][1] - hull[1][0] > hull_as_step[1][1] - hull_as_step[1][0]
    assert interval(True, default.hull_edge_sd_spacings) == interval(True, default.edge_sd_spacings)


@pytest.mark.parametrize("seed", [19, 20, 21])
def test_depth_and_reach_from_row_runs_match_the_distance_transform(seed):
    """The hull's interior and its grown band from each row's run are the distance transform's, pixel for pixel,
    for hulls inside the image and cut by its edge."""
    rng = np.random.default_rng(seed)
    for trial in range(20):
        shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
        spread = 20.0 if trial % 2 else 0.0  # columns beyond the image: the hull cut by its edge
        rc = rng.uniform(-spread, np.array(shape) + spread, (int(rng.integers(6, 30)), 2))
        hull = hull_mask(shape, rc)
        radius = float(rng.uniform(0.5, 20.0)) if trial % 5 else float(rng.integers(1, 8))  # integer radii too
        assert np.array_equal(deeper_than(hull, radius), ndimage.distance_transform_edt(hull) > radius)
        assert np.array_equal(grown_by(hull, radius), ndimage.distance_transform_edt(~hull) <= radius)


@pytest.mark.parametrize("pixel_nm", [0.035, 0.02])
def test_the_outline_on_block_means_is_the_full_resolution_one_within_a_pixel(monkeypatch, pixel_nm):
    """The smoothing on block means (2 and 3 px here) moves the edge by at most a pixel from the smoothing at full
    resolution, and the area by < 0.2 %."""
    dot = make_dot((320, 320), pixel_size_nm=pixel_nm, dot_size_nm=120 * pixel_nm, dose=100.0, rng=22)
    spacing = float(np.linalg.norm(dot.lattice_vectors_px[0]))
    rest = without_columns(dot.image, true_columns(dot))
    coarse = diffuse_outline(rest, dot.rc, spacing)
    monkeypatch.setattr(outline, "BLOCKS_PER_SIGMA", np.inf)  # blocks of 1 px: the smoothing at full resolution
    full = diffuse_outline(rest, dot.rc, spacing)
    assert coarse is not None and full is not None
    assert spacing // outline.BLOCKS_PER_SIGMA == 0 and spacing // 4 >= 2
    moved = coarse.mask ^ full.mask
    assert moved.any()  # the two differ, but only at the edge
    edge = full.mask & ~ndimage.binary_erosion(full.mask) | ndimage.binary_dilation(full.mask) & ~full.mask
    assert not (moved & ~edge).any()
    assert abs(int(coarse.mask.sum()) - int(full.mask.sum())) < 0.002 * full.mask.sum()
