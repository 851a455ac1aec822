"""Rank simulated models against an experimental image: comparison.json and comparison.png.

:func:`compare_models` runs the pipeline on the image (columns, phase
labels), folds each requested region into a mean supercell, simulates each
model's thickness series through the simulation cache, fits thickness and
source size, and ranks the models by reduced chi-squared (best first).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from .._types import Comparison, Micrograph
from ..config import StrictModel
from ..errors import InputError, NoCrystalError
from .cell import MeanCell, cell_origins, mean_cell, region_select
from .fit import SOURCE_SIZES_NM, CellFit, fit_cell, profile_minimum

logger = logging.getLogger("stem_pipeline")

__all__ = [
    "CompareConfig",
    "compare_models",
    "experimental_cell",
    "model_period_nm",
    "plot_comparison",
    "range_limit_warnings",
    "rank",
    "region_columns",
    "write_comparison",
]


class CompareConfig(StrictModel):
    """Options of :func:`compare_models`.

    Attributes
    ----------
    thicknesses_nm : list of float or None
        Simulated thickness series [nm]; None gives ``thickness_steps`` values
        evenly spaced over ``thickness_range_nm`` (each is rounded to whole
        repeat cells by the simulation).
    thickness_range_nm : (2,) float
        Thinnest and thickest simulated specimen [nm].
    thickness_steps : int
        Number of thicknesses when ``thicknesses_nm`` is None.
    source_sizes_nm : list of float
        Trial source sizes, Gaussian sigma of the blur applied to the
        simulated cell [nm] (FWHM = 2.355 sigma).
    supercell : (2,) int
        The experimental cell in column-grid vectors; (2, 2) holds the
        CsPbI3 bright/dim ordering (period a).
    reps : (2,) int
        Experimental cells in the compared physical patch.
    oversample : float
        Mean-cell samples per image pixel.
    max_scale_change : float
        Largest calibration correction taken from the lattices (relative).
    variance : {'sem', 'poisson'}
        Chi-squared weights (see :func:`~stem_pipeline.compare.fit.fit_cell`).
    method : {'fast', 'exact'}
        Simulation path.
    rank_by : {'chi2', 'ncc', 'ssim'}
        Ranking metric.
    min_cells : int
        Fewest cells in a region's mean cell.
    defocus_nm : list of float or None
        Simulated defocus series [nm] (the simulation's sign convention,
        ``microscope.defocus_nm``); each value is one more simulation per
        model, and the best one is fitted with a profile uncertainty. None
        keeps each model config's defocus (not fitted).
    """

    thicknesses_nm: list[float] | None = None
    thickness_range_nm: tuple[float, float] = (2.0, 16.0)
    thickness_steps: int = Field(8, ge=1)
    source_sizes_nm: list[float] = list(SOURCE_SIZES_NM)
    supercell: tuple[int, int] = (2, 2)
    reps: tuple[int, int] = (2, 2)
    oversample: float = Field(2.0, gt=0)
    max_scale_change: float = Field(0.05, ge=0)
    variance: Literal["sem", "poisson"] = "sem"
    method: Literal["fast", "exact"] = "fast"
    rank_by: Literal["chi2", "ncc", "ssim"] = "chi2"
    min_cells: int = Field(3, ge=1)
    defocus_nm: list[float] | None = None

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


def _simulation_series(path: Path, options: CompareConfig, *, progress: bool, defocus_nm: float | None = None):
    """Unblurred one-cell thickness series of a model config, with its pixel size (row, col) [nm]."""
    from ..simulate import load_config, simulate_thickness_series

    config = load_config(path)
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
    of the same composition (:func:`stem_pipeline.simulate.mosaic.primitive_vectors_nm`).
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
    from ..simulate.mosaic import column_composition, primitive_vectors_nm

    config = load_config(path)
    atoms = build_structure(config.model_copy(update={"scan": config.scan.model_copy(update={"field_cells": (1, 1)})}))
    sites, composition = column_composition(atoms)
    extent = np.array([atoms.cell[1, 1], atoms.cell[0, 0]]) / 10
    return primitive_vectors_nm(sites, composition, extent)


def _to_comparison(model: str, region: str, fit: CellFit, defocus: tuple[float, float] | None = None) -> Comparison:
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
        source_size_nm=opt(fit.source_size_nm),
        source_size_nm_std=opt(fit.source_size_nm_std),
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
    from ..outputs import atomic_write, atomic_write_text

    out = Path(out)
    payload = dict(info or {})
    payload["results"] = [c.to_dict() for c, _ in entries]
    json_path = atomic_write_text(out / "comparison.json", json.dumps(payload, indent=2) + "\n")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Not a pyplot figure: nothing kept after the file is written.
    fig = Figure(figsize=_comparison_size(max(len(entries), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    plot_comparison(entries, fig=fig)
    png_path = atomic_write(out / "comparison.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    return json_path, png_path


def compare_models(
    micrograph: Micrograph,
    model_configs: Sequence[str | os.PathLike],
    *,
    region: str | Sequence[str] = "all",
    out: str | os.PathLike | None = None,
    config=None,
    options: CompareConfig | None = None,
    roi: tuple[int, int, int, int] | np.ndarray | None = None,
    progress: bool = True,
) -> list[Comparison]:
    """Compare simulated models with an experimental image and rank them.

    The pipeline runs on the image itself (columns, phase labels); each
    region is folded into a mean supercell (raw counts); every model's
    thickness series is simulated through the cache (one repeat cell, no
    source blur), registered, and fitted in thickness and source size, and in
    defocus when ``options.defocus_nm`` gives a defocus series.

    Parameters
    ----------
    micrograph : Micrograph
        The experimental image (calibrated).
    model_configs : sequence of path
        Simulation configs (``sim_configs/*.yaml``); the model name is the file stem.
    region : {'all', 'ordered', 'uniform'} or a sequence of them
        Regions to compare; each gets its own ranking.
    out : path, optional
        Folder for ``comparison.json`` and ``comparison.png`` (atomic writes).
    config : PipelineConfig, optional
        Configuration of the analysis of the image.
    options : CompareConfig, optional
        Comparison options (thickness series, source sizes, ranking metric).
    roi : tuple of int or (M, N) bool ndarray, optional
        Restrict the regions to ``(row0, row1, col0, col1)`` [px] or a mask.
    progress : bool
        Show the simulation progress bar.

    Returns
    -------
    list of Comparison
        Best first within each region.

    Raises
    ------
    InputError
        If the image has no calibration or a config is missing or not periodic.
    NoCrystalError
        If the image (or a region) has no crystal to compare.
    """
    from ..pipeline import analyze

    options = options or CompareConfig()
    regions = [region] if isinstance(region, str) else list(region)
    paths = [Path(p) for p in model_configs]
    for p in paths:
        if not p.is_file():
            raise InputError(p, "no such model config", "pass existing sim_configs/*.yaml files")
    if micrograph.pixel_size_nm is None:
        raise InputError(micrograph.source, "the image has no pixel size", "pass pixel_size_nm when loading it")
    result = analyze(micrograph, config)
    if result.status != "ok":
        raise NoCrystalError(f"{micrograph.source}: {result.message or result.status}")
    if result.labels is None and any(r != "all" for r in regions):
        # The image's grid is not the CsPbI3/PbI2 one (result.message says why): no phase regions.
        raise ValueError(f"{micrograph.source}: no phase regions to compare ({result.message}); use region='all'")
    cells, folded_on = {}, {}
    for r in regions:
        keep, lattice = region_columns(result, r, roi=roi)
        if keep.sum() < options.min_cells:
            raise NoCrystalError(f"{micrograph.source}: region {r!r} holds {int(keep.sum())} columns, too few to fold")
        cells[r] = experimental_cell(
            micrograph,
            result.columns.rc[keep],
            np.asarray(lattice["vectors_px"], dtype=np.float64),
            intensity=result.columns.intensity[keep],
            supercell=options.supercell,
            oversample=options.oversample,
            min_cells=options.min_cells,
        )
        folded_on[r] = {
            "spacing_nm": lattice["spacing_px"] * micrograph.pixel_size_nm,
            "angle_deg": lattice["angle_deg"],
        }
    entries: list[tuple[Comparison, CellFit]] = []
    defoci = sorted(options.defocus_nm) if options.defocus_nm else [None]
    for path in paths:
        period = model_period_nm(path)
        fits: dict[str, list[CellFit]] = {r: [] for r in cells}
        for defocus in defoci:
            images, thicknesses, pixel = _simulation_series(path, options, progress=progress, defocus_nm=defocus)
            for r, cell in cells.items():
                fits[r].append(
                    fit_cell(
                        cell,
                        images,
                        pixel,
                        thicknesses_nm=thicknesses,
                        source_sizes_nm=options.source_sizes_nm,
                        reps=options.reps,
                        variance=options.variance,
                        max_scale_change=options.max_scale_change,
                        sim_cell_vectors_nm=period,
                    )
                )
        for r, cell in cells.items():
            chi2_profile = np.array([f.chi2 for f in fits[r]])
            fit = fits[r][int(np.argmin(chi2_profile))]
            defocus = None if defoci == [None] else profile_minimum(np.array(defoci), chi2_profile, n_data=cell.area_px)
            entries.append((_to_comparison(path.stem, r, fit, defocus), fit))
            logger.info("%s vs %s region: chi2 %.3g, NCC %.4f", path.stem, r, fit.chi2, fit.ncc)
    ranked = rank([c for c, _ in entries], by=options.rank_by)
    for message in range_limit_warnings(ranked, options):
        logger.warning("%s: %s", micrograph.source or "image", message)
    by_id = {id(c): f for c, f in entries}
    ordered = [(c, by_id[id(c)]) for c in ranked]
    if out is not None:
        info = {
            "image": micrograph.source,
            "rank_by": options.rank_by,
            "cells": {r: c.count for r, c in cells.items()},
            "lattices": folded_on,
            "defocus_series_nm": options.defocus_nm,
        }
        write_comparison(out, ordered, info=info)
    return ranked


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
        "source_size_nm": (options.source_sizes_nm, "source_sizes_nm"),
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
                label = name.removesuffix("_nm").replace("_", " ")
                messages.append(
                    f"{r.model} ({r.region}): the fitted {label} {value:.3g} nm is at the limit of the range "
                    f"searched ({grid[0]:.3g}-{grid[-1]:.3g} nm); the best value may lie outside it: widen {option}"
                )
    return messages


def region_columns(result, region: str = "all", *, roi=None) -> tuple[np.ndarray, dict]:
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
    lattice : dict
        Their lattice (``result.lattice`` or one of its ``"others"``), with ``vectors_px``.

    Examples
    --------
    >>> from stem_pipeline.pipeline import analyze
    >>> from stem_pipeline.synthetic import make_dot
    >>> result = analyze(make_dot((256, 256), dot_size_nm=6, uniform_fraction=0, rng=0).micrograph())
    >>> keep, lattice = region_columns(result, "ordered")
    >>> bool(keep.all()), round(lattice["angle_deg"])
    (True, 90)
    """
    columns = result.columns
    region_map = result.labels.region_map if result.labels is not None else None
    keep = region_select(columns.rc, region=region, region_map=region_map, roi=roi)
    index = columns.lattice if columns.lattice is not None else np.zeros(len(columns), np.int8)
    lattices = [result.lattice, *result.lattice.get("others", [])]
    dominant = int(np.argmax(np.bincount(index[keep], minlength=len(lattices)))) if keep.any() else 0
    return keep & (index == dominant), lattices[dominant]
