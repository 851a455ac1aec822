"""One spectrum core: the bragg Fourier filter and the lattice finder take their peaks from it."""

import numpy as np
import pytest

from stem_pipeline import spectrum
from stem_pipeline.denoise import find_bragg_peaks
from stem_pipeline.lattice import find_lattice
from stem_pipeline.synthetic import make_carbon, make_dot


@pytest.fixture(scope="module")
def dot():
    return make_dot((256, 256), dot_size_nm=7, dose=100, rotation_deg=23.0, rng=41)


def test_the_bragg_filters_peaks_are_the_cores_peaks(dot):
    """Every peak of find_bragg_peaks is a peak of the core's search at the filter's threshold, at the core's
    sub-pixel position (the filter only drops side lobes and peaks that fit no lattice)."""
    shape = np.array(dot.image.shape)
    power = spectrum.centred_power(spectrum.periodic_spectrum(dot.image)[0])
    band = (8.0 / shape.min(), 1.0 / 2.5)  # find_bragg_peaks' defaults
    core = spectrum.find_peaks(power, spectrum.centred_log_floor(power), threshold=8.0, band=band)
    core_freq = (spectrum.subpixel(power, core.index) - shape // 2) / shape
    peaks = find_bragg_peaks(dot.image)
    assert len(peaks) >= 8
    distance = np.hypot(*(peaks[:, None, :] - core_freq[None, :, :]).T).T.min(axis=1)
    np.testing.assert_allclose(distance, 0.0, atol=1e-6)


def test_the_lattice_is_built_on_peaks_the_bragg_filter_finds_too(dot):
    """The lattice's reciprocal basis (from the tapered spectrum) and the filter's peaks (from the periodic
    component) come from one search: the same reflections, within a fraction of an FFT pixel."""
    lattice = find_lattice(dot.image)
    peaks = find_bragg_peaks(dot.image)
    pixel = 1.0 / dot.image.shape[0]
    for g in np.concatenate([lattice.reciprocal_px, -lattice.reciprocal_px]):
        assert np.hypot(*(peaks - g).T).min() < 0.5 * pixel


@pytest.mark.parametrize("seed", [0, 1])
def test_both_users_agree_on_whether_an_image_is_crystalline(seed):
    carbon = make_carbon((256, 256), dose=50, rng=seed).data
    crystal = make_dot((256, 256), dot_size_nm=6, dose=20, rng=seed).image
    assert find_lattice(carbon) is None and len(find_bragg_peaks(carbon)) == 0
    assert find_lattice(crystal) is not None and len(find_bragg_peaks(crystal)) > 0


def test_a_change_to_the_cores_noise_floor_reaches_both_users(dot, monkeypatch):
    """Raise the core's fitted floor a thousandfold (its log-mean correction): a crystal the size of the field
    then has no peak for either user. Fails if either kept a background of its own."""
    assert find_lattice(dot.image) is not None and len(find_bragg_peaks(dot.image)) > 0
    monkeypatch.setattr(spectrum, "EULER_GAMMA", spectrum.EULER_GAMMA + np.log(1e5))
    assert find_lattice(dot.image) is None
    assert len(find_bragg_peaks(dot.image)) == 0


def test_a_spectrum_of_one_row_block_has_the_floor_and_white_level_of_many(monkeypatch):
    """One row block keeps its bins and logs for the capped pass; many blocks compute them again: the same sums."""
    from stem_pipeline import _tiles
    from stem_pipeline.denoise import fourier

    shape = (96, 130)
    power = (np.random.default_rng(3).random((shape[0], shape[1] // 2 + 1)) ** 4).astype(np.float32)
    power[5, 7] = 1e6  # a peak the winsorising caps
    one = spectrum.half_log_floor(power, shape), fourier._half_white_level(power, shape)
    monkeypatch.setattr(_tiles, "BLOCK_PIXELS", 300)  # many row blocks
    many = spectrum.half_log_floor(power, shape), fourier._half_white_level(power, shape)
    np.testing.assert_allclose(one[0], many[0], rtol=1e-12)
    assert one[1] == pytest.approx(many[1], rel=1e-12)
