"""The analysis of one micrograph: the stages composed.

``denoise -> lattice -> crystal mask -> find columns -> refine -> intensities
(on the raw image) -> classify``. Denoised images are used to find and refine
columns and for display only; column intensities, and so the phase labels and
fractions, are measured on the raw counts.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np
from pydantic import Field

from ._types import LABELS, Micrograph, PipelineResult
from .classify import ClassifyConfig, TwoPhaseModelConfig
from .columns import ColumnsConfig
from .config import StrictModel
from .denoise import DenoiseConfig

logger = logging.getLogger("stem_pipeline")


class PipelineConfig(StrictModel):
    """Configuration of :func:`analyze`: one validated block per stage.

    Load from YAML with ``PipelineConfig.from_yaml(path)``; keys left out take
    their defaults, unknown keys are errors.
    """

    denoise: DenoiseConfig = Field(default_factory=DenoiseConfig)
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    two_phase_model: TwoPhaseModelConfig = Field(default_factory=TwoPhaseModelConfig)
    min_columns: int = Field(20, ge=1, description="fewer columns than this means no crystal")


@contextmanager
def _timed(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 4)


def analyze(
    micrograph: Micrograph,
    config: PipelineConfig | None = None,
    *,
    rng: np.random.Generator | int | None = 0,
) -> PipelineResult:
    """Analyse one micrograph: columns, phase labels and area fractions.

    Parameters
    ----------
    micrograph : Micrograph
        The raw image (see :func:`stem_pipeline.io.load`).
    config : PipelineConfig, optional
        Stage configurations; defaults when None.
    rng : Generator, int or None
        Random source of the confidence-interval bootstrap (seeded by default,
        so results are reproducible).

    Returns
    -------
    PipelineResult
        ``status`` is ``"ok"``, or ``"no_crystal"`` when the image has no
        lattice, no crystal region or too few columns (``message`` says which).
        When the column grid is not the square ~0.32 nm grid of the
        CsPbI3/PbI2 model (see
        :func:`stem_pipeline.classify.two_phase_model_reasons`), the columns
        are returned without labels and fractions, and ``message`` says why.
    """
    from .classify import classify_columns, contrast_pattern_reasons, two_phase_model_reasons
    from .columns import find_columns, measure_intensities, refine_columns
    from .denoise import denoise
    from .lattice import crystal_mask, find_lattice

    config = config or PipelineConfig()
    timings: dict[str, float] = {}
    common = {"micrograph": micrograph, "config_hash": config.config_hash(), "timings_s": timings}
    raw = micrograph.data
    with _timed(timings, "denoise"):
        denoised = denoise(raw, config.denoise, pixel_size_nm=micrograph.pixel_size_nm)
    with _timed(timings, "lattice"):
        lattice = find_lattice(denoised)
    if lattice is None:
        return PipelineResult(status="no_crystal", denoised=denoised, message="no lattice found", **common)
    with _timed(timings, "crystal_mask"):
        mask = crystal_mask(denoised, lattice)
    lattice_info = lattice.to_dict()
    if not mask.any():
        return PipelineResult(
            status="no_crystal", denoised=denoised, lattice=lattice_info, message="no crystal region", **common
        )
    with _timed(timings, "find_columns"):
        columns = find_columns(denoised, lattice=lattice, mask=mask, config=config.columns)
    if len(columns) < config.min_columns:
        return PipelineResult(
            status="no_crystal",
            denoised=denoised,
            crystal_mask=mask,
            lattice=lattice_info,
            message=f"only {len(columns)} columns found (fewer than {config.min_columns})",
            **common,
        )
    with _timed(timings, "refine_columns"):
        columns = refine_columns(denoised, columns, lattice=lattice, config=config.columns)
    with _timed(timings, "intensities"):
        columns = measure_intensities(raw, columns, config=config.columns)
    columns = columns.replace(pixel_size_nm=micrograph.pixel_size_nm)
    reasons = two_phase_model_reasons(
        lattice.vectors_px,
        pixel_size_nm=micrograph.pixel_size_nm,
        foreign_peaks=lattice.foreign_peaks,
        config=config.two_phase_model,
    )
    if not reasons:
        with _timed(timings, "classify"):
            labels, fractions = classify_columns(
                columns, shape=raw.shape, crystal_mask=mask, config=config.classify, rng=rng
            )
            reasons = contrast_pattern_reasons(
                columns.intensity, columns.rc, labels.label == LABELS.index("ordered"),
                spacing_px=lattice.spacing_px, config=config.two_phase_model,
            )
    if reasons:
        timings["total"] = round(sum(timings.values()), 4)
        return PipelineResult(
            status="ok",
            denoised=denoised,
            crystal_mask=mask,
            columns=columns,
            lattice=lattice_info,
            message="columns found; phase fractions not reported, the two-phase model does not apply: "
            + "; ".join(reasons),
            **common,
        )
    timings["total"] = round(sum(timings.values()), 4)
    return PipelineResult(
        status="ok",
        denoised=denoised,
        crystal_mask=mask,
        columns=columns,
        labels=labels,
        fractions=fractions,
        lattice=lattice_info,
        message=None
        if micrograph.pixel_size_nm
        else "uncalibrated: the column spacing was not checked against the two-phase model",
        **common,
    )
