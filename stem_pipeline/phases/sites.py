"""Projected column sites of a crystal along a zone axis, in pure numpy.

A crystal (cell, species, fractional positions) seen along [u v w] is a 2-D
periodic pattern of atom columns. :func:`project` finds that pattern's repeat
cell and its columns, each with what it holds per unit length along the beam;
:func:`column_grids` turns it into the grids an image shows: the grid of all
heavy columns and, when the faint columns are invisible (Br-only columns of
CsPbBr3 [001]), the grid of the visible ones, each with the expected relative
HAADF intensity of every site.

The fast intensity estimate is the projected-Z sum: a column's HAADF signal is
taken as sum(Z**exponent) over its atoms per unit length (Rutherford-like
scattering to high angles; exponent ~1.7, Pennycook & Jesson 1991). How far it
is from abTEM is measured in ``benchmarks/results/phases.md``.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import product

import numpy as np

__all__ = ["ColumnGrid", "ProjectedCell", "column_grids", "project", "site_name"]

#: Atoms at least this heavy make a column (Pb, Cs, I, Br, Cl; not H, C, N, O of an organic cation).
MIN_COLUMN_Z = 11

_SYMBOLS = tuple(
    [
        "H",
        "He",
        "Li",
        "Be",
        "B",
        "C",
        "N",
        "O",
        "F",
        "Ne",
        "Na",
        "Mg",
        "Al",
        "Si",
        "P",
        "S",
        "Cl",
        "Ar",
        "K",
        "Ca",
        "Sc",
        "Ti",
        "V",
        "Cr",
        "Mn",
        "Fe",
        "Co",
        "Ni",
        "Cu",
        "Zn",
        "Ga",
        "Ge",
        "As",
        "Se",
        "Br",
        "Kr",
        "Rb",
        "Sr",
        "Y",
        "Zr",
        "Nb",
        "Mo",
        "Tc",
        "Ru",
        "Rh",
        "Pd",
        "Ag",
        "Cd",
        "In",
        "Sn",
        "Sb",
        "Te",
        "I",
        "Xe",
        "Cs",
        "Ba",
        "La",
        "Ce",
        "Pr",
        "Nd",
        "Pm",
        "Sm",
        "Eu",
        "Gd",
        "Tb",
        "Dy",
        "Ho",
        "Er",
        "Tm",
        "Yb",
        "Lu",
        "Hf",
        "Ta",
        "W",
        "Re",
        "Os",
        "Ir",
        "Pt",
        "Au",
        "Hg",
        "Tl",
        "Pb",
        "Bi",
        "Po",
        "At",
        "Rn",
    ]
)
#: Atomic number of each element symbol (H to Rn).
ATOMIC_NUMBER = {s: z for z, s in enumerate(_SYMBOLS, start=1)}


@dataclasses.dataclass(frozen=True, eq=False)
class ProjectedCell:
    """A crystal's projection along a zone axis: the 2-D repeat cell and its columns.

    Attributes
    ----------
    cell_nm : (2, 2) ndarray
        Reduced basis of the projected lattice, one vector per row [nm].
    sites_nm : (K, 2) ndarray
        Column positions inside the cell [nm], heavy columns only.
    names : (K,) ndarray of str
        What each column holds, heavy elements by falling Z, e.g. ``"Pb-I"``, ``"Cs"``.
    intensity : (K,) ndarray
        Projected-Z estimate: sum of Z**exponent per atom per nm along the beam.
    repeat_nm : float
        Repeat length along the beam [nm].
    """

    cell_nm: np.ndarray
    sites_nm: np.ndarray
    names: np.ndarray
    intensity: np.ndarray
    repeat_nm: float


@dataclasses.dataclass(frozen=True, eq=False)
class ColumnGrid:
    """The grid of columns an image shows, with the phase's sites on it.

    Attributes
    ----------
    vectors_nm : (2, 2) ndarray
        Reduced basis of the column grid (one vector per row) [nm]; its
        shorter vector is the column spacing.
    cell : (2, 2) ndarray of int
        The phase's repeat cell in grid steps (rows): the site pattern repeats
        by these integer combinations of ``vectors_nm``.
    site_steps : (S, 2) ndarray of int
        Grid points of one repeat cell, in grid steps.
    names : (S,) ndarray of str
        What each grid point holds (``"empty"`` for a grid point without a heavy column).
    relative_intensity : (S,) ndarray
        Expected intensity of each grid point over the brightest one's.
    """

    vectors_nm: np.ndarray
    cell: np.ndarray
    site_steps: np.ndarray
    names: np.ndarray
    relative_intensity: np.ndarray

    @property
    def uniform(self) -> bool:
        """Whether every grid point is a column within 10 % of the brightest (the two-phase model's ``uniform``)."""
        return bool(self.relative_intensity.min() >= 0.9)

    @property
    def spacing_nm(self) -> float:
        """Nearest-column distance on the grid [nm]."""
        return float(np.linalg.norm(self.vectors_nm[0]))

    def site_index(self, steps: np.ndarray) -> np.ndarray:
        """Index into the sites of each grid point given in grid steps ((N, 2) int)."""
        inverse = np.linalg.inv(self.cell.astype(float))
        diff = np.asarray(steps, float)[:, None, :] - self.site_steps[None, :, :]
        frac = diff @ inverse
        on_site = np.all(np.abs(frac - np.round(frac)) < 1e-6, axis=2)
        return np.argmax(on_site, axis=1)


def site_name(symbols: list[str]) -> str:
    """Column name from the heavy elements it holds, by falling Z: ``["I", "Pb", "I"] -> "Pb-I"``."""
    heavy = {s for s in symbols if ATOMIC_NUMBER[s] >= MIN_COLUMN_Z}
    return "-".join(sorted(heavy, key=lambda s: -ATOMIC_NUMBER[s])) or "empty"


def _reduce(vectors: np.ndarray) -> np.ndarray:
    """Gauss-reduced 2-D basis, the shorter vector first."""
    a, b = (np.asarray(v, float) for v in vectors)
    while True:
        if a @ a > b @ b:
            a, b = b, a
        mu = round(float(a @ b) / float(a @ a))
        if mu == 0:
            return np.stack([a, b])
        b = b - mu * a


def _plane_basis(d: np.ndarray) -> np.ndarray:
    """(2, 3) orthonormal in-plane axes perpendicular to ``d``."""
    helper = np.eye(3)[int(np.argmin(np.abs(d)))]
    e1 = np.cross(d, helper)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(d / np.linalg.norm(d), e1)])


def _projected_lattice(cell: np.ndarray, d: np.ndarray, plane: np.ndarray, area: float) -> np.ndarray:
    """Reduced basis [A] of the lattice's projection along ``d`` (primitive cell of ``area``)."""
    vectors = np.array([n for n in product(range(-4, 5), repeat=3) if any(n)], float) @ cell @ plane.T
    vectors = vectors[np.argsort(np.hypot(*vectors.T), kind="stable")]
    vectors = vectors[np.hypot(*vectors.T) > 1e-6 * math.sqrt(area)]
    first = vectors[0]
    for v in vectors[1:]:
        if abs(abs(first[0] * v[1] - first[1] * v[0]) - area) < 1e-6 * area:
            return _reduce(np.stack([first, v]))
    raise ValueError("the projected lattice was not found among lattice vectors of index <= 4: use a lower zone axis")


def _wrap(points: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Fractional coordinates in [0, 1) of points in a 2-D periodic cell."""
    frac = points @ np.linalg.inv(basis)
    frac -= np.floor(frac)
    frac[frac > 1 - 1e-9] = 0.0
    return frac


def _periodic_clusters(frac: np.ndarray, basis: np.ndarray, merge: float) -> np.ndarray:
    """Cluster label of each point: points closer than ``merge`` (periodic images included) are one."""
    n = len(frac)
    label = np.arange(n)
    shifts = np.array(list(product((-1, 0, 1), repeat=2)), float)
    for i in range(n):
        diff = (frac[None, :, :] - frac[i] + shifts[:, None, :]) @ basis
        close = np.nonzero((np.hypot(diff[..., 0], diff[..., 1]) < merge).any(axis=0))[0]
        label[np.isin(label, label[close])] = label[i]
    return np.unique(label, return_inverse=True)[1]


def project(
    cell_angstrom: np.ndarray,
    symbols: list[str],
    fractional: np.ndarray,
    zone_axis: tuple[int, int, int],
    *,
    exponent: float = 1.7,
    merge_nm: float = 0.08,
) -> ProjectedCell:
    """Project a crystal along a zone axis into its 2-D cell of atom columns.

    Parameters
    ----------
    cell_angstrom : (3, 3) array_like
        Cell vectors (rows) [Angstrom].
    symbols : list of str
        Element of each atom.
    fractional : (A, 3) array_like
        Fractional positions of the atoms in the cell.
    zone_axis : (3,) tuple of int
        Beam direction [u v w] in the basis of the cell.
    exponent : float
        Z exponent of the projected-Z intensity estimate.
    merge_nm : float
        Atoms closer than this in projection are one column [nm] (below the
        ~0.1 nm probe: one image column).

    Returns
    -------
    ProjectedCell

    Raises
    ------
    ValueError
        For a zero zone axis, an unknown element or a cell without heavy atoms.
    """
    cell = np.asarray(cell_angstrom, float).reshape(3, 3)
    uvw = np.asarray(zone_axis, int)
    if not uvw.any():
        raise ValueError(f"zone_axis={tuple(zone_axis)}: must be non-zero")
    unknown = sorted(set(symbols) - set(ATOMIC_NUMBER))
    if unknown:
        raise ValueError(f"unknown element symbols {unknown}")
    uvw = uvw // math.gcd(*(int(x) for x in uvw))
    d = uvw @ cell
    repeat = float(np.linalg.norm(d))
    plane = _plane_basis(d)
    area = abs(float(np.linalg.det(cell))) / repeat
    basis = _projected_lattice(cell, d, plane, area)
    points = np.asarray(fractional, float).reshape(-1, 3) @ cell @ plane.T
    frac = _wrap(points, basis)
    z = np.array([ATOMIC_NUMBER[s] for s in symbols])
    cluster = _periodic_clusters(frac, basis, merge_nm * 10)
    sites, names, intensity = [], [], []
    for k in range(cluster.max() + 1):
        members = np.nonzero(cluster == k)[0]
        if z[members].max() < MIN_COLUMN_Z:
            continue
        ref = frac[members[0]]
        offsets = (frac[members] - ref + 0.5) % 1.0 - 0.5
        sites.append(((ref + offsets.mean(axis=0)) % 1.0) @ basis / 10)
        names.append(site_name([symbols[m] for m in members]))
        intensity.append(float(np.sum(z[members] ** exponent)) / (repeat / 10))
    if not sites:
        raise ValueError(f"the structure has no atoms heavier than Ne (Z >= {MIN_COLUMN_Z}): no columns to see")
    return ProjectedCell(
        cell_nm=basis / 10,
        sites_nm=np.array(sites),
        names=np.array(names),
        intensity=np.array(intensity),
        repeat_nm=repeat / 10,
    )


def _generated_group(frac: np.ndarray, *, max_denominator: int = 24) -> np.ndarray:
    """All points (fractional, mod 1) of the lattice generated by Z^2 and ``frac``."""
    scaled = frac * max_denominator
    if np.abs(scaled - np.round(scaled)).max() > 1e-3:
        raise ValueError("column positions are not rational in the cell (denominator > 24)")
    gens = {tuple(int(x) % max_denominator for x in np.round(p)) for p in scaled}
    group = {(0, 0)}
    frontier = list(group)
    while frontier:
        new = []
        for p in frontier:
            for g in gens:
                q = ((p[0] + g[0]) % max_denominator, (p[1] + g[1]) % max_denominator)
                if q not in group:
                    group.add(q)
                    new.append(q)
        frontier = new
    return np.array(sorted(group), float) / max_denominator


def _grid(projected: ProjectedCell, keep: np.ndarray, tol_nm: float) -> ColumnGrid:
    """The grid generated by the kept columns, with every column that sits on a grid point."""
    basis = projected.cell_nm
    frac = _wrap(projected.sites_nm, basis)
    origin = frac[np.nonzero(keep)[0][0]]
    points = _generated_group((frac[keep] - origin) % 1.0)
    candidates = np.array([p + s for p in points for s in product((-1, 0, 1), repeat=2)], float) @ basis
    candidates = candidates[np.argsort(np.hypot(*candidates.T), kind="stable")]
    candidates = candidates[np.hypot(*candidates.T) > 1e-9]
    area = abs(float(np.linalg.det(basis))) / len(points)
    first = candidates[0]
    second = next(v for v in candidates[1:] if abs(abs(first[0] * v[1] - first[1] * v[0]) - area) < 1e-6 * area)
    vectors = _reduce(np.stack([first, second]))
    to_steps = np.linalg.inv(vectors)
    steps = np.round((points @ basis) @ to_steps).astype(int)
    names, intensity_list = [], []
    for p in points:
        diff = (frac - origin - p + 0.5) % 1.0 - 0.5
        here = np.hypot(*(diff @ basis).T) < tol_nm
        names.append("-".join(projected.names[here]) if here.any() else "empty")
        intensity_list.append(float(projected.intensity[here].sum()))
    intensity = np.array(intensity_list)
    return ColumnGrid(
        vectors_nm=vectors,
        cell=np.round(basis @ to_steps).astype(int),
        site_steps=steps,
        names=np.array(names),
        relative_intensity=intensity / intensity.max(),
    )


def column_grids(projected: ProjectedCell, *, min_visible: float = 0.25, tol_nm: float = 0.02) -> list[ColumnGrid]:
    """The column grids an image of the projection can show.

    Parameters
    ----------
    projected : ProjectedCell
        From :func:`project`.
    min_visible : float
        Columns fainter than this fraction of the brightest may be invisible;
        when there are such columns, the grid of the brighter ones is returned too.
    tol_nm : float
        A column within this of a grid point sits on it [nm].

    Returns
    -------
    list of ColumnGrid
        The grid of all heavy columns, then (if different) the grid of the visible ones.
    """
    relative = projected.intensity / projected.intensity.max()
    grids = [_grid(projected, np.ones(len(relative), bool), tol_nm)]
    visible = relative >= min_visible
    if not visible.all():
        bright = _grid(projected, visible, tol_nm)
        if not np.allclose(np.abs(bright.vectors_nm), np.abs(grids[0].vectors_nm)):
            grids.append(bright)
    return grids
