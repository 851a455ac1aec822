"""The phase library: phases as data, their projected column sites, and classification against them.

A phase is a structure and a zone axis, read from a YAML file
(:mod:`~stem_pipeline.phases.library`); its columns, their spacing and their
expected relative HAADF intensities are derived (:mod:`~stem_pipeline.phases.sites`).
"""

from .assign import UNEXPLAINED, assign_phases
from .config import PhasesConfig
from .library import DEFAULT_DIR, Phase, StructureSpec, default_library, load_library, load_phase, select_phases
from .sites import ColumnGrid, ProjectedCell, column_grids, project, site_name

__all__ = [
    "DEFAULT_DIR",
    "ColumnGrid",
    "Phase",
    "PhasesConfig",
    "UNEXPLAINED",
    "assign_phases",
    "select_phases",
    "ProjectedCell",
    "StructureSpec",
    "column_grids",
    "default_library",
    "load_library",
    "load_phase",
    "project",
    "site_name",
]
