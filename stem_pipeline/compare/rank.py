"""Rank simulated models against an experimental region: the steps of a comparison and its files.

The options (:class:`CompareConfig`), the experimental mean cell of a region, each model's
simulated thickness series and column period, the ranking, and ``comparison.json`` /
``comparison.png``. :func:`stem_pipeline.comparison.compare_models` composes them with the
analysis of the image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from .._types import Comparison, Lattice, Micrograph
from ..config import StrictModel
from ..errors import InputError, NoCrystalError
from .cell import MeanCell, cell_origins, mean_cell, region_select
from .fit import SOURCE_FWHMS_NM, CellFit

logger = logging.getLogger("stem_pipeline")

__all__ = [
    "CompareConfig",
    "experimental_cell",
    "model_period_nm",
    "plot_comparison",
    "range_limit_warnings",
    "rank",
    "comparison_from_fit",
    "region_columns",
    "simulation_series",
    "write_comparison",
]


class CompareConfig(StrictModel):
    """Options of :func:`compare_models`."""

    thicknesses_nm: list[float] | None = Field(
        None,
        description="Simulated thickness series [nm]; None gives ``thickness_steps`` values evenly spaced over ``thickness_range_nm`` (each is rounded to whole repeat cells by the simulation).",
    )
    thickness_range_nm: tuple[float, float] = Field(
        (2.0, 16.0), description="Thinnest and thickest simulated specimen [nm]."
    )
    thickness_steps: int = Field(
        8, ge=1, le=64, description="Number of thicknesses when ``thicknesses_nm`` is None."
    )  # one simulation each
    source_fwhms_nm: list[float] = Field(
        list(SOURCE_FWHMS_NM),
        description="Trial source sizes: FWHM of the Gaussian blur applied to the simulated cell [nm], the ``source_fwhm_nm`` that ``simulate`` and the RL step take.",
    )
    supercell: tuple[int, int] = Field(
        (2, 2),
        description="The experimental cell in column-grid vectors; (2, 2) holds the CsPbI3 bright/dim ordering (period a).",
    )
    reps: tuple[int, int] = Field((2, 2), description="Experimental cells in the compared physical patch.")
    oversample: float = Field(2.0, gt=0, description="Mean-cell samples per image pixel.")
    max_scale_change: float = Field(
        0.05, ge=0, description="Largest calibration correction taken from the lattices (relative)."
    )
    variance: Literal["sem", "poisson"] = Field(
        "sem", description="Chi-squared weights (see :func:`~stem_pipeline.compare.fit.fit_cell`)."
    )
    method: Literal["fast", "exact"] = Field("fast", description="Simulation path.")
    rank_by: Literal["chi2", "ncc", "ssim"] = Field("chi2", description="Ranking metric.")
    min_cells: int = Field(3, ge=1, description="Fewest cells in a region's mean cell.")
    defocus_nm: list[float] | None = Field(
        None,
        description="Simulated defocus series [nm] (the simulation's sign convention, ``microscope.defocus_nm``); each value is one more simulation per model, and the best one is fitted with a profile uncertainty. None keeps each model config's defocus (not fitted).",
    )

    def thickness_series(self) -> list[float]:
        """The thicknesses to simulate [nm]."""
        if self.thicknesses_nm is not None:
            return sorted(float(t) for t in self.thicknesses_nm)
        lo, hi = self.thickness_range_nm
        return [float(t) for t in np.linspace(lo, hi, self.thickness_steps)]


def experimental_cell(
    image: np.ndarray | Micrograph,
    rc: np.ndarray,
    vectors_px: np.ndarray,
    *,
    intensity: np.ndarray | None = None,
    region: str = "all",
    region_map: np.ndarray | None = None,
    roi: tuple[int, int, int, int] | np.ndarray | None = None,
    supercell: tuple[int, int] = (2, 2),
    oversample: float = 2.0,
    pixel_size_nm: float | None = None,
    min_cells: int = 3,
) -> MeanCell:
    """Fold the columns of one region (or a ROI) of an image into its mean supercell.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The raw image.
    rc : (K, 2) ndarray
        Column positions (row, col) [px], e.g. ``Columns.rc``.
    vectors_px : (2, 2) ndarray
        Column-grid vectors [px], e.g. ``Lattice.vectors_px``.
    intensity : (K,) ndarray, optional
        Column intensities (pick the bright sublattice as cell origins).
    region : {'all', 'ordered', 'uniform'}
        Phase region (needs ``region_map``).
    region_map : (M, N) ndarray of int, optional
        ``PhaseLabels.region_map``.
    roi : tuple of int or (M, N) bool ndarray, optional
        ``(row0, row1, col0, col1)`` [px] or a mask.
    supercell, oversample, pixel_size_nm, min_cells
        See :func:`~stem_pipeline.compare.cell.mean_cell`.

    Returns
    -------
    MeanCell
    """
    keep = region_select(rc, region=region, region_map=region_map, roi=roi)
    if keep.sum() < min_cells:
        raise NoCrystalError(f"region {region!r} holds {int(keep.sum())} columns: too few to fold a mean cell")
    sub_intensity = None if intensity is None else np.asarray(intensity)[keep]
    origins = cell_origins(np.asarray(rc)[keep], vectors_px, intensity=sub_intensity, supercell=supercell)
    return mean_cell(
        image,
        vectors_px,
        origins,
        supercell=supercell,
        oversample=oversample,
        pixel_size_nm=pixel_size_nm,
        min_cells=min_cells,
    )


def simulation_series(
    path: str | os.PathLike, options: CompareConfig, *, progress: bool, defocus_nm: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The unblurred one-cell thickness series of a crystal model, as compared with experiment.

    The source blur is left to the fit (``source_fwhm_nm`` 0) and one repeat cell is
    simulated per thickness, through the simulation cache.

    Parameters
    ----------
    path : str or PathLike
        A crystal simulation config (``sim_configs/*.yaml``).
    options : CompareConfig
        The thickness series and the simulation method.
    progress : bool
        Show abTEM's progress bar.
    defocus_nm : float, optional
        Overrides the config's defocus [nm].

    Returns
    -------
    images : (T, M, N) ndarray
        One repeat cell per thickness.
    thicknesses_nm : (T,) ndarray
    pixel_size_nm : (float, float)
        Pixel size (row, col) [nm].

    Raises
    ------
    InputError
        If the config describes a dot (not periodic).
    """
    from ..simulate import load_config, simulate_thickness_series

    config = load_config(Path(path))
    if config.structure.kind == "dot":
        raise InputError(path, "a dot model is not periodic and cannot be folded into a cell", "use a crystal config")
    # Compare fits the source size itself and needs one repeat per image.
    optics = {"source_fwhm_nm": 0.0} if defocus_nm is None else {"source_fwhm_nm": 0.0, "defocus_nm": float(defocus_nm)}
    config = config.model_copy(
        update={
            "microscope": config.microscope.model_copy(update=optics),
            "scan": config.scan.model_copy(update={"field_cells": (1, 1)}),
        }
    )
    images, thicknesses, pixel = simulate_thickness_series(
        config, options.thickness_series(), method=options.method, cache=True, progress=progress
    )
    return images, np.asarray(thicknesses, dtype=np.float64), pixel


def model_period_nm(path: str | os.PathLike) -> np.ndarray:
    """The column period of a crystal model's image: a reduced basis (row, col) [nm].

    The translations that map every projected heavy-atom column onto a column
    of the same composition (:func:`stem_pipeline.simulate.cells.primitive_vectors_nm`).
    This is the repeat cell for CsPbI3 and FAPbI3 [001] (the Pb-I column
    repeats every a), but a much smaller cell than the orthogonal repeat for
    e.g. PbI2 along <1 -1 1> (0.347 nm grid in a 0.456 x 4.705 nm repeat):
    registering the experiment onto the repeat would leave most of it
    unconstrained.

    Parameters
    ----------
    path : path
        A crystal simulation config.

    Returns
    -------
    (2, 2) ndarray
    """
    from ..simulate import build_structure, load_config
    from ..simulate.cells import column_composition, primitive_vectors_nm

    config = load_config(path)
    atoms = build_structure(config.model_copy(update={"scan": config.scan.model_copy(update={"field_cells": (1, 1)})}))
    sites, composition = column_composition(atoms)
    extent = np.array([atoms.cell[1, 1], atoms.cell[0, 0]]) / 10
    return primitive_vectors_nm(sites, composition, extent)


def comparison_from_fit(
    model: str, region: str, fit: CellFit, defocus: tuple[float, float] | None = None
) -> Comparison:
    """The :class:`~stem_pipeline.Comparison` record of one model's fit to one region.

    Parameters
    ----------
    model, region : str
        The model's name and the region's (``all``, ``ordered``, ``uniform``).
    fit : CellFit
        From :func:`~stem_pipeline.compare.fit_cell`.
    defocus : (float, float), optional
        Fitted defocus and its standard deviation [nm], when a defocus series was fitted.
    """

    def opt(x):
        return None if x is None or not np.isfinite(x) else float(x)

    return Comparison(
        model=model,
        region=region,
        ncc=float(fit.ncc),
        ssim=float(fit.ssim),
        rmse=float(fit.rmse),
        chi2=opt(fit.chi2),
        thickness_nm=opt(fit.thickness_nm),
        thickness_nm_std=opt(fit.thickness_nm_std),
        source_fwhm_nm=opt(fit.source_fwhm_nm),
        source_fwhm_nm_std=opt(fit.source_fwhm_nm_std),
        column_ratio_exp=opt(fit.column_ratio_exp),
        column_ratio_sim=opt(fit.column_ratio_sim),
        defocus_nm=None if defocus is None else opt(defocus[0]),
        defocus_nm_std=None if defocus is None else opt(defocus[1]),
    )


def rank(results: Sequence[Comparison], *, by: str = "chi2") -> list[Comparison]:
    """Sort comparisons best first within each region (regions in first-seen order).

    Parameters
    ----------
    results : sequence of Comparison
    by : {'chi2', 'ncc', 'ssim'}
        Lower chi2 is better; higher NCC and SSIM are better.
    """
    if by not in ("chi2", "ncc", "ssim"):
        raise ValueError(f"by must be 'chi2', 'ncc' or 'ssim', got {by!r}")
    order = {r: i for i, r in reversed(list(enumerate(c.region for c in results)))}

    def key(c: Comparison):
        value = getattr(c, by)
        value = np.inf if value is None else (value if by == "chi2" else -value)
        return (order[c.region], value)

    return sorted(results, key=key)


def plot_comparison(entries: Sequence[tuple[Comparison, CellFit]], *, fig=None):
    """Figure: experimental mean cell, best simulation and difference, one row per model.

    Parameters
    ----------
    entries : sequence of (Comparison, CellFit)
        Already ranked.
    fig : matplotlib.figure.Figure, optional
        Figure to draw on; when None, a new pyplot figure (``plt.show()``
        displays it).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = max(len(entries), 1)
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=_comparison_size(n), layout="constrained")
    axes = fig.subplots(n, 3, squeeze=False)
    for row, (comp, fit) in enumerate(entries):
        exp, sim = fit.exp_patch, fit.sim_patch
        lo, hi = float(exp.min()), float(exp.max())
        diff = exp - sim
        lim = float(np.abs(diff).max()) or 1.0
        t = "?" if comp.thickness_nm is None else f"{comp.thickness_nm:.1f}"
        panels = (
            (exp, f"experiment ({comp.region})", "gray", (lo, hi)),
            # The simulation on its own range: a poorly matching model is nearly flat after the affine fit.
            (sim, f"{comp.model}: t={t} nm", "gray", (float(sim.min()), float(sim.max()))),
            (diff, f"difference, chi2={comp.chi2:.3g}, NCC={comp.ncc:.3f}", "RdBu_r", (-lim, lim)),
        )
        for ax, (img, title, cmap, (vmin, vmax)) in zip(axes[row], panels):
            ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def _comparison_size(n_rows: int) -> tuple[float, float]:
    """Figure size [in] of :func:`plot_comparison` with ``n_rows`` models."""
    return 7.5, 2.5 * n_rows


def write_comparison(
    out: str | os.PathLike, entries: Sequence[tuple[Comparison, CellFit]], *, info: dict | None = None
) -> tuple[Path, Path]:
    """Write ``comparison.json`` (``{"results": [...]}``, best first) and ``comparison.png`` atomically.

    Parameters
    ----------
    out : path
        Output folder (created).
    entries : sequence of (Comparison, CellFit)
        Already ranked.
    info : dict, optional
        Extra top-level JSON fields (image, cells per region, ...).

    Returns
    -------
    json_path, png_path : Path
    """
    from .._atomic import atomic_write, atomic_write_json

    out = Path(out)
    payload = dict(info or {})
    payload["results"] = [c.to_dict() for c, _ in entries]
    json_path = atomic_write_json(out / "comparison.json", payload)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Not a pyplot figure: nothing kept after the file is written.
    fig = Figure(figsize=_comparison_size(max(len(entries), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    plot_comparison(entries, fig=fig)
    png_path = atomic_write(out / "comparison.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return json_path, png_path


def range_limit_warnings(results: Sequence[Comparison], options: CompareConfig) -> list[str]:
    """Say which fitted parameters sit at an end of the range searched (the best value may lie beyond it).

    Parameters
    ----------
    results : sequence of Comparison
        Fitted comparisons.
    options : CompareConfig
        The thickness series, source sizes and defocus series searched.

    Returns
    -------
    list of str
        One message per parameter at a limit, naming the model, region,
        value, range and the option that widens it. A thickness or source
        size at a lower limit of 0 is not reported (a physical limit); a
        thickness within a quarter step of a limit is (the simulation rounds
        thicknesses to whole repeat cells).
    """
    grids = {
        "thickness_nm": (options.thickness_series(), "thicknesses_nm (CLI: --thicknesses-nm)"),
        "source_fwhm_nm": (options.source_fwhms_nm, "source_fwhms_nm"),
        "defocus_nm": (options.defocus_nm, "defocus_nm (CLI: --defocus-nm)"),
    }
    messages = []
    for r in results:
        for name, (grid, option) in grids.items():
            value = getattr(r, name)
            if value is None or not grid or len(grid) < 2:
                continue
            grid = sorted(grid)
            tolerance = 0.25 * min(b - a for a, b in pairwise(grid))
            at_low = value <= grid[0] + tolerance and not (name != "defocus_nm" and grid[0] <= 0)
            if at_low or value >= grid[-1] - tolerance:
                label = name.removesuffix("_nm").replace("_", " ").replace("fwhm", "FWHM")
                messages.append(
                    f"{r.model} ({r.region}): the fitted {label} {value:.3g} nm is at the limit of the range "
                    f"searched ({grid[0]:.3g}-{grid[-1]:.3g} nm); the best value may lie outside it: widen {option}"
                )
    return messages


def region_columns(result, region: str = "all", *, roi=None) -> tuple[np.ndarray, Lattice]:
    """The columns of a region on the region's own lattice, and that lattice.

    A two-lattice image (e.g. CsPbI3 [001] beside PbI2 <1 -1 1>) has its
    columns on two grids; a region is folded on the grid most of its columns
    were found on, with those columns only.

    Parameters
    ----------
    result : PipelineResult
        From :func:`stem_pipeline.pipeline.analyze` (status ``ok``).
    region : {'all', 'ordered', 'uniform'}
        Phase region (``all`` when the result has no labels).
    roi : tuple of int or (M, N) bool ndarray, optional
        See :func:`~stem_pipeline.compare.cell.region_select`.

    Returns
    -------
    keep : (N,) ndarray of bool
        Which of ``result.columns`` to fold.
    lattice : Lattice
        Their lattice (one of ``result.lattices``).

    Examples
    --------
    >>> from stem_pipeline.pipeline import analyze
    >>> from stem_pipeline.synthetic import make_dot
    >>> result = analyze(make_dot((256, 256), dot_size_nm=6, uniform_fraction=0, rng=0).micrograph())
    >>> keep, lattice = region_columns(result, "ordered")
    >>> bool(keep.all()), round(lattice.angle_deg)
    (True, 90)
    """
    columns = result.columns
    region_map = result.labels.region_map if result.labels is not None else None
    keep = region_select(columns.rc, region=region, region_map=region_map, roi=roi)
    index = columns.lattice if columns.lattice is not None else np.zeros(len(columns), np.int8)
    lattices = result.lattices
    dominant = int(np.argmax(np.bincount(index[keep], minlength=len(lattices)))) if keep.any() else 0
    return keep & (index == dominant), lattices[dominant]
