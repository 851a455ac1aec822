"""Fourier-space filters: automatic Bragg-peak masks, Kilaas-style Wiener and ABSF filters.

All filters work on the periodic component of the image (Moisan's
periodic-plus-smooth decomposition), so the image edges add no streaks to
the spectrum and no ringing to the result; the smooth component is added back
unchanged.

The spectrum, its fitted noise floor and the Bragg-peak candidates come from
the core :mod:`stem_pipeline.spectrum`, which the lattice finder uses too.
The ``bragg`` mask keeps the candidates that stand ``threshold`` times above
the floor and are consistent with a lattice: each must be the sum or the
difference of two other detected peaks (a 2-D lattice, its higher orders and
its superlattice spots all pass; isolated noise maxima and most truncation
side lobes do not).

Frequencies are (row, col) in cycles per pixel, in [-0.5, 0.5).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from scipy import ndimage
from scipy.spatial import cKDTree

from .._tiles import block_passes, row_blocks
from ..spectrum import (
    EULER_GAMMA,
    WINSOR_LOG_EXCESS,
    centred_log_floor,
    centred_power,
    find_peaks,
    floor_map,
    half_log_floor,
    half_power,
    half_radius,
    half_weights,
    periodic_rspectrum,
    periodic_rspectrum_alone,
    periodic_spectrum,
    subpixel,
)
from ._common import FFT_WORKERS, check_image, logger

FourierMode = Literal["bragg", "wiener", "absf"]
MODES: tuple[str, ...] = ("bragg", "wiener", "absf")
#: Only the strongest candidate maxima enter the side-lobe and lattice tests (which are quadratic in their number).
_MAX_CANDIDATES = 400


# The Wiener and ABSF filters and the white-noise level work on the real-to-complex ("half") layout of
# scipy.fft.rfft2: unshifted, columns 0 .. N // 2 only. The power spectrum of a real image is
# point-symmetric, so every value of the full spectrum is there; a column whose mirror column is
# not (1 .. (N - 1) // 2) stands for two full-spectrum pixels and weighs 2 in radial means. The
# half layout and per-row-block passes keep a filter at ~5 float32 image copies (a full complex
# spectrum with float64 maps was ~30: 2.0 GB for a 4096^2 image, benchmarks/memory.py).


def _half_white_level(power: np.ndarray, shape: tuple[int, int], *, f_min: float = 0.3) -> float:
    """Mean noise power of a half-layout power spectrum above ``f_min`` [cycles/px] (winsorised log-mean, as the floor of :func:`stem_pipeline.spectrum.half_log_floor`)."""
    w = half_weights(shape[1])
    tiny = np.finfo(np.float32).tiny

    def logs_and_weights(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        sel = half_radius(shape, rows) >= f_min
        return np.log(np.maximum(power[rows][sel].astype(np.float64), tiny)), np.broadcast_to(w, sel.shape)[sel]

    blocks = block_passes(
        power.shape[0], power.shape[1], logs_and_weights
    )  # the capped pass only caps the first's logs

    def weighted_mean(cap: float | None) -> float:
        total = weight = 0.0
        for logp, ws in blocks():
            if cap is not None:
                logp = np.minimum(logp, cap)
            total += float(logp @ ws)
            weight += float(ws.sum())
        return total / weight

    mean = weighted_mean(None)
    return float(np.exp(weighted_mean(mean + WINSOR_LOG_EXCESS) + EULER_GAMMA))


def _half_smoothed(power: np.ndarray, n: int, sigma: float) -> np.ndarray:
    """The half-layout power spectrum smoothed by a periodic Gaussian of ``sigma`` [FFT px].

    The columns beyond both edges of the half layout are filled from the point symmetry
    ``P(r, c) = P(-r, N - c)``, so the result equals the full spectrum's, smoothed with wrap-around.
    In ``power``'s precision (scipy filters each line in float64; float32 rounds between the two axes,
    ~1e-7 relative).
    """
    m, nc = power.shape
    pad = int(4.0 * sigma + 0.5) + 1  # scipy's kernel radius at truncate=4, plus one
    cols = np.arange(-pad, nc + pad) % n
    direct = cols < nc
    padded = np.empty((m, len(cols)), power.dtype)
    padded[:, direct] = power[:, cols[direct]]
    padded[:, ~direct] = power[np.ix_((-np.arange(m)) % m, n - cols[~direct])]
    smoothed = ndimage.gaussian_filter(padded, sigma, mode=("wrap", "nearest"))
    del padded
    return smoothed[:, pad : pad + nc]


def _gain_filter(
    arr: np.ndarray,
    *,
    mode: str,
    noise_power=None,
    strength: float = 1.0,
    spectrum_smoothing_px: float = 3.0,
    gain_floor: float = 0.3,
) -> np.ndarray:
    """The ``wiener`` and ``absf`` filters of :func:`fourier_filter` in the half layout.

    ``noise_power`` is None (the white level of the spectrum), a float, a half-layout (M, N // 2 + 1)
    array, or a callable of the frequency radius [cycles/px] returning the noise power.
    """
    shape = arr.shape
    spectrum, smooth = periodic_rspectrum(arr)
    power = half_power(spectrum)
    log_floor = half_log_floor(power, shape)
    if noise_power is None:
        noise_power = _half_white_level(power, shape)
    smoothed = None
    if mode == "wiener" and spectrum_smoothing_px:
        smoothed = _half_smoothed(power, shape[1], spectrum_smoothing_px)
    for rows in row_blocks(*power.shape):
        f = half_radius(shape, rows)
        floor = np.exp(log_floor[np.rint(f * max(shape)).astype(np.intp)])
        if callable(noise_power):
            noise = noise_power(f)
        elif np.ndim(noise_power) == 2:
            noise = noise_power[rows]
        else:
            noise = noise_power
        noise = np.minimum(noise, floor)
        if mode == "wiener":
            p = (smoothed if smoothed is not None else power)[rows].astype(np.float64)
            gain = np.clip(1.0 - strength * noise / np.maximum(p, 1e-30), 0.0, 1.0)
        else:  # absf: E|F| of complex Gaussian noise with power N is sqrt(pi N) / 2
            amp = np.sqrt(power[rows].astype(np.float64))
            gain = np.clip(1.0 - strength * 0.5 * np.sqrt(np.pi * noise) / np.maximum(amp, 1e-30), 0.0, 1.0)
        gain = gain_floor + (1.0 - gain_floor) * gain
        if rows.start == 0:
            gain[0, 0] = 1.0  # keep the mean
        spectrum[rows] *= gain.astype(spectrum.real.dtype)
    del power, smoothed
    out = sfft.irfft2(spectrum, s=shape, workers=FFT_WORKERS, overwrite_x=True)
    del spectrum
    out += smooth
    return out


def white_noise_power(image: np.ndarray) -> float:
    """Estimate the white-noise power per Fourier coefficient of an unfiltered image.

    Uses the periodogram above 0.3 cycles/px, where an adequately sampled
    HAADF image carries little signal. Pass the result (scaled by the power
    transfer of any linear filter applied since) as ``noise_power`` to
    :func:`fourier_filter`.

    Parameters
    ----------
    image : (M, N) ndarray
        The raw image.

    Returns
    -------
    float
        Expected ``|FFT|**2`` of the noise (unnormalised FFT) [counts^2].
    """
    arr, _ = check_image(image)
    spectrum = periodic_rspectrum_alone(arr)
    return _half_white_level(half_power(spectrum), arr.shape)


def _detect(
    power: np.ndarray,
    *,
    threshold: float,
    min_spacing_px: float,
    max_spacing_px: float | None,
    separation: float,
    lattice_tolerance_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Bragg peaks of a centred power spectrum that pass the side-lobe and lattice tests.

    The candidates are those of :func:`stem_pipeline.spectrum.find_peaks`. Returns their integer
    (row, col) indices and half-maximum radii [px].
    """
    shape = power.shape
    log_floor = centred_log_floor(power)
    band = (1.0 / (max_spacing_px if max_spacing_px else min(shape) / 8.0), 1.0 / min_spacing_px)
    cand = find_peaks(power, log_floor, threshold=threshold, band=band).index[:_MAX_CANDIDATES]
    if len(cand) == 0:
        return np.zeros((0, 2), int), np.zeros(0)
    centre = np.array(shape) // 2
    rel = (cand - centre).astype(float)
    radius = np.hypot(*rel.T)
    # Greedy suppression of side lobes: a weaker maximum closer to a stronger kept peak than
    # `separation` times the smaller of their distances from the origin is dropped.
    keep: list[int] = []
    for i in range(len(cand)):
        if keep:
            d = np.hypot(*(rel[keep] - rel[i]).T)
            if np.any(d < separation * np.minimum(radius[keep], radius[i])):
                continue
        keep.append(i)
    cand, rel = cand[keep], rel[keep]
    # Lattice consistency: g must equal a + b or a - b for two other peaks a, b.
    if len(cand) >= 3:
        tree = cKDTree(rel)
        consistent = np.zeros(len(cand), bool)
        sums = rel[:, None, :] + rel[None, :, :]
        ia, ib = np.triu_indices(len(cand), k=0)
        s = sums[ia, ib]
        nonzero = np.hypot(*s.T) > lattice_tolerance_px
        hits = tree.query_ball_point(s[nonzero], r=lattice_tolerance_px + 0.02 * np.hypot(*s[nonzero].T))
        for a, b, hit in zip(ia[nonzero], ib[nonzero], hits):
            for k in hit:
                if k != a and k != b:
                    # g_k = g_a + g_b: all three belong to the lattice.
                    consistent[[a, b, k]] = True
        cand = cand[consistent]
    else:
        cand = cand[:0]
    # Half-maximum radius of each peak above the floor.
    excess = power - floor_map(log_floor, shape)
    widths = np.empty(len(cand))
    for i, (r, c) in enumerate(cand):
        h = int(np.clip(0.25 * np.hypot(r - centre[0], c - centre[1]), 2, 24))
        rows = np.arange(r - h, r + h + 1) % shape[0]
        cols = np.arange(c - h, c + h + 1) % shape[1]
        win = ndimage.gaussian_filter(excess[np.ix_(rows, cols)], 0.7)
        top = win[h, h]
        widths[i] = np.sqrt(np.count_nonzero(win > 0.5 * top) / np.pi) if top > 0 else 1.0
    return cand, widths


def find_bragg_peaks(
    image: np.ndarray,
    *,
    threshold: float = 8.0,
    min_spacing_px: float = 2.5,
    max_spacing_px: float | None = None,
    separation: float = 0.35,
    lattice_tolerance_px: float = 1.5,
) -> np.ndarray:
    """Find the Bragg peaks of an image's power spectrum automatically.

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    threshold : float
        A peak must exceed the fitted noise floor by this factor (in the power
        spectrum smoothed by a 1-px Gaussian, where pure noise has mean 1 and
        standard deviation ~0.3 in these units).
    min_spacing_px, max_spacing_px : float
        Range of real-space periods searched [px]; ``max_spacing_px`` defaults
        to 1/8 of the smaller image edge.
    separation : float
        Side-lobe suppression: a weaker maximum closer to a stronger peak than
        this fraction of their distance from the origin is dropped.
    lattice_tolerance_px : float
        Tolerance of the lattice-consistency test [FFT px] (plus 2 % of the
        vector length).

    Returns
    -------
    (K, 2) ndarray of float64
        Peak frequencies (row, col) [cycles/px], strongest first, in Friedel
        pairs. Empty (0, 2) when the image shows no lattice.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or has non-finite pixels.

    Examples
    --------
    >>> from stem_pipeline.synthetic import make_dot
    >>> peaks = find_bragg_peaks(make_dot((256, 256), dose=400, rng=0).image)
    >>> bool(len(peaks) >= 4)
    True
    """
    arr, _ = check_image(image)
    _, _, power, idx, _ = _spectrum_peaks(
        arr,
        threshold=threshold,
        min_spacing_px=min_spacing_px,
        max_spacing_px=max_spacing_px,
        separation=separation,
        lattice_tolerance_px=lattice_tolerance_px,
    )
    pos = subpixel(power, idx) - np.array(arr.shape) // 2
    return pos / np.array(arr.shape, float)


def _spectrum_peaks(arr: np.ndarray, **detect: Any):
    """Periodic-plus-smooth spectrum, its centred power and the Bragg peaks :func:`_detect` finds in it.

    Returns ``(spectrum, smooth, power, idx, widths)``: the periodic component's spectrum, the smooth
    component, the fftshifted power (float64), the peaks' (row, col) indices and their widths.
    """
    spectrum, smooth = periodic_spectrum(arr)
    power = centred_power(spectrum)
    idx, widths = _detect(power, **detect)
    return spectrum, smooth, power, idx, widths


def _soft_disc_mask(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Max over soft discs: 1 within ``radius``, raised-cosine fall-off to 0 over ``edge`` [px]."""
    mask = np.zeros(shape, np.float32)
    for (r0, c0), rad, edge in zip(centres, radii, edges):
        h = int(np.ceil(rad + edge)) + 1
        rows = np.arange(int(round(r0)) - h, int(round(r0)) + h + 1)
        cols = np.arange(int(round(c0)) - h, int(round(c0)) + h + 1)
        d = np.hypot(rows[:, None] - r0, cols[None, :] - c0)
        t = np.clip((d - rad) / max(edge, 1e-6), 0, 1)
        val = (0.5 * (1 + np.cos(np.pi * t))).astype(np.float32)
        ix = np.ix_(rows % shape[0], cols % shape[1])
        mask[ix] = np.maximum(mask[ix], val)
    return mask


def fourier_filter(
    image: np.ndarray,
    *,
    mode: FourierMode = "wiener",
    noise_power: float | np.ndarray | None = None,
    strength: float = 1.0,
    spectrum_smoothing_px: float = 3.0,
    threshold: float = 8.0,
    radius_factor: float = 2.0,
    low_frequency_fraction: float = 0.5,
    min_spacing_px: float = 2.5,
    gain_floor: float = 0.3,
) -> np.ndarray:
    """Filter an image in Fourier space.

    Modes
    -----
    ``bragg``
        Digital Micrograph-style periodic mask, automatic: pass soft-edged
        discs around the detected Bragg peaks (radius ``radius_factor`` times
        the peak's half-maximum radius, raised-cosine edge of the same width)
        plus a low-frequency disc of radius ``low_frequency_fraction`` times
        the shortest peak frequency. Everything non-periodic (domain
        boundaries, amorphous regions, defects) is averaged away. Falls back
        to ``wiener`` (with a warning) when no lattice is found.
    ``wiener``
        Kilaas-style Wiener filter: ``W = max(0, 1 - strength * N / P)``
        with ``P`` the power spectrum (smoothed by ``spectrum_smoothing_px``)
        and ``N`` the noise power. Keeps whatever stands above the noise,
        periodic or not.
    ``absf``
        Average background subtraction filter: subtract ``strength`` times
        the mean noise amplitude from every Fourier amplitude (clipped at 0),
        keeping the phases.

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    mode : {'bragg', 'wiener', 'absf'}
        The filter.
    noise_power : float or (M, N) ndarray or None
        Noise power per Fourier coefficient (unnormalised FFT) [counts^2],
        a constant or a centred (fftshift-ed) map. None: white noise at the
        level of the spectrum above 0.3 cycles/px (right for an unfiltered
        image; after a linear filter pass its transfer, as the chain in
        :func:`stem_pipeline.denoise.denoise` does). Always capped by the
        fitted radial floor of the spectrum.
    strength : float
        Over-subtraction factor for ``wiener`` and ``absf``.
    spectrum_smoothing_px : float
        Gaussian smoothing of the power spectrum before the Wiener ratio [FFT px].
    threshold : float
        Bragg-peak threshold over the floor (``bragg``; see :func:`find_bragg_peaks`).
    radius_factor : float
        Mask radius over the measured half-maximum radius of each peak (``bragg``).
    low_frequency_fraction : float
        Radius of the low-frequency pass disc as a fraction of the shortest
        Bragg-peak frequency (``bragg``).
    min_spacing_px : float
        Smallest real-space period searched for Bragg peaks [px] (``bragg``).
    gain_floor : float
        Smallest gain of the ``wiener`` and ``absf`` filters, in [0, 1). A
        little noise is left everywhere so that the few noise coefficients
        that happen to survive the subtraction do not stand out as spurious
        spots (a fabricated lattice) in the filtered image's spectrum.

    Returns
    -------
    (M, N) ndarray
        The filtered image, float32 unless the input was float64.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or has non-finite pixels, or ``mode`` is unknown.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    arr, dtype = check_image(image)
    shape = arr.shape
    if mode == "bragg":
        out = _bragg_filter(
            arr,
            threshold=threshold,
            radius_factor=radius_factor,
            low_frequency_fraction=low_frequency_fraction,
            min_spacing_px=min_spacing_px,
        )
        if out is not None:
            return out.astype(dtype, copy=False)
        logger.warning("bragg filter: no lattice found in the power spectrum; using the wiener filter instead")
        mode = "wiener"
    if not 0 <= gain_floor < 1:
        raise ValueError(f"gain_floor must be in [0, 1), got {gain_floor}")
    if noise_power is not None and np.ndim(noise_power) > 0:
        # A centred (M, N) map: its half layout (unshifted, columns 0 .. N // 2).
        noise_power = sfft.ifftshift(np.broadcast_to(noise_power, shape))[:, : shape[1] // 2 + 1]
    out = _gain_filter(
        arr,
        mode=mode,
        noise_power=noise_power,
        strength=strength,
        spectrum_smoothing_px=spectrum_smoothing_px,
        gain_floor=gain_floor,
    )
    return out.astype(dtype, copy=False)


def _bragg_filter(
    arr: np.ndarray, *, threshold: float, radius_factor: float, low_frequency_fraction: float, min_spacing_px: float
) -> np.ndarray | None:
    """The ``bragg`` mode of :func:`fourier_filter` (None when no lattice is found)."""
    shape = arr.shape
    spectrum, smooth, _, idx, widths = _spectrum_peaks(
        arr,
        threshold=threshold,
        min_spacing_px=min_spacing_px,
        max_spacing_px=None,
        separation=0.35,
        lattice_tolerance_px=1.5,
    )
    if len(idx) == 0:
        return None
    centre = np.array(shape) // 2
    rad = np.maximum(radius_factor * widths, 1.0)
    f_min = np.hypot(*(idx - centre).T).min()
    lf = max(low_frequency_fraction * f_min, 1.0)
    mask = _soft_disc_mask(
        shape,
        np.vstack([idx, centre[None, :]]).astype(float),
        np.append(rad, 0.5 * lf),
        np.append(rad, 0.5 * lf),
    )
    logger.debug("bragg filter: %d peaks, mask area %.3f %%", len(idx), 100 * mask.mean())
    out = sfft.ifft2(spectrum * sfft.ifftshift(mask).astype(spectrum.real.dtype), workers=FFT_WORKERS).real
    return out + smooth
