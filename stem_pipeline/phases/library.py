"""A phase is data: a named structure and zone axis, read from a YAML file.

One file per phase, e.g.::

    name: CsPbBr3 [001]
    zone_axis: [0, 0, 1]
    structure:
      cell_angstrom: [[5.874, 0, 0], [0, 5.874, 0], [0, 0, 5.874]]
      atoms:
        - [Pb, 0, 0, 0]
        - [Br, 0.5, 0, 0]
        ...

The structure is given inline (cell and fractional positions: no extra
dependency), as an ASE builder of :mod:`stem_pipeline.simulate.structures`
(``builder: cspbi3`` with its keyword arguments and an optional element
``replace`` map), or as a CIF file (``cif: path``, relative to the YAML file);
the last two need the ``[simulate]`` extra (ASE). Everything else (the columns,
their spacing, their expected intensities) is derived by
:mod:`stem_pipeline.phases.sites`. The default library ships in
``stem_pipeline/phases/data``; a user adds a phase by writing one more file.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from ..config import StrictModel, load_yaml
from .sites import ColumnGrid, ProjectedCell, column_grids, project

__all__ = ["DEFAULT_DIR", "Phase", "StructureSpec", "default_library", "load_library", "load_phase", "select_phases"]

#: Folder of the phase files shipped with the package.
DEFAULT_DIR = Path(__file__).resolve().parent / "data"


class StructureSpec(StrictModel):
    """A crystal structure: inline, an ASE builder, or a CIF file (exactly one)."""

    cell_angstrom: list[list[float]] | None = Field(
        None, description="Inline structure: the three cell vectors (rows) [Angstrom]."
    )
    atoms: list[tuple[str, float, float, float]] | None = Field(
        None, description="Inline structure: one [element, x, y, z] per atom, fractional coordinates."
    )
    builder: str | None = Field(
        None, description="An ASE builder of stem_pipeline.simulate.structures: 'cspbi3', 'fapbi3' or 'pbi2'."
    )
    builder_args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the builder, e.g. {a_angstrom: 5.874}."
    )
    replace: dict[str, str] = Field(
        default_factory=dict, description="Elements to substitute in a built or read structure, e.g. {I: Br}."
    )
    cif: str | None = Field(None, description="A CIF file (relative paths: to the phase's YAML file).")

    @model_validator(mode="after")
    def _one_source(self) -> StructureSpec:
        given = [self.atoms is not None, self.builder is not None, self.cif is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'atoms' (with 'cell_angstrom'), 'builder' or 'cif'")
        if (self.atoms is None) != (self.cell_angstrom is None):
            raise ValueError("'atoms' and 'cell_angstrom' go together")
        if self.cell_angstrom is not None and np.asarray(self.cell_angstrom).shape != (3, 3):
            raise ValueError("'cell_angstrom' must be three vectors of three numbers")
        return self


class Phase(StrictModel):
    """A library phase: a structure seen along a zone axis."""

    name: str = Field(description="The phase's name, as written in columns.csv and summary.json.")
    zone_axis: tuple[int, int, int] = Field(description="Beam direction [u v w] in the basis of the cell.")
    structure: StructureSpec = Field(description="The crystal structure.")
    description: str = Field("", description="What the phase is, for people.")
    min_visible: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="Columns fainter than this fraction of the brightest may be invisible in an image, so the "
        "grid of the brighter ones is a match too (Br-only columns of CsPbBr3 at 0.19).",
    )
    source_file: str | None = Field(None, description="The YAML file the phase was read from (set on loading).")

    def atoms_data(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Cell (3, 3) [Angstrom], element symbols and fractional positions (A, 3) of the structure."""
        spec = self.structure
        if spec.atoms is not None:
            symbols = [a[0] for a in spec.atoms]
            return np.asarray(spec.cell_angstrom, float), symbols, np.array([a[1:] for a in spec.atoms], float)
        atoms = _ase_atoms(spec, self.source_file)
        symbols = [spec.replace.get(s, s) for s in atoms.get_chemical_symbols()]
        return np.asarray(atoms.cell, float), symbols, np.asarray(atoms.get_scaled_positions(wrap=True))

    def projected(self, *, exponent: float = 1.7) -> ProjectedCell:
        """The projected cell of columns with projected-Z intensities (see :func:`~.sites.project`)."""
        cell, symbols, frac = self.atoms_data()
        try:
            return project(cell, symbols, frac, self.zone_axis, exponent=exponent)
        except ValueError as exc:
            raise ValueError(f"phase {self.name!r} ({self.source_file or 'inline'}): {exc}") from exc

    def grids(self, *, exponent: float = 1.7) -> list[ColumnGrid]:
        """The column grids an image of this phase can show (see :func:`~.sites.column_grids`).

        Derived once per phase (by value) and exponent: the phase matching asks for them per group of
        columns and per split, 32 times for a 1024^2 dot (~0.03 s CPU, benchmarks/process.py).
        """
        return list(_grids(self.model_dump_json(), exponent))


@functools.lru_cache(maxsize=64)
def _grids(phase_json: str, exponent: float) -> tuple[ColumnGrid, ...]:
    """:meth:`Phase.grids` of the phase ``phase_json`` (its JSON: a key that changes with every field)."""
    phase = Phase.model_validate_json(phase_json)
    return tuple(column_grids(phase.projected(exponent=exponent), min_visible=phase.min_visible))


def _ase_atoms(spec: StructureSpec, source_file: str | None):
    """The ASE Atoms of a builder or CIF structure; a clear error without the [simulate] extra."""
    try:
        import ase.io  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{source_file or 'phase'}: a 'builder' or 'cif' structure needs ASE: pip install 'stem-pipeline[simulate]' "
            "(or give the structure inline with 'cell_angstrom' and 'atoms')"
        ) from exc
    if spec.cif is not None:
        import ase.io

        path = Path(spec.cif)
        if not path.is_absolute() and source_file:
            path = Path(source_file).parent / path
        try:
            return ase.io.read(path)
        except (OSError, ValueError, StopIteration) as exc:
            raise ValueError(f"{source_file or 'phase'}: cannot read the CIF {path}: {exc}") from exc
    from ..simulate import structures

    builders = {"cspbi3": structures.cspbi3, "fapbi3": structures.fapbi3, "pbi2": structures.pbi2}
    if spec.builder not in builders:
        raise ValueError(f"{source_file or 'phase'}: builder={spec.builder!r}: use one of {sorted(builders)}")
    return builders[spec.builder](**spec.builder_args)


def load_phase(path: str | os.PathLike) -> Phase:
    """Read and check one phase file: the structure must project to columns.

    Raises
    ------
    ValueError
        Naming the file, for bad YAML, a bad key or a structure without columns.
    """
    phase = load_yaml(Phase, path).model_copy(update={"source_file": str(Path(path).resolve())})
    phase.grids()  # derive once: an unusable structure fails here, naming the file
    return phase


def load_library(paths: list[str | os.PathLike] | tuple = (), *, defaults: bool = True) -> dict[str, Phase]:
    """The phase library: the shipped phases and those in ``paths`` (YAML files or folders of them).

    Parameters
    ----------
    paths : list of path
        Extra phase files, or folders whose ``*.yaml``/``*.yml`` files are phases.
    defaults : bool
        Include the shipped phases (``stem_pipeline/phases/data``).

    Returns
    -------
    dict of str to Phase
        By name, in load order.

    Raises
    ------
    ValueError
        For a missing path, a bad file, or two phases with one name (both files named).
    """
    files = sorted(DEFAULT_DIR.glob("*.yaml")) if defaults else []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p}: no such phase file or folder")
    library: dict[str, Phase] = {}
    for f in files:
        phase = _cached_phase(str(Path(f).resolve()), Path(f).stat().st_mtime_ns)
        if phase.name in library:
            raise ValueError(f"{f}: phase name {phase.name!r} is already used by {library[phase.name].source_file}")
        library[phase.name] = phase
    return library


@functools.lru_cache(maxsize=256)
def _cached_phase(path: str, mtime_ns: int) -> Phase:
    """One phase file, read once per modification."""
    return load_phase(path)


def default_library() -> dict[str, Phase]:
    """The shipped phases by name."""
    return load_library()


def select_phases(config) -> dict[str, Phase]:
    """The library a :class:`~stem_pipeline.phases.config.PhasesConfig` asks for: shipped and extra files, by name.

    Raises
    ------
    ValueError
        For a name in ``config.phases`` that no phase file holds (the known names listed).
    """
    library = load_library(config.extra_files)
    if config.phases is None:
        return library
    unknown = [name for name in config.phases if name not in library]
    if unknown:
        raise ValueError(f"phases {unknown} are not in the library; known phases: {sorted(library)}")
    return {name: library[name] for name in config.phases}
