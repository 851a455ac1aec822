"""Fields of many dots: split a field into dots and measure each dot's size and shape.

:func:`segment_field` finds the dots of an atomic-resolution field from the
local lattice strength (:func:`lattice_field`) and splits touching dots where
the lattice rotation changes or the outline is not convex (watershed pieces
that are not one projected cube joined back, :func:`merge_fragments`; a
convex region of two flush dots cut in :func:`halves`);
:func:`segment_overview` does the same from the intensity of overview images
whose lattice is not resolved; :func:`overlapping_dots` finds dots whose
outlines overlap (another dot's lattice inside); :func:`dot_shapes` measures each dot's
centroid, projected edge, aspect ratio and edge orientation.
"""

from .overlap import angular_profile, overlapping_dots
from .segment import (
    OVERVIEW_PIXEL_NM,
    halves,
    merge_fragments,
    segment_field,
    segment_overview,
    split_by_orientation,
    split_by_shape,
    unresolved_regions,
)
from .shape import DotShape, dot_shapes, min_area_rectangle
from .strength import LatticeField, lattice_field

__all__ = [
    "OVERVIEW_PIXEL_NM",
    "DotShape",
    "LatticeField",
    "angular_profile",
    "dot_shapes",
    "halves",
    "lattice_field",
    "merge_fragments",
    "min_area_rectangle",
    "overlapping_dots",
    "segment_field",
    "segment_overview",
    "split_by_orientation",
    "split_by_shape",
    "unresolved_regions",
]
