"""Lattice of the atom-column grid from the Fourier transform, and the crystal mask.

:func:`find_lattice` finds the two shortest real-space vectors of the column
grid from the strong Bragg peaks of the power spectrum (or returns None on
amorphous images); the spectrum, its noise floor and the peaks come from
the core :mod:`stem_pipeline.spectrum`, as for the ``bragg`` Fourier filter.
:func:`crystal_mask` maps where that lattice is present by demodulating the
image at the lattice frequencies.

In CsPbI3 [001] the columns sit on a square grid of spacing a/2 and the
bright/dim ordering adds weak superlattice peaks at 1/a; the lattice returned
is the column grid (the strong fundamental peaks), not the superlattice.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.fft as sfft
from pydantic import Field
from scipy import ndimage

from . import _tiles
from ._threads import FFT_WORKERS
from ._tiles import fill_holes, row_blocks, within_distance
from ._types import Lattice, Micrograph
from .config import StrictModel
from .spectrum import centred_log_floor, find_peaks, subpixel, tapered_power

logger = logging.getLogger("stem_pipeline")

__all__ = ["Lattice", "LatticeConfig", "crystal_mask", "crystal_masks", "find_lattice", "find_lattices", "reduce_basis"]


class LatticeConfig(StrictModel):
    """Parameters of :func:`find_lattice` and :func:`find_lattices`.

    The Bragg peaks come from :func:`stem_pipeline.spectrum.find_peaks`, the same search as the
    ``bragg`` Fourier filter's; only the threshold and the smoothing differ (see their fields).
    """

    min_spacing_px: float = Field(3.0, gt=0, description="Smallest column spacing considered [px].")
    max_spacing_px: float | None = Field(
        None, gt=0, description="Largest column spacing considered [px]; None: a quarter of the smaller image side."
    )
    min_strength: float = Field(
        17.0,
        gt=0,
        description="Smallest ratio of a Bragg peak's power to the fitted noise floor at its frequency: the test "
        "of whether the image is crystalline at all. Amorphous carbon stays below ~6 (the largest of ~10^4 "
        "exponential noise values), crystals on the synthetic and real test images are above ~50. Higher than the "
        "bragg filter's 8 because that filter also asks each peak to be a sum of two others, and a mask with a "
        "weak peak too many costs little, while a lattice found in noise makes columns out of nothing. "
        "(17 over the mean floor is the former 25 over the median: the median of an exponential is ln 2 of its mean.)",
    )
    peak_smoothing_px: float = Field(
        0.0,
        ge=0,
        description="Gaussian smoothing of the power spectrum before the peak search [FFT px]. 0: a "
        "lattice peak is judged by its own pixel (the Hann taper already spreads it over ~3); smoothing by 1 px "
        "(the bragg filter's) let the coarse FFT axis of an elongated image (224 x 1312 px) blur neighbouring "
        "reflections so that a sub-lattice's peaks out-ranked the column grid's.",
    )
    strong_fraction: float = Field(
        0.15,
        gt=0,
        le=1,
        description="Peaks with less excess power than this fraction of the strongest's are ignored when choosing "
        "the grid, so that weak superlattice peaks (the bright/dim ordering of CsPbI3) do not halve the grid.",
    )
    max_lattices: int = Field(
        2, ge=1, le=2, description="Lattices looked for (2: a second phase on its own grid, e.g. PbI2 <1 -1 1>)."
    )


def reduce_basis(vectors: np.ndarray) -> np.ndarray:
    """Lagrange-Gauss reduction of a 2-D lattice basis.

    Parameters
    ----------
    vectors : (2, 2) ndarray
        Two basis vectors, one per row.

    Returns
    -------
    (2, 2) ndarray
        The two shortest vectors of the same lattice, shortest first, with an
        angle between them of at most 90 degrees.
    """
    a, b = (np.asarray(v, dtype=np.float64).copy() for v in vectors)
    if a @ a > b @ b:
        a, b = b, a
    for _ in range(100):
        mu = np.round((a @ b) / (a @ a))
        b = b - mu * a
        if b @ b >= a @ a:
            break
        a, b = b, a
    if a @ b < 0:
        b = -b
    return np.stack([a, b])


def _as_image(image: np.ndarray | Micrograph) -> np.ndarray:
    data = image.data if isinstance(image, Micrograph) else np.asarray(image)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError("image contains NaN or inf pixels; replace them (e.g. with the median) first")
    return data


#: A strong peak further than this (in reciprocal-lattice units) from every integer and half-integer
#: position is foreign; a 3.2 A grid beside the 3.145 A one is 0.02 off, PbI2 <1 -1 1> beside it ~0.1.
_FOREIGN_TOLERANCE = 0.05
#: Only peaks with at least this share of the strongest peak's excess power count as foreign.
_FOREIGN_FRACTION = 0.05
#: ... and only at this fraction of the grid's lowest frequency or above (periods up to 2.5 column spacings):
#: a second crystal's reflections are there (PbI2 <1 -1 1> ~0.9, [441] fringes ~1.4), while the low-frequency
#: peaks of a small dot's outline or of its thickness profile (periods of nanometres) are not reflections.
_FOREIGN_MIN_FREQUENCY = 0.4


def find_lattice(image: np.ndarray | Micrograph, config: LatticeConfig | None = None) -> Lattice | None:
    """Find the column grid from the Bragg peaks of the power spectrum.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The (preferably denoised) image. Not modified.
    config : LatticeConfig, optional
        Spacing range, peak threshold and strong-peak fraction (defaults if None). An amorphous
        image has no peak above ``config.min_strength`` and gives None.

    Returns
    -------
    Lattice or None
        None when no two independent Bragg peaks are found (no crystal).

    Examples
    --------
    >>> from stem_pipeline.synthetic import make_dot
    >>> dot = make_dot((256, 256), dot_size_nm=7, rng=0)
    >>> lat = find_lattice(dot.image)
    >>> round(lat.spacing_px, 1)
    9.0
    """
    config = config or LatticeConfig()
    min_strength = config.min_strength
    data = _as_image(image)
    shape = np.array(data.shape)
    if shape.min() < 16:
        raise ValueError(f"image of shape {tuple(shape)} is too small for lattice finding (need >= 16 px)")
    max_spacing_px = config.max_spacing_px or float(shape.min()) / 4
    power = tapered_power(data)
    log_floor = centred_log_floor(power)
    peaks = find_peaks(
        power,
        log_floor,
        threshold=min_strength,
        band=(1.0 / max_spacing_px, 1.0 / config.min_spacing_px),
        smoothing_px=config.peak_smoothing_px,
    )
    # Keep one of each +-g pair (upper half plane).
    centre = shape // 2
    rel = peaks.index - centre
    peaks = peaks.take((rel[:, 0] > 0) | ((rel[:, 0] == 0) & (rel[:, 1] > 0)))
    if len(peaks) < 2:
        logger.info("find_lattice: %d Bragg peak(s) above strength %.1f: no lattice", len(peaks), min_strength)
        return None
    # Sub-pixel peak frequencies [cycles/px].
    g_all = (subpixel(power, peaks.index) - centre) / shape
    # "Strong" by the excess power over the background at the same frequency, not by the ratio:
    # the ratio favours high frequencies (the background falls off), which can make the (1,1)
    # reflections look stronger than the (1,0) ones and turn the square grid into a centred one.
    excess = peaks.excess
    # Every candidate above the foreign-peak share, kept for the second-lattice check below.
    candidates = ((peaks.index - centre) / shape)[excess >= _FOREIGN_FRACTION * excess.max()]
    strong = excess >= config.strong_fraction * excess.max()
    g, strength, excess = g_all[strong], peaks.ratio[strong], excess[strong]
    # The basis: the strongest reflection and the strongest one not collinear with it. Not the
    # shortest: the superlattice reflections of CsPbI3's bright/dim ordering (at half the column
    # grid's frequency) can pass the "strong" cut when the dim columns are ~0.3 of the bright ones,
    # as abTEM gives, and the shortest choice would then return the 0.63 nm cell, not the a/2 grid.
    norm = np.hypot(g[:, 0], g[:, 1])
    order = np.argsort(-excess)
    g, norm, strength, excess = g[order], norm[order], strength[order], excess[order]
    g1 = g[0]
    sines = np.abs(g1[0] * g[:, 1] - g1[1] * g[:, 0]) / (norm * norm[0])
    second = np.nonzero(sines > 0.25)[0]
    if len(second) == 0:
        logger.info("find_lattice: only collinear Bragg peaks (1-D fringes): no 2-D lattice")
        return None
    partner = second[_consistent(g1, g[second], np.concatenate([candidates, -candidates]), 2.0 / shape.min())]
    G = reduce_basis(np.stack([g1, g[partner]]))
    # Least-squares refinement of the reciprocal basis on every strong peak it indexes.
    hk = g @ np.linalg.inv(G)
    hk_int = np.round(hk)
    indexed = np.all(np.abs(hk - hk_int) < 0.15, axis=1) & np.any(hk_int != 0, axis=1)
    if indexed.sum() >= 2 and np.linalg.matrix_rank(hk_int[indexed]) == 2:
        G = np.linalg.lstsq(hk_int[indexed], g[indexed], rcond=None)[0]
    vectors = reduce_basis(np.linalg.inv(G).T)
    # Strong peaks on neither the grid nor its half-integer superlattice belong to a second lattice.
    # (Candidates are at whole frequency pixels: the tolerance also covers that rounding.)
    candidates = candidates[np.hypot(*candidates.T) >= _FOREIGN_MIN_FREQUENCY * np.linalg.norm(G, axis=1).min()]
    hk2 = 2 * (candidates @ np.linalg.inv(G))
    tolerance = 2 * _FOREIGN_TOLERANCE + np.abs(np.linalg.inv(G)).sum(axis=0) / shape.max()  # half a pixel, x2
    foreign = int(np.sum(np.any(np.abs(hk2 - np.round(hk2)) > tolerance, axis=1)))
    # Strength: the weaker of the two peaks that define the basis.
    basis_strength = float(min(strength[0], strength[partner]))
    lengths = np.hypot(vectors[:, 0], vectors[:, 1])
    cosang = float(vectors[0] @ vectors[1] / (lengths[0] * lengths[1]))
    lattice = Lattice(
        vectors_px=vectors,
        spacing_px=float(lengths.min()),
        angle_deg=float(np.degrees(np.arccos(np.clip(cosang, -1, 1)))),
        strength=basis_strength,
        foreign_peaks=foreign,
    )
    logger.info(
        "find_lattice: spacing %.2f px, angle %.1f deg, strength %.1f (%d strong peaks)",
        lattice.spacing_px,
        lattice.angle_deg,
        lattice.strength,
        len(g),
    )
    return lattice


def _consistent(g1: np.ndarray, others: np.ndarray, peaks: np.ndarray, tolerance: float) -> int:
    """Index of the first of ``others`` that makes a lattice with ``g1``: ``g1 + g`` or ``g1 - g`` is a peak too.

    With two crystals in the field (e.g. CsPbI3 [001] beside PbI2 <1 -1 1>) the strongest
    non-collinear reflection can belong to the other crystal; a basis mixing the two predicts no
    reflection at their sum or difference. Falls back to the first (strongest) when none does.
    """
    for i, g in enumerate(others):
        for combo in (g1 + g, g1 - g):
            if np.min(np.hypot(*(peaks - combo).T)) < tolerance:
                return i
    return 0


def _demodulate(image: np.ndarray, g: np.ndarray, block: int, sigma_blocks: float) -> np.ndarray:
    """Local amplitude of the Fourier component ``g`` [cycles/px], on a block-reduced grid.

    The image is demodulated and block-averaged one strip of blocks at a time (the whole-image complex
    product took ~6 float32 image copies); each block's mean is the same as in one pass.
    """
    # The phase ramp is separable: an outer product of two 1-D ramps.
    ramp_r = np.exp(-2j * np.pi * g[0] * np.arange(image.shape[0])).astype(np.complex64)
    ramp_c = np.exp(-2j * np.pi * g[1] * np.arange(image.shape[1])).astype(np.complex64)
    m, n = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    # Real and imaginary parts in two arrays, so that each can be freed once smoothed.
    z_re = np.empty((m // block, n // block), np.float32)
    z_im = np.empty_like(z_re)
    strip = max(1, _tiles.BLOCK_PIXELS // max(n * block, 1))  # block rows per strip
    for start in range(0, m // block, strip):
        rows = slice(start * block, min(start + strip, m // block) * block)
        z = block_mean_complex((image[rows, :n] * ramp_c[None, :n]) * ramp_r[rows, None], block)
        z_re[start : start + strip], z_im[start : start + strip] = z.real, z.imag
    re = ndimage.gaussian_filter(z_re, sigma_blocks, mode="nearest")
    del z_re
    im = ndimage.gaussian_filter(z_im, sigma_blocks, mode="nearest")
    del z_im
    re *= re
    im *= im
    re += im
    return re


#: Longest block line :func:`block_mean_complex` sums as numpy does (its pairwise sum's unrolled case: 128 floats).
PAIRWISE_COMPLEX_LINE = 64


def block_mean_complex(part: np.ndarray, block: int) -> np.ndarray:
    """``part.reshape(-1, block, N // block, block).mean(axis=(1, 3))`` of a C-contiguous complex64 (M, N) array,
    M and N multiples of ``block``: the same numbers, each step one strided operation over every block.

    numpy sums a block's line of ``block`` pixels with its pairwise sum (under 4 pixels one by one; else four
    running sums of every fourth pixel from the first four, added pairwise, then the rest one by one), adds the
    lines one after another and divides in complex128; its loop per line cost ~4.7 ms CPU per call for a
    1024^2 image in 5-pixel blocks, this ~1.1 ms: ~0.02 s of a 1024^2 ``analyze`` process's six
    demodulations (benchmarks/process.py; the same bits as numpy 2.x's mean on the benchmark's images). Lines longer than
    :data:`PAIRWISE_COMPLEX_LINE` pixels (numpy splits them recursively) take numpy's mean itself.
    """
    x = part.reshape(-1, block, part.shape[1] // block, block)
    if block > PAIRWISE_COMPLEX_LINE:
        return x.mean(axis=(1, 3))
    unrolled = block - block % 4 if block >= 4 else 0
    total = np.zeros((x.shape[0], x.shape[2]), part.dtype)
    for i in range(block):
        if unrolled:
            runs = [x[:, i, :, j].copy() for j in range(4)]
            for j in range(4, unrolled):
                runs[j % 4] += x[:, i, :, j]
            line = (runs[0] + runs[1]) + (runs[2] + runs[3])
        else:
            line = x[:, i, :, 0].copy()
        for j in range(max(unrolled, 1), block):
            line += x[:, i, :, j]
        total += line
    return (total / np.intp(block * block)).astype(part.dtype)


def _mean_demodulated(image: np.ndarray, gs: list[np.ndarray], block: int, sigma_blocks: float) -> np.ndarray:
    """Mean of :func:`_demodulate` over the frequencies ``gs``, summed one at a time (``np.mean`` of the
    list stacked them: 4 more full-size maps when the block is one pixel); the same sums in the same order."""
    total = _demodulate(image, gs[0], block, sigma_blocks)
    for g in gs[1:]:
        total += _demodulate(image, g, block, sigma_blocks)
    total /= len(gs)
    return total


#: (edge fraction, dilation in spacings) of the column-search mask: every edge column is inside.
SEARCH_EDGE = (0.35, 0.5)
#: ... of the area mask: the edge at half the lattice amplitude, on the crystal's edge (see :func:`crystal_masks`).
AREA_EDGE = (0.5, 0.0)


def crystal_mask(
    image: np.ndarray | Micrograph,
    lattice: Lattice,
    *,
    smoothing_spacings: float = 1.5,
    noise_factor: float = 3.0,
    edge_fraction: float = SEARCH_EDGE[0],
    dilate_spacings: float = SEARCH_EDGE[1],
    min_area_cells: float = 16.0,
) -> np.ndarray:
    """Where the lattice is: the crystal (the dot), not the amorphous support.

    The image is demodulated at the lattice frequencies ``g1, g2, g1+g2,
    g1-g2``; the low-passed local amplitude is compared with the amplitude at
    off-lattice reference frequencies of the same length (the noise level).

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The image (denoised or raw). Not modified.
    lattice : Lattice
        From :func:`find_lattice`.
    smoothing_spacings : float
        Width (sigma) of the local averaging, in lattice spacings.
    noise_factor : float
        A pixel can only be crystal where the local lattice amplitude exceeds
        this many times the median off-lattice (noise) amplitude.
    edge_fraction : float
        The crystal edge is where the amplitude drops below this fraction of
        its median over the crystal.
    dilate_spacings : float
        The mask is grown by this many spacings so that edge columns are kept.
    min_area_cells : float
        Connected crystal regions smaller than this many unit cells are dropped.

    Returns
    -------
    (M, N) ndarray of bool
        True on the crystal. All False when nothing exceeds the noise level.
    """
    (mask,) = _crystal_masks(
        image,
        lattice,
        [(edge_fraction, dilate_spacings)],
        smoothing_spacings=smoothing_spacings,
        noise_factor=noise_factor,
        min_area_cells=min_area_cells,
    )
    return mask


def crystal_masks(image: np.ndarray | Micrograph, lattice: Lattice) -> tuple[np.ndarray, np.ndarray]:
    """The column-search mask and the crystal's area, from one demodulation of the image.

    The search mask is :func:`crystal_mask` with its defaults (edge at 0.35 of
    the lattice amplitude, grown by half a spacing): it keeps every edge column
    for column finding, but covers ~1.1x the crystal. In the area mask the edge
    is where the smoothed amplitude is at half its median, which is where a
    smoothed step is at half height, i.e. on the step, and the mask is not
    grown: its area is the crystal's (1.01-1.04 of the true crystal area on 12
    synthetic dots of 9-13 nm, against ~1.13). Area fractions are measured over it, so that
    a fringe around the dot does not go to whichever phase meets the dot's edge.

    ``image`` and ``lattice`` are those of :func:`crystal_mask`.

    Returns
    -------
    search, area : (M, N) ndarray of bool
    """
    search, area = _crystal_masks(image, lattice, [SEARCH_EDGE, AREA_EDGE])
    return search, area


def _crystal_masks(
    image: np.ndarray | Micrograph,
    lattice: Lattice,
    edges: list[tuple[float, float]],
    *,
    smoothing_spacings: float = 1.5,
    noise_factor: float = 3.0,
    min_area_cells: float = 16.0,
) -> list[np.ndarray]:
    """One mask per (edge fraction, dilation) of ``edges``, all from one demodulation (see :func:`crystal_mask`)."""
    data = _as_image(image)
    spacing = lattice.spacing_px
    # High-pass (remove the local mean) so that the support level and the
    # image borders do not leak into the demodulated amplitudes.
    img = data.astype(np.float32, copy=True)
    img -= ndimage.uniform_filter(img, 2 * int(spacing) + 1, mode="reflect")
    block = max(1, int(spacing // 3))
    sigma_blocks = max(smoothing_spacings * spacing / block, 1.0)
    G = lattice.reciprocal_px
    g1, g2 = G[0], G[1]
    signal_g = [g1, g2, g1 + g2, g1 - g2]
    # Reference frequencies: bisectors of the first two peaks at the same length.
    refs = []
    for a, b in ((g1, g2), (g1, -g2)):
        d = a / np.linalg.norm(a) + b / np.linalg.norm(b)
        refs.append(d / np.linalg.norm(d) * 0.5 * (np.linalg.norm(a) + np.linalg.norm(b)))
    # The noise map is only needed for its median: computed (and freed) before the amplitude map.
    noise_level = float(np.median(np.sqrt(_mean_demodulated(img, refs, block, sigma_blocks))))
    amp = np.sqrt(_mean_demodulated(img, signal_g, block, sigma_blocks))
    del img
    candidate = amp > noise_factor * noise_level
    level = float(np.median(amp[candidate])) if candidate.any() else np.inf
    # Back to full resolution (nearest block), edge pixels take the last block.
    ri = np.minimum(np.arange(data.shape[0]) // block, amp.shape[0] - 1)
    ci = np.minimum(np.arange(data.shape[1]) // block, amp.shape[1] - 1)
    masks = []
    for edge_fraction, dilate_spacings in edges:
        small = amp > max(noise_factor * noise_level, edge_fraction * level)
        small = fill_holes(small)
        labels, n = ndimage.label(small)
        if n:
            cell_area = abs(np.linalg.det(lattice.vectors_px)) / block**2
            sizes = ndimage.sum_labels(small, labels, np.arange(1, n + 1))
            keep = np.concatenate([[False], sizes >= min_area_cells * cell_area])
            small = keep[labels]
        if small.any() and dilate_spacings > 0:
            radius = dilate_spacings * spacing / block
            small = within_distance(small, radius)
        masks.append(small[ri[:, None], ci[None, :]])
        logger.info("crystal_mask: %.1f %% of the image is crystal", 100.0 * masks[-1].mean())
    return masks


def suppress_lattice(image: np.ndarray | Micrograph, lattice: Lattice, *, radius_px: float = 2.5) -> np.ndarray:
    """The image with a lattice's Bragg peaks notched out of its Fourier transform.

    Every integer and half-integer reciprocal-lattice position (the grid and
    its bright/dim superlattice) within the Nyquist limit is removed in a disc
    of ``radius_px`` frequency pixels, so that :func:`find_lattice` on the
    result finds a second lattice if there is one.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The image. Not modified.
    lattice : Lattice
        The lattice to remove.
    radius_px : float
        Notch radius [frequency pixels].

    Returns
    -------
    (M, N) ndarray of float64
    """
    data = _as_image(image).astype(np.float64)
    m, n = data.shape
    mean = float(data.mean())
    data -= mean
    spectrum = sfft.rfft2(data, workers=FFT_WORKERS)  # the half layout: the notches are point-symmetric
    del data
    g = lattice.reciprocal_px * np.array([m, n])  # reciprocal vectors in frequency pixels (rows)
    inv = np.linalg.inv(g)
    fr = np.rint(np.fft.fftfreq(m) * m)  # integer frequencies of the unshifted rows ...
    fc = np.rint(np.fft.fftfreq(n) * n)[: spectrum.shape[1]]  # ... and columns (the Nyquist one negative)
    for block in row_blocks(*spectrum.shape):
        freq = np.stack(np.broadcast_arrays(fr[block][:, None], fc[None, :]), axis=-1)
        # Nearest half-integer reciprocal-lattice point of every frequency pixel, in one pass.
        hk = np.round(2 * freq @ inv) / 2
        distance = np.hypot(*np.moveaxis(freq - hk @ g, -1, 0))
        spectrum[block] *= (distance > radius_px) | np.all(hk == 0, axis=-1)
    out = sfft.irfft2(spectrum, s=(m, n), workers=FFT_WORKERS, overwrite_x=True)
    out += mean
    return out


def find_lattices(image: np.ndarray | Micrograph, config: LatticeConfig | None = None) -> list[Lattice]:
    """The image's lattices, strongest first: a second one when the first leaves strong peaks unexplained.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The (denoised) image. Not modified.
    config : LatticeConfig, optional
        Defaults if None; at most ``config.max_lattices`` lattices are returned.

    Returns
    -------
    list of Lattice
        Empty for no crystal. A second lattice is looked for only when the
        first has :attr:`Lattice.foreign_peaks`, in the image with the first
        lattice's peaks suppressed (:func:`suppress_lattice`).
    """
    config = config or LatticeConfig()
    first = find_lattice(image, config)
    if first is None:
        return []
    found = [first]
    if config.max_lattices > 1 and first.foreign_peaks:
        # find_lattice works on a float32 copy anyway: casting first frees the float64 image (2 copies).
        second = find_lattice(suppress_lattice(image, first).astype(np.float32), config)
        if second is not None:
            found.append(second)
    return found
