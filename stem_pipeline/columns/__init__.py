"""Atom columns: lattice-aware detection, vectorised refinement, intensities.

Typical use (the pipeline does this)::

    lattice = find_lattice(denoised)          # None: no crystal
    mask = crystal_mask(denoised, lattice)
    columns = find_columns(denoised, lattice=lattice, mask=mask)
    columns = refine_columns(denoised, columns, lattice=lattice)
    columns = measure_intensities(raw, columns)
"""

from .config import ColumnsConfig
from .find import find_columns, fitted_above_threshold
from .intensity import measure_intensities
from .refine import refine_columns

__all__ = ["ColumnsConfig", "find_columns", "fitted_above_threshold", "measure_intensities", "refine_columns"]
