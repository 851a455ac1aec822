"""One optics vocabulary: the source size is a FWHM wherever it appears (simulate, compare, the RL step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stem_pipeline.denoise import probe_psf
from stem_pipeline.optics import FWHM_PER_SIGMA, profile_fwhm, sigma_from_fwhm, source_blur

SIM_CONFIGS = Path(__file__).resolve().parents[1] / "sim_configs"


def test_profile_fwhm_of_a_sampled_gaussian():
    x = np.arange(-200, 201) * 0.001
    assert profile_fwhm(np.exp(-0.5 * (x / 0.03) ** 2), 0.001) == pytest.approx(0.03 * FWHM_PER_SIGMA, rel=1e-3)
    with pytest.raises(ValueError, match="half its maximum"):
        profile_fwhm(np.ones(5), 0.1)


def test_source_blur_has_the_fwhm_it_is_given():
    image = np.zeros((201, 201))
    image[100, 100] = 1.0
    for periodic in (True, False):
        blurred = source_blur(image, 0.002, 0.1, periodic=periodic)
        assert profile_fwhm(blurred[100], 0.002) == pytest.approx(0.1, rel=0.02)
        assert blurred.sum() == pytest.approx(1.0)
    assert sigma_from_fwhm(0.1) == pytest.approx(0.1 / 2.3548, rel=1e-4)


def test_rl_psf_and_simulated_probe_agree_on_the_same_source_fwhm():
    """The width RL deconvolves with is the width simulate reports for the same optics.

    Before one meaning was chosen, compare reported a Gaussian sigma under the name the RL
    step reads as a FWHM: copying a fitted source size into the RL step was 2.355x off.
    """
    pytest.importorskip("abtem")
    from stem_pipeline.simulate import load_config
    from stem_pipeline.simulate.run import probe_fwhm_nm

    config = load_config(SIM_CONFIGS / "cspbi3_001.yaml")
    for fwhm in (0.05, 0.1):
        sim = config.model_copy(
            update={"microscope": config.microscope.model_copy(update={"source_fwhm_nm": fwhm, "defocus_nm": 0.0})}
        )
        m = sim.microscope
        psf = probe_psf(
            301, pixel_size_nm=0.002, energy_kev=m.energy_kev, convergence_mrad=m.convergence_mrad, source_fwhm_nm=fwhm
        )
        rl = profile_fwhm(psf[150], 0.002)
        assert rl == pytest.approx(probe_fwhm_nm(sim)["effective"], rel=0.05)
