"""The crystal outline from the image's diffuse intensity step.

A dot is brighter than the carbon around it as a whole, not only at its
columns: between the columns lies a diffuse signal that ends where the
crystal ends. The outermost columns lie anywhere from 0 to 1 column spacing
inside that edge (the edge is not tied to the lattice), so the columns' hull
grown by a fixed margin places the edge with an error of up to half a
spacing, which moves whichever phase meets the edge. Here the columns (their
fitted Gaussians) are taken out of the image, the rest is smoothed over about
a column spacing, and the edge is where it crosses half-way between its level
inside the crystal and on the carbon around it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .._types import Columns
from .regions import hull_mask

__all__ = ["DiffuseOutline", "diffuse_outline", "pixel_noise", "render_columns", "without_columns"]

#: The inside level is read this far [column spacings] inside the columns' hull, and the carbon's level
#: between these distances beyond it: away from the edge, which the smoothing spreads over ~1 spacing.
INSIDE_DEPTH_SPACINGS = 1.5
CARBON_RING_SPACINGS = (2.0, 4.0)

#: Fewest pixels of carbon ring, in column cells, from which its level is read.
MIN_RING_CELLS = 20


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

    Columns without a finite amplitude or width are left out.
    """
    out = np.zeros(shape, np.float32)
    if columns.amplitude is None or columns.sigma is None:
        return out
    sigma = np.asarray(columns.sigma, dtype=np.float64).reshape(-1, 2)
    amp = np.asarray(columns.amplitude, dtype=np.float64)
    ok = np.isfinite(amp) & np.all(np.isfinite(sigma) & (sigma > 0), axis=1)
    for (r, c), a, (sr, sc) in zip(columns.rc[ok], amp[ok], sigma[ok]):
        half = int(np.ceil(4 * max(sr, sc)))
        r0, c0 = int(round(r)), int(round(c))
        rows = np.arange(max(r0 - half, 0), min(r0 + half + 1, shape[0]))
        cols = np.arange(max(c0 - half, 0), min(c0 + half + 1, shape[1]))
        if len(rows) and len(cols):
            patch = a * np.outer(np.exp(-0.5 * ((rows - r) / sr) ** 2), np.exp(-0.5 * ((cols - c) / sc) ** 2))
            out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += patch
    return out


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
    inside = ndimage.distance_transform_edt(hull[box]) > INSIDE_DEPTH_SPACINGS * spacing_px
    if not inside.any() or not height > 0:
        return None
    part = np.asarray(rest[box], dtype=np.float32)
    high = (part - ndimage.uniform_filter(part, 3, mode="nearest"))[inside]
    return float(1.4826 * np.median(np.abs(high - np.median(high)))) / height


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
        Gaussian smoothing of ``rest``, in spacings.
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
    # On the columns' bounding box grown past the carbon ring and the smoothing: nothing further is read.
    box = _columns_box(shape, rc, int(np.ceil((CARBON_RING_SPACINGS[1] + 4 * smoothing_spacings) * spacing_px)))
    smooth = ndimage.gaussian_filter(rest[box].astype(np.float32), smoothing_spacings * spacing_px, mode="nearest")
    distance = ndimage.distance_transform_edt(~hull[box])
    depth = ndimage.distance_transform_edt(hull[box])
    inside = depth > INSIDE_DEPTH_SPACINGS * spacing_px
    ring = (distance > CARBON_RING_SPACINGS[0] * spacing_px) & (distance < CARBON_RING_SPACINGS[1] * spacing_px)
    if ring.sum() < MIN_RING_CELLS * spacing_px**2 or not inside.any():
        return None
    level_in, level_out = float(np.median(smooth[inside])), float(np.median(smooth[ring]))
    noise = 1.4826 * float(np.median(np.abs(smooth[ring] - level_out)))
    contrast = (level_in - level_out) / max(noise, 1e-12)
    if not contrast >= min_contrast:
        return None
    crystal = ((smooth > 0.5 * (level_in + level_out)) & (distance <= max_reach_spacings * spacing_px)) | hull[box]
    crystal = ndimage.binary_fill_holes(crystal)
    # The part connected to the columns: a bright speck of carbon within reach is not crystal.
    parts, _ = ndimage.label(crystal)
    crystal = np.isin(parts, np.unique(parts[hull[box]]))
    mask = np.zeros(shape, bool)
    mask[box] = crystal
    return DiffuseOutline(mask=mask, contrast=float(contrast))


def _columns_box(shape: tuple[int, ...], rc: np.ndarray, reach: int) -> tuple[slice, slice]:
    """The columns' bounding box grown by ``reach`` pixels, within the image."""
    r, c = np.round(np.asarray(rc).reshape(-1, 2)).astype(int).T
    rows = slice(max(int(r.min()) - reach, 0), min(int(r.max()) + reach + 1, int(shape[0])))
    cols = slice(max(int(c.min()) - reach, 0), min(int(c.max()) + reach + 1, int(shape[1])))
    return rows, cols
