"""Expected site intensities from an abTEM simulation of the phase's repeat cell (the ``[simulate]`` extra).

The projected-Z estimate of :mod:`~stem_pipeline.phases.sites` is fast and needs
no simulation; :func:`simulated_site_intensities` gives the intensities the
project's abTEM simulation predicts with an image's optics and thickness, through
the simulation cache (:func:`stem_pipeline.simulate.cells.simulate_cell`).
``benchmarks/phases.py`` measures how far the two are apart.
"""

from __future__ import annotations

import numpy as np

from .sites import site_name

__all__ = ["simulated_intensities_for", "simulated_site_intensities"]


def simulated_site_intensities(
    config, *, thickness_nm: float | None = None, thicknesses_nm=None, method: str = "fast"
) -> dict[str, dict]:
    """Peak and background-subtracted HAADF intensity of each kind of column in a simulated repeat cell.

    Parameters
    ----------
    config : SimulationConfig
        A crystal configuration of :mod:`stem_pipeline.simulate` (structure,
        zone axis, optics, sampling).
    thickness_nm : float, optional
        Thickness [nm]; the configuration's by default.
    thicknesses_nm : sequence of float, optional
        Simulate this thickness series in one run (one cache entry) and use the
        image nearest ``thickness_nm``: several thicknesses then cost one run.
    method : {"fast", "exact"}
        The simulation path.

    Returns
    -------
    dict of str to dict
        Per column kind (e.g. ``"Pb-I"``): ``peak`` (the cell image at the
        column, relative to the brightest kind's) and ``above_background``
        (the same after subtracting the cell image's minimum).
    """
    from ..simulate import build_structure
    from ..simulate.cells import column_composition, sample_cell, simulate_cell

    cell = simulate_cell(config, thickness_nm=thickness_nm, thicknesses_nm=thicknesses_nm, method=method)
    atoms = build_structure(config, thickness_nm=cell.thickness_nm)
    sites, composition = column_composition(atoms)
    names = [site_name([c.split(":")[0] for c in comp.split(",")]) for comp in composition]
    peak = sample_cell(cell, sites)
    floor = float(cell.image.min())
    out: dict[str, dict] = {}
    for name in dict.fromkeys(names):
        values = peak[np.array(names) == name]
        out[name] = {"peak": float(values.mean()), "above_background": float(values.mean()) - floor}
    top_peak = max(v["peak"] for v in out.values())
    top_above = max(v["above_background"] for v in out.values())
    return {
        name: {"peak": v["peak"] / top_peak, "above_background": v["above_background"] / top_above}
        for name, v in out.items()
    }


def simulated_intensities_for(simulations: dict[str, str], metadata: dict) -> dict[str, dict[str, float]] | None:
    """{phase: {site: relative intensity above background}} from abTEM, with an image's optics where it has them.

    Parameters
    ----------
    simulations : dict of str to str
        Phase name -> simulation config file (``PhasesConfig.simulations``).
    metadata : dict
        The micrograph's metadata: its ``energy_kev`` and ``convergence_mrad``,
        when present, replace the configuration's.

    Returns
    -------
    dict or None
        None when ``simulations`` is empty.
    """
    if not simulations:
        return None
    from ..simulate import load_config

    optics = {
        k: float(metadata[k]) for k in ("energy_kev", "convergence_mrad") if isinstance(metadata.get(k), (int, float))
    }
    out = {}
    for name, path in simulations.items():
        config = load_config(path)
        config = config.model_copy(update={"microscope": config.microscope.model_copy(update=optics)})
        out[name] = {site: v["above_background"] for site, v in simulated_site_intensities(config).items()}
    return out
