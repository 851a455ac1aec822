"""Configuration of column detection, refinement and intensity measurement."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..config import StrictModel

__all__ = ["ColumnsConfig"]


class ColumnsConfig(StrictModel):
    """Parameters of :func:`find_columns`, :func:`refine_columns` and :func:`measure_intensities`.

    Lengths are fractions of the lattice spacing (the shortest column-grid
    vector), so one configuration works at any magnification.
    """

    # --- detection ---------------------------------------------------------
    smooth_fraction: float = Field(
        0.12, ge=0, le=0.5, description="Gaussian smoothing (sigma) of the detection image [spacings]."
    )
    candidate_separation_fraction: float = Field(
        0.25, gt=0, le=1, description="Minimum distance between candidate maxima [spacings]."
    )
    min_separation_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Maxima closer than this are one column unless the profile between them dips "
        "(resolved dumbbell) [spacings].",
    )
    resolve_dip: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Two close maxima are resolved (kept apart) when the profile between them falls "
        "below this fraction of the lower one (heights above the local background).",
    )
    threshold_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="A maximum is a column when its height above the local background exceeds this "
        "fraction of the 90th percentile of candidate heights in the crystal (abTEM gives dim Cs and I "
        "columns at ~0.3 of the bright Pb-I ones).",
    )
    min_lattice_neighbours: int = Field(
        2,
        ge=0,
        le=4,
        description="A column needs this many neighbours one lattice vector away (of the four); drops "
        "noise maxima at the crystal's edge. 0 keeps every maximum (e.g. for several grains).",
    )
    lattice_tolerance_fraction: float = Field(
        0.3, gt=0, le=0.5, description="How far a neighbour may be from its lattice site [spacings]."
    )
    background_size_fraction: float = Field(
        1.5, gt=0, description="Size of the local-minimum (background) filter for peak heights [spacings]."
    )
    # --- refinement --------------------------------------------------------
    window_fraction: float = Field(
        0.5, gt=0, le=2, description="Half-width of the fit window [spacings] (at least 2 px)."
    )
    mask_neighbours: bool = Field(
        True, description="Fit only the pixels of the column's own Voronoi cell inside the window."
    )
    com_iterations: int = Field(3, ge=1, le=20, description="Centre-of-mass iterations.")
    com_radius_fraction: float = Field(
        0.35,
        gt=0,
        le=1,
        description="Radius of the centre-of-mass disk [spacings] (0.25 gives a better standalone centre of mass, 0.35 a better start for the Gaussian fit: see benchmarks).",
    )
    elliptical: bool = Field(False, description="Fit separate widths along rows and cols.")
    max_iterations: int = Field(30, ge=1, le=500, description="Levenberg-Marquardt iterations.")
    tolerance: float = Field(
        1e-3,
        gt=0,
        description="Convergence: the centre moves less than this [px] and the other parameters "
        "change by less than this fraction.",
    )
    max_shift_fraction: float = Field(
        0.35, gt=0, le=1, description="Fits that move a column further than this fail [spacings]."
    )
    min_sigma_px: float = Field(0.3, gt=0, description="Fits with a narrower Gaussian fail [px].")
    max_sigma_fraction: float = Field(0.6, gt=0, description="Fits with a wider Gaussian fail [spacings].")
    subtract_neighbours: int = Field(
        0,
        ge=0,
        le=5,
        description="Extra passes in which the fitted neighbours are subtracted from each window "
        "before refitting (models the neighbour tails; 0 = masking only).",
    )
    batch_size: int = Field(8192, ge=1, description="Columns fitted at once (bounds memory).")
    method: Literal["gaussian", "com"] = Field("gaussian", description="Refinement method.")
