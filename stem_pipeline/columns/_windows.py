"""Batched fit windows: square pixel patches around every column, Voronoi-masked."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from .._types import Micrograph
from ..lattice import Lattice


def as_image(image: np.ndarray | Micrograph, name: str = "image") -> tuple[np.ndarray, float | None]:
    """Return the 2-D array (not copied) and the pixel size of an ndarray or Micrograph."""
    if isinstance(image, Micrograph):
        data, pixel_size_nm = image.data, image.pixel_size_nm
    else:
        data, pixel_size_nm = np.asarray(image), None
    if data.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array, got dtype {data.dtype}")
    return data, pixel_size_nm


#: Gaussian width (sigma) of a column whose width is not measured, in column spacings: a probe-limited HAADF
#: column is ~0.045 nm wide (sigma; ``synthetic.make_dot``'s default) at the 0.3145 nm CsPbI3 [001] column
#: spacing, 0.14. It starts the Gaussian fit where the moments fail, stands in for failed fits when no fit
#: succeeded, and sets the intensity fit of columns given without widths.
TYPICAL_SIGMA_SPACINGS = 0.15


def spacing_from(lattice: Lattice | None, rc: np.ndarray) -> float:
    """Lattice spacing [px], or the median nearest-neighbour distance of the columns."""
    if lattice is not None:
        return float(lattice.spacing_px)
    if len(rc) < 2:
        raise ValueError("cannot size the fit windows from fewer than 2 columns; pass lattice= or window_px=")
    d, _ = cKDTree(rc).query(rc, k=2)
    return float(np.median(d[:, 1]))


@dataclasses.dataclass
class Windows:
    """Pixels of the square windows around N columns (P pixels each)."""

    centre: np.ndarray  # (N, 2) int, the window centre pixel
    dr: np.ndarray  # (P,) row offsets of the window pixels
    dc: np.ndarray  # (P,) col offsets
    valid: np.ndarray  # (N, P) bool, inside the image
    flat: np.ndarray  # (N, P) int, flat image index (clipped)

    def values(self, image: np.ndarray) -> np.ndarray:
        """(N, P) float64 pixel values (0 outside the image)."""
        out = image.ravel()[self.flat].astype(np.float64)
        out[~self.valid] = 0.0
        return out


def windows(shape: tuple[int, int], rc: np.ndarray, half_px: int) -> Windows:
    """Square windows of half-width ``half_px`` centred on the nearest pixel of each column."""
    off = np.arange(-half_px, half_px + 1)
    dr, dc = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    centre = np.rint(rc).astype(np.int64)
    rows = centre[:, :1] + dr[None, :]
    cols = centre[:, 1:] + dc[None, :]
    valid = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    flat = np.clip(rows, 0, shape[0] - 1) * shape[1] + np.clip(cols, 0, shape[1] - 1)
    return Windows(centre=centre, dr=dr, dc=dc, valid=valid, flat=flat)


def neighbour_index(rc: np.ndarray, k: int = 8) -> np.ndarray:
    """(N, K) indices of the K nearest other columns (K < k when N <= k)."""
    n = len(rc)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64)
    _, idx = cKDTree(rc).query(rc, k=k + 1)
    return np.asarray(idx[:, 1:], dtype=np.int64)


def voronoi_mask(win: Windows, rc: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """(N, P) bool: window pixels closer to their own column than to any of its neighbours.

    ``rc`` is (N, 2), ``neighbours`` (N, K, 2) the neighbours' positions. A pixel ``d`` (relative to
    the window centre) is nearer its column ``r`` than a neighbour ``q`` (both relative to the centre)
    when ``|d - r|^2 <= |d - q|^2``, i.e. ``d . (q - r) <= (|q|^2 - |r|^2) / 2``: one product per pixel and
    neighbour instead of two squared distances (a third of the CPU of the fits' masks,
    benchmarks/process.py).
    """
    centre = win.centre.astype(np.float64)
    own = rc - centre
    own_sq = (own * own).sum(axis=1)
    inside = np.ones((len(rc), len(win.dr)), bool)
    for j in range(neighbours.shape[1]):
        other = neighbours[:, j] - centre
        step = other - own
        half_gap = 0.5 * ((other * other).sum(axis=1) - own_sq)
        inside &= np.multiply.outer(step[:, 0], win.dr) + np.multiply.outer(step[:, 1], win.dc) <= half_gap[:, None]
    return inside


#: Bytes of one per-batch (columns, window pixels, parameters) float64 array. The Gaussian fit holds about
#: a dozen arrays of that size: 7,700 columns in 19x19-pixel windows in one batch took +600 MB
#: (benchmarks/memory.py); at 8 MB a batch holds ~400 such columns and the fit peaks at ~40 MB, with the
#: same results (every column is fitted on its own). 8 rather than 32 MB also took ~0.04 s CPU less to
#: refine a 1024^2 dot's ~1,950 columns (fewer fresh pages to fault in, arrays nearer the cache size;
#: benchmarks/process.py).
BATCH_BYTES = 8 << 20


def batches(n: int, size: int, *, half_px: int | None = None, n_params: int = 8):
    """Slices covering range(n) in chunks of ``size``, or fewer columns when their windows of half-width
    ``half_px`` times ``n_params`` float64 values would exceed :data:`BATCH_BYTES`."""
    if half_px is not None:
        size = min(size, max(1, BATCH_BYTES // (8 * (2 * half_px + 1) ** 2 * n_params)))
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def solve_batched(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve the (N, K, K) systems ``a x = b`` for (N, K) ``b``; singular ones give NaN."""
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full(b.shape, np.nan)
        for i in range(len(a)):
            with contextlib.suppress(np.linalg.LinAlgError):  # a singular system stays NaN
                out[i] = np.linalg.solve(a[i], b[i])
        return out
