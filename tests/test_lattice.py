"""Lattice finding and crystal mask against synthetic ground truth."""

import numpy as np
import pytest
from helpers import same_lattice
from scipy import ndimage

from stem_pipeline.lattice import Lattice, block_mean_complex, crystal_mask, find_lattice, reduce_basis
from stem_pipeline.synthetic import make_carbon, make_dot


@pytest.mark.parametrize("rotation_deg", [0.0, 17.0, 33.0])
def test_find_lattice_returns_column_grid_not_superlattice(rotation_deg):
    dot = make_dot((384, 384), dot_size_nm=10, rotation_deg=rotation_deg, uniform_fraction=0.0, rng=1)
    lat = find_lattice(dot.image)
    assert lat is not None
    true_spacing = np.linalg.norm(dot.lattice_vectors_px[0])
    # The column grid a/2 (~9 px), not the bright-site superlattice a (~18 px).
    assert lat.spacing_px == pytest.approx(true_spacing, rel=0.01)
    assert lat.angle_deg == pytest.approx(90.0, abs=1.0)
    assert same_lattice(lat.vectors_px, dot.lattice_vectors_px, rtol=0.02)
    assert lat.strength > 25


def test_find_lattice_low_dose_and_float32_input_unchanged():
    dot = make_dot((256, 256), dot_size_nm=7, dose=30, rng=3)
    image = dot.image.copy()
    assert image.dtype == np.float32
    lat = find_lattice(image)
    np.testing.assert_array_equal(image, dot.image)
    assert lat.spacing_px == pytest.approx(np.linalg.norm(dot.lattice_vectors_px[0]), rel=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_amorphous_carbon_has_no_lattice(seed):
    assert find_lattice(make_carbon((256, 256), rng=seed).data) is None
    assert find_lattice(make_carbon((256, 256), dose=30, rng=seed).data) is None


def test_lattice_dict_round_trip_and_reduction():
    lat = Lattice(vectors_px=[[0.0, 9.0], [9.0, 0.0]], spacing_px=9.0, angle_deg=90.0, strength=50.0)
    again = Lattice.from_dict(lat.to_dict())
    np.testing.assert_array_equal(again.vectors_px, lat.vectors_px)
    np.testing.assert_allclose(lat.reciprocal_px @ lat.vectors_px.T, np.eye(2), atol=1e-12)
    red = reduce_basis(np.array([[9.0, 0.0], [27.0, 9.0]]))
    np.testing.assert_allclose(np.sort(np.linalg.norm(red, axis=1)), [9.0, 9.0])


def test_crystal_mask_covers_dot_not_carbon():
    dot = make_dot((384, 384), dot_size_nm=8, rng=4)
    lat = find_lattice(dot.image)
    mask = crystal_mask(dot.image, lat)
    inside = dot.region_map > 0
    # Pixels deeper than one spacing inside the dot are crystal ...
    deep_in = ndimage.distance_transform_edt(inside) > lat.spacing_px
    assert mask[deep_in].mean() > 0.99
    # ... and carbon farther than two spacings from the dot is not.
    far_out = ndimage.distance_transform_edt(~inside) > 2 * lat.spacing_px
    assert mask[far_out].mean() < 0.01
    assert mask.dtype == bool and mask.shape == dot.image.shape


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_crystal_area_mask_has_the_dots_area_and_the_search_mask_its_columns(seed):
    from stem_pipeline.lattice import crystal_masks

    rng = np.random.default_rng(seed)
    dot = make_dot(
        (448, 448), dot_size_nm=float(rng.uniform(8, 11)), rotation_deg=float(rng.uniform(-45, 45)), rng=seed
    )
    lat = find_lattice(dot.image)
    inside = dot.region_map > 0
    search, area = crystal_masks(dot.image, lat)  # search is wider: it keeps every edge column
    np.testing.assert_array_equal(search, crystal_mask(dot.image, lat))
    ratio, search_ratio = area.sum() / inside.sum(), search.sum() / inside.sum()
    assert abs(ratio - 1) < 0.08 and abs(ratio - 1) < abs(search_ratio - 1)
    assert np.mean(area == inside) > 0.96
    r, c = np.round(dot.rc).astype(int).T
    assert search[r, c].all()


def test_crystal_mask_empty_on_carbon_with_any_lattice():
    carbon = make_carbon((256, 256), rng=5).data
    lat = Lattice(vectors_px=[[0.0, 9.0], [9.0, 0.0]], spacing_px=9.0, angle_deg=90.0, strength=50.0)
    assert crystal_mask(carbon, lat).mean() < 0.02


@pytest.mark.parametrize(("rotation_deg", "dose", "seed"), [(20.0, 100.0, 5), (70.0, 400.0, 70), (0.0, 30.0, 1)])
def test_rotated_pure_ordered_dot_gives_the_square_column_grid_not_a_centred_one(rotation_deg, dose, seed):
    """The (1,1) reflections of the a/2 grid must not out-rank the (1,0) ones (a centred cell of spacing a/2/sqrt(2))."""
    from stem_pipeline.denoise import denoise

    dot = make_dot(
        (384, 384),
        pixel_size_nm=0.03,
        dot_size_nm=9,
        uniform_fraction=0.0,
        rotation_deg=rotation_deg,
        dose=dose,
        rng=seed,
    )
    lattice = find_lattice(denoise(dot.image, pixel_size_nm=dot.pixel_size_nm))
    true_spacing = np.linalg.norm(dot.lattice_vectors_px[0])
    assert lattice.spacing_px == pytest.approx(true_spacing, rel=0.03)
    assert lattice.angle_deg == pytest.approx(90.0, abs=3.0)


@pytest.mark.parametrize("uniform_fraction", [0.0, 1.0])
def test_a_small_dots_outline_is_not_a_second_lattice(uniform_fraction):
    # An 8.4 nm dot: its outline gives low-frequency peaks (periods of ~3 nm) off the column grid, which were
    # counted as a second lattice's reflections and stopped the phase fractions of 1 dot in 8 (seeds 60000+).
    dot = make_dot(
        (512, 512),
        pixel_size_nm=0.03355,
        dot_size_nm=8.38,
        rotation_deg=5.84,
        domain_size_nm=1.93,
        thickness_gradient=0.07,
        uniform_fraction=uniform_fraction,
        dose=None,
        rng=60026,
    )
    lattice = find_lattice(dot.image)
    assert lattice.foreign_peaks == 0
    assert lattice.spacing_px == pytest.approx((0.32 if uniform_fraction else 0.3145) / 0.03355, rel=0.01)


@pytest.mark.parametrize("shape", [(96, 110), (97, 83)])
def test_spectrum_passes_by_row_blocks_equal_whole_image_ones(shape, monkeypatch):
    """The power spectrum from the real FFT, the peak search and the lattice suppression, a few rows at a
    time, equal the whole-image computations (fails if the mirror half, the halo or the blocks are wrong)."""
    from stem_pipeline import _tiles
    from stem_pipeline import lattice as lat_mod
    from stem_pipeline.spectrum import find_peaks, radial_bins, tapered_power

    monkeypatch.setattr(_tiles, "BLOCK_PIXELS", 500)
    dot = make_dot(shape, dot_size_nm=3, rng=2)
    image = dot.image.astype(np.float32)
    img = image - image.mean(dtype=np.float64)
    img = (img * np.hanning(shape[0])[:, None].astype(np.float32)) * np.hanning(shape[1])[None, :].astype(np.float32)
    spec = np.fft.fftshift(np.fft.fft2(img.astype(np.float32)))
    expected = spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2
    power = tapered_power(image)
    np.testing.assert_allclose(power, expected, rtol=1e-5, atol=1e-9 * expected.max())
    # Peak candidates against the whole-image ratio map (a made-up floor, wrapped smoothing and neighbourhood).
    f, bins, _ = radial_bins(shape)
    log_floor = np.log(np.linspace(1.0, 0.1, bins.max() + 1) * power.mean())
    band = (0.05, 0.3)
    for smoothing in (0.0, 1.0):
        smoothed = ndimage.gaussian_filter(power, smoothing, mode="wrap") if smoothing else power
        ratio = smoothed / np.exp(log_floor)[bins]
        cand = (f >= band[0]) & (f <= band[1]) & (ndimage.maximum_filter(ratio, size=5, mode="wrap") == ratio)
        cand &= ratio > 2.0
        peaks = find_peaks(power, log_floor, threshold=2.0, band=band, smoothing_px=smoothing)
        assert len(peaks) > 3
        order = np.lexsort(peaks.index.T[::-1])
        np.testing.assert_array_equal(peaks.index[order].T, np.stack(np.nonzero(cand)))
        np.testing.assert_allclose(peaks.ratio[order], ratio[cand])
        assert np.all(np.diff(peaks.ratio) <= 0)
    # Suppression against the full complex FFT with the same notches.
    lattice = Lattice(vectors_px=dot.lattice_vectors_px, spacing_px=9.0, angle_deg=90.0, strength=50.0)
    m, n = shape
    g = lattice.reciprocal_px * np.array([m, n])
    freq = np.stack(np.meshgrid(np.arange(m) - m // 2, np.arange(n) - n // 2, indexing="ij"), axis=-1)
    hk = np.round(2 * freq @ np.linalg.inv(g)) / 2
    keep = (np.hypot(*np.moveaxis(freq - hk @ g, -1, 0)) > 2.5) | np.all(hk == 0, axis=-1)
    data = image.astype(np.float64)
    full = np.fft.ifft2(np.fft.ifftshift(np.fft.fftshift(np.fft.fft2(data - data.mean())) * keep)).real + data.mean()
    np.testing.assert_allclose(lat_mod.suppress_lattice(image, lattice), full, atol=1e-6 * np.abs(full).max())


@pytest.mark.parametrize("radius", [0.7, 2.0, 3.4])
def test_within_distance_by_row_blocks_equals_the_whole_image_transform(radius):
    from stem_pipeline._tiles import within_distance

    mask = np.random.default_rng(3).random((61, 47)) > 0.985
    mask[30:33, 10:20] = True
    expected = ndimage.distance_transform_edt(~mask) <= radius
    got = within_distance(mask, radius, pixels=3 * 47)  # three rows per block
    np.testing.assert_array_equal(got, expected)
    assert not within_distance(np.zeros((5, 5), bool), radius).any()
    # One blob away from the edges (the transform runs on its grown bounding box only), and one at a corner.
    for blob in (np.s_[25:31, 12:19], np.s_[:4, 44:]):
        mask = np.zeros((61, 47), bool)
        mask[blob] = True
        mask[blob][1, 1] = False
        expected = ndimage.distance_transform_edt(~mask) <= radius
        for pixels in (None, 2 * 47):
            np.testing.assert_array_equal(within_distance(mask, radius, pixels=pixels), expected)


def test_fill_holes_equals_ndimage_binary_fill_holes():
    """Random masks of every density, thin and empty images, holes touching nothing and regions at the edges."""
    from stem_pipeline._tiles import fill_holes

    rng = np.random.default_rng(6)
    shapes = [(1, 1), (1, 9), (7, 1), (0, 4)] + [tuple(rng.integers(2, 70, 2)) for _ in range(80)]
    for shape in shapes:
        mask = rng.random(shape) < rng.uniform(0.1, 0.95)
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    ring = np.zeros((30, 30), bool)
    ring[5:20, 5:20] = True
    ring[8:12, 8:12] = False  # a hole
    assert fill_holes(ring)[8:12, 8:12].all() and not fill_holes(ring)[0].any()


@pytest.mark.parametrize("block", [1, 3, 4, 5, 7, 9, 70])
def test_block_mean_complex_is_numpys_block_mean(block):
    """The demodulation's block means: numpy's reshape-and-mean, at line lengths on both sides of the pairwise
    sum's four running sums (and past the longest line it reproduces). The same float32 bits with numpy 2.x's
    summation order; checked to a few float32 ulps, so that a numpy that sums in another order fails nothing
    the analysis depends on."""
    rng = np.random.default_rng(block)
    shape = (block * 6, block * 11)
    part = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64) * np.float32(37.5)
    expected = part.reshape(-1, block, shape[1] // block, block).mean(axis=(1, 3))
    got = block_mean_complex(part, block)
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, expected, rtol=3e-7, atol=3e-7 * float(np.abs(expected).max()))
