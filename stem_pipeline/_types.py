"""Frozen data containers passed between the pipeline stages.

Every container is a frozen dataclass of numpy arrays and plain values with a
lossless ``to_dict``/``from_dict`` pair and ``save_npz``/``load_npz``. Pixel
positions are (row, col) throughout; physical units are in the field names.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ._atomic import atomic_write

T = TypeVar("T", bound="_Struct")

#: Phase label codes used by :class:`PhaseLabels` (index = code).
LABELS: tuple[str, ...] = ("ordered", "uniform")
#: Column contrast codes used by :class:`PhaseLabels` (index = code).
CONTRASTS: tuple[str, ...] = ("bright", "dim", "uniform")
#: Marker colours by contrast name (the paper's: red bright, purple dim, green uniform).
CONTRAST_COLOURS: dict[str, str] = {"bright": "#e41a1c", "dim": "#8e44ad", "uniform": "#2ca02c"}
#: Colour of columns without labels (the two-phase model does not apply): visible on a grey image.
UNLABELLED_COLOUR = "#00bfff"
#: Region-map codes: 0 outside the crystal, then 1 + label code.
REGION_OUTSIDE, REGION_ORDERED, REGION_UNIFORM = 0, 1, 2


#: Units of the columns of :meth:`Columns.to_dataframe` (and ``columns.csv``); "" for none.
def _encode(value: Any) -> Any:
    """Make a field value storable (dataclasses become dicts, tuples of them lists of dicts)."""
    if isinstance(value, _Struct):
        return value.to_dict()
    if isinstance(value, tuple) and any(isinstance(v, _Struct) for v in value):
        return [_encode(v) for v in value]
    return value


def _short(value: Any) -> str:
    """A one-line description of a field value: arrays by shape and dtype, never their contents."""
    if isinstance(value, np.ndarray):
        return f"<{'x'.join(map(str, value.shape)) or 'scalar'} {value.dtype}>"
    if isinstance(value, _Struct):
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        return "{...}" if value else "{}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Struct:
    """Mixin giving a frozen dataclass dict and ``.npz`` round trips, and a short repr."""

    #: Names of fields holding nested structs, mapped to their types.
    _nested: ClassVar[dict[str, str]] = {}
    #: Names of fields holding tuples of nested structs, mapped to their types.
    _nested_tuples: ClassVar[dict[str, str]] = {}

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={_short(getattr(self, f.name))}" for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({fields})"

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a dict (nested containers become dicts)."""
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Rebuild the container from :meth:`to_dict` output."""
        kwargs = dict(data)
        for name, type_name in cls._nested.items():
            if kwargs.get(name) is not None and isinstance(kwargs[name], dict):
                kwargs[name] = _STRUCTS[type_name].from_dict(kwargs[name])
        for name, type_name in cls._nested_tuples.items():
            if name in kwargs:
                kwargs[name] = tuple(_STRUCTS[type_name].from_dict(v) for v in kwargs[name])
        return cls(**kwargs)

    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write the container to ``path`` (``.npz``) atomically.

        Arrays are stored as arrays; everything else as JSON.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        plain: dict[str, Any] = {}
        _flatten(self.to_dict(), "", arrays, plain)
        arrays["__plain__"] = np.frombuffer(json.dumps(plain).encode(), dtype=np.uint8)
        return atomic_write(path, lambda tmp: np.savez_compressed(tmp, allow_pickle=False, **arrays))

    @classmethod
    def load_npz(cls: type[T], path: str | os.PathLike) -> T:
        """Read a container written by :meth:`save_npz`."""
        with np.load(path, allow_pickle=False) as npz:
            plain = json.loads(npz["__plain__"].tobytes().decode())
            arrays = {k: npz[k] for k in npz.files if k != "__plain__"}
        return cls.from_dict(_unflatten(arrays, plain))


def _flatten(d: dict, prefix: str, arrays: dict, plain: dict) -> None:
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(k, str) for k in value)
            and any(isinstance(v, (np.ndarray, dict)) for v in value.values())
        ):
            plain[name] = {"__nested__": True}
            _flatten(value, f"{name}/", arrays, plain)
        else:
            plain[name] = value


def _unflatten(arrays: dict, plain: dict) -> dict:
    out: dict = {}

    def put(name: str, value: Any) -> None:
        parts = name.split("/")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if isinstance(value, dict) and value.get("__nested__"):
            node.setdefault(parts[-1], {})
        else:
            node[parts[-1]] = value

    for name in sorted(plain, key=lambda s: s.count("/")):
        put(name, plain[name])
    for name, value in arrays.items():
        put(name, value)
    return out


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Micrograph(_Struct):
    """A 2-D image with its calibration.

    Parameters
    ----------
    data : (M, N) ndarray of float32
        The image, rows first.
    pixel_size_nm : float or None
        Pixel size [nm]; None when the file carries no calibration.
    source : str or None
        Where the image came from (a path, or a description).
    metadata : dict
        Original units and calibration, and microscope fields where known
        (``energy_kev``, ``convergence_mrad``, ``detector``, ``dwell_time_s``).
    """

    data: np.ndarray
    pixel_size_nm: float | None = None
    source: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 2:
            raise ValueError(f"Micrograph data must be 2-D, got shape {data.shape}")
        if data.dtype != np.float32:
            data = data.astype(np.float32)
        object.__setattr__(self, "data", data)
        if self.pixel_size_nm is not None:
            object.__setattr__(self, "pixel_size_nm", float(self.pixel_size_nm))

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (rows, cols)."""
        return (int(self.data.shape[0]), int(self.data.shape[1]))

    def replace(self, **changes: Any) -> Micrograph:
        """Return a copy with some fields changed (e.g. denoised ``data``)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True, eq=False)
class Lattice(_Struct):
    """The column grid of a crystal image (:func:`stem_pipeline.lattice.find_lattice`).

    The grid of the atom columns (in CsPbI3 [001] the a/2 grid), not the
    bright/dim superlattice.

    Parameters
    ----------
    vectors_px : (2, 2) ndarray
        The two shortest grid vectors, one per row, each (row, col) [px].
    spacing_px : float
        Length of the shortest vector [px].
    angle_deg : float
        Angle between the two vectors [deg] (between 60 and 90 for a reduced basis).
    strength : float
        How crystalline the image is: the smaller ratio of peak power to the
        fitted noise floor (:mod:`stem_pipeline.spectrum`) of the two
        fundamental Bragg peaks of the (Hann-tapered) power spectrum.
    foreign_peaks : int
        Bragg peaks (at least 0.05 of the strongest's excess power) that
        are neither on this grid's reciprocal lattice nor at its half-integer
        superlattice positions: a second lattice (another phase or grain).
    """

    vectors_px: np.ndarray
    spacing_px: float
    angle_deg: float
    strength: float
    foreign_peaks: int = 0

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors_px, dtype=np.float64).reshape(2, 2)
        object.__setattr__(self, "vectors_px", v)
        for name in ("spacing_px", "angle_deg", "strength"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "foreign_peaks", int(self.foreign_peaks))

    @property
    def reciprocal_px(self) -> np.ndarray:
        """(2, 2) reciprocal vectors (row, col) [cycles/px], ``g_i . v_j = delta_ij``."""
        return np.linalg.inv(self.vectors_px).T

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (vectors as nested lists)."""
        return {
            "vectors_px": self.vectors_px.tolist(),
            "spacing_px": self.spacing_px,
            "angle_deg": self.angle_deg,
            "strength": self.strength,
            "foreign_peaks": self.foreign_peaks,
        }


@dataclasses.dataclass(frozen=True, eq=False)
class Columns(_Struct):
    """Atom columns as a struct of arrays (one entry per column).

    Parameters
    ----------
    rc : (N, 2) ndarray of float64
        Column positions (row, col) [px].
    amplitude : (N,) ndarray, optional
        Gaussian peak height above the local background [counts].
    sigma : (N, 2) ndarray, optional
        Gaussian widths along rows and cols [px].
    background : (N,) ndarray, optional
        Local background level at the column centre [counts].
    volume : (N,) ndarray, optional
        Gaussian volume ``2 pi A s_r s_c`` (scattering cross-section) [counts px^2].
    cell_intensity : (N,) ndarray, optional
        Background-subtracted intensity integrated over the Voronoi cell
        clipped to the fit window [counts].
    peak : (N,) ndarray, optional
        Raw image value at the nearest pixel [counts].
    rc_std : (N, 2) ndarray, optional
        Position uncertainty (row, col) [px].
    fit_ok : (N,) ndarray of bool, optional
        False where the refinement failed (the column keeps its input position).
    lattice : (N,) ndarray of int8, optional
        Index of the lattice the column was found on (0 the strongest, see
        :func:`stem_pipeline.lattice.find_lattices`): ``PipelineResult.lattices[k]``.
    pixel_size_nm : float or None
        Pixel size [nm], for conversion to physical units.
    """

    rc: np.ndarray
    amplitude: np.ndarray | None = None
    sigma: np.ndarray | None = None
    background: np.ndarray | None = None
    volume: np.ndarray | None = None
    cell_intensity: np.ndarray | None = None
    peak: np.ndarray | None = None
    rc_std: np.ndarray | None = None
    fit_ok: np.ndarray | None = None
    lattice: np.ndarray | None = None
    pixel_size_nm: float | None = None

    def __post_init__(self) -> None:
        rc = np.asarray(self.rc, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "rc", rc)
        n = len(rc)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("rc", "pixel_size_nm") or value is None:
                continue
            value = np.asarray(value)
            if len(value) != n:
                raise ValueError(f"Columns.{f.name} has {len(value)} entries, rc has {n}")
            object.__setattr__(self, f.name, value)

    def __len__(self) -> int:
        return len(self.rc)

    @property
    def intensity(self) -> np.ndarray:
        """The intensity used for classification: Gaussian volume if fitted, else cell or peak."""
        for name in ("volume", "cell_intensity", "peak"):
            value = getattr(self, name)
            if value is not None:
                return value
        raise ValueError("Columns carry no intensity yet; run stem_pipeline.columns.measure_intensities")

    def replace(self, **changes: Any) -> Columns:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def concatenate(cls, parts: list[Columns]) -> Columns:
        """All columns of several sets, in order (empty sets are skipped; a field missing in any set is dropped)."""
        parts = [p for p in parts if len(p)] or parts[:1]
        fields = {}
        for f in dataclasses.fields(cls):
            if f.name == "pixel_size_nm":
                continue
            values = [getattr(p, f.name) for p in parts]
            fields[f.name] = None if any(v is None for v in values) else np.concatenate(values)
        return cls(**fields, pixel_size_nm=parts[0].pixel_size_nm)  # type: ignore[arg-type]  # rc is never None

    def subset(self, index: np.ndarray) -> Columns:
        """Return the columns selected by a boolean mask or an index array."""
        changes = {
            f.name: getattr(self, f.name)[index]
            for f in dataclasses.fields(self)
            if f.name != "pixel_size_nm" and getattr(self, f.name) is not None
        }
        return self.replace(**changes)

    def __repr__(self) -> str:
        scale = "uncalibrated" if self.pixel_size_nm is None else f"pixel_size_nm={self.pixel_size_nm:.4g}"
        fields = [f.name for f in dataclasses.fields(self) if f.name not in ("rc", "pixel_size_nm")]
        present = [name for name in fields if getattr(self, name) is not None]
        return f"Columns({len(self)} columns, {scale}, fields: {', '.join(['rc', *present])})"

    @property
    def intensity_source(self) -> str | None:
        """The field :attr:`intensity` comes from: ``volume``, ``cell_intensity``, ``peak`` or None."""
        return next((n for n in ("volume", "cell_intensity", "peak") if getattr(self, n) is not None), None)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class PhaseLabels(_Struct):
    """Per-column phase labels and the pixel region map.

    Parameters
    ----------
    label : (N,) ndarray of int8
        Index into :data:`LABELS` (0 ``ordered``, 1 ``uniform``).
    contrast : (N,) ndarray of int8
        Index into :data:`CONTRASTS` (0 ``bright``, 1 ``dim``, 2 ``uniform``).
    order_parameter : (N,) ndarray of float
        Local bright/dim alternation strength the labels were derived from.
    region_map : (M, K) ndarray of int8
        0 outside the crystal, 1 ordered, 2 uniform.
    """

    label: np.ndarray
    contrast: np.ndarray
    order_parameter: np.ndarray
    region_map: np.ndarray

    @property
    def label_names(self) -> np.ndarray:
        """Labels as strings."""
        return np.asarray(LABELS, dtype=object)[self.label]

    @property
    def contrast_names(self) -> np.ndarray:
        """Contrasts as strings."""
        return np.asarray(CONTRASTS, dtype=object)[self.contrast]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class AreaFractions(_Struct):
    """Phase area fractions of the crystal area with a 95 % interval.

    Parameters
    ----------
    ordered, uniform : float
        Area fractions (sum to 1 over the crystal area).
    uniform_ci95 : tuple of float
        95 % interval of ``uniform``.
    crystal_area_nm2 : float or None
        Crystal area [nm^2] (None without calibration).
    method : str
        How the interval was obtained.
    """

    ordered: float
    uniform: float
    uniform_ci95: tuple[float, float]
    crystal_area_nm2: float | None = None
    method: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "uniform_ci95", tuple(float(v) for v in self.uniform_ci95))


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Comparison(_Struct):
    """One simulated model compared with one experimental region.

    ``defocus_nm`` (and its std) is None unless a defocus series was fitted.
    """

    model: str
    region: str
    ncc: float
    ssim: float
    rmse: float
    chi2: float | None
    thickness_nm: float | None
    thickness_nm_std: float | None
    source_fwhm_nm: float | None
    source_fwhm_nm_std: float | None
    column_ratio_exp: float | None
    column_ratio_sim: float | None
    defocus_nm: float | None = None
    defocus_nm_std: float | None = None


#: Columns of ``dots.csv`` (the output contract), in order.
DOT_COLUMNS = (
    "dot",
    "x_px",
    "y_px",
    "x_nm",
    "y_nm",
    "edge_nm",
    "area_nm2",
    "aspect",
    "orientation_deg",
    "lattice_orientation_deg",
    "touches_border",
    "status",
    "message",
    "n_columns",
    "ordered_fraction",
    "uniform_fraction",
    "uniform_ci95_lo",
    "uniform_ci95_hi",
)
#: The ``dots.csv`` columns of the phase-library stage, after :data:`DOT_COLUMNS`: the dot's calibration
#: check, then per phase found ``phase_fraction:NAME``, ``phase_ci95_lo:NAME`` and ``phase_ci95_hi:NAME``.
PHASE_DOT_PREFIXES = ("phase_fraction:", "phase_ci95_lo:", "phase_ci95_hi:")


def dot_columns(records: list) -> list[str]:
    """The columns of ``dots.csv`` for these records: :data:`DOT_COLUMNS`, then the phase columns they hold.

    The phase columns (``calibration_status`` and :data:`PHASE_DOT_PREFIXES` per phase, phases in order of
    first appearance) are there only when the phase-library stage ran on some dot.
    """
    extra = dict.fromkeys(k for r in records for k in r if k not in DOT_COLUMNS)
    return list(DOT_COLUMNS) + list(extra)


@dataclasses.dataclass(frozen=True, eq=False)
class PipelineResult(_Struct):
    """Everything :func:`stem_pipeline.pipeline.analyze` produced for one image."""

    _nested: ClassVar[dict[str, str]] = {
        "micrograph": "Micrograph",
        "columns": "Columns",
        "labels": "PhaseLabels",
        "fractions": "AreaFractions",
    }
    _nested_tuples: ClassVar[dict[str, str]] = {"lattices": "Lattice"}

    micrograph: Micrograph
    status: str
    denoised: np.ndarray | None = None
    crystal_mask: np.ndarray | None = None
    columns: Columns | None = None
    labels: PhaseLabels | None = None
    fractions: AreaFractions | None = None
    #: The column grids found (:func:`stem_pipeline.lattice.find_lattices`), the strongest first; empty when
    #: none was found (and for a field of dots: each dot has its own).
    lattices: tuple[Lattice, ...] = ()
    config_hash: str = ""
    timings_s: dict = dataclasses.field(default_factory=dict)
    message: str | None = None
    #: The phase-library stage (:func:`stem_pipeline.phases.assign_phases`): per-column ``phase`` and ``site``,
    #: ``phase_fractions``, ``groups`` and ``calibration``; empty when it did not run.
    phases: dict = dataclasses.field(default_factory=dict)
    #: One ``dots.csv`` record (:data:`DOT_COLUMNS`) per dot: the crystal as one dot for
    #: :func:`stem_pipeline.pipeline.analyze`, every dot of a field for :func:`stem_pipeline.field.analyze_field`.
    dots: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lattices", tuple(self.lattices))

    def dots_dataframe(self):
        """The dots (:attr:`dots`) as a pandas DataFrame with the columns of :func:`dot_columns`."""
        import pandas as pd

        return pd.DataFrame(self.dots, columns=dot_columns(self.dots))

    def _summary_items(self) -> list[tuple[str, str]]:
        m = self.micrograph
        scale = "uncalibrated" if m.pixel_size_nm is None else f"{m.pixel_size_nm:.4g} nm/px"
        items = [
            ("source", str(m.source)),
            ("image", f"{m.shape[0]}x{m.shape[1]} px, {scale}"),
            ("status", self.status),
        ]
        if self.columns is not None:
            items.append(("columns", str(len(self.columns))))
        if self.fractions is not None:
            f = self.fractions
            lo, hi = f.uniform_ci95
            items.append(("ordered", f"{f.ordered:.3f}"))
            items.append(("uniform", f"{f.uniform:.3f} [95% CI {lo:.3f}, {hi:.3f}]"))
        if self.message:
            items.append(("message", self.message))
        return items

    def __repr__(self) -> str:
        return "PipelineResult(" + ", ".join(f"{k}={v}" for k, v in self._summary_items()) + ")"

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>{escape(v)}</td></tr>"
            for k, v in self._summary_items()
        )
        return f"<table><caption>PipelineResult</caption>{rows}</table>"


_STRUCTS: dict[str, type[_Struct]] = {
    c.__name__: c for c in (Micrograph, Lattice, Columns, PhaseLabels, AreaFractions, Comparison, PipelineResult)
}
