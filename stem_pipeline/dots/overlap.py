"""Dots whose outlines overlap: another dot's lattice inside a dot's own outline.

Two dots stacked at different rotations project both lattices where they
overlap. Such a dot is not one crystal on the support, and the single-dot
chain would analyse a mixture. Each dot's angular power spectrum (the power of
its own pixels in the ring of the grids' main reflections, :data:`MAIN_SPACING_BAND_NM`,
folded over the square grid's 90-degree period) is read at the lattice rotation of each touching dot: a dot
that merely touches its neighbour shows < 0.007 of its own peak there (the
last pixels of the outline), a dot overlapping it by 1 nm or more 0.011-0.03
on its side and 0.017 or more on one of the two sides (``benchmarks/fields.py``
and ``tests/test_fields.py`` use :func:`stem_pipeline.synthetic_field.make_stacked_pair`).

The segmentation often cuts the overlap out as a piece of its own, whose local
orientation is the mean of the two lattices': such a piece, whose spectral peak
is not its own rotation but a neighbour's, is the overlap and joins the
neighbours of that rotation (one dot again); the dot it forms and the other
dot are then both overlapping. Touching pieces of one rotation that overlap the
same dot join too (the overlap made the dot's outline concave, and the
segmentation's shape split cut it).

Measured on stacked pairs of 8 nm dots at 200 counts (overlaps of 1-4 nm, rotations 10-45 deg apart):
every overlap found, two dots each; flush pairs and the touching pairs of generated fields: none.
Dots less than :data:`MIN_ROTATION_DIFFERENCE_DEG` apart (a 6 deg pair) are not told apart.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .strength import SPACING_BAND_NM

__all__ = ["angular_profile", "overlapping_dots"]

#: The ring of the grids' main reflections the angular profile is read in [nm]: the CsPbI3 a/2 (0.3145)
#: and PbI2/FAPbI3 (~0.32-0.35) column spacings, without the ordered superlattice's (2,1) reflection
#: (a / sqrt(5) = 0.281 nm, at atan(1/2) = 26.6 deg from the dot's own axes), which the whole band of
#: :data:`~stem_pipeline.dots.strength.SPACING_BAND_NM` passes: there, touching dots 26-27 deg apart read
#: 0.009-0.015 of their own peak at each other's rotation (at every dose, 30-400 counts), against < 0.001
#: in this ring (tuning pairs of ``make_field``, seeds 7000-7007 and 7200-7203).
MAIN_SPACING_BAND_NM = (0.295, 0.37)
#: Another dot's lattice in a dot's outline is an overlap above this fraction of the dot's own peak power
#: (on either side of the pair; touching dots: <= 0.007, 1 nm overlaps: >= 0.017 at 200 counts; in the ring of
#: :data:`MAIN_SPACING_BAND_NM`, 30-400 counts: touching dots <= 0.0024, 1 nm overlaps >= 0.0149, seeds 7100-7109).
OVERLAP_POWER_RATIO = 0.012
#: Two rotations closer than this are not told apart by the spectrum [deg] (the peaks of 8 nm dots
#: overlap: flush dots 6 deg apart show 0.03 of each other's lattice). Overlaps of such dots are not found.
MIN_ROTATION_DIFFERENCE_DEG = 8.0
#: Half-width of the window the power at a rotation is summed over [deg].
WINDOW_DEG = 1.5
#: Bin of the angular profile [deg].
BIN_DEG = 0.5
#: Neighbours: dots within this many pixels of a dot's outline.
NEIGHBOUR_PX = 3


def angular_profile(
    image: np.ndarray, mask: np.ndarray, *, pixel_size_nm: float, band_nm: tuple[float, float] = SPACING_BAND_NM
) -> np.ndarray:
    """Power of ``image`` over ``mask`` in a band of spacings, per rotation bin mod 90 deg.

    Parameters
    ----------
    image : (M, N) ndarray
        The image (a crop around the mask).
    mask : (M, N) ndarray of bool
        The dot's pixels.
    pixel_size_nm : float
        Pixel size [nm].
    band_nm : (float, float)
        The spacings [nm] whose reflections are counted (the band of column spacings by default).

    Returns
    -------
    (90 / BIN_DEG,) ndarray
        Power per bin minus the median bin (the noise floor); bin ``i`` covers
        ``[i, i + 1) * BIN_DEG`` degrees.
    """
    data = np.where(mask, image - image[mask].mean(), 0.0)
    n = int(2 ** np.ceil(np.log2(max(data.shape))))
    power = np.abs(np.fft.rfft2(data, s=(n, n))) ** 2
    fr, fc = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    radius = np.hypot(fr, fc)
    band = (radius >= pixel_size_nm / band_nm[1]) & (radius <= pixel_size_nm / band_nm[0])
    angle = np.broadcast_to(np.mod(np.rad2deg(np.arctan2(fc, fr)), 90.0), band.shape)
    hist, _ = np.histogram(angle[band], bins=int(90 / BIN_DEG), range=(0.0, 90.0), weights=power[band])
    return hist - np.median(hist)


def _power_at(profile: np.ndarray, rotation_deg: float) -> float:
    centres = (np.arange(len(profile)) + 0.5) * BIN_DEG
    return float(profile[_angle_between(centres, rotation_deg) <= WINDOW_DEG].sum())


def _angle_between(a, b):
    """Circular difference of rotations with period 90 deg, in [0, 45]."""
    return np.abs(np.mod(np.asarray(a) - b + 45.0, 90.0) - 45.0)


def _neighbours(labels: np.ndarray, box: tuple[slice, slice], k: int) -> set[int]:
    window = tuple(slice(max(s.start - NEIGHBOUR_PX, 0), s.stop + NEIGHBOUR_PX) for s in box)
    mine = labels[window] == k
    ring = ndimage.binary_dilation(mine, iterations=NEIGHBOUR_PX) & ~mine
    return {int(v) for v in np.unique(labels[window][ring])} - {0}


def overlapping_dots(
    image: np.ndarray, labels: np.ndarray, rotations: dict[int, float], *, pixel_size_nm: float
) -> tuple[np.ndarray, dict[int, set[int]]]:
    """The dots that overlap another dot, with pieces that are only the overlap joined to their dot.

    Parameters
    ----------
    image : (M, N) ndarray
        The raw image.
    labels : (M, N) ndarray of int
        The dots (0: support), numbered 1..K.
    rotations : dict of int to float
        Each dot's lattice rotation [deg].
    pixel_size_nm : float
        Pixel size [nm].

    Returns
    -------
    labels : (M, N) ndarray of int32
        ``labels`` (the same array when no piece was joined), else renumbered 1..K'.
    overlaps : dict of int to set of int
        For every dot of ``labels`` that overlaps others, the dots it overlaps (empty when none does).
    """
    from .segment import _relabel

    boxes = ndimage.find_objects(labels)
    neighbours, peak, ratio = {}, {}, {}
    for k, box in enumerate(boxes, start=1):
        if box is None or k not in rotations:
            continue
        near = {d for d in _neighbours(labels, box, k) if d in rotations}
        if not near:
            continue
        neighbours[k] = near
        profile = angular_profile(
            np.asarray(image[box], np.float64),
            labels[box] == k,
            pixel_size_nm=pixel_size_nm,
            band_nm=MAIN_SPACING_BAND_NM,
        )
        peak[k] = (float(np.argmax(profile)) + 0.5) * BIN_DEG
        top = max(_power_at(profile, peak[k]), 1e-30)
        for d in near:
            ratio[k, d] = _power_at(profile, rotations[d]) / top
    # A piece whose spectral peak is a neighbour's lattice, not its own (mean) rotation, is the overlap itself:
    # it joins the neighbours of that lattice, and its lattice is theirs.
    join = np.arange(len(boxes) + 1)
    lattice = dict(rotations)
    for k in neighbours:
        if _angle_between(peak[k], rotations[k]) < MIN_ROTATION_DIFFERENCE_DEG / 2:
            continue
        same = [d for d in neighbours[k] if _angle_between(peak[k], rotations[d]) <= 2 * WINDOW_DEG]
        for d in same:
            _union(join, k, d)
        if same:
            lattice[k] = rotations[same[0]]
    pairs = [
        (k, d)
        for (k, d), r in ratio.items()
        if _angle_between(lattice[k], lattice[d]) >= MIN_ROTATION_DIFFERENCE_DEG
        and max(r, ratio.get((d, k), 0.0)) >= OVERLAP_POWER_RATIO
    ]
    # Touching pieces of one lattice that overlap the same dot are one dot, cut in two where the
    # other dot's overlap made its outline concave (split_by_shape).
    over = {k: {d for kk, d in pairs if kk == k} for k in neighbours}
    for k in neighbours:
        for d in neighbours[k]:
            if _angle_between(lattice[k], lattice[d]) < MIN_ROTATION_DIFFERENCE_DEG / 2 and over[k] & over.get(
                d, set()
            ):
                _union(join, k, d)
    join = np.array([_find(join, k) for k in range(len(join))])
    overlaps: dict[int, set[int]] = {}
    for k, d in pairs:
        a, b = int(join[k]), int(join[d])
        if a != b:
            overlaps.setdefault(a, set()).add(b)
            overlaps.setdefault(b, set()).add(a)
    if (join == np.arange(len(join))).all():
        return labels, overlaps
    joined = _relabel(join.astype(np.int32)[labels])
    # The renumbering keeps the order of first appearance: map the old ids through one pixel of each.
    new = {}
    for k, box in enumerate(boxes, start=1):
        if box is not None and join[k] == k:
            rows, cols = np.nonzero(labels[box] == k)
            new[k] = int(joined[box][rows[0], cols[0]])
    return joined, {new[a]: {new[b] for b in bs} for a, bs in overlaps.items()}


def _find(join: np.ndarray, k: int) -> int:
    """The representative of ``k``'s group (union-find)."""
    while join[k] != k:
        k = int(join[k])
    return k


def _union(join: np.ndarray, a: int, b: int) -> None:
    """Put the groups of ``a`` and ``b`` together, represented by the smaller id."""
    ra, rb = _find(join, a), _find(join, b)
    join[max(ra, rb)] = min(ra, rb)
