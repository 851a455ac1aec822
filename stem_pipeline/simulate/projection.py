"""Geometric projections of zone-axis cells: dominant spacings and a zone-axis search.

Used to check which PbI2 direction gives the ~3.2 A uniform column grid the
paper reports for its "[-4 4 1]" images (see sim_configs/README.md). This is a
kinematic, incoherent Z-contrast estimate (columns as Gaussians weighted by
Z^1.7), not a multislice simulation.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from .structures import unit_cell, zone_axis_cell

_Z = {"H": 1, "C": 6, "N": 7, "I": 53, "Cs": 55, "Pb": 82}


def projected_reflections(
    atoms, *, blur_angstrom: float = 0.4, d_min_angstrom: float = 1.5, exponent: float = 1.7
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier coefficients of the projected Z^exponent pattern of an orthogonal cell.

    Parameters
    ----------
    atoms : ase.Atoms
        Orthogonal cell, beam along z.
    blur_angstrom : float
        Gaussian column/probe width sigma [Angstrom] (damps high frequencies).
    d_min_angstrom : float
        Smallest spacing kept [Angstrom].
    exponent : float
        Z-contrast exponent.

    Returns
    -------
    g : (K, 2) ndarray
        Reciprocal vectors (gx, gy) [1/Angstrom], zero excluded.
    amplitude : (K,) ndarray
        |F(g)| / F(0).
    """
    lx, ly = atoms.cell[0, 0], atoms.cell[1, 1]
    hmax, kmax = int(lx / d_min_angstrom), int(ly / d_min_angstrom)
    h, k = np.meshgrid(np.arange(-hmax, hmax + 1), np.arange(-kmax, kmax + 1), indexing="ij")
    g = np.stack([h.ravel() / lx, k.ravel() / ly], -1)
    gn = np.linalg.norm(g, axis=1)
    keep = (gn > 0) & (gn <= 1 / d_min_angstrom)
    g, gn = g[keep], gn[keep]
    w = np.array([_Z[s] ** exponent for s in atoms.get_chemical_symbols()])
    phase = np.exp(-2j * np.pi * (g @ atoms.positions[:, :2].T))
    f = np.abs(phase @ w) / w.sum() * np.exp(-2 * np.pi**2 * blur_angstrom**2 * gn**2)
    return g, f


def dominant_spacings(atoms, *, n: int = 3, **kwargs) -> list[dict]:
    """The ``n`` strongest independent reflections of the projected pattern.

    Returns
    -------
    peaks : list of dict
        ``d_angstrom`` (spacing), ``angle_deg`` (direction of g from x),
        ``amplitude`` (relative to the mean), strongest first; +-g counted once.
    """
    g, f = projected_reflections(atoms, **kwargs)
    order = np.argsort(-f, kind="stable")
    peaks: list[dict] = []
    for i in order:
        if f[i] < 1e-3 or len(peaks) >= n:
            break
        if any(np.allclose(g[i], -p["g"], atol=1e-9) for p in peaks):
            continue
        peaks.append(
            {
                "g": g[i],
                "d_angstrom": float(1 / np.linalg.norm(g[i])),
                "angle_deg": float(np.degrees(np.arctan2(g[i][1], g[i][0])) % 180),
                "amplitude": float(f[i]),
            }
        )
    for p in peaks:
        p["g"] = p["g"].tolist()
    return peaks


def zone_axis_search(
    kind: str = "pbi2", *, max_index: int = 2, target_angstrom: float = 3.2, tolerance: float = 0.15
) -> list[dict]:
    """Rank low-index zone axes by how well they give a uniform ~target grid.

    For each [u v w] (|u|, |v|, |w| <= ``max_index``, one of each +- pair),
    the two strongest independent reflections are found; an axis matches when
    both spacings are within ``tolerance`` (relative) of ``target_angstrom``.

    Returns
    -------
    rows : list of dict
        ``zone_axis``, ``d1``/``d2`` [Angstrom], ``angle_deg`` between the two
        reflections, ``amplitude1``/``amplitude2``, ``match`` (bool), sorted
        with matches first, then by the mismatch.
    """
    base = unit_cell(kind)
    seen, rows = set(), []
    for uvw in product(range(-max_index, max_index + 1), repeat=3):
        if uvw == (0, 0, 0) or np.gcd.reduce(np.abs(uvw)) != 1:
            continue
        u, v, w = uvw
        key = max((u, v, w), (-u, -v, -w))
        if key in seen:
            continue
        seen.add(key)
        cell = zone_axis_cell(base, key)
        if cell.cell[0, 0] * cell.cell[1, 1] > 400:  # skip very large projected cells
            continue
        peaks = dominant_spacings(cell, n=2)
        if len(peaks) < 2:
            continue
        d1, d2 = peaks[0]["d_angstrom"], peaks[1]["d_angstrom"]
        angle = abs(peaks[0]["angle_deg"] - peaks[1]["angle_deg"]) % 180
        mismatch = max(abs(d1 - target_angstrom), abs(d2 - target_angstrom)) / target_angstrom
        rows.append(
            {
                "zone_axis": key,
                "d1": d1,
                "d2": d2,
                "angle_deg": min(angle, 180 - angle),
                "amplitude1": peaks[0]["amplitude"],
                "amplitude2": peaks[1]["amplitude"],
                "match": bool(mismatch <= tolerance),
                "mismatch": mismatch,
            }
        )
    rows.sort(key=lambda r: (not r["match"], r["mismatch"]))
    return rows
