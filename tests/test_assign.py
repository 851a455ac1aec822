"""Two lattices in one image: a consistent basis, one lattice per column, and sharp regions between them."""

import numpy as np
import pytest
from helpers import same_lattice
from scipy.spatial import cKDTree

from stem_pipeline._types import LABELS, Columns
from stem_pipeline.columns.assign import grid_misfit, nearest_column_regions, resolve_shared_columns
from stem_pipeline.lattice import find_lattice
from stem_pipeline.synthetic import render_gaussians

SHAPE = (384, 384)


def _grid(v1, v2, keep, n=60):
    """Grid points ``centre + i v1 + j v2`` inside the image where ``keep(row, col)``."""
    i, j = np.mgrid[-n:n, -n:n]
    pts = np.array(SHAPE) / 2 + i.reshape(-1, 1) * np.asarray(v1) + j.reshape(-1, 1) * np.asarray(v2)
    inside = np.all((pts >= 0) & (pts < np.array(SHAPE)), axis=1)
    pts = pts[inside]
    return pts[[bool(keep(r, c)) for r, c in pts]]


def _blobs(points, sigma=2.0):
    rr, cc = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img = np.zeros(SHAPE, np.float32)
    for r, c in points:
        r0, c0 = int(r), int(c)
        sl = (slice(max(r0 - 8, 0), r0 + 9), slice(max(c0 - 8, 0), c0 + 9))
        img[sl] += np.exp(-((rr[sl] - r) ** 2 + (cc[sl] - c) ** 2) / (2 * sigma**2))
    return img


A = np.array([[0.0, 10.5], [12.0, 0.0]])
_T = np.deg2rad(35.0)
B = np.array([[10 * np.cos(_T), 10 * np.sin(_T)], [-10 * np.sin(_T) + 1.5, 10 * np.cos(_T)]])


def test_find_lattice_does_not_mix_two_crystals_into_one_basis():
    # Left half on grid A (10.5 x 12 px), right half on grid B: the strongest reflection is A's and
    # the strongest one not collinear with it is B's; a basis of the two would be neither crystal.
    left = _grid(*A, lambda r, c: c < 192)
    right = _grid(*B, lambda r, c: c >= 192)
    image = _blobs(np.concatenate([left, right])) + np.random.default_rng(0).normal(0, 0.05, SHAPE).astype(np.float32)
    lat = find_lattice(image)
    assert same_lattice(lat.vectors_px, A, rtol=0.02) or same_lattice(lat.vectors_px, B, rtol=0.02), lat


def test_grid_misfit_is_zero_inside_a_grid_and_the_cap_for_a_lone_column():
    pts = _grid([0.0, 9.0], [9.0, 0.0], lambda r, c: 100 <= r < 200 and 100 <= c < 200)
    lone = np.array([[20.0, 20.0]])
    misfit = grid_misfit(np.concatenate([pts, lone]), np.array([[0.0, 9.0], [9.0, 0.0]]), tolerance_px=3.0)
    interior = np.all((pts > 110) & (pts < 190), axis=1)
    assert np.allclose(misfit[:-1][interior], 0.0, atol=1e-9)
    assert misfit[-1] == pytest.approx(3.0)
    assert grid_misfit(np.zeros((0, 2)), np.eye(2), tolerance_px=1.0).shape == (0,)


def test_shared_columns_go_to_the_grid_that_fits_them_and_regions_follow():
    vec_a = np.array([[0.0, 9.0], [9.0, 0.0]])
    vec_b = 10.0 * np.array([[np.sin(0.4), np.cos(0.4)], [np.cos(0.4), -np.sin(0.4)]])
    true_a = _grid(*vec_a, lambda r, c: c < 192)
    true_b = _grid(*vec_b, lambda r, c: c >= 192)
    # Lattice A's search also claimed B's columns next to the boundary (within 3 spacings).
    claimed = true_b[true_b[:, 1] < 222]
    parts = [Columns(rc=np.concatenate([true_a, claimed])), Columns(rc=true_b)]
    a, b = resolve_shared_columns(parts, [vec_a, vec_b])
    assert len(a) == len(true_a) and np.all(a.rc[:, 1] < 192)
    assert len(b) == len(true_b)
    mask = np.ones(SHAPE, bool)
    mask[:, :10] = False
    region_a, region_b = nearest_column_regions([a, b], mask)
    assert not np.any(region_a & region_b) and np.array_equal(region_a | region_b, mask)
    cols = np.arange(SHAPE[1])
    share_a = region_a[20:-20].mean(axis=0)
    assert share_a[(cols > 20) & (cols < 180)].min() == 1.0 and share_a[cols > 205].max() == 0.0
    (only,) = nearest_column_regions([a], mask)
    assert np.array_equal(only, mask)


def test_two_lattice_dot_each_column_on_its_phase_grid_and_regions_match_truth(two_lattice_dot):
    dot, result = two_lattice_dot
    assert len(result.lattices) == 2 and result.fractions is not None, result.message
    spacings = [lat.spacing_px * 0.03 for lat in result.lattices]
    uniform_lattice = int(np.argmax(spacings))  # the 0.347 nm grid
    # Columns well inside a true uniform domain are on the uniform grid, and vice versa.
    from scipy import ndimage

    inner = {code: ndimage.binary_erosion(dot.region_map == code, iterations=int(1.0 / 0.03)) for code in (1, 2)}
    r, c = np.round(result.columns.rc).astype(int).T
    on_uniform = result.columns.lattice == uniform_lattice
    assert on_uniform[inner[2][r, c]].mean() >= 0.98
    assert (~on_uniform[inner[1][r, c]]).mean() >= 0.98
    # Pixel labels inside the dot agree with the truth on all but a boundary strip.
    found, truth = result.labels.region_map, dot.region_map
    inside = truth != 0
    assert np.mean(found[inside] == truth[inside]) >= 0.95
    assert LABELS[result.labels.label[on_uniform][0]] == "uniform"


@pytest.mark.parametrize("seed", [20, 22])
def test_every_found_column_lies_in_the_crystal_area(seed):
    # The area mask edge sits at half the lattice amplitude; a weak lattice's small domains can fall
    # below it, and their columns' cells must still count as crystal.
    from stem_pipeline.pipeline import analyze
    from stem_pipeline.synthetic import make_dot

    dot = make_dot(
        SHAPE,
        pixel_size_nm=0.03,
        dot_size_nm=9.0,
        uniform_fraction=0.5,
        spacing_uniform_nm=0.347,
        rotation_deg=7.0 * seed,
        dose=100.0,
        dim_ratio=0.3,
        rng=seed,
    )
    result = analyze(dot.micrograph())
    r, c = np.round(result.columns.rc).astype(int).T
    assert result.crystal_mask[r, c].all()
    assert (result.labels.region_map[r, c] != 0).all()


def test_columns_at_the_interface_of_two_grids_are_located_as_well_as_inside():
    """Each column's fit window stops at its neighbours on the other grid too (columns refined together)."""
    from stem_pipeline import Micrograph
    from stem_pipeline.pipeline import analyze

    px, shape, rng = 0.03, (320, 320), np.random.default_rng(0)

    def grid(spacing_nm, theta_deg, side):
        t = np.deg2rad(theta_deg)
        u, w = spacing_nm / px * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        i, j = (a.ravel() for a in np.meshgrid(np.arange(-40, 41), np.arange(-40, 41), indexing="ij"))
        rc = 160 + i[:, None] * u + j[:, None] * w
        keep = side(rc[:, 1]) & np.all((rc > 40) & (rc < 280), axis=1)
        return rc[keep], i[keep], j[keep]

    # CsPbI3-like ordered grid on the left, a 0.347 nm uniform grid (PbI2 <1 -1 1>-like) on the right.
    rc_o, i, j = grid(0.3145, 10, lambda col: col < 160)
    rc_u, _, _ = grid(0.347, 18, lambda col: col >= 161.7)
    rc = np.concatenate([rc_o, rc_u])
    height = np.concatenate([np.where((i % 2 == 0) & (j % 2 == 0), 1.0, 0.35), np.full(len(rc_u), 0.8)])
    image = rng.poisson(render_gaussians(shape, rc, height, 0.045 / px) * 400 + 20).astype(np.float32)
    # Two grids 8 deg apart meeting on a straight line read as touching dots to the field segmentation;
    # this test is about the columns at the interface, so the one-crystal analysis without the dot check.
    result = analyze(Micrograph(image, pixel_size_nm=px), check_dots=False)
    assert len(result.lattices) == 2
    dist, nearest = cKDTree(rc).query(result.columns.rc)
    assert np.mean(dist < 2) > 0.99 and len(result.columns) > 0.99 * len(rc)
    interface = np.abs(rc[nearest, 1] - 160) < 0.5 / px
    rms_interface, rms_inside = (np.sqrt(np.mean(dist[s] ** 2)) for s in (interface, ~interface))
    assert rms_interface < 1.25 * rms_inside, (rms_interface, rms_inside)
    assert dist[interface].max() < 0.25


def test_nearest_column_regions_by_row_blocks_equal_one_block(monkeypatch):
    from stem_pipeline import _tiles

    rng = np.random.default_rng(8)
    mask = np.zeros((80, 60), bool)
    mask[5:75, 4:50] = True
    a = Columns(rc=rng.uniform([0, 0], [80, 30], size=(25, 2)))
    b = Columns(rc=rng.uniform([0, 30], [80, 60], size=(25, 2)))
    monkeypatch.setattr(_tiles, "BLOCK_PIXELS", 1 << 40)
    one = nearest_column_regions([a, b], mask)
    monkeypatch.setattr(_tiles, "BLOCK_PIXELS", 100)  # one row per block
    many = nearest_column_regions([a, b], mask)
    for x, y in zip(one, many):
        np.testing.assert_array_equal(x, y)
    assert np.array_equal(one[0] | one[1], mask) and not (one[0] & one[1]).any()
