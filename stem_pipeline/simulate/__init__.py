"""Model structures and abTEM HAADF/BF simulation with the paper's optics.

``import stem_pipeline.simulate`` stays light: ASE and abTEM are imported
inside the functions that use them.
"""

from .config import SimulationConfig, load_config
from .models import alloy_dot
from .run import (
    build_structure,
    check_device,
    probe_fwhm_nm,
    run_config,
    simulate,
    simulate_detectors,
    simulate_thickness_series,
)
from .structures import cspbi3, fapbi3, four_to_three_index, pbi2, three_to_four_index, zone_axis_cell

__all__ = [
    "SimulationConfig",
    "alloy_dot",
    "build_structure",
    "check_device",
    "cspbi3",
    "fapbi3",
    "four_to_three_index",
    "load_config",
    "pbi2",
    "probe_fwhm_nm",
    "run_config",
    "simulate",
    "simulate_detectors",
    "simulate_thickness_series",
    "three_to_four_index",
    "zone_axis_cell",
]
