"""Contrast classification of atom columns, phase region map and area fractions.

``classify_columns(columns, shape=...)`` labels every column ``ordered``
(CsPbI3-like brightened-and-dimmed contrast) or ``uniform`` (PbI2/FAPbI3-like),
gives the ordered columns a ``bright``/``dim`` contrast, maps the phases onto
the pixels and returns the crystal-area fractions with a 95 % interval.
"""

from ._core import ClassifyConfig, classification_intensity, classify_columns
from .applicability import TwoPhaseModelConfig, bright_fraction, contrast_pattern_reasons, two_phase_model_reasons
from .features import (
    ColumnFeatures,
    column_features,
    estimate_lattice_vectors,
    indexed_pairs,
    neighbour_pairs,
    own_intensity_llr,
)
from .lattices import classify_lattice_regions, shared_boundary_px
from .model import (
    minority_posterior,
    mixture_posterior,
    refine_boundaries,
    regularise_posterior,
    small_domains,
    uniform_minority_posterior,
)
from .outline import DiffuseOutline, diffuse_outline, pixel_noise, render_columns, without_columns
from .regions import area_fractions, boundary_length_px, domain_size_px, hull_mask, region_map_from_columns

__all__ = [
    "ClassifyConfig",
    "ColumnFeatures",
    "DiffuseOutline",
    "TwoPhaseModelConfig",
    "area_fractions",
    "bright_fraction",
    "contrast_pattern_reasons",
    "boundary_length_px",
    "classification_intensity",
    "classify_columns",
    "classify_lattice_regions",
    "column_features",
    "diffuse_outline",
    "domain_size_px",
    "estimate_lattice_vectors",
    "indexed_pairs",
    "hull_mask",
    "minority_posterior",
    "mixture_posterior",
    "neighbour_pairs",
    "own_intensity_llr",
    "pixel_noise",
    "region_map_from_columns",
    "refine_boundaries",
    "regularise_posterior",
    "render_columns",
    "shared_boundary_px",
    "small_domains",
    "two_phase_model_reasons",
    "uniform_minority_posterior",
    "without_columns",
]
