"""Options of the phase-library stage."""

from __future__ import annotations

from pydantic import Field

from ..config import StrictModel

__all__ = ["PhasesConfig"]


class PhasesConfig(StrictModel):
    """Which phases to try, and how strictly a phase must match."""

    enabled: bool = Field(
        True, description="Classify against the phase library (False: the two-phase classifier only)."
    )
    phases: list[str] | None = Field(
        None,
        description="Names of the library phases to try (e.g. ['CsPbI3 [001]', 'uniform 0.32 nm'] for the paper's "
        "two-phase analysis); None tries every phase.",
    )
    extra_files: list[str] = Field(
        default_factory=list,
        description="More phase YAML files, or folders of them, added to the shipped library (CLI: --phases).",
    )
    simulations: dict[str, str] = Field(
        default_factory=dict,
        description="Phase name -> a simulation config (sim_configs/*.yaml): that phase's expected site intensities "
        "from abTEM (one repeat cell, cached) with the image's beam energy and convergence angle where the file gives "
        "them, instead of the projected-Z estimate. Needs the [simulate] extra.",
    )
    shape_tolerance: float = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description="Largest relative misfit of the lattice metric (Gram matrix) between image and phase grid "
        "(0.1: about 5 % in a length or 3 deg in an angle).",
    )
    max_spacing_error: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description="A calibrated image's spacing may be this far (relative) from a phase's and still match it "
        "(0.15: the real CsPbBr3 file's calibration is ~11 % off).",
    )
    calibration_warning: float = Field(
        0.05,
        ge=0.0,
        description="A calibrated image whose spacing is this far or further from the matched phase's gets a "
        "calibration warning naming the implied pixel size.",
    )
    spacing_sd: float = Field(
        0.03,
        gt=0.0,
        description="Relative uncertainty of a calibrated spacing: a phase whose spacing is off by e scores "
        "-(log(1 + e) / spacing_sd)^2 / 2.",
    )
    unexplained_bic: float = Field(
        10.0,
        ge=0.0,
        description="A phase does not explain a pattern when one mean per site and two-step grid parity beats one "
        "mean per site by more than this in BIC (structure the phase's sites lack).",
    )
    min_probability: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="An uncalibrated image gets phase fractions only when the phase that explains it best holds "
        "this share of the likelihood.",
    )
    min_columns: int = Field(10, ge=3, description="Fewer columns in a group than this: the group is not classified.")
