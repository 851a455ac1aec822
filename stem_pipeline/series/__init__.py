"""Frame series and beam damage: the as-synthesised uniform fraction, extrapolated to zero dose.

``analyze_series(stack, dose_per_frame_e_per_A2=...)`` registers the frames
(:mod:`.register`), analyses each with :func:`stem_pipeline.pipeline.analyze`,
follows the columns by id (:mod:`.track`) and fits the uniform fraction against
cumulative dose (:mod:`.fit`); :func:`write_series` writes the outputs.
"""

from ._core import NoDoseWarning, SeriesConfig, SeriesResult, analyze_series, fit_reads
from .fit import MODELS, DamageFit, fit_damage, fit_model
from .load import (
    FrameSeries,
    NotASeriesError,
    dose_per_frame_from_metadata,
    load_series,
)
from .outputs import write_series
from .register import Registration, linear_drift, register_frames
from .track import ColumnHistory, column_histories, link_columns

__all__ = [
    "MODELS",
    "ColumnHistory",
    "DamageFit",
    "FrameSeries",
    "NoDoseWarning",
    "NotASeriesError",
    "Registration",
    "SeriesConfig",
    "SeriesResult",
    "analyze_series",
    "column_histories",
    "dose_per_frame_from_metadata",
    "fit_damage",
    "fit_model",
    "fit_reads",
    "linear_drift",
    "link_columns",
    "load_series",
    "register_frames",
    "write_series",
]
