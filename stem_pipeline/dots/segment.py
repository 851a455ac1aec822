"""Split a field into dots: crystal vs support, then touching dots apart.

Atomic-resolution fields (:func:`segment_field`): the crystal is where the
local lattice strength (:func:`stem_pipeline.dots.strength.lattice_field`)
stands well above the carbon's; each connected crystal region's edge is then
placed where its strength is half-way between the carbon's and its own
median (the half height of the smoothed step, i.e. on the dot's edge).
Touching dots are split first where the lattice rotation changes (peaks of the
region's histogram of local rotations, mod 90 degrees), then, for dots of
the same rotation, by a watershed of the distance transform when the region
is not convex (as ParticleSpy and scikit-image's watershed example do); a
watershed piece that is not one projected cube joins the neighbour it makes
one with (:func:`merge_fragments`), and a region of one seed is cut in
:func:`halves` when they are two cubes; a region so split in two has its
boundary moved onto the common edge of two projected squares in its
lattice's frame (:func:`square_boundaries`).
Outlines carried onto the frame by the smoothing are taken back to the crystal
(:func:`trim_at_frame`), so that only dots the frame cuts touch it.

Overview fields (:func:`segment_overview`), whose lattice is not resolved:
the smoothed intensity is thresholded (Otsu) and touching dots split by the
same distance-transform watershed.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from .._tiles import fill_holes, within_distance
from ..classify.convex import hull_area_px
from .strength import LatticeField, block_expand, gaussian_smooth, lattice_field

logger = logging.getLogger("stem_pipeline")

__all__ = [
    "crystal_labels",
    "halves",
    "merge_fragments",
    "segment_field",
    "segment_overview",
    "split_by_orientation",
    "split_by_shape",
    "square_boundaries",
    "trim_at_frame",
    "unresolved_regions",
]

#: Pixel sizes at or above this are overview images: column spacings (~0.31 nm) are not resolved [nm].
OVERVIEW_PIXEL_NM = 0.1
#: A region is crystal when its median lattice strength is at least this many times the carbon's
#: (measured: dots 600 vs carbon 21 at 200 counts, 14 vs 0.6 at 30 counts; carbon alone varies by < 2x).
MIN_STRENGTH_RATIO = 5.0
#: Regions smaller than this are not dots [nm^2] (a 2 nm square).
MIN_DOT_AREA_NM2 = 4.0
#: Two lattice rotations closer than this are one dot's [deg] (the rotation of a dot is measured to
#: ~0.3 deg; the histogram peak of two touching dots needs about this much to separate).
MIN_ROTATION_STEP_DEG = 1.5
#: A region whose area is below this fraction of its convex hull's is several dots (a single dot's
#: footprint measures 0.97-0.99; two touching dots of one rotation 0.85-0.97).
MIN_SOLIDITY = 0.93
#: ... or whose minimum-area rectangle is this elongated (a cube's projection is square: 1.0-1.1;
#: two touching dots 1.6-1.9). Not applied to regions cut by the frame.
MAX_ASPECT = 1.4
#: A pixel of a two-square region lies beyond a square's span across the split axis when this far
#: outside it [px] (:func:`square_boundaries`).
SQUARE_MARGIN_PX = 1.0
#: ... and within this fraction of the smaller square's width from the boundary along the axis.
SQUARE_BAND = 0.1
#: Where between the carbon (0) and the dot's median (1) lattice strength its edge is placed.
EDGE_LEVEL = 0.5


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def crystal_labels(field: LatticeField, *, pixel_size_nm: float) -> tuple[np.ndarray, float]:
    """Connected crystal regions of a field, with their edges on the half-height of the lattice strength.

    Parameters
    ----------
    field : LatticeField
        From :func:`stem_pipeline.dots.strength.lattice_field`.
    pixel_size_nm : float
        Pixel size [nm].

    Returns
    -------
    labels : (M, N) ndarray of int32
        0 on the support, 1..K on the crystal regions.
    carbon_level : float
        Median lattice strength of the support.
    """
    strength = field.strength.astype(np.float64)
    logs = np.log(np.maximum(strength, np.finfo(np.float32).tiny))
    coarse = logs > _otsu(logs[::2, ::2].ravel())
    support = ~ndimage.binary_dilation(coarse, iterations=3)
    carbon = float(np.median(strength[support])) if support.any() else float(np.min(strength))
    coarse &= strength > MIN_STRENGTH_RATIO * carbon
    coarse_labels, n = ndimage.label(coarse)
    if n == 0:
        return np.zeros(strength.shape, np.int32), carbon
    # Per region, its edge at half-way between the carbon's strength and its own median.
    medians = label_medians(strength, coarse_labels, n)
    if n == 1:  # one dot: every pixel's nearest region is it (the transform took ~0.02 s CPU of a 1024^2 process)
        nearest: np.ndarray | int = 1
    else:
        _, (ri, ci) = ndimage.distance_transform_edt(coarse_labels == 0, return_indices=True)
        nearest = coarse_labels[ri, ci]
    level = np.concatenate([[np.inf], carbon + EDGE_LEVEL * (np.asarray(medians) - carbon)])
    keep_region = np.concatenate([[False], np.asarray(medians) > MIN_STRENGTH_RATIO * carbon])
    refined = (strength > level[nearest]) & keep_region[nearest]
    refined = fill_holes(refined)
    labels, n = ndimage.label(refined)
    sizes = ndimage.sum_labels(refined, labels, np.arange(1, n + 1)) * pixel_size_nm**2
    keep = np.concatenate([[False], sizes >= MIN_DOT_AREA_NM2])
    labels = np.where(keep[labels], labels, 0)
    return _relabel(labels), carbon


def label_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """``ndimage.median(values, labels, 1..n)`` to the bit: each label's middle value (or the mean of its two).

    Sorts the labelled pixels by label only and takes each label's middle order statistics with
    ``np.partition``, where ndimage sorts every pixel of the image by label and value (~0.03 s CPU of
    a 1024^2 ``analyze`` process, benchmarks/process.py). Every label 1..n must have pixels.
    """
    inside = labels > 0
    lab, val = labels[inside], values[inside]
    order = np.argsort(lab, kind="stable")
    lab, val = lab[order], val[order]
    bounds = np.searchsorted(lab, np.arange(1, n + 2))
    out = np.empty(n, np.result_type(val.dtype, 2.0))
    for k in range(n):
        part = val[bounds[k] : bounds[k + 1]]
        lo, hi = (len(part) - 1) // 2, len(part) // 2
        part = np.partition(part, (lo, hi))
        out[k] = (part[lo] + part[hi]) / 2.0
    return out


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..K in order of first appearance (row-major)."""
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0].astype(np.int32)


def find_peaks(x: np.ndarray, *, height: float, prominence: float, distance: int) -> np.ndarray:
    """Indices of the peaks of ``x`` as ``scipy.signal.find_peaks(x, height=, prominence=, distance=)`` finds them.

    Local maxima (a flat top at its middle) at least ``height`` high; of maxima
    closer than ``distance`` samples the highest is kept; then those whose
    prominence (height above the higher of the lowest points between them and a
    higher sample on either side) is at least ``prominence``. Replaces
    ``scipy.signal`` here because importing it (with scipy.stats) took ~0.5 s
    CPU of a 1024^2 ``analyze`` process, for a 540-sample histogram
    (benchmarks/process.py); a test checks it against scipy.
    """
    x = np.asarray(x, dtype=float)
    rising = np.flatnonzero(np.diff(x) > 0) + 1  # samples above their left neighbour: maybe a peak's left edge
    tops: list[int] = []
    for i in rising:
        j = int(i)
        while j + 1 < len(x) and x[j + 1] == x[i]:
            j += 1
        if j + 1 < len(x) and x[j + 1] < x[i]:
            tops.append((int(i) + j) // 2)
    peaks = np.array([p for p in tops if x[p] >= height], dtype=int)
    keep = np.ones(len(peaks), dtype=bool)
    for k in np.argsort(x[peaks])[::-1]:  # highest first (ties in scipy's order); a close, lower neighbour goes
        if keep[k]:
            close = np.abs(peaks - peaks[k]) < distance
            close[k] = False
            keep &= ~close
    peaks = peaks[keep]
    return np.array([p for p in peaks if _prominence(x, int(p)) >= prominence], dtype=int)


def _prominence(x: np.ndarray, peak: int) -> float:
    """Height of ``x[peak]`` above the higher of the minima between it and the next higher sample on each side."""
    higher = np.flatnonzero(x > x[peak])
    left = higher[higher < peak]
    right = higher[higher > peak]
    lo = left[-1] + 1 if len(left) else 0
    hi = right[0] if len(right) else len(x)
    return float(x[peak] - max(x[lo : peak + 1].min(), x[peak:hi].min()))


def _rotation_peaks(angles: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rotations [deg] of the separate peaks of a weighted histogram of rotations mod 90."""
    step = 0.5
    hist, _ = np.histogram(np.mod(angles, 90.0), bins=int(90 / step), range=(0, 90), weights=weights)
    hist = ndimage.gaussian_filter1d(hist.astype(float), 1.5, mode="wrap")
    # Peaks on the circle: search a doubled histogram and keep those found in its middle copy.
    n = len(hist)
    tripled = np.concatenate([hist, hist, hist])
    idx = find_peaks(
        tripled, height=0.15 * hist.max(), prominence=0.1 * hist.max(), distance=int(MIN_ROTATION_STEP_DEG / step)
    )
    idx = idx[(idx >= n) & (idx < 2 * n)] - n
    return (idx + 0.5) * step


def split_by_orientation(labels: np.ndarray, field: LatticeField, *, min_area_px: float) -> np.ndarray:
    """Split regions that hold lattices of different rotations into one region per rotation.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Crystal regions (0: support).
    field : LatticeField
        Local lattice strength and orientation of the same image.
    min_area_px : float
        Pieces smaller than this join the neighbouring piece they touch most.

    Returns
    -------
    (M, N) ndarray of int32
        The regions, split where the rotation changes.
    """
    rotation = np.asarray(field.rotation_deg())
    out = np.zeros_like(labels, dtype=np.int32)
    next_label = 1
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        region = labels[sl] == k
        peaks = _rotation_peaks(rotation[sl][region], field.strength[sl][region])
        if len(peaks) < 2:
            out[sl][region] = next_label
            next_label += 1
            continue
        # Each pixel to the nearest peak rotation (circular, period 90), pieces connected.
        d = np.abs(np.angle(np.exp(1j * np.deg2rad(4 * (rotation[sl][:, :, None] - peaks)))))
        choice = np.argmin(d, axis=-1)
        pieces = np.zeros(region.shape, np.int32)
        n_pieces = 0
        for p in range(len(peaks)):
            lab, n = ndimage.label(region & (choice == p))
            pieces[lab > 0] = lab[lab > 0] + n_pieces
            n_pieces += n
        pieces = _merge_small(pieces, min_area_px)
        for value in np.unique(pieces[pieces > 0]):
            out[sl][pieces == value] = next_label
            next_label += 1
    return out


def _merge_small(pieces: np.ndarray, min_area_px: float) -> np.ndarray:
    """Pieces smaller than ``min_area_px`` join the neighbouring piece they share most border with."""
    pieces = pieces.copy()
    while True:
        values, counts = np.unique(pieces[pieces > 0], return_counts=True)
        small = values[counts < min_area_px]
        if len(small) == 0 or len(values) == 1:
            return pieces
        v = small[np.argmin(counts[counts < min_area_px])]
        ring = ndimage.binary_dilation(pieces == v) & (pieces > 0) & (pieces != v)
        if ring.any():
            pieces[pieces == v] = np.bincount(pieces[ring]).argmax()
        else:  # an isolated fragment: not a dot
            pieces[pieces == v] = 0


def split_by_shape(labels: np.ndarray, *, min_size_px: float) -> np.ndarray:
    """Split non-convex regions (touching dots of one rotation) by a watershed of the distance transform.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Regions (0: background).
    min_size_px : float
        Smallest dot edge expected [px]: the watershed's seeds are distance maxima
        at least half of it apart and at least a quarter of it deep.

    Returns
    -------
    (M, N) ndarray of int32
    """
    from skimage.measure import regionprops

    from .shape import dot_shapes

    out = labels.astype(np.int32).copy()
    next_label = int(labels.max()) + 1
    shapes = {s.label: s for s in dot_shapes(labels)}
    for prop in regionprops(labels):
        shape = shapes[prop.label]
        if _one_cube(prop.area, prop.image, shape.aspect, shape.touches_border):
            continue
        # Imported for a region to split only: the watershed's import (skimage.morphology with it) took
        # ~0.02 s CPU of every process, most of whose dots are convex (benchmarks/process.py).
        from skimage.feature import peak_local_max
        from skimage.segmentation import watershed

        sl = prop.slice
        region = np.pad(prop.image, 1)
        distance = ndimage.distance_transform_edt(region)
        seeds = peak_local_max(
            distance,
            min_distance=max(1, int(min_size_px / 2)),
            threshold_abs=min_size_px / 4,
            labels=region.astype(int),
            exclude_border=False,
        )
        frame = _frame_sides(sl, labels.shape)
        if len(seeds) < 2:
            parts = halves(prop.image, frame)
            if parts is None:
                continue
        else:
            markers = np.zeros(region.shape, np.int32)
            markers[tuple(seeds.T)] = np.arange(1, len(seeds) + 1)
            parts = merge_fragments(watershed(-distance, markers, mask=region)[1:-1, 1:-1], frame)
        view = out[sl]
        for p in np.unique(parts[parts > 1]):
            view[parts == p] = next_label
            next_label += 1
    return _relabel(out)


def _one_cube(area_px: int, image: np.ndarray, aspect: float, touches_border: bool) -> bool:
    """Whether a footprint is one projected cube: convex (solidity) and square (aspect; not tested when the
    frame cuts it)."""
    # skimage's solidity (area over its convex hull image's), with the hull from its rows (~0.02 s CPU less).
    return area_px / hull_area_px(image) >= MIN_SOLIDITY and (aspect <= MAX_ASPECT or touches_border)


def halves(region: np.ndarray, frame: np.ndarray) -> np.ndarray | None:
    """A region the watershed gave one seed, cut across its long axis into two projected cubes, if it is two.

    Two touching dots placed flush along their common edge make a convex rectangle-like region without a
    neck: its distance transform has one ridge, whose maxima along it can be fewer than two seeds (tuning
    pairs of 0-1.5 deg apart: 4 of 180 merged into one dot so). The region is cut at the median of its
    pixels along its principal (long) axis; the cut stands when both halves are each one cube
    (:func:`_one_cube`), and :func:`square_boundaries` then moves it onto the squares' common edge.

    Parameters
    ----------
    region : (M, N) ndarray of bool
        The region's pixels in its bounding box.
    frame : (M, N) ndarray of bool
        The pixels on the image's frame.

    Returns
    -------
    (M, N) ndarray of int32 or None
        1 and 2 on the halves (0 outside), or None when they are not two cubes.
    """
    rows, cols = np.nonzero(region)
    coords = np.stack([rows, cols]).astype(float)
    coords -= coords.mean(axis=1, keepdims=True)
    axis = np.linalg.eigh(coords @ coords.T)[1][:, -1]  # the direction of the largest spread
    along = axis @ coords
    parts = np.zeros(region.shape, np.int32)
    parts[rows, cols] = np.where(along > np.median(along), 2, 1)
    if all(_cube_test(parts == p, frame)[0] for p in (1, 2)):
        return parts
    return None


def _cube_test(mask: np.ndarray, frame: np.ndarray) -> tuple[bool, float]:
    """Whether a piece is one projected cube (:func:`_one_cube`; ``frame``: the pixels on the image's frame),
    and its aspect."""
    from .shape import dot_shapes

    (shape,) = dot_shapes(mask.astype(np.int32))
    return _one_cube(shape.area_px, mask, shape.aspect, bool((mask & frame).any())), shape.aspect


def _frame_sides(sl: tuple[slice, slice], shape: tuple[int, ...]) -> np.ndarray:
    """Which pixels of the crop ``sl`` lie on the frame of an image of ``shape`` (its outer rows and columns)."""
    rows, cols = (s.stop - s.start for s in sl)
    sides = np.zeros((rows, cols), bool)
    sides[0, :] |= sl[0].start == 0
    sides[-1, :] |= sl[0].stop == shape[0]
    sides[:, 0] |= sl[1].start == 0
    sides[:, -1] |= sl[1].stop == shape[1]
    return sides


def merge_fragments(parts: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Watershed pieces of one region that are not a projected cube, joined to the neighbour they make one with.

    The distance transform of two touching dots placed flush along a common edge (nearly a rectangle, no
    neck) has a ridge along its long axis whose noise gives more seeds than dots: the watershed cut the pair
    in three, one dot into a sliver and the rest (issue 13, a 400-count field: that dot's parts read 0.565
    and 1.000, the dot alone 0.840). A piece that is not one cube (:func:`_one_cube`) joins the adjacent
    piece with which it makes one, the squarest such union first, until none does. The pieces all hold one
    lattice rotation (regions of several are split by :func:`split_by_orientation` before), so the outline is
    what tells them apart. A region cut in two is left as it is: its union, the region, failed that test.

    Parameters
    ----------
    parts : (M, N) ndarray of int
        The watershed's pieces 1..n of one region (0: outside it).
    frame : (M, N) ndarray of bool
        The pixels on the image's frame (a piece there is not tested for its aspect).

    Returns
    -------
    (M, N) ndarray of int32
        The pieces, merged (a merged piece keeps the smaller value; values need not be consecutive).
    """
    parts = parts.astype(np.int32, copy=True)
    while True:
        pieces = ndimage.find_objects(parts)
        values = [v for v, sl in enumerate(pieces, start=1) if sl is not None]
        if len(values) < 3:
            return parts
        best: tuple[float, int, int] | None = None
        for v in values:
            mine = parts == v
            if _cube_test(mine, frame)[0]:
                continue
            for w in np.unique(parts[ndimage.binary_dilation(mine) & (parts > 0) & ~mine]):
                ok, aspect = _cube_test(mine | (parts == w), frame)
                if ok and (best is None or aspect < best[0]):
                    best = (aspect, min(v, int(w)), max(v, int(w)))
        if best is None:
            return parts
        parts[parts == best[2]] = best[1]


def square_boundaries(pieces: np.ndarray, regions: np.ndarray, field: LatticeField) -> np.ndarray:
    """Move the boundary of each region split by shape in two onto the edges of two projected squares.

    The distance-transform watershed puts the boundary of two touching dots of (nearly) one rotation
    at the outline's neck, which lies off their common edge when the dots differ in size or are
    offset along it (0.6 nm at 0.02 nm/px, issue 13). Two touching cubes project to two squares
    with edges along their lattice: in the frame of the region's lattice rotation, along the axis
    that separates the pieces' centroids, dot A spans from the region's far end over its own
    width across that axis (the median width of its outer half), and dot B likewise from the
    other end. The boundary goes half-way between these two estimates, a straight line across the
    axis. Regions cut into more than two pieces, or whose estimate falls outside the pieces'
    centroids, keep the watershed's boundary.

    Parameters
    ----------
    pieces : (M, N) ndarray of int
        The dots after :func:`split_by_shape` (0: support).
    regions : (M, N) ndarray of int
        The regions before it.
    field : LatticeField
        The lattice strength and orientation on the same grid.

    Returns
    -------
    (M, N) ndarray of int32
    """
    out = pieces.astype(np.int32, copy=True)
    for k, sl in enumerate(ndimage.find_objects(regions), start=1):
        if sl is None:
            continue
        region = regions[sl] == k
        inside = out[sl][region]
        values = np.unique(inside)
        if len(values) != 2:
            continue
        angle = np.deg2rad(np.angle(complex(field.orientation[sl][region].sum()), deg=True) / 4.0)
        rows, cols = np.nonzero(region)
        second = _square_split(rows.astype(float), cols.astype(float), inside == values[1], angle)
        if second is not None:
            out[sl][rows, cols] = np.where(second, values[1], values[0])
    return out


def _square_split(rows: np.ndarray, cols: np.ndarray, second: np.ndarray, angle: float) -> np.ndarray | None:
    """Which pixels of a two-dot region belong to the second dot, split as two squares; None: keep ``second``."""
    # The lattice rotation's sign in image coordinates: the one whose frame boxes the region tightest.
    frames = []
    for a in (angle, -angle):
        u, v = cols * np.cos(a) + rows * np.sin(a), rows * np.cos(a) - cols * np.sin(a)
        frames.append((np.ptp(u) * np.ptp(v), u, v))
    _, u, v = min(frames, key=lambda f: f[0])
    du, dv = u[second].mean() - u[~second].mean(), v[second].mean() - v[~second].mean()
    if abs(dv) > abs(du):
        u, v, du = v, u, dv
    if du < 0:
        u, second = -u, ~second
    # Width across the axis per unit step along it; each dot's from its outer half.
    bins = np.floor(u - u.min()).astype(int)
    lo = np.full(bins.max() + 1, np.inf)
    hi = np.full(bins.max() + 1, -np.inf)
    np.minimum.at(lo, bins, v)
    np.maximum.at(hi, bins, v)
    centre_a, centre_b = u[~second].mean(), u[second].mean()
    outer_a = np.unique(bins[u < centre_a])
    outer_b = np.unique(bins[u > centre_b])
    if len(outer_a) == 0 or len(outer_b) == 0:
        return None
    lo_a, hi_a = np.median(lo[outer_a]), np.median(hi[outer_a])
    lo_b, hi_b = np.median(lo[outer_b]), np.median(hi[outer_b])
    start, stop = u.min() - 0.5, u.max() + 0.5
    boundary = 0.5 * ((start + hi_a - lo_a + 1.0) + (stop - (hi_b - lo_b + 1.0)))
    if not centre_a < boundary < centre_b:
        return None
    # Near the boundary, a pixel beyond the one square's span belongs to the other (dots offset along it).
    near = np.abs(u - boundary) < SQUARE_BAND * min(hi_a - lo_a, hi_b - lo_b)
    beyond_a = near & ((v < lo_a - SQUARE_MARGIN_PX) | (v > hi_a + SQUARE_MARGIN_PX))
    beyond_b = near & ((v < lo_b - SQUARE_MARGIN_PX) | (v > hi_b + SQUARE_MARGIN_PX))
    return np.where(u >= boundary, ~beyond_b, beyond_a)


def segment_field(
    image: np.ndarray, *, pixel_size_nm: float, min_dot_size_nm: float = 3.0
) -> tuple[np.ndarray, LatticeField, float]:
    """The dots of an atomic-resolution field.

    Parameters
    ----------
    image : (M, N) ndarray
        The raw image [counts]. Not modified.
    pixel_size_nm : float
        Pixel size [nm].
    min_dot_size_nm : float
        Smallest dot edge expected [nm] (sets the watershed's seed spacing).

    Returns
    -------
    labels : (M, N) ndarray of int32
        0 on the support, ``k`` on dot ``k`` (1..K).
    field : LatticeField
        The local lattice strength and orientation used.
    carbon_level : float
        The support's median lattice strength.
    """
    field = lattice_field(image, pixel_size_nm=pixel_size_nm)
    map_px = pixel_size_nm * field.factor  # a large image is segmented on the field's coarser grid
    labels, carbon = crystal_labels(field, pixel_size_nm=map_px)
    min_area_px = MIN_DOT_AREA_NM2 / map_px**2
    labels = split_by_orientation(labels, field, min_area_px=min_area_px)
    labels = square_boundaries(split_by_shape(labels, min_size_px=min_dot_size_nm / map_px), labels, field)
    logger.info("segment_field: %d dots", int(labels.max()))
    labels = trim_at_frame(image, block_expand(labels, field.factor, np.shape(image)), pixel_size_nm=pixel_size_nm)
    return labels, field, carbon


#: How far a dot's outline can be carried to the frame by the smoothing of the lattice strength [nm]
#: (two smoothing widths): the lines of a dot's pixels this close to the frame are checked for crystal.
FRAME_REACH_NM = 0.6
#: A line of a dot's pixels along the frame is crystal when its mean intensity is at least this far from
#: the support's median to the dot's (0: carbon, 1: the dot's median).
FRAME_CRYSTAL_LEVEL = 0.35


def trim_at_frame(image: np.ndarray, labels: np.ndarray, *, pixel_size_nm: float) -> np.ndarray:
    """Dots' outlines carried onto the frame by the smoothing, taken back to their crystal.

    The lattice strength is smoothed over 0.3 nm: a dot a few pixels inside the frame has its strength
    above the half-height edge up to the frame (the support between them is narrower than the
    smoothing), and its outline reached the frame as a cut dot's does. Here the lines of a dot's
    pixels parallel to a frame edge, from the frame inward (up to :data:`FRAME_REACH_NM`), are read:
    a line whose mean raw intensity is nearer the support's than the dot's (:data:`FRAME_CRYSTAL_LEVEL`)
    is support between the crystal and the frame, and the dot's pixels from it to the frame are
    removed (the innermost such line counts: bright patches of carbon at the frame do not stop it).
    A dot the frame cuts has crystal on every line and keeps them.

    Parameters
    ----------
    image : (M, N) ndarray
        The raw image [counts].
    labels : (M, N) ndarray of int
        The dots (0: support).
    pixel_size_nm : float
        Pixel size [nm].

    Returns
    -------
    (M, N) ndarray of int32
        ``labels`` itself when no dot reaches the frame, else a trimmed copy.
    """
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    at_frame = np.unique(edges[edges > 0])
    if len(at_frame) == 0:
        return labels
    sample = (slice(None, None, STAT_STEP), slice(None, None, STAT_STEP))
    far = ~within_distance(labels > 0, 1.0 / pixel_size_nm)
    if not far[sample].any():
        return labels
    data = np.asarray(image)
    carbon = float(np.median(data[sample][far[sample]]))
    boxes = ndimage.find_objects(labels)
    dot_level = {int(k): float(np.median(data[boxes[k - 1]][labels[boxes[k - 1]] == k])) for k in at_frame}
    out = labels.astype(np.int32, copy=True)
    reach = int(np.ceil(FRAME_REACH_NM / pixel_size_nm))
    for turn in range(4):  # each frame edge as the first row of a rotated view
        view, values = np.rot90(out, turn), np.rot90(data, turn)
        for k in np.unique(view[0][view[0] > 0]):
            span = dot_level[int(k)] - carbon
            gap = -1  # the line of support nearest the dot's crystal, if any
            for j in range(min(reach, view.shape[0])):
                mine = view[j] == k
                if not mine.any():
                    break
                if values[j][mine].mean() - carbon < FRAME_CRYSTAL_LEVEL * span:
                    gap = j
            view[: gap + 1][view[: gap + 1] == k] = 0
    return out


#: A bright region without a lattice must stand this many robust sds of the smoothed support above
#: the support's median (smoothed carbon alone stays within ~5).
UNRESOLVED_SIGMAS = 10.0
#: Smoothing (sigma) of the intensity for bright regions [nm].
INTENSITY_SMOOTHING_NM = 0.5
#: Pixel step of the sample the support's and the dots' median levels are taken from.
STAT_STEP = 4


def unresolved_regions(image: np.ndarray, labels: np.ndarray, *, pixel_size_nm: float) -> np.ndarray:
    """Bright regions of the field that hold no lattice dot: dots whose lattice is not resolved.

    A dot off its zone axis (no fringes in the band of column spacings), amorphous or too thick
    shows no lattice but is brighter than the support. The smoothed intensity is thresholded
    half-way between the support and the lattice dots' median (or, without lattice dots, at
    :data:`UNRESOLVED_SIGMAS` robust sds above the support); regions within 1 nm of a lattice dot
    (its smoothed halo) or smaller than :data:`MIN_DOT_AREA_NM2` are not counted.

    Parameters
    ----------
    image : (M, N) ndarray
        The raw image [counts].
    labels : (M, N) ndarray of int
        The lattice dots (0: support).
    pixel_size_nm : float
        Pixel size [nm].

    Returns
    -------
    (M, N) ndarray of int32
        0 elsewhere, 1..J on the bright regions without a lattice.
    """
    # float32 and a row-block distance transform: the float64 pair took ~8 image copies at 4096^2.
    smooth = gaussian_smooth(np.asarray(image, np.float32), INTENSITY_SMOOTHING_NM / pixel_size_nm)
    near = within_distance(labels > 0, 1.0 / pixel_size_nm)
    # The levels are medians: every STAT_STEP-th pixel along each axis gives them (the smoothed
    # image is correlated over INTENSITY_SMOOTHING_NM anyway) without several image-sized copies.
    sample = (slice(None, None, STAT_STEP), slice(None, None, STAT_STEP))
    s_smooth, s_near, s_dots = smooth[sample], near[sample], labels[sample] > 0
    pool = s_smooth[~s_near] if (~s_near).any() else s_smooth.ravel()
    carbon = float(np.median(pool))
    sd = 1.4826 * float(np.median(np.abs(pool - carbon)))
    level = carbon + UNRESOLVED_SIGMAS * sd
    if s_dots.any():
        level = max(level, carbon + 0.5 * (float(np.median(s_smooth[s_dots])) - carbon))
    bright = fill_holes((smooth > level) & ~near)
    found, n = ndimage.label(bright)
    if n == 0:
        return np.zeros(labels.shape, np.int32)
    sizes = ndimage.sum_labels(bright, found, np.arange(1, n + 1)) * pixel_size_nm**2
    found = np.where(np.concatenate([[False], sizes >= MIN_DOT_AREA_NM2])[found], found, 0)
    # Each region's edge at the half height between the support and its own plateau.
    refined = np.zeros(labels.shape, np.int32)
    reach = int(np.ceil(1.0 / pixel_size_nm))
    for k, sl in enumerate(ndimage.find_objects(found), start=1):
        if sl is None:
            continue
        window = tuple(slice(max(s.start - reach, 0), s.stop + reach) for s in sl)
        half = carbon + 0.5 * (float(np.median(smooth[found == k])) - carbon)
        grown = ndimage.binary_dilation(found[window] == k, iterations=reach)
        mine = fill_holes(grown & (smooth[window] > half) & ~near[window])
        refined[window][mine & (refined[window] == 0)] = k
    return _relabel(refined)


def segment_overview(image: np.ndarray, *, pixel_size_nm: float, min_dot_size_nm: float = 3.0) -> np.ndarray:
    """The dots of an overview image (lattice not resolved): bright regions on the support.

    Parameters
    ----------
    image : (M, N) ndarray
        The image [counts]. Not modified.
    pixel_size_nm : float
        Pixel size [nm].
    min_dot_size_nm : float
        Smallest dot edge expected [nm].

    Returns
    -------
    (M, N) ndarray of int32
        0 on the support, 1..K on the dots.
    """
    data = np.asarray(image, dtype=np.float64)
    smooth = ndimage.gaussian_filter(data, 1.0)
    coarse = smooth > _otsu(smooth.ravel())
    support = ~ndimage.binary_dilation(coarse, iterations=2)
    if not support.any() or not coarse.any():
        return np.zeros(data.shape, np.int32)
    carbon, carbon_sd = float(np.median(smooth[support])), float(np.std(smooth[support]))
    # The edge at half height between the support and the dots' plateau.
    plateau = float(np.median(smooth[coarse]))
    if plateau - carbon < 5 * carbon_sd:
        return np.zeros(data.shape, np.int32)
    mask = fill_holes(smooth > 0.5 * (carbon + plateau))
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    min_area_px = (min_dot_size_nm / pixel_size_nm) ** 2 / 2
    sizes = ndimage.sum_labels(mask, labels, np.arange(1, n + 1))
    labels = np.where(np.concatenate([[False], sizes >= min_area_px])[labels], labels, 0)
    return split_by_shape(_relabel(labels), min_size_px=min_dot_size_nm / pixel_size_nm)
