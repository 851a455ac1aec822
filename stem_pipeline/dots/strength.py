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
from scipy.special import expit

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
#: The filters are applied where the band's logistic edge is above exp(-this) (2e-9 at 20: below float32
#: rounding of the filtered image); beyond, the spectrum is taken as zero.
BAND_REACH_WIDTHS = 20.0


#: Largest side of the strength and orientation maps [px]: a larger image's maps are block means
#: over ``factor`` x ``factor`` pixels (an 8192^2 field at full resolution took ~5 GB to segment;
#: the maps are smoothed over 0.3 nm anyway, and a dot's outline keeps ``factor`` px precision).
MAX_MAP_SIDE_PX = 1024
#: Fewest map pixels per smoothing width (sigma, ``smoothing_nm``): an image sampled finer than that has
#: its maps as block means too, as coarse as this allows (blocks of 2 at 0.02 nm/px, none at 0.035). At
#: 0.02 nm/px it halved the segmentation's CPU (0.56 -> 0.25 s of a 1024^2 dot, benchmarks/process.py)
#: and moved the dot's outline by 121 of 491,183 px (0.02 % of its area).
MIN_MAP_PIXELS_PER_SIGMA = 6
#: Pixels of one filtered strip of rows (with its halo): bounds the memory of the filter bank.
STRIP_PIXELS = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True, eq=False)
class LatticeField:
    """Local lattice strength and orientation of an image, on a grid ``factor`` times coarser.

    Attributes
    ----------
    strength : (P, Q) ndarray of float32
        Smoothed band-pass energy summed over all rotations [counts^2].
    orientation : (P, Q) ndarray of complex64
        Smoothed energies weighted by ``exp(4i theta)``; ``angle / 4`` is the
        lattice rotation and ``abs / strength`` the four-fold coherence (0 for
        isotropic texture, near 1 for one square lattice).
    factor : int
        Image pixels per map pixel along each axis (P = ceil(M / factor)); 1 for images up to
        :data:`MAX_MAP_SIDE_PX` sampled no finer than :data:`MIN_MAP_PIXELS_PER_SIGMA` allows.
    """

    strength: np.ndarray
    orientation: np.ndarray
    factor: int = 1

    def reduce(self, mask: np.ndarray) -> np.ndarray:
        """An image-sized mask on the map's grid (a map pixel is in when most of its block is)."""
        mask = np.asarray(mask)
        if mask.shape == self.strength.shape:
            return mask
        return block_mean(mask.astype(np.float32), self.factor) > 0.5

    def rotation_deg(self, mask: np.ndarray | None = None) -> np.ndarray | float:
        """Lattice rotation [deg] in [0, 90): per map pixel, or the energy-weighted mean over ``mask``."""
        z = self.orientation if mask is None else complex(self.orientation[self.reduce(mask)].sum())
        return np.mod(np.rad2deg(np.angle(z)) / 4.0, 90.0)

    def coherence(self, mask: np.ndarray) -> float:
        """Four-fold coherence over ``mask``: |sum of orientation| / sum of strength."""
        mask = self.reduce(mask)
        total = float(self.strength[mask].sum())
        return abs(complex(self.orientation[mask].sum())) / total if total > 0 else 0.0


def block_mean(data: np.ndarray, factor: int) -> np.ndarray:
    """Means over ``factor`` x ``factor`` blocks; a partial block at the end averages what it holds."""
    if factor == 1:
        return data
    m, n = data.shape
    p, q = -(-m // factor), -(-n // factor)
    if factor == 2:
        # Pairs of strided slices: reduceat's sums to the bit (a + b, both axes), ~25x faster than its
        # per-block loop over 2-pixel blocks (~0.03 s CPU of the 1024^2 process's three maps,
        # benchmarks/process.py). Larger blocks sum in another order in reduceat, so they keep it.
        sums = data[0::2].copy()
        sums[: m // 2] += data[1::2]
        sums, odd = sums[:, 0::2].copy(), sums[:, 1::2]
        sums[:, : n // 2] += odd
    else:
        sums = np.add.reduceat(np.add.reduceat(data, np.arange(0, m, factor), axis=0), np.arange(0, n, factor), axis=1)
    counts = np.outer(np.diff(np.append(np.arange(0, m, factor), m)), np.diff(np.append(np.arange(0, n, factor), n)))
    return (sums / counts).astype(np.float32).reshape(p, q)


def block_expand(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of :func:`block_mean` for labels: every map pixel repeated over its block, cut to ``shape``."""
    if factor == 1:
        return small
    return np.repeat(np.repeat(small, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]


def lattice_field(image: np.ndarray, *, pixel_size_nm: float, smoothing_nm: float = 0.3) -> LatticeField:
    """Local lattice strength and orientation of a (raw) image.

    The filter bank runs over strips of rows with a halo (the zero padding of the whole image
    where a strip meets its edge), and a large image's maps are block means
    (:data:`MAX_MAP_SIDE_PX`), so the memory stays bounded; so are a finely sampled image's
    (:data:`MIN_MAP_PIXELS_PER_SIGMA`): the maps are smoothed over ``smoothing_nm`` anyway.

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
    m, n = data.shape
    factor = max(1, -(-max(m, n) // MAX_MAP_SIDE_PX), int(smoothing_nm / MIN_MAP_PIXELS_PER_SIGMA / pixel_size_nm))
    # Zero padding (after removing the mean) keeps a dot at one edge from wrapping onto the opposite edge.
    pad = int(np.ceil(PAD_NM / pixel_size_nm))
    mean = np.float32(data.mean())
    rows = max(factor, (STRIP_PIXELS // (n + 2 * pad) - 2 * pad) // factor * factor)
    maps = np.zeros((3, -(-m // factor), -(-n // factor)), np.float32)  # strength, cos 4theta, sin 4theta
    for r0 in range(0, m, rows):
        r1 = min(r0 + rows, m)
        a0, a1 = max(r0 - pad, 0), min(r1 + pad, m)
        strip = np.zeros((r1 - r0 + 2 * pad, n + 2 * pad), np.float32)
        strip[pad - (r0 - a0) : pad + (a1 - r0), pad : pad + n] = data[a0:a1] - mean
        energies = _band_energies(strip, f_lo, f_hi, keep=(slice(pad, pad + r1 - r0), slice(pad, pad + n)))
        for k, e in enumerate(energies):
            maps[k, r0 // factor : -(-r1 // factor)] = block_mean(e, factor)
    # The local averaging is linear: smoothing the sums equals summing the smoothed energies.
    sigma_px = smoothing_nm / pixel_size_nm / factor
    strength = gaussian_smooth(maps[0], sigma_px)
    orientation = (gaussian_smooth(maps[1], sigma_px) + 1j * gaussian_smooth(maps[2], sigma_px)).astype(np.complex64)
    return LatticeField(strength=strength, orientation=orientation, factor=factor)


def gaussian_smooth(data: np.ndarray, sigma: float, *, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(data, sigma, mode="reflect", truncate=truncate)`` of a 2-D image, by FFT.

    The same truncated kernel, applied as one product of spectra of the image padded by its
    mirror image (``reflect``) over the kernel's radius, in float64: the result equals
    ndimage's to float rounding (a float32 image: within 1 ulp). Replaces ndimage's direct
    convolution here because its ``2 sigma``-tap sums cost ~0.25 s CPU for the three
    lattice-strength maps of a 1024^2 ``analyze`` process and ~0.15 s for
    :func:`stem_pipeline.dots.unresolved_regions`' smoothing, against ~0.08 s and ~0.05 s
    this way (benchmarks/process.py); a test checks it against ndimage.

    Parameters
    ----------
    data : (M, N) ndarray
        The image. Not modified.
    sigma : float
        Width of the Gaussian [px].
    truncate : float
        The kernel's radius in sigmas, as ndimage's.

    Returns
    -------
    (M, N) ndarray
        The smoothed image, of ``data``'s dtype (float64 for an integer image).
    """
    data = np.asarray(data)
    dtype = data.dtype if data.dtype.kind == "f" else np.float64
    radius = int(truncate * float(sigma) + 0.5)
    if radius < 1 or radius >= min(data.shape):  # nothing to gain, or ndimage's repeated reflections
        return ndimage.gaussian_filter(data.astype(dtype, copy=False), sigma, mode="reflect", truncate=truncate)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / float(sigma) ** 2 * x**2)
    phi /= phi.sum()
    size = [sfft.next_fast_len(n + 2 * radius, real=True) for n in data.shape]
    kernels = []
    for n, transform in zip(size, (sfft.fft, sfft.rfft)):
        k = np.zeros(n)  # the kernel, centred on sample 0 of a circular signal
        k[: radius + 1] = phi[radius:]
        k[n - radius :] = phi[:radius]
        kernels.append(transform(k).real)  # real: the kernel is even
    # The mirror-padded image written into the zero-padded transform buffer (no padded copy beside it),
    # and the inverse as irfft2's two passes with the second on the kept rows only (irfft2 holds an
    # intermediate spectrum beside its input and output): the same numbers (a test checks them against
    # ndimage) at ~2/3 of the peak (unresolved_regions of a 4096^2 noise image 427 -> 285 MB above its start;
    # benchmarks/results/memory.md).
    rows, cols = data.shape
    buffer = np.zeros(size)
    buffer[radius : radius + rows, radius : radius + cols] = data
    buffer[:radius, radius : radius + cols] = buffer[2 * radius - 1 : radius - 1 : -1, radius : radius + cols]
    buffer[radius + rows : 2 * radius + rows, radius : radius + cols] = buffer[
        radius + rows - 1 : rows - 1 : -1, radius : radius + cols
    ]
    padded_rows = slice(0, 2 * radius + rows)
    buffer[padded_rows, :radius] = buffer[padded_rows, 2 * radius - 1 : radius - 1 : -1]
    buffer[padded_rows, radius + cols : 2 * radius + cols] = buffer[padded_rows, radius + cols - 1 : cols - 1 : -1]
    spectrum = sfft.rfft2(buffer, workers=FFT_WORKERS)
    del buffer
    spectrum *= kernels[0][:, None] * kernels[1][None, :]
    # irfft2: the complex pass over axis 0 unscaled, then the real pass over axis 1 with 1 / (N0 N1) applied once.
    spectrum = sfft.ifft(spectrum, axis=0, norm="forward", overwrite_x=True, workers=FFT_WORKERS)
    smooth = sfft.irfft(spectrum[radius : radius + rows], n=size[1], axis=1, norm="forward", workers=FFT_WORKERS)
    del spectrum
    smooth *= np.float64(np.longdouble(1) / np.longdouble(size[0] * size[1]))
    return smooth[:, radius : radius + cols].astype(dtype)


def _band_energies(
    padded: np.ndarray, f_lo: float, f_hi: float, *, keep: tuple[slice, slice]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Band-pass energy of a zero-padded strip, summed over the filter rotations, and its cos/sin(4 theta) weights,
    on the pixels ``padded[keep]`` (the strip less its halo and padding).

    The filters are real and even (four lobes 90 degrees apart, a radial band), so a real
    image's filtered images are real: the half spectrum of a real FFT holds all of it.
    """
    # The band and its lobes on the low-frequency block where the band is above exp(-BAND_REACH_WIDTHS):
    # ~1/9 of the half spectrum at 0.02 nm/px, so the per-rotation products and the inverse transform's
    # first pass cost that much less.
    width = 0.15 * (f_hi - f_lo) + 1e-6
    reach = f_hi + BAND_REACH_WIDTHS * width
    all_fr = sfft.fftfreq(padded.shape[0])
    rows = np.flatnonzero(np.abs(all_fr) <= reach)
    n_cols = int(np.count_nonzero(sfft.rfftfreq(padded.shape[1]) <= reach))
    fr = all_fr[rows].astype(np.float32)[:, None]
    fc = sfft.rfftfreq(padded.shape[1])[:n_cols].astype(np.float32)[None, :]
    radius = np.hypot(fr, fc)
    # Smooth radial band (Gaussian-edged), zero at DC.
    width32 = np.float32(width)
    band = expit((radius - np.float32(f_lo)) / width32)  # logistic edges, without overflow far from them
    band *= expit((np.float32(min(f_hi, 0.5)) - radius) / width32)
    del radius
    phi = np.arctan2(fc, fr)  # angle of (row, col) frequency from the row axis, as make_dot's
    spectrum = sfft.rfft2(padded, workers=FFT_WORKERS)[rows, :n_cols] * band
    del band
    filtered = np.zeros((padded.shape[0], n_cols), spectrum.dtype)
    # The second pass's input at its full width, zero beyond the block: irfft would otherwise zero-pad a
    # copy of the block per rotation (~10 % of lattice_field's CPU, benchmarks/process.py).
    # The second pass over the kept rows only, and the squares and sums over the kept columns only (squared
    # into one contiguous buffer): each row's transform and each pixel's sum are the same numbers, bit for bit
    # (a test checks them), on ~0.7 of the padded strip's pixels for benchmarks/process.py's 1024^2 dot:
    # lattice_field ~0.118 -> ~0.110 s CPU (best of 15 calls, alternating, load ~2).
    rows_kept, cols_kept = keep
    wide = np.zeros((rows_kept.stop - rows_kept.start, padded.shape[1] // 2 + 1), spectrum.dtype)
    shape = (wide.shape[0], cols_kept.stop - cols_kept.start)
    strength = np.zeros(shape, np.float32)
    cos4 = np.zeros(shape, np.float32)
    sin4 = np.zeros(shape, np.float32)
    squared, weighted = np.empty(shape, np.float32), np.empty(shape, np.float32)
    quarter = np.float32(np.pi / 2)
    for theta in np.deg2rad(np.arange(N_ANGLES) * 90.0 / N_ANGLES):
        # Angular distance to the nearest of the four lobes [deg].
        d = np.rad2deg(np.mod(phi - np.float32(theta) + quarter / 2, quarter) - quarter / 2)
        filtered[rows] = spectrum * np.exp(-0.5 * (d / np.float32(LOBE_SIGMA_DEG)) ** 2)
        # irfft2 as its two passes, the first over the block's columns only (the others are zero).
        wide[:, :n_cols] = sfft.ifft(filtered, axis=0, workers=FFT_WORKERS)[rows_kept]
        energy = np.square(sfft.irfft(wide, n=padded.shape[1], axis=1, workers=FFT_WORKERS)[:, cols_kept], out=squared)
        strength += energy
        for total, weight in ((cos4, np.cos(4 * theta)), (sin4, np.sin(4 * theta))):
            total += np.multiply(energy, np.float32(weight), out=weighted)
    return strength, cos4, sin4
