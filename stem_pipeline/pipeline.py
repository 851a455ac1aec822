"""The analysis of one micrograph: the stages composed.

``denoise -> lattice -> crystal mask -> find columns -> refine -> intensities
(on the raw image) -> classify``. Denoised images are used to find and refine
columns and for display only; column intensities, and so the phase labels and
fractions, are measured on the raw counts.

With two lattices (a second phase on its own grid, e.g. PbI2 <1 -1 1> beside
CsPbI3 [001]) columns are searched on both grids over the whole crystal, each
column is kept on the grid that fits its neighbourhood best
(:mod:`stem_pipeline.columns.assign`), each lattice's region is the set of
pixels nearest to its columns, and each region is classified on its own grid.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import Field

from ._tiles import within_distance
from ._types import AreaFractions, Columns, Micrograph, PhaseLabels, PipelineResult
from .classify import (
    ClassifyConfig,
    TwoPhaseModelConfig,
    classify_lattice_regions,
    diffuse_outline,
    hull_mask,
    pixel_noise,
    two_phase_model_reasons,
    without_columns,
)
from .columns import ColumnsConfig, find_columns, fitted_above_threshold, measure_intensities, refine_columns
from .columns.assign import nearest_column_regions, resolve_shared_columns
from .config import StrictModel
from .denoise import DenoiseConfig, denoise
from .errors import SeveralDotsWarning
from .lattice import Lattice, LatticeConfig, crystal_masks, find_lattices
from .phases.config import PhasesConfig

logger = logging.getLogger("stem_pipeline")


class PipelineConfig(StrictModel):
    """Configuration of :func:`analyze`: one validated block per stage.

    Load from YAML with ``PipelineConfig.from_yaml(path)``; keys left out take
    their defaults, unknown keys are errors.
    """

    denoise: DenoiseConfig = Field(default_factory=DenoiseConfig, description="The denoising chain.")
    columns: ColumnsConfig = Field(
        default_factory=ColumnsConfig, description="Finding, refining and measuring columns."
    )
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig, description="Column labels and area fractions.")
    two_phase_model: TwoPhaseModelConfig = Field(
        default_factory=TwoPhaseModelConfig, description="When the CsPbI3/PbI2 two-phase model applies to an image."
    )
    lattice: LatticeConfig = Field(
        default_factory=LatticeConfig, description="Finding the column grid(s) from the Bragg peaks."
    )
    lattice_boundary_sd_spacings: float = Field(
        0.5,
        ge=0,
        description="Uncertainty of the boundary between two lattices' regions [column spacings], for the "
        "interval (the boundary is placed half-way between the last columns of each grid, so the true one is within "
        "+-0.5 spacing of it: sd 0.29 if uniform; 0.5 allows for a systematic shift).",
    )
    min_columns: int = Field(20, ge=1, description="Fewer columns than this means no crystal.")
    phases: PhasesConfig = Field(
        default_factory=PhasesConfig, description="Classification against the phase library (after the two-phase one)."
    )


@contextmanager
def _timed(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 4)


#: Micrograph metadata fields that set the optics of the Richardson-Lucy step (same names in both).
_RL_OPTICS = ("energy_kev", "convergence_mrad")


def denoise_config_for(micrograph: Micrograph, config: DenoiseConfig) -> DenoiseConfig:
    """The denoising chain for one micrograph: the 'rl' step's optics from the file, where it has them.

    Parameters
    ----------
    micrograph : Micrograph
        Its ``metadata`` may hold ``energy_kev`` and ``convergence_mrad``
        (read from the file by :func:`stem_pipeline.io.load`); its
        ``pixel_size_nm`` is needed by the 'rl' step.
    config : DenoiseConfig
        The chain. An 'rl' field set explicitly (e.g. in a ``--config`` file)
        wins over the file's metadata.

    Returns
    -------
    DenoiseConfig
        The chain with the file's beam energy and convergence angle in the
        'rl' step; without the 'rl' step when the image is uncalibrated.
        Each change, and each default the 'rl' step falls back on, is logged
        as a warning naming the file.
    """
    if "rl" not in config.step_names:
        return config
    name = micrograph.source or "image"
    if micrograph.pixel_size_nm is None:
        logger.warning(
            "%s: skipping the 'rl' deconvolution step: it needs the pixel size "
            "(pass pixel_size_nm, or --pixel-size-nm)",
            name,
        )
        return config.model_copy(update={"steps": [s for s in config.steps if s.name != "rl"]})
    steps = []
    for step in config.steps:
        if step.name == "rl":
            update, missing, defaults = {}, [], []
            for field in _RL_OPTICS:
                if field in step.model_fields_set:
                    continue
                value = micrograph.metadata.get(field)
                if isinstance(value, (int, float)) and value > 0:
                    update[field] = float(value)
                else:
                    missing.append(field)
                    defaults.append(f"{field}={getattr(step, field):g}")
            if defaults:
                logger.warning(
                    "%s: the file gives no %s; the 'rl' deconvolution uses the defaults %s "
                    "(set them in the config's rl step)",
                    name,
                    " or ".join(missing),
                    ", ".join(defaults),
                )
            if update:
                logger.info(
                    "%s: 'rl' deconvolution optics from the file: %s",
                    name,
                    ", ".join(f"{k}={v:g}" for k, v in update.items()),
                )
            # Every optics field is now decided (set explicitly), so a crop of this image is not warned about again.
            step = step.model_copy(update={**{f: getattr(step, f) for f in missing}, **update})
        steps.append(step)
    return config.model_copy(update={"steps": steps})


def analyze(
    micrograph: Micrograph | np.ndarray | Any,
    config: PipelineConfig | None = None,
    *,
    pixel_size_nm: float | None = None,
    check_dots: bool = True,
) -> PipelineResult:
    """Analyse one micrograph: columns, phase labels and area fractions.

    Parameters
    ----------
    micrograph : Micrograph, HyperSpy Signal2D or (M, N) ndarray
        The raw image: a Micrograph (see :func:`stem_pipeline.io.load`), a
        signal (e.g. from ``hs.load``; the pixel size comes from its axes, in
        A, pm, nm or um), or an array with ``pixel_size_nm``.
    config : PipelineConfig, optional
        Stage configurations; defaults when None.
    pixel_size_nm : float, optional
        Pixel size [nm]; needed for an array (else the analysis is in pixels,
        with a warning), and overrides a Micrograph's or signal's calibration.
    check_dots : bool
        Count the dots of a calibrated atomic-resolution image
        (:func:`stem_pipeline.dots.segment_field`, ~0.1-0.3 s per Mpx) and say so when there
        are several: this function reads the image as one crystal, so dots without its
        lattices' columns would be left out. False where the caller has split the field
        already (:func:`stem_pipeline.field.analyze_field`).

    Returns
    -------
    PipelineResult
        ``status`` is ``"ok"``, or ``"no_crystal"`` when the image has no
        lattice, no crystal region or too few columns (``message`` says which).
        When the column grid is not the square ~0.32 nm grid of the
        CsPbI3/PbI2 model (see
        :func:`stem_pipeline.classify.two_phase_model_reasons`), the columns
        are returned without labels and fractions, and ``message`` says why.

    Raises
    ------
    InputError
        When the image is not one valid 2-D image (see :func:`stem_pipeline.io.as_micrograph`).

    Warns
    -----
    MissingCalibrationWarning
        For an array or signal without a pixel size and no ``pixel_size_nm``.
    SeveralDotsWarning
        When ``check_dots`` and the image holds several dots (also in ``message``); use
        :func:`stem_pipeline.field.analyze_field`, as ``stem-pipeline analyze`` does, for each dot's numbers.
    """
    from .io import as_micrograph

    result = _analyze(_Run(as_micrograph(micrograph, pixel_size_nm=pixel_size_nm), config or PipelineConfig()))
    return _note_other_dots(result) if check_dots else result


def _analyze(run: _Run) -> PipelineResult:
    """The stages of :func:`analyze`, run in order; a ``no_crystal`` result where one finds nothing."""
    with run.timed("denoise"):
        run.denoised = _denoise(run.micrograph, run.config)
    with run.timed("lattice"):
        run.lattices = find_lattices(run.denoised, run.config.lattice)
    if not run.lattices:
        return run.stop("no lattice found")
    with run.timed("crystal_mask"):
        # Per lattice: (column-search mask, crystal area), from one demodulation.
        run.masks = [crystal_masks(run.denoised, lat) for lat in run.lattices]
    if not any(search.any() for search, _ in run.masks):
        return run.stop("no crystal region")
    with run.timed("find_columns"):
        _find_columns(run)
    with run.timed("regions"):
        _crystal_regions(run)
    if max(len(c) for c in run.parts) < run.config.min_columns:
        found = sum(len(c) for c in run.parts)
        return run.stop(f"only {found} columns found (fewer than {run.config.min_columns})")
    columns = _refine_and_measure(run)
    with run.timed("outline"):
        columns = _crystal_outline(run, columns)
    labels, fractions, message = _two_phase(run)
    phases: dict = {}
    if run.config.phases.enabled:
        with run.timed("phases"):
            phases = _phases(run, labels, fractions)
        calibration = phases["calibration"]
        if calibration["status"] == "uncalibrated_ambiguous":
            fractions = None
        elif calibration["status"] == "uncalibrated_implied":
            columns = columns.replace(pixel_size_nm=calibration["implied_pixel_size_nm"])
        if calibration["message"]:
            message = "; ".join(m for m in (message, calibration["message"]) if m)
    return run.result("ok", message, columns=columns, labels=labels, fractions=fractions, phases=phases)


@dataclasses.dataclass
class _Run:
    """One analysis in progress: what the stages have found so far and the time each took."""

    micrograph: Micrograph
    config: PipelineConfig
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    denoised: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.float32))
    lattices: list[Lattice] = dataclasses.field(default_factory=list)
    #: Per lattice: (column-search mask, crystal area), from one demodulation.
    masks: list[tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=list)
    #: Per lattice: its columns (found, then refined and measured).
    parts: list[Columns] = dataclasses.field(default_factory=list)
    crystal_mask: np.ndarray | None = None
    #: Per lattice: the pixels nearest to its columns, inside the crystal.
    regions: list[np.ndarray] = dataclasses.field(default_factory=list)
    #: The image's pixel noise over the median column height (:func:`stem_pipeline.classify.pixel_noise`).
    pixel_noise: float | None = None
    #: Whether the crystal edge is at the diffuse intensity step (else the columns' hull grown by a margin).
    edge_at_step: bool = False

    def timed(self, name: str):
        """Context manager timing one stage into :attr:`timings`."""
        return _timed(self.timings, name)

    def result(self, status: str, message: str | None, **found: Any) -> PipelineResult:
        """The result with what was found; the crystal (when mapped) as one dot."""
        self.timings["total"] = round(sum(self.timings.values()), 4)
        result = PipelineResult(
            status=status,
            micrograph=self.micrograph,
            denoised=self.denoised,
            crystal_mask=self.crystal_mask,
            lattices=tuple(self.lattices),
            message=message,
            config_hash=self.config.config_hash(),
            timings_s=self.timings,
            **found,
        )
        return result if self.crystal_mask is None else _with_dot(result, self.lattices[0])

    def stop(self, message: str) -> PipelineResult:
        """A ``no_crystal`` result saying why."""
        return self.result("no_crystal", message)


def _denoise(micrograph: Micrograph, config: PipelineConfig) -> np.ndarray:
    chain = denoise_config_for(micrograph, config.denoise)
    return denoise(micrograph.data, chain, pixel_size_nm=micrograph.pixel_size_nm)


def _find_columns(run: _Run) -> None:
    """Columns on every lattice's grid over the whole crystal.

    A weak lattice's mask can miss the corners of its small domains, so each grid is searched over
    the union. Columns found on both grids go to the better-fitting one, and a lattice left with
    too few columns is no region of its own.
    """
    union = np.logical_or.reduce([search for search, _ in run.masks])
    config = run.config
    parts = [find_columns(run.denoised, lattice=lat, mask=union, config=config.columns) for lat in run.lattices]
    if len(parts) > 1:
        parts = resolve_shared_columns(
            parts,
            [lat.vectors_px for lat in run.lattices],
            tolerance_fraction=config.columns.lattice_tolerance_fraction,
        )
        enough = [len(c) >= config.min_columns for c in parts]
        if any(enough):
            run.lattices = [x for x, ok in zip(run.lattices, enough) if ok]
            run.masks = [x for x, ok in zip(run.masks, enough) if ok]
            parts = [x for x, ok in zip(parts, enough) if ok]
    run.parts = parts


def _crystal_regions(run: _Run) -> None:
    """The crystal mask from the lattice amplitude.

    Fractions are of the crystal's own area, not of the (wider) search mask; the half-spacing cell
    of every found column is crystal too (small domains of a weak lattice). Each lattice's region in
    it is drawn once the columns are measured (:func:`_crystal_outline`).
    """
    search = np.logical_or.reduce([m for m, _ in run.masks])
    mask = np.logical_or.reduce([area for _, area in run.masks])
    mask |= search & _near_columns(run.parts, search.shape, 0.5 * min(lat.spacing_px for lat in run.lattices))
    run.crystal_mask = mask


def _crystal_outline(run: _Run, columns: Columns) -> Columns:
    """The crystal's edge at the step of the diffuse intensity, each lattice's region in it, and the image noise.

    Returns ``columns`` less the faint maxima beyond that edge. The detector keeps noise maxima on grid
    sites just past a crystal's edge (its background there is the support's); their fitted heights are
    below the detection threshold (:func:`stem_pipeline.columns.fitted_above_threshold`). Such faint
    columns are left out of the hull the edge is searched from, and those that lie beyond the edge found
    are dropped (with a log line; ``run.parts`` with them). Faint columns inside it are kept: the thin
    edge of a real particle has columns as faint (two of 411 in the CsPbBr3 image of the robustness set,
    11 of 178 in its Pb particle). Where the step is found (:func:`stem_pipeline.classify.diffuse_outline`), it is the crystal mask;
    elsewhere the crystal mask is clipped to the columns' hull grown by ``ClassifyConfig.hull_margin_spacings``,
    so that its fringe goes to neither phase, and the interval takes that edge's placement error
    (``ClassifyConfig.hull_edge_sd_spacings``, :func:`_two_phase`). Either way the result's crystal mask is the
    area the fractions are of.
    """
    config = run.config.classify
    spacing = min(lat.spacing_px for lat in run.lattices)
    rest = without_columns(run.micrograph.data, columns)
    faint = ~fitted_above_threshold(columns, run.config.columns.threshold_fraction)
    core = columns.subset(~faint) if (~faint).sum() >= 3 else columns
    hull = hull_mask(rest.shape, core.rc)  # drawn once for the noise and the outline
    run.pixel_noise = pixel_noise(rest, core, spacing, hull=hull)
    outline = None
    if config.edge_from_intensity:
        outline = diffuse_outline(
            rest,
            core.rc,
            spacing,
            smoothing_spacings=config.edge_smoothing_spacings,
            max_reach_spacings=config.edge_reach_spacings,
            min_contrast=config.edge_min_contrast,
            hull=hull,
        )
    run.edge_at_step = outline is not None
    if outline is not None:
        run.crystal_mask = outline.mask
        r, c = np.clip(np.rint(columns.rc).astype(int), 0, np.array(outline.mask.shape) - 1).T
        beyond = faint & ~outline.mask[r, c]
        if beyond.any():
            logger.info(
                "outline: %d of %d columns dropped: beyond the crystal's edge, their fitted height below %g of "
                "the 90th percentile (noise maxima on the support)",
                int(beyond.sum()),
                len(columns),
                run.config.columns.threshold_fraction,
            )
            columns = columns.subset(~beyond)
            run.parts = _lattice_parts(columns, len(run.parts))
    elif run.crystal_mask is not None:
        run.crystal_mask = run.crystal_mask & hull_mask(
            run.crystal_mask.shape, columns.rc, margin_px=config.hull_margin_spacings * spacing
        )
    if run.crystal_mask is not None:
        run.regions = nearest_column_regions(run.parts, run.crystal_mask)
    return columns


def _refine_and_measure(run: _Run) -> Columns:
    """All lattices' columns refined on the denoised image and measured on the raw counts.

    They are refined and measured together, so that each column's Voronoi cell (its fit window)
    stops at its neighbours on the other grid too, not only at those on its own. ``run.parts``
    becomes the refined columns of each lattice.
    """
    tagged = [c.replace(lattice=np.full(len(c), k, np.int8)) for k, c in enumerate(run.parts)]
    pooled = Columns.concatenate(tagged).replace(pixel_size_nm=run.micrograph.pixel_size_nm)
    finest = min(run.lattices, key=lambda lat: lat.spacing_px)
    with run.timed("refine_columns"):
        pooled = refine_columns(run.denoised, pooled, lattice=finest, config=run.config.columns)
    with run.timed("intensities"):
        columns = measure_intensities(run.micrograph.data, pooled, config=run.config.columns)
    run.parts = _lattice_parts(columns, len(run.parts))
    return columns


def _lattice_parts(columns: Columns, n_lattices: int) -> list[Columns]:
    """``columns`` split by their ``lattice`` index, one part per lattice."""
    return [columns.subset(np.asarray(columns.lattice == k)) for k in range(n_lattices)]


def _two_phase(run: _Run) -> tuple[PhaseLabels | None, AreaFractions | None, str | None]:
    """Labels, fractions and the message of the CsPbI3/PbI2 two-phase model, where it applies."""
    config, pixel_size_nm = run.config, run.micrograph.pixel_size_nm
    reasons = [
        r
        for lat in run.lattices
        for r in two_phase_model_reasons(
            lat.vectors_px,
            pixel_size_nm=pixel_size_nm,
            foreign_peaks=lat.foreign_peaks if len(run.lattices) == 1 else 0,
            config=config.two_phase_model,
        )
    ]
    if not reasons:
        classify = config.classify
        if not run.edge_at_step:  # the edge is the columns' hull grown by a margin, placed less well
            classify = classify.model_copy(update={"edge_sd_spacings": classify.hull_edge_sd_spacings})
        with run.timed("classify"):
            labels, fractions, reasons = classify_lattice_regions(
                run.parts,
                run.regions,
                run.lattices,
                run.micrograph.data.shape,
                config=classify,
                two_phase=config.two_phase_model,
                boundary_sd_spacings=config.lattice_boundary_sd_spacings,
                pixel_noise=run.pixel_noise,
            )
    if reasons:
        why = "; ".join(dict.fromkeys(reasons))
        return None, None, f"columns found; phase fractions not reported, the two-phase model does not apply: {why}"
    if pixel_size_nm is None:
        return labels, fractions, "uncalibrated: the column spacing was not checked against the two-phase model"
    return labels, fractions, None


def _note_other_dots(result: PipelineResult) -> PipelineResult:
    """``result``, with a warning and a message when its image holds several dots (see :func:`analyze`)."""
    from .dots import OVERVIEW_PIXEL_NM, segment_field

    px = result.micrograph.pixel_size_nm
    if px is None or px >= OVERVIEW_PIXEL_NM:
        return result
    labels, _, _ = segment_field(np.asarray(result.micrograph.data), pixel_size_nm=px)
    n_dots = int(labels.max())
    if n_dots < 2:
        return result
    analysed = 0
    if result.columns is not None and len(result.columns):
        rows, cols = np.clip(np.rint(result.columns.rc).astype(int), 0, np.array(labels.shape) - 1).T
        analysed = int(np.count_nonzero(np.bincount(labels[rows, cols], minlength=n_dots + 1)[1:]))
    note = (
        f"the image holds {n_dots} dots and this analysis read it as one crystal (its columns lie in {analysed} "
        "of them): stem_pipeline.field.analyze_field, as `stem-pipeline analyze` does, reports each dot"
    )
    where = f"{result.micrograph.source}: " if result.micrograph.source else ""
    warnings.warn(where + note, SeveralDotsWarning, stacklevel=3)
    return dataclasses.replace(result, message="; ".join(m for m in (result.message, note) if m))


def _with_dot(result: PipelineResult, lattice) -> PipelineResult:
    """``result`` with its ``dots``: the crystal as one dot, rotated as ``lattice``'s grid (a field's dots:
    :func:`stem_pipeline.field.analyze_field`)."""
    from .dots.shape import one_dot_records

    row, col = lattice.vectors_px[0]
    rotation = float(np.rad2deg(np.arctan2(col, row)) % 90.0)
    return dataclasses.replace(result, dots=one_dot_records(result, rotation))


def _phases(run: _Run, labels: PhaseLabels | None, fractions: AreaFractions | None) -> dict:
    """The phase-library stage on the lattices' columns (see :func:`stem_pipeline.phases.assign_phases`)."""
    from .phases import assign_phases, select_phases
    from .phases.simulated import simulated_intensities_for

    config, micrograph = run.config.phases, run.micrograph
    return assign_phases(
        run.parts,
        run.regions,
        run.lattices,
        labels,
        fractions,
        pixel_size_nm=micrograph.pixel_size_nm,
        library=select_phases(config),
        config=config,
        source=micrograph.source or "image",
        site_intensities=simulated_intensities_for(config.simulations, micrograph.metadata),
    )


def _near_columns(parts, shape: tuple[int, int], radius_px: float) -> np.ndarray:
    """Pixels within ``radius_px`` of a column."""
    near = np.zeros(shape, bool)
    rc = np.concatenate([p.rc for p in parts])
    r, c = np.clip(np.round(rc).astype(int), 0, np.array(shape) - 1).T
    near[r, c] = True
    return within_distance(near, radius_px)  # by row blocks: no full-size float64 distance map
