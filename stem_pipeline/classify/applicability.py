"""Does the two-phase model apply to this crystal at all?

The classification assumes the paper's picture: a square grid of columns of
spacing ~0.31-0.35 nm (CsPbI3 a/2 = 0.3145 nm, FAPbI3 a/2 = 0.318 nm, the PbI2
grid ~0.32-0.34 nm) seen along a cubic [001]-like axis. Other crystals (oxide
perovskites at a/2 ~ 0.2 nm, Si [110], fcc metals) have columns and contrast
too, and the classifier would label them all the same; these checks say why
their phase fractions are not reported.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..config import StrictModel


class TwoPhaseModelConfig(StrictModel):
    """Geometry the two-phase (CsPbI3-like / PbI2-like) model requires of the column grid."""

    max_angle_deviation_deg: float = Field(
        10.0, gt=0, description="largest deviation of the grid angle from 90 deg (PbI2 <1 -1 1>: 82 deg)"
    )
    max_length_ratio: float = Field(1.15, ge=1, description="largest ratio of the two grid vectors' lengths")
    spacing_nm: tuple[float, float] = Field(
        (0.27, 0.36), description="accepted column spacing [nm] (only checked on calibrated images)"
    )
    bright_fraction: tuple[float, float] = Field(
        (0.12, 0.38),
        description="accepted share of bright columns in ordered regions (CsPbI3 [001]: one Pb-I column in four)",
    )
    min_ordered_columns: int = Field(
        150,
        ge=1,
        description="fewest ordered columns to check the bright share on (in small domains of 35-70 columns the "
        "share scatters over 0.28-0.37 for CsPbI3 itself, and minor ordered domains stopped 3 of 160 simulated dots)",
    )


def two_phase_model_reasons(
    vectors_px: np.ndarray,
    *,
    pixel_size_nm: float | None,
    foreign_peaks: int = 0,
    config: TwoPhaseModelConfig | None = None,
) -> list[str]:
    """Reasons why the two-phase model does not apply to a column grid (empty: it applies).

    Parameters
    ----------
    vectors_px : (2, 2) ndarray
        The two shortest column-grid vectors (row, col) [px] (see
        :func:`stem_pipeline.lattice.find_lattice`).
    pixel_size_nm : float or None
        Pixel size [nm]; without it the spacing is not checked.
    foreign_peaks : int
        Strong Bragg peaks off this grid (:attr:`stem_pipeline.lattice.Lattice.foreign_peaks`):
        a second lattice, whose regions one grid cannot separate.
    config : TwoPhaseModelConfig, optional
        Tolerances.

    Returns
    -------
    list of str
        Human-readable reasons, e.g. ``"the column grid is not square: angle 70.5 deg"``.

    Examples
    --------
    >>> two_phase_model_reasons(np.array([[10.5, 0.0], [0.0, 10.5]]), pixel_size_nm=0.03)
    []
    >>> two_phase_model_reasons(np.array([[6.5, 0.0], [0.0, 6.5]]), pixel_size_nm=0.03)
    ['column spacing 0.195 nm is outside 0.27-0.36 nm (CsPbI3 a/2 = 0.3145 nm, PbI2 ~0.32 nm)']
    """
    config = config or TwoPhaseModelConfig()
    v = np.asarray(vectors_px, dtype=float)
    lengths = np.hypot(v[:, 0], v[:, 1])
    cos = float(v[0] @ v[1] / (lengths[0] * lengths[1]))
    angle = float(np.degrees(np.arccos(np.clip(abs(cos), 0.0, 1.0))))  # acute angle between the axes
    reasons = []
    if 90.0 - angle > config.max_angle_deviation_deg:
        reasons.append(f"the column grid is not square: its axes meet at {angle:.1f} deg")
    ratio = float(lengths.max() / lengths.min())
    if ratio > config.max_length_ratio:
        reasons.append(f"the column grid is rectangular or mixed: its vectors differ in length by {ratio:.2f}x")
    if foreign_peaks:
        reasons.append(
            f"a second lattice is present ({foreign_peaks} strong Bragg peak(s) off the column grid, e.g. PbI2 "
            "along <1 -1 1> beside CsPbI3 [001], or another grain): one grid cannot separate its regions"
        )
    if pixel_size_nm:
        spacing = float(lengths.min() * pixel_size_nm)
        lo, hi = config.spacing_nm
        if not lo <= spacing <= hi:
            reasons.append(
                f"column spacing {spacing:.3f} nm is outside {lo:g}-{hi:g} nm (CsPbI3 a/2 = 0.3145 nm, PbI2 ~0.32 nm)"
            )
    return reasons


def bright_fraction(intensity: np.ndarray, rc: np.ndarray, *, spacing_px: float) -> float:
    """Share of bright columns among columns of one phase, measured independently of the labels.

    Each intensity is divided by the mean of its neighbours within three
    spacings (so a thickness gradient does not count as contrast), and the
    relative intensities are split in two by Otsu's threshold.

    Parameters
    ----------
    intensity : (K,) ndarray
        Column intensities (raw counts).
    rc : (K, 2) ndarray
        Column positions (row, col) [px].
    spacing_px : float
        Column spacing [px].

    Returns
    -------
    float
        About 0.25 for CsPbI3 [001] (bright Pb-I on one site in four), 0.5 for a
        checkerboard of two kinds of column (e.g. the A and B columns of an
        oxide perovskite).
    """
    from scipy.spatial import cKDTree
    from skimage.filters import threshold_otsu

    intensity = np.asarray(intensity, dtype=float)
    neighbours = cKDTree(rc).query_ball_point(rc, r=3.0 * spacing_px)
    local = np.array([np.mean(intensity[n]) for n in neighbours])
    relative = intensity / np.where(local > 0, local, np.nan)
    relative = relative[np.isfinite(relative)]
    if len(relative) >= 20:
        # A failed fit (relative intensity 7, or 0) must not set the threshold: drop the extreme 1 % per side.
        lo, hi = np.percentile(relative, [1, 99])
        relative = relative[(relative >= lo) & (relative <= hi)]
    if len(relative) < 2 or np.ptp(relative) == 0:
        return 0.0
    return float(np.mean(relative > threshold_otsu(relative)))


def contrast_pattern_reasons(
    intensity: np.ndarray,
    rc: np.ndarray,
    ordered: np.ndarray,
    *,
    spacing_px: float,
    config: TwoPhaseModelConfig | None = None,
) -> list[str]:
    """Reasons why the ordered regions' bright/dim pattern is not CsPbI3's (empty: it is, or too few to tell).

    Parameters
    ----------
    intensity : (K,) ndarray
        Column intensities (raw counts).
    rc : (K, 2) ndarray
        Column positions (row, col) [px].
    ordered : (K,) ndarray of bool
        Columns labelled ``ordered``.
    spacing_px : float
        Column spacing [px].
    config : TwoPhaseModelConfig, optional
        Accepted bright share and the fewest ordered columns to check.
    """
    config = config or TwoPhaseModelConfig()
    ordered = np.asarray(ordered, dtype=bool)
    if ordered.sum() < config.min_ordered_columns:
        return []
    share = bright_fraction(np.asarray(intensity)[ordered], np.asarray(rc)[ordered], spacing_px=spacing_px)
    lo, hi = config.bright_fraction
    if lo <= share <= hi:
        return []
    return [
        f"the bright/dim pattern is not CsPbI3's one bright Pb-I column in four: {share:.0%} of the ordered "
        "columns are bright"
    ]
