"""The columns' hull from its polygon's rows is skimage's hull image (and its distance transform) pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import convex_hull_image

from stem_pipeline.classify import hull_mask
from stem_pipeline.classify.convex import hull_area_px


def _reference(shape: tuple[int, int], rc: np.ndarray, margin_px: float) -> np.ndarray:
    """The hull as skimage draws it around the columns' pixels in the image, grown by the distance transform."""
    pixels = np.zeros(shape, bool)
    r, c = np.round(rc).astype(int).T
    ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    pixels[r[ok], c[ok]] = True
    if ok.sum() < 3:
        return pixels
    hull = convex_hull_image(pixels)
    return ndimage.distance_transform_edt(~hull) <= margin_px if margin_px > 0 else hull


@pytest.mark.parametrize("seed", [40, 41])
def test_hull_mask_is_skimages_hull_grown_by_the_distance_transform(seed):
    """Random columns inside the image, beyond its edge, on half pixels (rounding ties) and on a line; margins 0,
    fractional and whole pixels."""
    rng = np.random.default_rng(seed)
    for trial in range(150):
        shape = (int(rng.integers(3, 80)), int(rng.integers(3, 80)))
        n = int(rng.integers(1, 40))
        spread = 15.0 if trial % 3 == 1 else 0.0  # hulls cut by the image's edge
        rc = rng.uniform(-spread, np.array(shape) + spread, (n, 2))
        if trial % 3 == 2:
            rc = np.round(rc * 2) / 2
        if trial % 7 == 0:
            rc = np.array(shape) / 2 + rng.uniform(0, 1, n)[:, None] * rng.uniform(-30, 30, 2)
        margin = [0.0, float(rng.uniform(0.1, 12.0)), float(rng.integers(1, 6)), 0.5][trial % 4]
        assert np.array_equal(hull_mask(shape, rc, margin_px=margin), _reference(shape, rc, margin))


def test_hull_area_is_skimages_convex_hull_image_area():
    """Scattered pixels, single pixels and single rows: the hull's pixel count is skimage's, which the dots'
    solidity (``dots.segment.split_by_shape``) was read from."""
    rng = np.random.default_rng(42)
    for trial in range(120):
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        image = rng.uniform(size=shape) < rng.uniform(0.01, 0.5)
        image[tuple(rng.integers(0, shape))] = True
        if trial % 4 == 0:
            image[:] = False
            image[tuple(rng.integers(0, shape))] = True
        assert hull_area_px(image) == int(convex_hull_image(image).sum())
