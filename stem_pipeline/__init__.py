"""stem_pipeline: quantitative HAADF-STEM analysis of halide-perovskite quantum dots.

From a raw micrograph to atom columns, a phase map of CsPbI3-like
(brightened-and-dimmed, ``ordered``) and PbI2/FAPbI3-like (``uniform``)
regions, phase fractions with confidence intervals, and a quantitative
comparison with abTEM simulations.

``import stem_pipeline`` only imports numpy; the heavy libraries (HyperSpy,
abTEM, atomap, scikit-learn) load inside the functions that need them.
"""

from ._types import (
    AreaFractions,
    Columns,
    Comparison,
    Micrograph,
    PhaseLabels,
    PipelineResult,
)
from .errors import InputError

__version__ = "0.1.0"

__all__ = [
    "AreaFractions",
    "Columns",
    "Comparison",
    "InputError",
    "Micrograph",
    "PhaseLabels",
    "PipelineResult",
    "__version__",
]
