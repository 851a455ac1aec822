"""Compare simulated models with an experimental image: the analysis of the image, then the ranking.

:func:`compare_models` runs the pipeline on the image (columns, phase
labels), folds each requested region into a mean supercell, simulates each
model's thickness series through the simulation cache, fits thickness and
source size, and ranks the models by reduced chi-squared (best first). It is
a workflow: it composes :mod:`stem_pipeline.pipeline` with the stages of
:mod:`stem_pipeline.compare`, which import nothing above them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._types import Comparison, Micrograph
from .compare.fit import CellFit, fit_cell, profile_minimum
from .compare.rank import (
    CompareConfig,
    comparison_from_fit,
    experimental_cell,
    model_period_nm,
    range_limit_warnings,
    rank,
    region_columns,
    simulation_series,
    write_comparison,
)
from .errors import InputError, NoCrystalError

logger = logging.getLogger("stem_pipeline")

__all__ = ["compare_models"]


def compare_models(
    micrograph: Micrograph,
    model_configs: Sequence[str | os.PathLike],
    *,
    region: str | Sequence[str] = "all",
    out: str | os.PathLike | None = None,
    config=None,
    options: CompareConfig | None = None,
    roi: tuple[int, int, int, int] | np.ndarray | None = None,
    progress: bool = True,
) -> list[Comparison]:
    """Compare simulated models with an experimental image and rank them.

    The pipeline runs on the image itself (columns, phase labels); each
    region is folded into a mean supercell (raw counts); every model's
    thickness series is simulated through the cache (one repeat cell, no
    source blur), registered, and fitted in thickness and source size, and in
    defocus when ``options.defocus_nm`` gives a defocus series.

    Parameters
    ----------
    micrograph : Micrograph
        The experimental image (calibrated).
    model_configs : sequence of path
        Simulation configs (``sim_configs/*.yaml``); the model name is the file stem.
    region : {'all', 'ordered', 'uniform'} or a sequence of them
        Regions to compare; each gets its own ranking.
    out : path, optional
        Folder for ``comparison.json`` and ``comparison.png`` (atomic writes).
    config : PipelineConfig, optional
        Configuration of the analysis of the image.
    options : CompareConfig, optional
        Comparison options (thickness series, source sizes, ranking metric).
    roi : tuple of int or (M, N) bool ndarray, optional
        Restrict the regions to ``(row0, row1, col0, col1)`` [px] or a mask.
    progress : bool
        Show the simulation progress bar.

    Returns
    -------
    list of Comparison
        Best first within each region.

    Raises
    ------
    InputError
        If the image has no calibration or a config is missing or not periodic.
    NoCrystalError
        If the image (or a region) has no crystal to compare.
    """
    from .pipeline import analyze

    options = options or CompareConfig()
    regions = [region] if isinstance(region, str) else list(region)
    paths = [Path(p) for p in model_configs]
    for p in paths:
        if not p.is_file():
            raise InputError(p, "no such model config", "pass existing sim_configs/*.yaml files")
    if micrograph.pixel_size_nm is None:
        raise InputError(micrograph.source, "the image has no pixel size", "pass pixel_size_nm when loading it")
    result = analyze(micrograph, config)
    if result.status != "ok" or result.columns is None:
        raise NoCrystalError(f"{micrograph.source}: {result.message or result.status}")
    columns = result.columns
    if result.labels is None and any(r != "all" for r in regions):
        # The image's grid is not the CsPbI3/PbI2 one (result.message says why): no phase regions.
        raise ValueError(f"{micrograph.source}: no phase regions to compare ({result.message}); use region='all'")
    cells, folded_on = {}, {}
    for r in regions:
        keep, lattice = region_columns(result, r, roi=roi)
        if keep.sum() < options.min_cells:
            raise NoCrystalError(f"{micrograph.source}: region {r!r} holds {int(keep.sum())} columns, too few to fold")
        cells[r] = experimental_cell(
            micrograph,
            columns.rc[keep],
            lattice.vectors_px,
            intensity=columns.intensity[keep],
            supercell=options.supercell,
            oversample=options.oversample,
            min_cells=options.min_cells,
        )
        folded_on[r] = {
            "spacing_nm": lattice.spacing_px * micrograph.pixel_size_nm,
            "angle_deg": lattice.angle_deg,
        }
    entries: list[tuple[Comparison, CellFit]] = []
    defoci = sorted(options.defocus_nm) if options.defocus_nm else [None]
    for path in paths:
        period = model_period_nm(path)
        fits: dict[str, list[CellFit]] = {r: [] for r in cells}
        for defocus in defoci:
            images, thicknesses, pixel = simulation_series(path, options, progress=progress, defocus_nm=defocus)
            for r, cell in cells.items():
                fits[r].append(
                    fit_cell(
                        cell,
                        images,
                        pixel,
                        thicknesses_nm=thicknesses,
                        source_fwhms_nm=options.source_fwhms_nm,
                        reps=options.reps,
                        variance=options.variance,
                        max_scale_change=options.max_scale_change,
                        sim_cell_vectors_nm=period,
                    )
                )
        for r, cell in cells.items():
            chi2_profile = np.array([f.chi2 for f in fits[r]])
            fit = fits[r][int(np.argmin(chi2_profile))]
            best_defocus = (
                None if defoci == [None] else profile_minimum(np.array(defoci), chi2_profile, n_data=cell.area_px)
            )
            entries.append((comparison_from_fit(path.stem, r, fit, best_defocus), fit))
            logger.info("%s vs %s region: chi2 %.3g, NCC %.4f", path.stem, r, fit.chi2, fit.ncc)
    ranked = rank([c for c, _ in entries], by=options.rank_by)
    by_id = {id(c): f for c, f in entries}
    ordered = [(c, by_id[id(c)]) for c in ranked]
    if out is not None:
        info = {
            "image": micrograph.source,
            "rank_by": options.rank_by,
            "cells": {r: c.count for r, c in cells.items()},
            "lattices": folded_on,
            "defocus_series_nm": options.defocus_nm,
        }
        write_comparison(out, ordered, info=info)
    for message in range_limit_warnings(ranked, options):
        logger.warning("%s: %s", micrograph.source or "image", message)
    return ranked
