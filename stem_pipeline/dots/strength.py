"""Local lattice strength and lattice orientation, from a bank of oriented band-pass filters.

Each filter passes the spatial frequencies of atomic-column spacings
(:data:`SPACING_BAND_NM`) in four narrow angular lobes at ``theta``,
``theta + 90``, ``theta + 180`` and ``theta + 270`` degrees, the reflections of
a square grid rotated by ``theta``. The local energy of each filtered image,
smoothed, tells how much square lattice at that rotation a neighbourhood
holds: its sum over the bank is the lattice strength (amorphous carbon and
Poisson noise give a low, flat level), and the energies' circular mean over
the 90-degree period is the local lattice orientation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..denoise._common import FFT_WORKERS

#: Column spacings passed by the filters [nm]: the CsPbI3 a/2 (0.3145) and PbI2/FAPbI3 (~0.32-0.35)
#: grids, without the diagonal 0.22 nm reflections (at 45 deg, they would pull the orientation mean).
SPACING_BAND_NM = (0.26, 0.42)
#: Zero padding around the image before filtering [nm] (longer than the filters' reach).
PAD_NM = 2.0
#: Number of filter rotations over the 90-degree period (7.5-degree steps).
N_ANGLES = 12
#: Angular half-width (sigma) of each lobe [deg]: neighbouring filters overlap, so no rotation is missed.
LOBE_SIGMA_DEG = 5.0


@dataclasses.dataclass(frozen=True, eq=False)
class LatticeField:
    """Local lattice strength and orientation of an image.

    Attributes
    ----------
    strength : (M, N) ndarray of float32
        Smoothed band-pass energy summed over all rotations [counts^2].
    orientation : (M, N) ndarray of complex64
        Smoothed energies weighted by ``exp(4i theta)``; ``angle / 4`` is the
        lattice rotation and ``abs / strength`` the four-fold coherence (0 for
        isotropic texture, near 1 for one square lattice).
    """

    strength: np.ndarray
    orientation: np.ndarray

    def rotation_deg(self, mask: np.ndarray | None = None) -> np.ndarray | float:
        """Lattice rotation [deg] in [0, 90): per pixel, or the energy-weighted mean over ``mask``."""
        z = self.orientation if mask is None else complex(self.orientation[mask].sum())
        return np.mod(np.rad2deg(np.angle(z)) / 4.0, 90.0)

    def coherence(self, mask: np.ndarray) -> float:
        """Four-fold coherence over ``mask``: |sum of orientation| / sum of strength."""
        total = float(self.strength[mask].sum())
        return abs(complex(self.orientation[mask].sum())) / total if total > 0 else 0.0


def lattice_field(image: np.ndarray, *, pixel_size_nm: float, smoothing_nm: float = 0.3) -> LatticeField:
    """Local lattice strength and orientation of a (raw) image.

    Parameters
    ----------
    image : (M, N) ndarray
        The image [counts]. Not modified.
    pixel_size_nm : float
        Pixel size [nm]; the filters pass spacings in :data:`SPACING_BAND_NM`.
    smoothing_nm : float
        Width (sigma) of the local averaging of the energies [nm].

    Returns
    -------
    LatticeField

    Raises
    ------
    ValueError
        If the pixel size cannot sample the band (above ~0.13 nm: an overview image).
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"image has shape {data.shape}: need a 2-D image")
    f_lo, f_hi = (pixel_size_nm / s for s in SPACING_BAND_NM[::-1])  # cycles/px
    if f_lo >= 0.5:
        raise ValueError(
            f"pixel_size_nm={pixel_size_nm}: too coarse to resolve column spacings of {SPACING_BAND_NM} nm; "
            "segment it as an overview image (stem_pipeline.dots.segment_overview)"
        )
    # Zero padding (after removing the mean) keeps a dot at one edge from wrapping onto the opposite edge.
    pad = int(np.ceil(PAD_NM / pixel_size_nm))
    padded = np.pad(data - data.mean(), pad)
    fr = sfft.fftfreq(padded.shape[0])[:, None]
    fc = sfft.fftfreq(padded.shape[1])[None, :]
    radius = np.hypot(fr, fc)
    # Smooth radial band (Gaussian-edged), zero at DC.
    width = 0.15 * (f_hi - f_lo) + 1e-6
    band = 1.0 / (1.0 + np.exp(-(radius - f_lo) / width)) / (1.0 + np.exp((radius - min(f_hi, 0.5)) / width))
    phi = np.arctan2(fc, fr).astype(np.float32)  # angle of (row, col) frequency from the row axis, as make_dot's
    spectrum = sfft.fft2(padded, workers=FFT_WORKERS).astype(np.complex64)
    spectrum *= band.astype(np.float32)
    strength = np.zeros(data.shape, np.float32)
    cos4 = np.zeros(data.shape, np.float32)
    sin4 = np.zeros(data.shape, np.float32)
    inner = (slice(pad, pad + data.shape[0]), slice(pad, pad + data.shape[1]))
    quarter = np.float32(np.pi / 2)
    for theta in np.deg2rad(np.arange(N_ANGLES) * 90.0 / N_ANGLES):
        # Angular distance to the nearest of the four lobes [deg].
        d = np.rad2deg(np.mod(phi - np.float32(theta) + quarter / 2, quarter) - quarter / 2)
        lobes = np.exp(-0.5 * (d / np.float32(LOBE_SIGMA_DEG)) ** 2)
        energy = np.abs(sfft.ifft2(spectrum * lobes, workers=FFT_WORKERS)[inner]) ** 2
        strength += energy
        cos4 += energy * np.float32(np.cos(4 * theta))
        sin4 += energy * np.float32(np.sin(4 * theta))
    # The local averaging is linear: smoothing the sums equals summing the smoothed energies.
    sigma_px = smoothing_nm / pixel_size_nm
    strength = ndimage.gaussian_filter(strength, sigma_px, mode="reflect")
    orientation = (
        ndimage.gaussian_filter(cos4, sigma_px, mode="reflect")
        + 1j * ndimage.gaussian_filter(sin4, sigma_px, mode="reflect")
    ).astype(np.complex64)
    return LatticeField(strength=strength, orientation=orientation)
