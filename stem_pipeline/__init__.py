"""stem_pipeline: quantitative HAADF-STEM analysis of halide-perovskite quantum dots.

From a raw micrograph to atom columns, a phase map of CsPbI3-like
(brightened-and-dimmed, ``ordered``) and PbI2/FAPbI3-like (``uniform``)
regions, phase fractions with confidence intervals, and a quantitative
comparison with abTEM simulations.

``import stem_pipeline`` imports no third-party library (numpy loads with the first
result type or function used); the heavy libraries (HyperSpy, abTEM, atomap,
scikit-learn) load inside the functions that need them. The result types
(:class:`Columns`, :class:`PipelineResult`, ...), :func:`analyze`, :func:`load`,
:class:`PipelineConfig` and the conversions of :mod:`stem_pipeline.io`
(:func:`to_signal`, :func:`result_signal`, :func:`to_dataframe`, :func:`to_atomap`)
are imported on first use (module ``__getattr__``), so they cost nothing until then::

    import stem_pipeline as sp
    result = sp.analyze(sp.load("dot.dm4"))   # or sp.analyze(hs.load("dot.dm4"))
    df = sp.to_dataframe(result)              # every columns.csv column, units in df.attrs
    region_map = sp.result_signal(result, "region_map")
"""

from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from ._types import AreaFractions, Columns, Comparison, Lattice, Micrograph, PhaseLabels, PipelineResult

__version__ = "0.1.0"

#: Public names loaded on first access: name -> (module, attribute). The result types too, so that
#: ``import stem_pipeline`` leaves numpy unloaded: the console script (:func:`stem_pipeline.cli.run`) sets
#: OpenBLAS's thread count before numpy loads it (:func:`stem_pipeline.cli.single_threaded_blas`).
_LAZY = {
    "AreaFractions": ("_types", "AreaFractions"),
    "Columns": ("_types", "Columns"),
    "Comparison": ("_types", "Comparison"),
    "Lattice": ("_types", "Lattice"),
    "Micrograph": ("_types", "Micrograph"),
    "PhaseLabels": ("_types", "PhaseLabels"),
    "PipelineResult": ("_types", "PipelineResult"),
    "analyze": ("pipeline", "analyze"),
    "PipelineConfig": ("pipeline", "PipelineConfig"),
    "load": ("io", "load"),
    "save": ("io", "save"),
    "to_signal": ("io", "to_signal"),
    "result_signal": ("io", "result_signal"),
    "to_dataframe": ("io", "to_dataframe"),
    "to_atomap": ("io", "to_atomap"),
}


#: Subpackages reachable as attributes (``stem_pipeline.report.plot_overlay``), imported on first use.
_SUBMODULES = frozenset(
    {"io", "report", "synthetic", "classify", "columns", "denoise", "lattice", "compare", "simulate", "field", "series"}
)


def __getattr__(name: str) -> Any:
    """Import :data:`_LAZY` names and :data:`_SUBMODULES` on first use (keeps ``import stem_pipeline`` light)."""
    from importlib import import_module

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(f".{module}", __name__), attr)
    elif name in _SUBMODULES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "AreaFractions",
    "Columns",
    "Comparison",
    "InputError",
    "Lattice",
    "Micrograph",
    "PhaseLabels",
    "PipelineConfig",
    "PipelineResult",
    "__version__",
    "analyze",
    "load",
    "result_signal",
    "save",
    "to_atomap",
    "to_dataframe",
    "to_signal",
]
