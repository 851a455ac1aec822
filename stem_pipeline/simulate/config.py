"""Validated simulation configuration (``sim_configs/*.yaml``).

Lengths are in nm in the configuration (units in the names) and converted to
Angstrom only where abTEM is called. Unknown keys are errors.
"""

from __future__ import annotations

import math
import os
from typing import Literal

from pydantic import Field, model_validator

from stem_pipeline.config import StrictModel

#: Approximate room-temperature isotropic Debye-Waller factors B [Angstrom^2]
#: (cubic lead-iodide perovskites have large, strongly anharmonic A-site and I
#: motion; PbI2 values are smaller). Typical literature magnitudes, not fitted.
DEBYE_WALLER_B = {
    "cspbi3": {"Pb": 2.5, "I": 5.0, "Cs": 5.0},
    "fapbi3": {"Pb": 2.5, "I": 5.0, "C": 8.0, "N": 8.0, "H": 10.0},
    "pbi2": {"Pb": 2.0, "I": 2.5},
    "carbon": {"C": 1.0},
}


def sigma_from_b(b_angstrom2: float) -> float:
    """Per-direction rms displacement [Angstrom] from an isotropic B: sqrt(B / (8 pi^2))."""
    return math.sqrt(b_angstrom2 / (8 * math.pi**2))


class StructureConfig(StrictModel):
    """The crystal and its orientation."""

    kind: Literal["cspbi3", "fapbi3", "pbi2", "dot"] = Field(
        "cspbi3", description="A periodic crystal, or a Cs1-xFAxPbI3 dot model (see ``dot``)."
    )
    zone_axis: tuple[int, int, int] = Field(
        (0, 0, 1), description="Three-index direction [u v w] along the beam (hexagonal a1, a2, c for PbI2)."
    )
    a_nm: float | None = Field(
        default=None,
        gt=0,
        description="Lattice constant [nm]; None uses the builder default (CsPbI3 0.629, FAPbI3 0.636, PbI2 0.4557).",
    )
    fa_orientation: Literal["fixed", "random"] = Field(
        "fixed", description="FA molecule orientation (FAPbI3 and dot models)."
    )
    seed: int = Field(0, description="Seed for random orientations and dot assembly.")


class DotConfig(StrictModel):
    """A Cs1-xFAxPbI3 cube assembled from small CsPbI3 and FAPbI3 units (paper Fig. 2J)."""

    edge_nm: float = Field(default=14.0, gt=0, description="Cube edge [nm] (the paper's dots: 14 +- 2 nm).")
    fa_fraction: float = Field(default=0.5, ge=0, le=1, description="Fraction x of units that are FAPbI3.")
    unit_cells: int = Field(default=2, ge=1, description="Edge of one unit in perovskite cells.")
    decomposed: bool = Field(
        False,
        description="Beam-decomposed variant: FAPbI3 units are replaced by PbI2 (oriented along ``pbi2_zone_axis``) filling the same volume.",
    )
    pbi2_zone_axis: tuple[int, int, int] = Field(
        (-4, 4, 1), description="PbI2 direction along the beam in decomposed units."
    )
    carbon_nm: float = Field(
        default=0.0, ge=0, description="Thickness of an amorphous carbon support below the dot [nm]; 0 = none."
    )
    margin_nm: float = Field(default=0.5, ge=0, description="Vacuum around the dot in x and y [nm].")


class MicroscopeConfig(StrictModel):
    """Optics and detectors (defaults: the paper's JEOL ARM200F)."""

    energy_kev: float = Field(default=200.0, gt=0, description="Beam energy [keV] (the acceleration voltage in kV).")
    convergence_mrad: float = Field(default=25.0, gt=0, description="Probe convergence semi-angle [mrad].")
    haadf_mrad: tuple[float, float] = Field(
        (68.0, 280.0),
        description="HAADF detector inner/outer angles [mrad]. If the outer angle exceeds the largest simulated angle (set by the potential sampling), it is clipped and the effective range is recorded in the image metadata.",
    )
    bf_mrad: tuple[float, float] = Field(
        (0.0, 17.0),
        description="Bright-field detector inner/outer angles [mrad], clipped as ``haadf_mrad``.",
    )
    defocus_nm: float = Field(0.0, description="Defocus [nm] (positive = underfocus, abTEM convention).")
    cs_um: float = Field(0.0, description="Spherical aberration C3 [um] (0 for a probe-corrected instrument).")
    source_fwhm_nm: float = Field(
        default=0.085,
        ge=0,
        description="FWHM of the Gaussian (incoherent) source-size blur [nm]. 0.085 nm with the 25 mrad aberration-free probe (FWHM ~0.05 nm) gives an effective probe FWHM of ~0.1 nm, as in the paper.",
    )


class PotentialConfig(StrictModel):
    """Potential discretisation."""

    sampling_nm: float = Field(
        default=0.003,
        gt=0,
        description="Lateral potential sampling [nm]. The largest simulated angle is about (2/3) lambda / (2 sampling): 0.003 nm reaches ~280 mrad at 200 kV. See sim_configs/README.md for the convergence test.",
    )
    slice_thickness_nm: float = Field(
        default=0.16, gt=0, description="Multislice slice thickness [nm] (rounded so each cell has whole slices)."
    )
    parametrization: Literal["lobato", "kirkland", "peng"] = Field(
        "lobato", description="Atomic potential parametrisation."
    )
    fast_fft: bool = Field(
        default=False,
        description="Round the potential grid points of each repeat cell up to a count whose FFT is fast (scipy.fft.next_fast_len: factors 2, 3, 5, 7, 11), i.e. a slightly finer sampling than ``sampling_nm``. At 0.0029 nm the plain counts have large prime factors (CsPbI3 [001]: 217 = 7 x 31 per cell; PbI2: 1623 = 3 x 541); cost and deviation in sim_configs/README.md.",
    )


class ScanConfig(StrictModel):
    """Probe scan and output image."""

    sampling_nm: float = Field(
        default=0.025,
        gt=0,
        description="Scan step [nm] (rounded so a cell holds a whole number of steps); the output pixel size unless ``pixel_size_nm`` is set.",
    )
    field_cells: tuple[int, int] = Field(
        (3, 3), description="Field of view in repeat cells (rows, cols) for periodic crystals."
    )
    pixel_size_nm: float | None = Field(
        default=None,
        gt=0,
        description="Resample the image to this pixel size [nm] (Fourier interpolation of the periodic cell image).",
    )
    min_supercell_nm: float = Field(
        default=1.8,
        gt=0,
        description="Smallest lateral extent of the potential [nm] so the probe does not overlap its periodic image.",
    )
    subcell: bool = Field(
        default=False,
        description="Fast path for crystals, opt-in: scan only the smallest rectangular part of the repeat cell that a lattice translation (with a shift along the beam) maps onto the rest, and tile it (PbI2 [1 -1 1]: 9x fewer probe positions, [-4 4 1]: 21x, CsPbI3 [110]: 2x). Not exact: the parts' columns differ in their order along the beam (measured errors in sim_configs/README.md). False scans the whole repeat cell.",
    )


class PhononConfig(StrictModel):
    """Frozen phonons."""

    num_configs: int = Field(
        default=8,
        ge=0,
        le=256,
        description="Number of configurations; 0 = static lattice (at most 256: days of CPU already).",
    )
    sigmas_angstrom: dict[str, float] | None = Field(
        None,
        description="Per-element rms displacement per direction [Angstrom]; None derives them from :data:`DEBYE_WALLER_B` as sqrt(B / 8 pi^2).",
    )
    seed: int = Field(0, description="Seed of the displacements.")


class FastConfig(StrictModel):
    """The fast path for periodic cells: a one-cell scan tiled over the field."""

    engine: Literal["auto", "multislice", "prism"] = Field(
        "auto",
        description='How the one-cell scan of a crystal is computed. ``"multislice"`` (and ``"auto"``, kept for old files) scans probes over one repeat cell inside the supercell. ``"prism"`` (opt-in) uses ``abtem.SMatrix`` with ``interpolation`` = the repeats of the cell in the supercell; it is slower than the one-cell multislice for these cells and fails in abTEM for some (see sim_configs/README.md, "PRISM").',
    )
    prism_window_nm: float = Field(
        default=1.2,
        gt=0,
        description="Dots only: smallest PRISM probe window [nm], interpolation = floor(dot extent / window).",
    )


class SimulationConfig(StrictModel):
    """A complete simulation: structure, optics, discretisation, scan."""

    name: str = Field("simulation", description="A label.")
    structure: StructureConfig = Field(StructureConfig(), description="The crystal or dot model.")
    dot: DotConfig | None = Field(None, description="The dot model (required when structure.kind is 'dot').")
    microscope: MicroscopeConfig = Field(MicroscopeConfig(), description="Optics and detectors.")
    potential: PotentialConfig = Field(PotentialConfig(), description="Discretisation of the potential.")
    scan: ScanConfig = Field(ScanConfig(), description="Probe positions and the field of view.")
    phonons: PhononConfig = Field(PhononConfig(), description="Frozen phonons.")
    fast: FastConfig = Field(FastConfig(), description="The fast path for periodic cells.")
    thickness_nm: float = Field(
        default=6.29,
        gt=0,
        description="Specimen thickness along the beam [nm] (rounded to whole repeat cells for crystals; the dot's edge for dots).",
    )
    num_workers: int = Field(
        default=1, ge=1, description="Threads used by abTEM/Dask (the machine is shared: keep small)."
    )

    @model_validator(mode="after")
    def _dot_needs_block(self) -> SimulationConfig:
        if self.structure.kind == "dot" and self.dot is None:
            raise ValueError("structure.kind is 'dot' but the 'dot' block is missing")
        return self


def load_config(path: str | os.PathLike) -> SimulationConfig:
    """Load and validate a simulation YAML file.

    Parameters
    ----------
    path : str or PathLike
        A YAML file (see ``sim_configs/``).

    Returns
    -------
    config : SimulationConfig

    Raises
    ------
    ValueError
        If the file cannot be read or does not validate; the message names the
        file and every offending key (unknown keys are errors).
    """
    return SimulationConfig.from_yaml(path)
