"""Fit thickness and source size of a simulated model to an experimental mean cell.

For every simulated thickness of a series and every trial source size, the
simulation is blurred (periodic Gaussian), rendered on the experimental patch
through one registration, matched in intensity and scored by chi-squared.
The best values come from the minimum of the chi-squared grid; their
uncertainties from the curvature of the profile (the other parameter
minimised out) at Delta chi2 = 1, with chi2 rescaled so that its minimum
per degree of freedom is 1 (the usual correction for model error).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cell import MeanCell
from .metrics import affine_match, chi2, column_ratio, ncc, rmse, ssim
from .register import Registration, blur_periodic, register_cell, render, simulation_cell_vectors

logger = logging.getLogger("stem_pipeline")

__all__ = ["SOURCE_FWHMS_NM", "CellFit", "fit_cell", "profile_minimum"]

#: Default trial source sizes, as the full width at half maximum of the Gaussian source [nm]
#: (the grid of standard deviations 0-0.1 nm it replaces, times 2.355, rounded).
SOURCE_FWHMS_NM: tuple[float, ...] = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25)


@dataclasses.dataclass(frozen=True, eq=False)
class CellFit:
    """Best match of one simulated model to one experimental mean cell.

    Attributes
    ----------
    thickness_nm, thickness_nm_std : float or None
        Fitted thickness and its uncertainty [nm] (None without a series).
    source_fwhm_nm, source_fwhm_nm_std : float
        Fitted source size (FWHM of the Gaussian source, as ``simulate`` and the RL step
        take it) and its uncertainty [nm].
    chi2 : float
        Reduced chi-squared at the best grid point.
    ncc, ssim, rmse : float
        Metrics of the matched simulation against the experimental patch.
    column_ratio_exp, column_ratio_sim : float
        Brightest-over-other column ratio in the experimental and simulated cells.
    chi2_grid : (T, S) ndarray
        Reduced chi-squared per thickness and source size.
    thicknesses_nm : (T,) ndarray
    source_fwhms_nm : (S,) ndarray
    exp_patch : (P, Q) ndarray
        The experimental patch (tiled mean cell).
    sim_patch : (P, Q) ndarray
        The best simulation, registered and intensity-matched on the same grid.
    registration : Registration
    """

    thickness_nm: float | None
    thickness_nm_std: float | None
    source_fwhm_nm: float
    source_fwhm_nm_std: float
    chi2: float
    ncc: float
    ssim: float
    rmse: float
    column_ratio_exp: float
    column_ratio_sim: float
    chi2_grid: np.ndarray
    thicknesses_nm: np.ndarray
    source_fwhms_nm: np.ndarray
    exp_patch: np.ndarray
    sim_patch: np.ndarray
    registration: Registration


def profile_minimum(x: np.ndarray, profile: np.ndarray, *, n_data: float) -> tuple[float, float]:
    """Best value and uncertainty from a reduced chi-squared profile.

    A parabola through the minimum and its two neighbours gives the vertex and
    the curvature; the uncertainty is where the rescaled chi-squared
    ``n_data * profile / min(profile)`` rises by 1.

    Parameters
    ----------
    x : (K,) ndarray
        Parameter grid (increasing).
    profile : (K,) ndarray
        Reduced chi-squared, minimised over the other parameters.
    n_data : float
        Number of independent data points behind the reduced chi-squared.

    Returns
    -------
    best, std : float
        With a minimum at the edge of the grid (or a single point) the best
        grid value and, as the uncertainty, the grid step (nan for one point);
        a flat profile gives at most the grid span; a minimum too sharp for
        the grid (the parabola dips below zero) gives the grid value and step.
    """
    x = np.asarray(x, dtype=np.float64)
    p = np.asarray(profile, dtype=np.float64)
    k = int(np.nanargmin(p))
    if len(x) == 1:
        return float(x[0]), float("nan")
    if k == 0 or k == len(x) - 1:
        step = abs(x[1] - x[0]) if k == 0 else abs(x[-1] - x[-2])
        logger.info("chi2 minimum at the edge of the grid (%.4g); widen the grid", x[k])
        return float(x[k]), float(step)
    xs, ys = x[k - 1 : k + 2], p[k - 1 : k + 2]
    a, b, c = np.polyfit(xs, ys, 2)
    if a <= 0:
        return float(x[k]), float(max(x[k + 1] - x[k], x[k] - x[k - 1]))
    vertex = float(np.clip(-b / (2 * a), xs[0], xs[-1]))
    p_min = float(c - b**2 / (4 * a))
    if p_min <= 0:  # the parabola dips below zero: too sharp a minimum to resolve on this grid
        return float(x[k]), float(max(x[k + 1] - x[k], x[k] - x[k - 1]))
    # Rescaled chi2 n_data * p / p_min rises by 1 at +-sqrt(p_min / (n_data a)).
    std = float(np.sqrt(p_min / (n_data * a)))
    return vertex, float(min(std, x[-1] - x[0]))


def fit_cell(
    cell: MeanCell,
    series: Sequence[np.ndarray] | np.ndarray,
    sim_pixel_size_nm: float | tuple[float, float],
    *,
    thicknesses_nm: Sequence[float] | np.ndarray | None = None,
    source_fwhms_nm: Sequence[float] = SOURCE_FWHMS_NM,
    reps: tuple[int, int] = (2, 2),
    variance: str = "sem",
    max_scale_change: float = 0.05,
    sim_cell_vectors_nm: np.ndarray | None = None,
) -> CellFit:
    """Fit the thickness and source size of a simulated series to a mean cell.

    Parameters
    ----------
    cell : MeanCell
        Experimental mean cell (calibrated).
    series : sequence of (M, N) ndarray
        Periodic simulated images without source blur, one per thickness,
        all with the same sampling.
    sim_pixel_size_nm : float or (2,) tuple
        Pixel size of the simulated images (row, col) [nm].
    thicknesses_nm : sequence of float, optional
        Thickness of each image of ``series`` [nm] (increasing); None for a
        single image of unknown thickness.
    source_fwhms_nm : sequence of float
        Trial source sizes (FWHM) [nm], increasing.
    reps : tuple of int
        Experimental cells in the compared patch.
    variance : {'sem', 'poisson'}
        Chi-squared weights: the measured squared standard error of the mean
        cell, or Poisson (mean counts over the number of cells; the image
        must be in counts).
    max_scale_change : float
        See :func:`~stem_pipeline.compare.register.register_cell`.
    sim_cell_vectors_nm : (2, 2) ndarray, optional
        Repeat vectors of the simulation [nm]; by default the image edges.

    Returns
    -------
    CellFit
    """
    if variance not in ("sem", "poisson"):
        raise ValueError(f"variance must be 'sem' or 'poisson', got {variance!r}")
    images = [np.asarray(s, dtype=np.float64) for s in series]
    if not images:
        raise ValueError("series is empty: pass at least one simulated image")
    if thicknesses_nm is not None and len(thicknesses_nm) != len(images):
        raise ValueError(f"thicknesses_nm has {len(thicknesses_nm)} values for {len(images)} images")
    sizes = np.asarray(source_fwhms_nm, dtype=np.float64)
    exp_patch, sem_patch = (np.asarray(a, dtype=np.float64) for a in cell.tile(reps))
    if variance == "poisson":
        var = np.maximum(exp_patch, 1.0) / cell.count
    else:
        var = np.maximum(sem_patch**2, 1e-12 * max(float(np.mean(exp_patch**2)), 1e-300))
    positions = cell.positions_nm(reps)
    if sim_cell_vectors_nm is None:
        sim_cell_vectors_nm = simulation_cell_vectors(images[len(images) // 2], sim_pixel_size_nm)
    kw: dict[str, Any] = dict(sim_cell_vectors_nm=sim_cell_vectors_nm, reps=reps, max_scale_change=max_scale_change)

    def score(img: np.ndarray, fwhm: float, reg: Registration) -> float:
        model = render(blur_periodic(img, sim_pixel_size_nm, fwhm), sim_pixel_size_nm, reg, positions)
        matched, _, _ = affine_match(model, exp_patch, variance=var)
        return chi2(exp_patch, matched, var)

    mid_t, mid_s = len(images) // 2, float(np.median(sizes))
    reg = register_cell(cell, blur_periodic(images[mid_t], sim_pixel_size_nm, mid_s), sim_pixel_size_nm, **kw)
    grid = np.array([[score(img, s, reg) for s in sizes] for img in images])
    # Refine the registration at the best grid point and rescore once.
    ti, si = np.unravel_index(int(np.argmin(grid)), grid.shape)
    reg = register_cell(cell, blur_periodic(images[ti], sim_pixel_size_nm, sizes[si]), sim_pixel_size_nm, **kw)
    grid = np.array([[score(img, s, reg) for s in sizes] for img in images])
    ti, si = np.unravel_index(int(np.argmin(grid)), grid.shape)

    n_data = cell.area_px  # independent image pixels in one cell
    if thicknesses_nm is not None:
        thick = np.asarray(thicknesses_nm, dtype=np.float64)
        t_best: float | None
        t_std: float | None
        t_best, t_std = profile_minimum(thick, grid.min(axis=1), n_data=n_data)
    else:
        thick = np.full(len(images), np.nan)
        t_best, t_std = None, None
    s_best, s_std = profile_minimum(sizes, grid.min(axis=0), n_data=n_data)

    best = blur_periodic(images[ti], sim_pixel_size_nm, sizes[si])
    matched, _, _ = affine_match(render(best, sim_pixel_size_nm, reg, positions), exp_patch, variance=var)
    n1, n2 = cell.shape
    sites = cell.column_sites
    return CellFit(
        thickness_nm=t_best,
        thickness_nm_std=t_std,
        source_fwhm_nm=s_best,
        source_fwhm_nm_std=s_std,
        chi2=float(grid[ti, si]),
        ncc=ncc(exp_patch, matched),
        ssim=ssim(exp_patch, matched),
        rmse=rmse(exp_patch, matched),
        column_ratio_exp=column_ratio(exp_patch[:n1, :n2], sites),
        column_ratio_sim=column_ratio(matched[:n1, :n2], sites),
        chi2_grid=grid,
        thicknesses_nm=thick,
        source_fwhms_nm=sizes,
        exp_patch=exp_patch,
        sim_patch=matched,
        registration=reg,
    )
