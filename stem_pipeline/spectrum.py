"""The power spectrum, its noise floor and its Bragg peaks: one core for the Fourier filters and the lattice.

The spectrum is that of the image's periodic component (Moisan's periodic-plus-smooth
decomposition), so the image edges add no streaks to it. Its background is a *fitted noise
floor*: for every radius, the mean of the log-power over the annulus (winsorised so that Bragg
peaks do not pull it up, and corrected for the exponential distribution of periodogram values),
smoothed along the radius. Bragg peaks are local maxima (5x5, wrapped) of the (optionally
smoothed) power spectrum that stand a given factor above that floor, in a band of frequencies;
their positions are refined to sub-pixel precision by a centroid.

:func:`stem_pipeline.denoise.fourier_filter` (the ``bragg`` mask) and
:func:`stem_pipeline.lattice.find_lattice` both find their peaks with :func:`find_peaks` over the same noise floor; they differ in named
settings only: the threshold, the smoothing, and the lattice's Hann taper (:func:`tapered_power`)
where the filter uses the periodic component (see :class:`stem_pipeline.lattice.LatticeConfig`).

Two layouts are used. The *centred* layout is the fftshift-ed (M, N) spectrum, zero frequency
at ``(M // 2, N // 2)``. The *half* layout is that of :func:`scipy.fft.rfft2`: unshifted,
columns 0 .. N // 2 only. The power spectrum of a real image is point-symmetric, so every
value of the full spectrum is in the half layout; a column whose mirror column is not
(1 .. (N - 1) // 2) stands for two full-spectrum pixels and weighs 2 in radial means. Passes
over whole spectra run a block of rows at a time (:mod:`stem_pipeline._tiles`), so that a
4096^2 image needs few full-size temporaries.

Frequencies are (row, col) in cycles per pixel, in [-0.5, 0.5).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ._threads import FFT_WORKERS
from ._tiles import block_passes, row_blocks

__all__ = [
    "Peaks",
    "centred_log_floor",
    "centred_power",
    "find_peaks",
    "floor_map",
    "half_log_floor",
    "half_power",
    "half_radius",
    "half_weights",
    "tapered_power",
    "periodic_rspectrum",
    "periodic_rspectrum_alone",
    "periodic_spectrum",
    "radial_bins",
    "subpixel",
]

#: Mean of the log of an exponential variable of mean 1 is minus this: the log-mean of periodogram
#: values lies this far below the log of their mean.
EULER_GAMMA = 0.5772156649015329
#: Winsorisation of the radial log-mean: log-powers above the first mean plus log(20) (a 20x excess,
#: which white noise exceeds with probability e^-20) are capped, so Bragg peaks do not lift the floor.
WINSOR_LOG_EXCESS = float(np.log(20.0))
#: Sigma [FFT px] of the Gaussian that smooths the power spectrum before the peak search: pure noise
#: then has mean 1 and standard deviation ~0.3 in units of the floor, and a peak spread over a few
#: pixels (a finite crystal) counts with its neighbours.
PEAK_SMOOTHING_PX = 1.0
#: Side of the square neighbourhood a peak must be the maximum of [FFT px].
PEAK_NEIGHBOURHOOD_PX = 5


@functools.lru_cache(maxsize=8)
def radial_bins(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred frequency radius [cycles/px], integer radial bin and per-bin pixel count (read-only, cached)."""
    fr = sfft.fftshift(sfft.fftfreq(shape[0]))
    fc = sfft.fftshift(sfft.fftfreq(shape[1]))
    f = np.hypot(fr[:, None], fc[None, :])
    bins = np.rint(f * max(shape)).astype(np.intp)
    counts = np.bincount(bins.ravel()).astype(float)
    for a in (f, bins, counts):
        a.setflags(write=False)
    return f, bins, counts


def _boundary_jumps(arr: np.ndarray) -> np.ndarray:
    """The jumps across the image's periodic boundaries, on the border pixels (Moisan's ``v``)."""
    v = np.zeros_like(arr)
    dr = arr[-1, :] - arr[0, :]
    dc = arr[:, -1] - arr[:, 0]
    v[0, :] += dr
    v[-1, :] -= dr
    v[:, 0] += dc
    v[:, -1] -= dc
    return v


def periodic_spectrum(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FFT of the periodic component (unshifted) and the smooth component (Moisan 2011).

    Parameters
    ----------
    arr : (M, N) ndarray of float
        The image.

    Returns
    -------
    spectrum : (M, N) ndarray of complex
    smooth : (M, N) ndarray, ``arr``'s dtype
    """
    m, n = arr.shape
    v = _boundary_jumps(arr)
    q = np.cos(2 * np.pi * np.arange(m) / m)[:, None]
    r = np.cos(2 * np.pi * np.arange(n) / n)[None, :]
    denom = 2 * q + 2 * r - 4
    denom[0, 0] = 1.0
    s_hat = sfft.fft2(v, workers=FFT_WORKERS) / denom.astype(arr.dtype)
    s_hat[0, 0] = 0
    smooth = sfft.ifft2(s_hat, workers=FFT_WORKERS).real.astype(arr.dtype, copy=False)
    spectrum = sfft.fft2(arr, workers=FFT_WORKERS) - s_hat
    return spectrum, smooth


def periodic_rspectrum(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-layout FFT (:func:`scipy.fft.rfft2`) of the periodic component, and the smooth component.

    The same decomposition as :func:`periodic_spectrum`, at half the memory.
    """
    s_hat = _smooth_rspectrum(arr)
    smooth = sfft.irfft2(s_hat, s=arr.shape, workers=FFT_WORKERS).astype(arr.dtype, copy=False)
    spectrum = sfft.rfft2(arr, workers=FFT_WORKERS)
    spectrum -= s_hat
    return spectrum, smooth


def periodic_rspectrum_alone(arr: np.ndarray) -> np.ndarray:
    """``periodic_rspectrum(arr)[0]``: the periodic component's half-layout FFT without the smooth component,
    whose inverse transform a noise level does not need (~0.01 s CPU of a 1024^2 ``analyze``, benchmarks/process.py)."""
    spectrum = sfft.rfft2(arr, workers=FFT_WORKERS)
    spectrum -= _smooth_rspectrum(arr)
    return spectrum


def _smooth_rspectrum(arr: np.ndarray) -> np.ndarray:
    """Half-layout FFT of Moisan's smooth component of ``arr`` (see :func:`periodic_spectrum`)."""
    m, n = arr.shape
    v = _boundary_jumps(arr)
    s_hat = sfft.rfft2(v, workers=FFT_WORKERS)
    del v
    q = np.cos(2 * np.pi * np.arange(m) / m)[:, None]
    r = np.cos(2 * np.pi * np.arange(n // 2 + 1) / n)[None, :]
    denom = (2 * q + 2 * r - 4).astype(arr.dtype)
    denom[0, 0] = 1.0
    s_hat /= denom
    del denom
    s_hat[0, 0] = 0
    return s_hat


def half_radius(shape: tuple[int, int], rows: slice = slice(None)) -> np.ndarray:
    """Frequency radius [cycles/px] of the half layout of an image of ``shape`` (rows ``rows``); read-only.

    Kept for the last two blocks asked for: the denoise chain asks five times for the same radii of an
    image of up to :data:`~stem_pipeline._tiles.BLOCK_PIXELS` half-layout pixels, each ~5 ms CPU at
    1024^2 (``hypot`` is slow; benchmarks/process.py).
    """
    return _half_radius((int(shape[0]), int(shape[1])), rows.indices(int(shape[0])))


@functools.lru_cache(maxsize=2)
def _half_radius(shape: tuple[int, int], rows: tuple[int, int, int]) -> np.ndarray:
    fr = sfft.fftfreq(shape[0])[slice(*rows)]
    fc = sfft.rfftfreq(shape[1])
    radius = np.hypot(fr[:, None], fc[None, :])
    radius.setflags(write=False)
    return radius


def half_weights(n: int) -> np.ndarray:
    """(N // 2 + 1,) full-spectrum pixels each half-layout column stands for (1 or 2)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return w


def half_power(spectrum: np.ndarray) -> np.ndarray:
    """``|spectrum| ** 2`` in the spectrum's real precision."""
    power = np.abs(spectrum)
    power *= power
    return power


def half_log_floor(power: np.ndarray, shape: tuple[int, int], *, smooth_bins: float = 1.0) -> np.ndarray:
    """Per radial bin, the log of the fitted noise floor of a half-layout power spectrum.

    Parameters
    ----------
    power : (M, N // 2 + 1) ndarray
        Half-layout power spectrum of an (M, N) image.
    shape : tuple of int
        The image's shape (M, N).
    smooth_bins : float
        Gaussian smoothing of the profile along the radius [bins].

    Returns
    -------
    ndarray of float64
        ``log(floor)`` per bin ``rint(f * max(shape))`` (``f`` the radius [cycles/px]). The radial
        means weigh each half-layout pixel by the full-spectrum pixels it stands for, so they are
        those of the full spectrum.
    """
    m, n = shape
    w = half_weights(n)
    fr_max = np.abs(sfft.fftfreq(m)).max()
    n_bins = int(np.rint(np.hypot(fr_max, sfft.rfftfreq(n)[-1]) * max(shape))) + 1
    tiny = np.finfo(np.float32).tiny

    def bins_and_logs(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        b = np.rint(half_radius(shape, rows) * max(shape)).astype(np.intp)
        return b, np.log(np.maximum(power[rows].astype(np.float64), tiny))

    # The second pass only caps the first's logs; the bins' weights are counted once.
    blocks = block_passes(power.shape[0], power.shape[1], bins_and_logs)
    counts = np.zeros(n_bins)

    def radial_mean(cap: np.ndarray | None) -> np.ndarray:
        total = np.zeros(n_bins)
        for b, logp in blocks():
            if cap is not None:
                logp = np.minimum(logp, cap[b])
            total += np.bincount(b.ravel(), (logp * w).ravel(), minlength=n_bins)
            if cap is None:
                counts[:] += np.bincount(b.ravel(), np.broadcast_to(w, b.shape).ravel(), minlength=n_bins)
        return total / counts

    mean = radial_mean(None)
    mean = radial_mean(mean + WINSOR_LOG_EXCESS)
    if smooth_bins > 0 and len(mean) > 4:
        mean[1:] = ndimage.gaussian_filter1d(mean[1:], smooth_bins, mode="nearest")
    return mean + EULER_GAMMA


def centred_log_floor(power: np.ndarray) -> np.ndarray:
    """:func:`half_log_floor` of a centred (M, N) power spectrum."""
    return half_log_floor(sfft.ifftshift(power)[:, : power.shape[1] // 2 + 1], power.shape)


def floor_map(log_floor: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The noise floor per pixel of a centred spectrum of ``shape``, from the log floor per radial bin."""
    return np.exp(log_floor)[radial_bins(shape)[1]]


def centred_power(spectrum: np.ndarray) -> np.ndarray:
    """Centred (fftshift-ed) float64 power of a full unshifted spectrum (e.g. :func:`periodic_spectrum`'s)."""
    return sfft.fftshift(np.abs(spectrum) ** 2).astype(np.float64)


def tapered_power(arr: np.ndarray) -> np.ndarray:
    """Centred power spectrum (float64) of the mean-subtracted image tapered by a Hann window.

    The taper does at the image edges what the periodic component does (no edge streaks) and also
    softens the outline of a crystal inside the field, so the side lobes of its shape transform
    around each strong reflection fall off fast and stay below a lattice threshold, at the cost of
    peaks ~1.5x wider: right for deciding what the lattice is, wrong for a filter, which must filter
    the image's own spectrum (:func:`periodic_spectrum`). Computed from the real-to-complex FFT:
    the other half of the (point-symmetric) spectrum is filled in from it, a block of rows at a time.

    Parameters
    ----------
    arr : (M, N) ndarray
        The image. Not modified.
    """
    img = arr.astype(np.float32, copy=True)
    img -= img.mean(dtype=np.float64)
    img *= np.hanning(img.shape[0]).astype(np.float32)[:, None]
    img *= np.hanning(img.shape[1]).astype(np.float32)[None, :]
    spectrum = sfft.rfft2(img, workers=FFT_WORKERS)  # numpy's rfft2 peaks at 6 image copies, scipy's at 1
    del img
    half = half_power(spectrum)
    del spectrum
    m, n = arr.shape
    nc = half.shape[1]
    rows = sfft.fftshift(np.arange(m))  # unshifted row of each centred row
    cols = sfft.fftshift(np.arange(n))
    direct = cols < nc  # the other columns are the mirror images P(r, c) = P(-r, n - c)
    power = np.empty((m, n))
    for block in row_blocks(m, n):
        r = rows[block]
        power[block][:, direct] = half[np.ix_(r, cols[direct])]
        power[block][:, ~direct] = half[np.ix_((-r) % m, n - cols[~direct])]
    return power


@dataclasses.dataclass(frozen=True)
class Peaks:
    """Bragg-peak candidates of a centred power spectrum, strongest (largest ratio) first.

    Parameters
    ----------
    index : (K, 2) ndarray of int
        (row, col) of each peak in the centred spectrum.
    ratio : (K,) ndarray
        Smoothed power over the noise floor at the peak.
    excess : (K,) ndarray
        Power of the peak's pixel above the noise floor [counts^2].
    """

    index: np.ndarray
    ratio: np.ndarray
    excess: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def take(self, which: np.ndarray) -> Peaks:
        """The peaks selected by a boolean mask or an index array."""
        return Peaks(self.index[which], self.ratio[which], self.excess[which])


def find_peaks(
    power: np.ndarray,
    log_floor: np.ndarray,
    *,
    threshold: float,
    band: tuple[float, float],
    smoothing_px: float = PEAK_SMOOTHING_PX,
) -> Peaks:
    """Local maxima of the smoothed power spectrum that stand ``threshold`` times above the floor.

    A block of rows at a time, with a halo of rows for the smoothing and the neighbourhood:
    the same result as one pass over the whole spectrum, wrapped at its edges.

    Parameters
    ----------
    power : (M, N) ndarray
        Centred power spectrum (:func:`centred_power`, :func:`tapered_power`).
    log_floor : ndarray
        Log noise floor per radial bin, from :func:`half_log_floor`.
    threshold : float
        Smallest ratio of the smoothed power to the floor.
    band : (float, float)
        Smallest and largest frequency radius searched [cycles/px].
    smoothing_px : float
        Gaussian sigma of the smoothing [FFT px].

    Returns
    -------
    Peaks
    """
    m, n = power.shape
    shape = (m, n)
    fc = sfft.fftshift(sfft.fftfreq(n))
    fr_all = sfft.fftshift(sfft.fftfreq(m))
    reach = PEAK_NEIGHBOURHOOD_PX // 2
    halo = int(4.0 * smoothing_px + 0.5) + reach  # scipy's kernel radius at truncate=4, plus the neighbourhood
    floor_of_bin = np.exp(log_floor)
    fc2 = fc**2
    offsets = [(dr, dc) for dr in range(-reach, reach + 1) for dc in range(-reach, reach + 1) if dr or dc]
    found: list[np.ndarray] = []
    ratios: list[np.ndarray] = []
    excesses: list[np.ndarray] = []
    for block in row_blocks(m, n):
        ext = np.arange(block.start - halo, block.stop + halo) % m
        part = power[ext]
        smoothed = ndimage.gaussian_filter(part, smoothing_px, mode="wrap") if smoothing_px > 0 else part
        f = np.sqrt(fr_all[ext][:, None] ** 2 + fc2[None, :])
        floor = floor_of_bin[np.rint(f * max(shape)).astype(np.intp)]
        ratio = smoothed / floor
        inner = slice(halo, halo + block.stop - block.start)
        rr, cc = np.nonzero(ratio[inner] > threshold)
        rr += halo
        keep = (f[rr, cc] >= band[0]) & (f[rr, cc] <= band[1])
        # Local maxima: at least every neighbour in the square (the columns wrap; the halo holds the rows).
        for dr, dc in offsets:
            keep &= ratio[rr, cc] >= ratio[rr + dr, (cc + dc) % n]
        rr, cc = rr[keep], cc[keep]
        found.append(np.stack([rr - halo + block.start, cc], axis=1))
        ratios.append(ratio[rr, cc])
        excesses.append(part[rr, cc] - floor[rr, cc])
    ratio_all = np.concatenate(ratios)
    order = np.argsort(-ratio_all, kind="stable")
    return Peaks(np.concatenate(found)[order], ratio_all[order], np.concatenate(excesses)[order])


def subpixel(power: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sub-pixel (row, col) of peaks: centroid of the 3x3 neighbourhood (above its minimum), wrapped [px].

    Parameters
    ----------
    power : (M, N) ndarray
        Centred power spectrum.
    index : (K, 2) ndarray of int
        The peaks' pixels.

    Returns
    -------
    (K, 2) ndarray of float64
        Positions in the centred spectrum [px].
    """
    out = index.astype(float)
    off = np.arange(-1, 2)
    for i, (r, c) in enumerate(index):
        rows = np.arange(r - 1, r + 2) % power.shape[0]
        cols = np.arange(c - 1, c + 2) % power.shape[1]
        w = power[np.ix_(rows, cols)]
        w = w - w.min()
        total = w.sum()
        if total > 0:
            out[i, 0] += (w.sum(axis=1) * off).sum() / total
            out[i, 1] += (w.sum(axis=0) * off).sum() / total
    return out
