"""ASE structure builders: CsPbI3, FAPbI3 (with the FA molecule), PbI2, and zone-axis cells.

Conventions
-----------
* Cubic perovskites (Pm-3m) are built with Pb at the origin (0, 0, 0), I at the
  face-edge centres (1/2, 0, 0), (0, 1/2, 0), (0, 0, 1/2) and the A cation (Cs, or
  the FA molecule's centre) at the body centre (1/2, 1/2, 1/2). In the [001]
  projection this gives Pb-I columns at the cell corners, I-only columns at the
  edge centres and A (Cs or FA) columns at the cell centre.
* PbI2 is the 2H (P-3m1, CdI2-type) polytype: Pb at (0, 0, 0), I at
  (1/3, 2/3, z_I) and (2/3, 1/3, -z_I) with z_I = 0.265, hexagonal cell with
  the 120 deg convention (a1 . a2 = -a^2/2).
* Zone axes are three-index directions [u v w] in the basis of the
  conventional cell (for PbI2 the hexagonal a1, a2, c). Use
  :func:`four_to_three_index` to convert Miller-Bravais [U V T W].
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Return ``rng`` as a Generator (seeding a new one from an int or None)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


#: Lattice constants [Angstrom].
CSPBI3_A = 6.29
FAPBI3_A = 6.36
PBI2_A = 4.557
PBI2_C = 6.979
PBI2_Z_I = 0.265

# FA = CH(NH2)2, planar, in its own frame [Angstrom]: C at the origin, N-C-N angle
# about 124 deg, C-N 1.31, C-H 1.09, N-H 1.01.
_CN, _CH, _NH, _HALF_NCN = 1.31, 1.09, 1.01, math.radians(62.0)


def _fa_molecule() -> tuple[list[str], np.ndarray]:
    """Return symbols and positions [Angstrom] of one FA molecule centred on its C atom.

    The N...N axis lies along x and the molecular plane is xz (C-H along +z).
    """
    symbols = ["C", "H"]
    pos = [np.zeros(3), np.array([0.0, 0.0, _CH])]
    for sign in (1.0, -1.0):
        u = np.array([sign * math.sin(_HALF_NCN), 0.0, -math.cos(_HALF_NCN)])
        n = _CN * u
        symbols.append("N")
        pos.append(n)
        back = -u
        for ang in (math.radians(120.0), math.radians(-120.0)):
            c, s = math.cos(ang), math.sin(ang)
            # rotate `back` in the xz plane
            h_dir = np.array([c * back[0] + s * back[2], 0.0, -s * back[0] + c * back[2]])
            symbols.append("H")
            pos.append(n + _NH * h_dir)
    return symbols, np.array(pos)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def cspbi3(*, a_angstrom: float = CSPBI3_A):
    """Cubic CsPbI3 (Pm-3m), one conventional cell.

    Parameters
    ----------
    a_angstrom : float
        Lattice constant [Angstrom].

    Returns
    -------
    atoms : ase.Atoms
        5 atoms: Pb (0,0,0), I (1/2,0,0), (0,1/2,0), (0,0,1/2), Cs (1/2,1/2,1/2).
    """
    from ase import Atoms

    return Atoms(
        "PbIIICs",
        scaled_positions=[(0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (0.5, 0.5, 0.5)],
        cell=[a_angstrom] * 3,
        pbc=True,
    )


def fapbi3(
    *,
    a_angstrom: float = FAPBI3_A,
    orientation: str = "fixed",
    rng: np.random.Generator | int | None = None,
):
    """Cubic FAPbI3 with a real FA (CH(NH2)2) molecule at the A site.

    Parameters
    ----------
    a_angstrom : float
        Lattice constant [Angstrom].
    orientation : {"fixed", "random"}
        ``"fixed"``: N...N axis along [100], molecular plane (010), C-H along [001].
        ``"random"``: a uniformly random rotation about the C atom (from ``rng``).
    rng : Generator, int or None
        Random source for ``orientation="random"``.

    Returns
    -------
    atoms : ase.Atoms
        Pb, 3 I and the 8 atoms of FA (C, 2 N, 5 H).
    """
    atoms = cspbi3(a_angstrom=a_angstrom)[:4]
    atoms.extend(_fa_atoms(np.full(3, a_angstrom / 2), orientation=orientation, rng=rng))
    return atoms


def _fa_atoms(centre: np.ndarray, *, orientation: str, rng=None):
    from ase import Atoms

    if orientation not in ("fixed", "random"):
        raise ValueError(f"orientation={orientation!r}: use 'fixed' or 'random'")
    symbols, pos = _fa_molecule()
    if orientation == "random":
        pos = pos @ _random_rotation(as_generator(rng)).T
    return Atoms(symbols, positions=pos + centre)


def pbi2(*, a_angstrom: float = PBI2_A, c_angstrom: float = PBI2_C, z_i: float = PBI2_Z_I):
    """Hexagonal 2H-PbI2 (P-3m1), one cell (1 Pb, 2 I).

    Parameters
    ----------
    a_angstrom, c_angstrom : float
        Lattice constants [Angstrom].
    z_i : float
        Fractional z of iodine.

    Returns
    -------
    atoms : ase.Atoms
        The hexagonal cell with a1 = (a, 0, 0), a2 = (-a/2, a sqrt(3)/2, 0).
    """
    from ase import Atoms

    a = a_angstrom
    cell = [[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c_angstrom]]
    return Atoms(
        "PbII",
        scaled_positions=[(0, 0, 0), (1 / 3, 2 / 3, z_i), (2 / 3, 1 / 3, 1 - z_i)],
        cell=cell,
        pbc=True,
    )


def four_to_three_index(uvtw: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """Convert a Miller-Bravais direction [U V T W] to three-index [u v w].

    u = U - T, v = V - T, w = W (then divided by the common factor).
    """
    u_, v_, t_, w_ = uvtw
    if u_ + v_ + t_ != 0:
        raise ValueError(f"[U V T W]={uvtw}: U + V + T must be 0")
    uvw = np.array([u_ - t_, v_ - t_, w_])
    g = math.gcd(*[int(x) for x in uvw]) or 1
    u, v, w = (int(x) for x in uvw // g)
    return u, v, w


def three_to_four_index(uvw: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Convert a three-index direction [u v w] to Miller-Bravais [U V T W] (integer)."""
    u, v, w = uvw
    four = np.array([2 * u - v, 2 * v - u, -(u + v), 3 * w])
    g = math.gcd(*[int(x) for x in four]) or 1
    u4, v4, t4, w4 = (int(x) for x in four // g)
    return u4, v4, t4, w4


def _perpendicular_lattice_vector(cell: np.ndarray, d: np.ndarray, *, search: int = 6) -> np.ndarray:
    """Shortest lattice vector (Cartesian) perpendicular to ``d`` (within 1e-6)."""
    best = None
    for ijk in product(range(-search, search + 1), repeat=3):
        if ijk == (0, 0, 0):
            continue
        v = np.asarray(ijk) @ cell
        perpendicular = abs(v @ d) < 1e-6 * np.linalg.norm(v) * np.linalg.norm(d)
        if perpendicular and (best is None or np.linalg.norm(v) < np.linalg.norm(best) - 1e-9):
            best = v
    if best is None:  # pragma: no cover - every rational direction has one
        raise ValueError("no lattice vector perpendicular to the zone axis")
    return best


def zone_axis_cell(atoms, zone_axis: tuple[int, int, int], *, max_repetitions: int = 8):
    """Orthogonal cell with the zone axis [u v w] along z (abTEM ``orthogonalize_cell``).

    Parameters
    ----------
    atoms : ase.Atoms
        A periodic crystal (conventional cell).
    zone_axis : (3,) tuple of int
        Direction [u v w] in the basis of ``atoms.cell``.
    max_repetitions : int
        Passed to :func:`abtem.orthogonalize_cell`; when the in-plane cell is
        not exactly periodic (e.g. PbI2 [-4 4 1], c/a irrational) abTEM
        applies a small strain, reported in ``atoms.info["strain"]``.

    Returns
    -------
    atoms : ase.Atoms
        Orthogonal cell, beam along z; ``info`` holds ``zone_axis`` and ``strain``.
    """
    import abtem

    cell = np.array(atoms.cell)
    d = np.asarray(zone_axis, dtype=float) @ cell
    if not np.any(d):
        raise ValueError(f"zone_axis={zone_axis}: must be non-zero")
    x = _perpendicular_lattice_vector(cell, d)
    y = np.cross(d, x)
    # Rotate so x -> x, y -> y, d -> z ourselves: abTEM 1.0.11's
    # ``orthogonalize_cell(plane=(v1, v2))`` fails (rotate_atoms_to_plane only
    # handles string planes), so it is called with the default plane "xy".
    rotation = np.stack([x / np.linalg.norm(x), y / np.linalg.norm(y), d / np.linalg.norm(d)])
    rotated = atoms.copy()
    rotated.set_cell(cell @ rotation.T, scale_atoms=True)
    out, transform = abtem.orthogonalize_cell(
        atoms=rotated,
        max_repetitions=max_repetitions,
        return_transform=True,
    )
    strain = np.abs(np.asarray(transform[1]) - 1).max() if transform is not None else 0.0
    out.info["zone_axis"] = tuple(int(v) for v in zone_axis)
    out.info["strain"] = float(strain)
    return out


def unit_cell(kind: str, *, a_angstrom: float | None = None, fa_orientation: str = "fixed", rng=None):
    """Conventional cell of ``kind`` in {"cspbi3", "fapbi3", "pbi2"}."""
    if kind == "cspbi3":
        return cspbi3(a_angstrom=a_angstrom or CSPBI3_A)
    if kind == "fapbi3":
        return fapbi3(a_angstrom=a_angstrom or FAPBI3_A, orientation=fa_orientation, rng=rng)
    if kind == "pbi2":
        return pbi2(a_angstrom=a_angstrom or PBI2_A)
    raise ValueError(f"kind={kind!r}: use 'cspbi3', 'fapbi3' or 'pbi2'")


def subcell_factors(cell, *, tol_angstrom: float = 0.05, min_angstrom: float = 1.0) -> tuple[int, int]:
    """How many times the projection of an orthogonal repeat cell repeats inside it along x and y.

    ``k`` along an axis when a lattice translation of ``L / k`` along that axis,
    combined with some shift along the beam (z), maps every atom of ``cell`` onto an
    atom of the same element (periodically). The columns of one ``L / k`` sub-cell
    are then those of the others, each displaced along the beam as a whole: in a
    crystal many repeats thick, only the entrance and exit surfaces differ. For
    example PbI2 [1 -1 1] (0.456 x 4.705 nm) gives (1, 9), CsPbI3 [110] (1, 2),
    CsPbI3 [001] (1, 1).

    Parameters
    ----------
    cell : ase.Atoms
        One orthogonal repeat cell (diagonal cell, z along the beam).
    tol_angstrom : float
        Largest distance [Angstrom] between a moved atom and its image.
    min_angstrom : float
        Smallest sub-cell edge considered [Angstrom].

    Returns
    -------
    (kx, ky) : tuple of int
        The largest such factor along x and along y (1 where there is none).
    """
    pos = np.asarray(cell.get_positions(), float)
    lengths = np.diag(np.asarray(cell.cell, float))
    symbols = np.asarray(cell.get_chemical_symbols())
    same = symbols[:, None] == symbols[None, :]
    # every candidate translation maps atom 0 onto an atom of its element: those fix the z shifts to try
    dz_candidates = pos[symbols == symbols[0], 2] - pos[0, 2]

    def maps_onto_itself(shift: np.ndarray) -> bool:
        d = (pos + shift)[:, None, :] - pos[None, :, :]
        d -= lengths * np.round(d / lengths)
        dist = np.where(same, np.linalg.norm(d, axis=-1), np.inf)
        return bool(np.all(dist.min(axis=1) < tol_angstrom))

    factors = []
    for axis in (0, 1):
        found = 1
        for k in range(int(lengths[axis] // min_angstrom), 1, -1):
            shift = np.zeros(3)
            shift[axis] = lengths[axis] / k
            if any(maps_onto_itself(shift + np.array([0.0, 0.0, dz])) for dz in dz_candidates):
                found = k
                break
        factors.append(found)
    return factors[0], factors[1]
