"""Whole-image masks and maps: row-block processing, so that large images need no full-size temporaries,
and hole filling.

A stage that works on one pixel (or one small neighbourhood) at a time can run a
block of rows at a time; each helper here gives the same result as one pass over
the whole image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
from scipy import ndimage

#: Pixels per row block: 8 MB per float64 temporary, small beside the image (a 4096^2 float32 image is 64 MB)
#: and large enough that the per-block overhead does not show in the timings.
BLOCK_PIXELS = 1 << 20

T = TypeVar("T")


def row_blocks(m: int, n: int, *, pixels: int | None = None) -> Iterator[slice]:
    """Row slices of about ``pixels`` (default :data:`BLOCK_PIXELS`) pixels covering an (m, n) array."""
    step = max(1, (BLOCK_PIXELS if pixels is None else pixels) // max(n, 1))
    for start in range(0, m, step):
        yield slice(start, min(start + step, m))


def block_passes(m: int, n: int, part: Callable[[slice], T]) -> Callable[[], Iterable[T]]:
    """Passes over the row blocks (:func:`row_blocks`) of an (m, n) array: each yields ``part(rows)`` per block.

    With one block (arrays up to :data:`BLOCK_PIXELS` pixels) its values are computed once and kept for every
    pass (e.g. a second pass that only caps the first's logs: ~0.01 s CPU less of a 1024^2 ``analyze``
    process, benchmarks/process.py); with more, they are computed again per pass, so that the temporaries
    are one block's. ``part`` must not change its arguments, nor a pass the values it is given.
    """
    blocks = list(row_blocks(m, n))
    if len(blocks) == 1:
        kept = [part(blocks[0])]
        return lambda: kept
    return lambda: map(part, blocks)


def within_distance(mask: np.ndarray, radius_px: float, *, pixels: int | None = None) -> np.ndarray:
    """Pixels within ``radius_px`` (Euclidean) of a True pixel of ``mask``.

    ``ndimage.distance_transform_edt(~mask) <= radius_px``, a block of rows at a time with a halo
    of ``ceil(radius_px)`` rows (a pixel further away cannot be within the radius), so the float64
    distances and the int32 feature map exist for one block only (the whole-image transform took
    ~4 float32 image copies).

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        The pixels to grow from.
    radius_px : float
        The distance [px].
    pixels : int, optional
        Pixels per block (default :data:`BLOCK_PIXELS`).

    Returns
    -------
    (M, N) ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    halo = int(np.ceil(radius_px))
    out = np.zeros(mask.shape, bool)
    rows, cols = (np.flatnonzero(mask.any(axis=k)) for k in (1, 0))
    if len(rows) == 0:
        return out
    # Only the True pixels' bounding box grown by the radius can be within it: the transform of that
    # box is the whole image's there (every True pixel is in it), and costs the box's pixels only
    # (a dot filling half a 1024^2 frame: ~0.03 s CPU less over the process's calls, benchmarks/process.py).
    box = tuple(slice(max(v[0] - halo, 0), min(v[-1] + halo + 1, size)) for v, size in zip((rows, cols), mask.shape))
    inner, grown = mask[box], out[box]
    m, n = inner.shape
    for block in row_blocks(m, n, pixels=pixels):
        lo, hi = max(block.start - halo, 0), min(block.stop + halo, m)
        part = inner[lo:hi]
        if not part.any():
            continue
        grown[block] = (ndimage.distance_transform_edt(~part) <= radius_px)[block.start - lo : block.stop - lo]
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)``: the mask with every background region that does not reach the edge.

    The background's 4-connected regions are labelled once and those touching the image edge kept,
    where ndimage grows the background in from the edge pixel by pixel: the same pixels (a test
    checks it) at ~1/3 of the CPU (~0.04 s of a 1024^2 ``analyze`` process, benchmarks/process.py).

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Not modified.

    Returns
    -------
    (M, N) ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return mask.copy()
    background, n = ndimage.label(~mask)
    outside = np.zeros(n + 1, bool)
    outside[np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])] = True
    outside[0] = False  # label 0: the mask itself
    return ~outside[background]
