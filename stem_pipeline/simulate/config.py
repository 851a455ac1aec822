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
    """The crystal and its orientation.

    Attributes
    ----------
    kind : {"cspbi3", "fapbi3", "pbi2", "dot"}
        A periodic crystal, or a Cs1-xFAxPbI3 dot model (see ``dot``).
    zone_axis : (3,) int
        Three-index direction [u v w] along the beam (hexagonal a1, a2, c for PbI2).
    a_nm : float or None
        Lattice constant [nm]; None uses the builder default (CsPbI3 0.629,
        FAPbI3 0.636, PbI2 0.4557).
    fa_orientation : {"fixed", "random"}
        FA molecule orientation (FAPbI3 and dot models).
    seed : int
        Seed for random orientations and dot assembly.
    """

    kind: Literal["cspbi3", "fapbi3", "pbi2", "dot"] = "cspbi3"
    zone_axis: tuple[int, int, int] = (0, 0, 1)
    a_nm: float | None = Field(default=None, gt=0)
    fa_orientation: Literal["fixed", "random"] = "fixed"
    seed: int = 0


class DotConfig(StrictModel):
    """A Cs1-xFAxPbI3 cube assembled from small CsPbI3 and FAPbI3 units (paper Fig. 2J).

    Attributes
    ----------
    edge_nm : float
        Cube edge [nm] (the paper's dots: 14 +- 2 nm).
    fa_fraction : float
        Fraction x of units that are FAPbI3.
    unit_cells : int
        Edge of one unit in perovskite cells.
    decomposed : bool
        Beam-decomposed variant: FAPbI3 units are replaced by PbI2 (oriented
        along ``pbi2_zone_axis``) filling the same volume.
    pbi2_zone_axis : (3,) int
        PbI2 direction along the beam in decomposed units.
    carbon_nm : float
        Thickness of an amorphous carbon support below the dot [nm]; 0 = none.
    margin_nm : float
        Vacuum around the dot in x and y [nm].
    """

    edge_nm: float = Field(default=14.0, gt=0)
    fa_fraction: float = Field(default=0.5, ge=0, le=1)
    unit_cells: int = Field(default=2, ge=1)
    decomposed: bool = False
    pbi2_zone_axis: tuple[int, int, int] = (-4, 4, 1)
    carbon_nm: float = Field(default=0.0, ge=0)
    margin_nm: float = Field(default=0.5, ge=0)


class MicroscopeConfig(StrictModel):
    """Optics and detectors (defaults: the paper's JEOL ARM200F).

    Attributes
    ----------
    energy_kev : float
        Beam energy [keV] (the acceleration voltage in kV).
    convergence_mrad : float
        Probe convergence semi-angle [mrad].
    haadf_mrad, bf_mrad : (2,) float
        Detector inner/outer angles [mrad]. If the outer angle exceeds the
        largest simulated angle (set by the potential sampling), it is clipped
        and the effective range is recorded in the image metadata.
    defocus_nm : float
        Defocus [nm] (positive = underfocus, abTEM convention).
    cs_um : float
        Spherical aberration C3 [um] (0 for a probe-corrected instrument).
    source_fwhm_nm : float
        FWHM of the Gaussian (incoherent) source-size blur [nm]. 0.085 nm with
        the 25 mrad aberration-free probe (FWHM ~0.05 nm) gives an effective
        probe FWHM of ~0.1 nm, as in the paper.
    """

    energy_kev: float = Field(default=200.0, gt=0)
    convergence_mrad: float = Field(default=25.0, gt=0)
    haadf_mrad: tuple[float, float] = (68.0, 280.0)
    bf_mrad: tuple[float, float] = (0.0, 17.0)
    defocus_nm: float = 0.0
    cs_um: float = 0.0
    source_fwhm_nm: float = Field(default=0.085, ge=0)


class PotentialConfig(StrictModel):
    """Potential discretisation.

    Attributes
    ----------
    sampling_nm : float
        Lateral potential sampling [nm]. The largest simulated angle is about
        (2/3) lambda / (2 sampling): 0.003 nm reaches ~280 mrad at 200 kV.
        See sim_configs/README.md for the convergence test.
    slice_thickness_nm : float
        Multislice slice thickness [nm] (rounded so each cell has whole slices).
    parametrization : {"lobato", "kirkland", "peng"}
        Atomic potential parametrisation.
    """

    sampling_nm: float = Field(default=0.003, gt=0)
    slice_thickness_nm: float = Field(default=0.16, gt=0)
    parametrization: Literal["lobato", "kirkland", "peng"] = "lobato"


class ScanConfig(StrictModel):
    """Probe scan and output image.

    Attributes
    ----------
    sampling_nm : float
        Scan step [nm] (rounded so a cell holds a whole number of steps);
        the output pixel size unless ``pixel_size_nm`` is set.
    field_cells : (2,) int
        Field of view in repeat cells (rows, cols) for periodic crystals.
    pixel_size_nm : float or None
        Resample the image to this pixel size [nm] (Fourier interpolation of
        the periodic cell image).
    min_supercell_nm : float
        Smallest lateral extent of the potential [nm] so the probe does not
        overlap its periodic image.
    """

    sampling_nm: float = Field(default=0.025, gt=0)
    field_cells: tuple[int, int] = (3, 3)
    pixel_size_nm: float | None = Field(default=None, gt=0)
    min_supercell_nm: float = Field(default=1.8, gt=0)


class PhononConfig(StrictModel):
    """Frozen phonons.

    Attributes
    ----------
    num_configs : int
        Number of configurations; 0 = static lattice.
    sigmas_angstrom : dict or None
        Per-element rms displacement per direction [Angstrom]; None derives
        them from :data:`DEBYE_WALLER_B` as sqrt(B / 8 pi^2).
    seed : int
        Seed of the displacements.
    """

    num_configs: int = Field(default=8, ge=0, le=256)  # 256 phonon configurations: days of CPU already
    sigmas_angstrom: dict[str, float] | None = None
    seed: int = 0


class FastConfig(StrictModel):
    """The fast path for periodic cells: a one-cell scan tiled over the field.

    Attributes
    ----------
    engine : {"auto", "multislice", "prism"}
        How the one-cell scan of a crystal is computed. ``"multislice"`` (and
        ``"auto"``, kept for old files) scans probes over one repeat cell inside
        the supercell. ``"prism"`` (opt-in) uses ``abtem.SMatrix`` with
        ``interpolation`` = the repeats of the cell in the supercell; it is
        slower than the one-cell multislice for these cells and fails in abTEM
        for some (see sim_configs/README.md, "PRISM").
    prism_window_nm : float
        Dots only: smallest PRISM probe window [nm], interpolation =
        floor(dot extent / window).
    """

    engine: Literal["auto", "multislice", "prism"] = "auto"
    prism_window_nm: float = Field(default=1.2, gt=0)


class SimulationConfig(StrictModel):
    """A complete simulation: structure, optics, discretisation, scan.

    Attributes
    ----------
    name : str
        A label.
    structure, dot, microscope, potential, scan, phonons, fast
        Sub-models (see their docstrings).
    thickness_nm : float
        Specimen thickness along the beam [nm] (rounded to whole repeat
        cells for crystals; the dot's edge for dots).
    num_workers : int
        Threads used by abTEM/Dask (the machine is shared: keep small).
    """

    name: str = "simulation"
    structure: StructureConfig = StructureConfig()
    dot: DotConfig | None = None
    microscope: MicroscopeConfig = MicroscopeConfig()
    potential: PotentialConfig = PotentialConfig()
    scan: ScanConfig = ScanConfig()
    phonons: PhononConfig = PhononConfig()
    fast: FastConfig = FastConfig()
    thickness_nm: float = Field(default=6.29, gt=0)
    num_workers: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _dot_needs_block(self) -> "SimulationConfig":
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
