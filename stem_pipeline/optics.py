"""Probe optics shared by the stages: one meaning for the source size, one for the beam energy.

The effective source is a Gaussian described everywhere by its full width at half maximum,
``source_fwhm_nm`` (a fit in one module used to report a standard deviation under the name
the deconvolution read as a FWHM: 2.355x off). The beam energy is ``energy_kev``.
"""

from __future__ import annotations

import math

import numpy as np

#: Full width at half maximum of a Gaussian per standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_HC_KEV_NM = 1.23984198  # h c [keV nm]
_MC2_KEV = 510.99895  # electron rest energy [keV]


def sigma_from_fwhm(fwhm: float) -> float:
    """Standard deviation of a Gaussian of full width at half maximum ``fwhm`` (same unit)."""
    return fwhm / FWHM_PER_SIGMA


def electron_wavelength_nm(energy_kev: float) -> float:
    """Relativistic electron wavelength [nm] at ``energy_kev`` [keV] (0.002508 nm at 200 keV)."""
    return _HC_KEV_NM / math.sqrt(energy_kev * (2 * _MC2_KEV + energy_kev))


def source_blur(
    image: np.ndarray,
    pixel_size_nm: float | tuple[float, float] | np.ndarray,
    source_fwhm_nm: float,
    *,
    periodic: bool,
) -> np.ndarray:
    """Blur an image by the Gaussian effective source.

    Parameters
    ----------
    image : (M, N) ndarray
        The image (a periodic repeat cell when ``periodic``).
    pixel_size_nm : float or (float, float)
        Pixel size, or (row, col) pixel sizes [nm].
    source_fwhm_nm : float
        Full width at half maximum of the source [nm]; 0 returns a float copy.
    periodic : bool
        Wrap around the edges (a repeat cell) instead of extending them.

    Returns
    -------
    (M, N) ndarray of float64
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    if source_fwhm_nm <= 0:
        return img.copy()
    pixel = np.broadcast_to(np.asarray(pixel_size_nm, dtype=np.float64), (2,))
    sigma_px = sigma_from_fwhm(source_fwhm_nm) / pixel
    return ndimage.gaussian_filter(img, sigma_px, mode="wrap" if periodic else "nearest")


def profile_fwhm(profile: np.ndarray, sampling_nm: float) -> float:
    """Full width at half maximum of a single-peaked 1-D profile [nm].

    Both half-maximum crossings are interpolated linearly between samples.

    Parameters
    ----------
    profile : (N,) ndarray
        Samples with the peak away from both ends.
    sampling_nm : float
        Spacing of the samples [nm].
    """
    p = np.asarray(profile, dtype=np.float64)
    half = p.max() / 2
    above = np.nonzero(p >= half)[0]
    lo, hi = int(above[0]), int(above[-1])
    if lo == 0 or hi == len(p) - 1:
        raise ValueError("the profile does not fall below half its maximum on both sides of the peak")
    left = lo - 1 + (half - p[lo - 1]) / (p[lo] - p[lo - 1])
    right = hi + (p[hi] - half) / (p[hi] - p[hi + 1])
    return float((right - left) * sampling_nm)
