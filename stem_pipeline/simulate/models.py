"""Dot models: Cs1-xFAxPbI3 cubes assembled from small CsPbI3 / FAPbI3 units.

The paper (Fig. 2J) describes the alloy dot as small CsPbI3 and FAPbI3 units
assembled at random in three dimensions on one corner-sharing PbI6 framework.
:func:`alloy_dot` builds exactly that: a cubic Pb-I framework with the Vegard
lattice constant, split into cubic units of ``unit_cells`` cells whose A sites
are all Cs or all FA (a random assignment with round(x * n_units) FA units).

Beam-decomposed variant (a geometric approximation): each FAPbI3 unit is
replaced by the PbI2 atoms (2H polytype, oriented with ``pbi2_zone_axis``
along the beam) that fall inside the unit's box. Density, stoichiometry and the
interface are approximate: no relaxation, no orientation relation beyond the
beam direction, and PbI2 atoms are cut at the box faces.
"""

from __future__ import annotations

import numpy as np

from .structures import CSPBI3_A, FAPBI3_A, _fa_atoms, as_generator, pbi2, zone_axis_cell

#: Amorphous carbon number density [atoms / Angstrom^3] (~2.0 g/cm^3).
CARBON_DENSITY = 0.100


def alloy_dot(
    *,
    edge_nm: float = 14.0,
    fa_fraction: float = 0.5,
    unit_cells: int = 2,
    decomposed: bool = False,
    pbi2_zone_axis: tuple[int, int, int] = (-4, 4, 1),
    carbon_nm: float = 0.0,
    margin_nm: float = 0.5,
    fa_orientation: str = "fixed",
    rng: np.random.Generator | int | None = None,
):
    """Build a Cs1-xFAxPbI3 cube viewed along [001].

    Parameters
    ----------
    edge_nm : float
        Cube edge [nm]; rounded to whole units.
    fa_fraction : float
        Fraction of units that are FAPbI3 (0..1).
    unit_cells : int
        Unit edge in perovskite cells.
    decomposed : bool
        Replace FAPbI3 units by PbI2 (see the module docstring).
    pbi2_zone_axis : (3,) tuple of int
        PbI2 direction along the beam in decomposed units.
    carbon_nm : float
        Amorphous carbon support thickness below the dot [nm] (0 = none).
    margin_nm : float
        Vacuum in x and y around the cube [nm].
    fa_orientation : {"fixed", "random"}
        FA molecule orientation.
    rng : Generator, int or None
        Random source (unit assignment, FA orientation, carbon).

    Returns
    -------
    atoms : ase.Atoms
        Orthogonal cell, beam along z. ``info`` holds ``unit_is_fa`` (a
        (n, n, n) bool array of the unit assignment, indexed (x, y, z)),
        ``a_angstrom`` and ``fa_fraction_actual``.
    """
    from ase import Atoms

    rng = as_generator(rng)
    if not 0 <= fa_fraction <= 1:
        raise ValueError(f"fa_fraction={fa_fraction}: must be in [0, 1]")
    a = (1 - fa_fraction) * CSPBI3_A + fa_fraction * FAPBI3_A  # Vegard
    n_units = max(1, round(edge_nm * 10 / (a * unit_cells)))
    n_cells = n_units * unit_cells
    flat = np.zeros(n_units**3, dtype=bool)
    flat[rng.permutation(n_units**3)[: round(fa_fraction * n_units**3)]] = True
    is_fa = flat.reshape(n_units, n_units, n_units)

    # Pb-I framework on every cell, A site per unit.
    ijk = np.stack(np.meshgrid(*[np.arange(n_cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cell_fa = is_fa[tuple((ijk // unit_cells).T)]
    frac: dict[str, list[tuple[float, float, float]]] = {
        "Pb": [(0, 0, 0)],
        "I": [(0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)],
    }
    symbols: list[str] = []
    positions: list[np.ndarray] = []
    keep = ~cell_fa if decomposed else np.ones(len(ijk), dtype=bool)
    for sym, sites in frac.items():
        for s in sites:
            p = (ijk[keep] + np.asarray(s)) * a
            symbols += [sym] * len(p)
            positions.append(p)
    cs = (ijk[~cell_fa] + 0.5) * a
    symbols += ["Cs"] * len(cs)
    positions.append(cs)
    atoms = Atoms(symbols, positions=np.concatenate(positions))
    if not decomposed:
        for centre in (ijk[cell_fa] + 0.5) * a:
            atoms.extend(_fa_atoms(centre, orientation=fa_orientation, rng=rng))
    else:
        atoms.extend(_pbi2_fill(is_fa, unit_cells * a, pbi2_zone_axis))

    margin = margin_nm * 10
    size = n_cells * a
    carbon = carbon_nm * 10
    atoms.positions[:] += (margin, margin, carbon)
    cell = (size + 2 * margin, size + 2 * margin, size + carbon)
    if carbon > 0:
        n_c = rng.poisson(CARBON_DENSITY * cell[0] * cell[1] * carbon)
        atoms.extend(Atoms(f"C{n_c}", positions=rng.uniform(0, 1, (n_c, 3)) * (cell[0], cell[1], carbon)))
    atoms.set_cell(cell)
    atoms.pbc = True
    atoms.info.update(unit_is_fa=is_fa, a_angstrom=a, fa_fraction_actual=float(is_fa.mean()))
    return atoms


def _pbi2_fill(is_fa: np.ndarray, unit_angstrom: float, zone_axis: tuple[int, int, int]):
    """PbI2 atoms (beam along ``zone_axis``) inside the boxes of the FA units."""
    from ase import Atoms

    if not is_fa.any():
        return Atoms()
    block = zone_axis_cell(pbi2(), zone_axis)
    total = np.array(is_fa.shape) * unit_angstrom
    reps = np.ceil(total / block.cell.lengths()).astype(int)
    big = block * tuple(int(r) for r in reps)
    idx = np.floor(big.positions / unit_angstrom).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(is_fa.shape)), axis=1)
    sel = np.zeros(len(big), dtype=bool)
    sel[inside] = is_fa[tuple(idx[inside].T)]
    return big[sel]
