"""Simulation against experiment: mean cells, registration, metrics, fits and model ranking.

Typical use (the workflow that also analyses the image lives one layer up)::

    from stem_pipeline.comparison import compare_models
    results = compare_models(micrograph, ["sim_configs/cspbi3_001.yaml"], region="ordered", out="cmp")

The pieces are plain functions on arrays: :func:`mean_cell` (fold a region
into its average supercell), :func:`register_cell` (rotation/scale from the
lattices, sub-pixel phase-correlation shift, resampling), the metrics
(:func:`ncc`, :func:`ssim`, :func:`rmse`, :func:`chi2`, :func:`column_ratio`),
and :func:`fit_cell` (thickness and source size with profile uncertainties).
"""

from .cell import MeanCell, cell_origins, mean_cell, region_select
from .fit import CellFit, fit_cell, profile_minimum
from .metrics import affine_match, chi2, column_ratio, ncc, rmse, site_intensities, ssim
from .rank import (
    CompareConfig,
    comparison_from_fit,
    experimental_cell,
    model_period_nm,
    plot_comparison,
    range_limit_warnings,
    rank,
    region_columns,
    simulation_series,
    write_comparison,
)
from .register import (
    Registration,
    blur_periodic,
    register_cell,
    render,
    sample_periodic,
    simulation_cell_vectors,
)

__all__ = [
    "CellFit",
    "CompareConfig",
    "MeanCell",
    "Registration",
    "affine_match",
    "blur_periodic",
    "cell_origins",
    "chi2",
    "column_ratio",
    "comparison_from_fit",
    "experimental_cell",
    "fit_cell",
    "mean_cell",
    "model_period_nm",
    "ncc",
    "plot_comparison",
    "profile_minimum",
    "range_limit_warnings",
    "rank",
    "region_columns",
    "region_select",
    "register_cell",
    "render",
    "rmse",
    "sample_periodic",
    "simulation_series",
    "write_comparison",
    "simulation_cell_vectors",
    "site_intensities",
    "ssim",
    "write_comparison",
]
