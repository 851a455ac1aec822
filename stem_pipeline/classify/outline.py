"""The crystal outline from the image's diffuse intensity step.

A dot is brighter than the carbon around it as a whole, not only at its
columns: between the columns lies a diffuse signal that ends where the
crystal ends. The outermost columns lie anywhere from 0 to 1 column spacing
inside that edge (the edge is not tied to the lattice), so the columns' hull
grown by a fixed margin places the edge with an error of up to half a
spacing, which moves whichever phase meets the edge. Here the columns (their
fitted Gaussians) are taken out of the image, the rest is smoothed over about
a column spacing, and the edge is where it crosses half-way between its level
inside the crystal and on the carbon around it. The smoothing runs on block
means and the distances to the hull come from its rows' runs: with the pixel
noise and the hull, 0.25 -> 0.07 s CPU for a 1024^2 dot against a
full-resolution smoothing and distance transforms (benchmarks/process.py),
its edge within a pixel of theirs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .._tiles import fill_holes
from .._types import Columns
from .convex import deeper_than, grown_by
from .regions import hull_mask

__all__ = [
    "DiffuseOutline",
    "diffuse_outline",
    "pixel_noise",
    "render_columns",
    "without_columns",
]

#: The inside level is read this far [column spacings] inside the columns' hull, and the carbon's level
#: between these distances beyond it: away from the edge, which the smoothing spreads over ~1 spacing.
INSIDE_DEPTH_SPACINGS = 1.5
CARBON_RING_SPACINGS = (2.0, 4.0)

#: Fewest pixels of carbon ring, in column cells, from which its level is read.
MIN_RING_CELLS = 20

#: The smoothing of the image less its columns runs on means over blocks of about its width (sigma) over this:
#: the smoothed image varies over a spacing, and the edge is placed on it interpolated back to every pixel
#: (the full-resolution smoothing, a 129-tap filter over a 1024^2 dot's box, took ~0.07 s CPU).
BLOCKS_PER_SIGMA = 4

#: Pixels of Gaussians drawn at once by :func:`render_columns` (bounds its temporaries, ~8 bytes each, x4).
RENDER_CHUNK_PX = 1 << 20


@dataclasses.dataclass(frozen=True)
class DiffuseOutline:
    """The crystal at the diffuse intensity step.

    Attributes
    ----------
    mask : (M, N) ndarray of bool
        The crystal: where the smoothed image without its columns is above
        half-way between the two levels, within ``max_reach_spacings`` of the
        columns' hull, and the hull itself.
    contrast : float
        Step height over the noise of the smoothed carbon (the step's
        signal-to-noise ratio).
    """

    mask: np.ndarray
    contrast: float


def render_columns(shape: tuple[int, int], columns: Columns) -> np.ndarray:
    """The columns' fitted Gaussians (``amplitude``, ``sigma``) on an image of ``shape``, as float32.

    Each Gaussian is drawn out to 4 of its widths. Columns without a finite amplitude or width are
    left out.
    """
    out = np.zeros(shape, np.float32)
    if columns.amplitude is None or columns.sigma is None:
        return out
    sigma = np.asarray(columns.sigma, dtype=np.float64).reshape(-1, 2)
    amp = np.asarray(columns.amplitude, dtype=np.float64)
    ok = np.isfinite(amp) & np.all(np.isfinite(sigma) & (sigma > 0), axis=1)
    rc, amp, sigma = columns.rc[ok], amp[ok], sigma[ok]
    half = np.ceil(4 * sigma.max(axis=1)).astype(int)
    # All columns of one window size at once (a few sizes per image; a Python loop over the columns took
    # ~0.04 s CPU of a 1024^2 dot's 1,953, benchmarks/process.py), in chunks that bound the memory.
    for h in np.unique(half):
        same = np.flatnonzero(half == h)
        step = max(1, RENDER_CHUNK_PX // (2 * h + 1) ** 2)
        for start in range(0, len(same), step):
            part = same[start : start + step]
            _add_gaussians(out, rc[part], amp[part], sigma[part], int(h))
    return out


def _add_gaussians(out: np.ndarray, rc: np.ndarray, amp: np.ndarray, sigma: np.ndarray, half: int) -> None:
    """Add Gaussians at ``rc`` (K, 2) of heights ``amp`` and widths ``sigma`` (K, 2) to ``out`` (C-contiguous),
    each on the (2 ``half`` + 1)^2 pixels around its nearest pixel that lie in ``out``."""
    offsets = np.arange(-half, half + 1)
    axes = []
    for k in range(2):
        pix = np.round(rc[:, k]).astype(int)[:, None] + offsets
        weight = np.exp(-0.5 * ((pix - rc[:, k, None]) / sigma[:, k, None]) ** 2)
        weight[(pix < 0) | (pix >= out.shape[k])] = 0.0
        pix = np.clip(pix, 0, out.shape[k] - 1)
        axes.append((pix, weight))
    (rows, wr), (cols, wc) = axes
    index = rows[:, :, None] * out.shape[1] + cols[:, None, :]
    patches = (amp[:, None] * wr)[:, :, None] * wc[:, None, :]
    np.add.at(out.reshape(-1), index.ravel(), patches.ravel().astype(np.float32))


def without_columns(image: np.ndarray, columns: Columns) -> np.ndarray:
    """The image less its columns' fitted Gaussians (:func:`render_columns`), as float32."""
    data = np.asarray(image)
    return data.astype(np.float32) - render_columns((int(data.shape[0]), int(data.shape[1])), columns)


def pixel_noise(
    rest: np.ndarray, columns: Columns, spacing_px: float, *, hull: np.ndarray | None = None
) -> float | None:
    """The image's pixel noise over the median column height (scale-free; about 1/sqrt(dose) for counts).

    The robust standard deviation of ``rest`` (the image less its columns,
    :func:`without_columns`) less its 3x3 mean, over the crystal at least
    :data:`INSIDE_DEPTH_SPACINGS` inside the columns' hull, divided by the
    median fitted column ``amplitude``. None without amplitudes or such a
    crystal. ``hull``: the columns' convex hull on the image
    (:func:`~stem_pipeline.classify.hull_mask`), when the caller has it.
    """
    if columns.amplitude is None or len(columns) < 3:
        return None
    height = float(np.nanmedian(np.asarray(columns.amplitude, dtype=np.float64)))
    box = _columns_box(rest.shape, columns.rc, 1)
    if hull is None:
        hull = hull_mask(rest.shape, columns.rc)
    inside = deeper_than(hull[box], INSIDE_DEPTH_SPACINGS * spacing_px)
    if not inside.any() or not height > 0:
        return None
    part = np.asarray(rest[box], dtype=np.float32)
    high = (part - ndimage.uniform_filter(part, 3, mode="nearest"))[inside]
    # Both medians in place (the order of `high` is free): no copies of the ~0.4 M values of a 1024^2 dot.
    centre = np.median(high, overwrite_input=True)
    return float(1.4826 * np.median(np.abs(high - centre, out=high), overwrite_input=True)) / height


def diffuse_outline(
    rest: np.ndarray,
    rc: np.ndarray,
    spacing_px: float,
    *,
    smoothing_spacings: float = 1.0,
    max_reach_spacings: float = 1.2,
    min_contrast: float = 3.0,
    hull: np.ndarray | None = None,
) -> DiffuseOutline | None:
    """The crystal outline at the step of the image's diffuse intensity.

    Parameters
    ----------
    rest : (M, N) array_like
        The raw image less its columns (:func:`without_columns`).
    rc : (K, 2) array_like
        Column positions (row, col) [px].
    spacing_px : float
        Column spacing [px].
    smoothing_spacings : float
        Gaussian smoothing of ``rest``, in spacings (on its means over
        blocks of ``sigma // BLOCKS_PER_SIGMA`` px).
    max_reach_spacings : float
        The outline lies within this many spacings of the columns' convex
        hull (the outermost columns are less than a spacing inside the edge).
    min_contrast : float
        Smallest step over the noise of the smoothed carbon at which the
        step is used.
    hull : (M, N) ndarray of bool, optional
        The columns' convex hull (:func:`~stem_pipeline.classify.hull_mask`
        of ``rc``), when the caller has it; drawn here otherwise.

    Returns
    -------
    DiffuseOutline or None
        None when there is no step to place: no carbon around the crystal
        (fewer than ``MIN_RING_CELLS`` cells of it in the image), no crystal
        deep enough inside the hull, or a step below ``min_contrast``.
    """
    rest = np.asarray(rest)
    shape = (int(rest.shape[0]), int(rest.shape[1]))
    rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    if len(rc) < 3:
        return None
    if hull is None:
        hull = hull_mask(shape, rc)
    sigma = smoothing_spacings * spacing_px
    # On the columns' bounding box grown past the carbon ring and the smoothing: nothing further is read.
    box = _columns_box(shape, rc, int(np.ceil((CARBON_RING_SPACINGS[1] + 4 * smoothing_spacings) * spacing_px)))
    # Smoothed on block means (the smoothed image varies over a spacing); the block means' own blur (a box of
    # `factor` px, variance (factor^2 - 1) / 12) is taken off the smoothing's.
    factor = max(1, int(sigma // BLOCKS_PER_SIGMA))
    coarse_sigma = np.sqrt(max(sigma**2 - (factor**2 - 1) / 12, 0.0)) / factor
    coarse = ndimage.gaussian_filter(_block_means(rest[box], factor), coarse_sigma, mode="nearest")
    # The levels from every `factor`-th pixel, picked by its distance to the hull (as at full resolution), the
    # smoothed image interpolated there between the block centres.
    hull_box = hull[box]
    sample = np.ix_(*(np.arange(factor // 2, size, factor) for size in hull_box.shape))
    inside = deeper_than(hull_box, INSIDE_DEPTH_SPACINGS * spacing_px)[sample]
    ring = ~grown_by(hull_box, CARBON_RING_SPACINGS[0] * spacing_px)
    ring &= grown_by(hull_box, np.nextafter(CARBON_RING_SPACINGS[1] * spacing_px, 0.0))  # under 4 spacings
    ring = ring[sample]
    if ring.sum() * factor**2 < MIN_RING_CELLS * spacing_px**2 or not inside.any():
        return None
    smooth = _interpolated(coarse, factor, [k.ravel() for k in sample])
    carbon = smooth[ring]
    level_in, level_out = float(np.median(smooth[inside])), float(np.median(carbon))
    noise = 1.4826 * float(np.median(np.abs(carbon - level_out)))
    contrast = (level_in - level_out) / max(noise, 1e-12)
    if not contrast >= min_contrast:
        return None
    # The edge at full resolution, within reach of the hull: on the smoothed image interpolated to every pixel.
    reach = max_reach_spacings * spacing_px
    near = _columns_box(shape, rc, int(np.ceil(reach)) + 2)
    above = _interpolated(coarse, factor, [np.arange(n.start - b.start, n.stop - b.start) for n, b in zip(near, box)])
    crystal = ((above > 0.5 * (level_in + level_out)) & grown_by(hull[near], reach)) | hull[near]
    # The part connected to the columns (a bright speck of carbon within reach is not crystal), holes filled.
    parts, n = ndimage.label(crystal)
    connected = np.zeros(n + 1, bool)
    connected[parts[hull[near]]] = True
    crystal = fill_holes(connected[parts])
    mask = np.zeros(shape, bool)
    mask[near] = crystal
    return DiffuseOutline(mask=mask, contrast=float(contrast))


def _block_means(image: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``image`` over ``factor`` x ``factor`` blocks, as float32; its last row and column repeated to
    fill the last blocks (as the smoothing's ``"nearest"`` edge does)."""
    m, n = (-(-size // factor) for size in image.shape)
    padded = np.pad(
        np.asarray(image, dtype=np.float32),
        ((0, m * factor - image.shape[0]), (0, n * factor - image.shape[1])),
        mode="edge",
    )
    return padded.reshape(m, factor, n, factor).mean(axis=(1, 3))


def _interpolated(coarse: np.ndarray, factor: int, pixels: list[np.ndarray]) -> np.ndarray:
    """:func:`_block_means`'s grid ``coarse`` linearly interpolated to the rows and columns ``pixels`` (one index
    array per axis) of the image it was made from; each block's mean sits at its centre, the grid's edge value
    beyond."""
    out = coarse
    for axis, index in enumerate(pixels):
        size = coarse.shape[axis]
        pos = np.clip((index - (factor - 1) / 2) / factor, 0, size - 1)
        low = np.minimum(pos.astype(int), max(size - 2, 0))
        t = (pos - low).astype(np.float32)
        t = t[:, None] if axis == 0 else t
        out = np.take(out, low, axis=axis) * (1 - t) + np.take(out, np.minimum(low + 1, size - 1), axis=axis) * t
    return out


def _columns_box(shape: tuple[int, ...], rc: np.ndarray, reach: int) -> tuple[slice, slice]:
    """The columns' bounding box grown by ``reach`` pixels, within the image."""
    r, c = np.round(np.asarray(rc).reshape(-1, 2)).astype(int).T
    rows = slice(max(int(r.min()) - reach, 0), min(int(r.max()) + reach + 1, int(shape[0])))
    cols = slice(max(int(c.min()) - reach, 0), min(int(c.max()) + reach + 1, int(shape[1])))
    return rows, cols
