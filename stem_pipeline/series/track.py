"""Following columns across frames: ids, labels per frame, the frame of conversion, reversals.

Columns keep the ids of a reference set (the columns found on the registered
mean of the series). Each frame's own columns, moved back by the frame's drift,
are linked to the reference columns by mutual nearest neighbours within a
tolerance; a reference column with no partner in a frame is "not seen" there.

The physics runs one way (ordered -> uniform): a column seen uniform and then
ordered again is a *reversal*, counted and flagged as a classification error.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from .._types import LABELS

#: Label code of a column not seen in a frame.
NOT_SEEN = -1
_ORDERED, _UNIFORM = LABELS.index("ordered"), LABELS.index("uniform")


def link_columns(reference_rc: np.ndarray, frame_rc: np.ndarray, *, tolerance_px: float) -> np.ndarray:
    """Mutual nearest-neighbour links from reference columns to a frame's columns.

    Parameters
    ----------
    reference_rc : (K, 2) ndarray
        Reference positions (row, col) [px].
    frame_rc : (J, 2) ndarray
        The frame's positions, in the reference's coordinates [px].
    tolerance_px : float
        Largest accepted distance [px].

    Returns
    -------
    (K,) ndarray of int
        Index into ``frame_rc`` of each reference column's partner, or -1.
    """
    reference_rc, frame_rc = np.asarray(reference_rc, float), np.asarray(frame_rc, float)
    out = np.full(len(reference_rc), -1, int)
    if len(reference_rc) == 0 or len(frame_rc) == 0:
        return out
    d_ref, to_frame = cKDTree(frame_rc).query(reference_rc)
    _, to_ref = cKDTree(reference_rc).query(frame_rc)
    mutual = (to_ref[to_frame] == np.arange(len(reference_rc))) & (d_ref <= tolerance_px)
    out[mutual] = to_frame[mutual]
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ColumnHistory:
    """The label history of every tracked column.

    Attributes
    ----------
    label : (F, K) ndarray of int8
        Label code per frame and column id (index into ``LABELS``; -1 not seen).
    conversion_frame : (K,) ndarray of int
        First frame of the final uninterrupted uniform run that follows an
        ordered observation; -1 when the column never converted (or was
        uniform whenever seen).
    initially_uniform : (K,) ndarray of bool
        Uniform in every frame it was seen in.
    n_reversals : (K,) ndarray of int
        Uniform -> ordered changes between consecutive sightings.
    reversals_per_frame : (F,) ndarray of int
        Columns that turned back to ordered in each frame.
    """

    label: np.ndarray
    conversion_frame: np.ndarray
    initially_uniform: np.ndarray
    n_reversals: np.ndarray
    reversals_per_frame: np.ndarray


def column_histories(label: np.ndarray) -> ColumnHistory:
    """Conversion frame and reversals of every column from its labels per frame.

    Parameters
    ----------
    label : (F, K) ndarray of int
        Label codes per frame and column (-1: not seen, or the frame not analysed).

    Returns
    -------
    ColumnHistory
    """
    label = np.asarray(label, np.int8)
    n_frames, n_cols = label.shape
    conversion = np.full(n_cols, -1, int)
    reversals = np.zeros(n_cols, int)
    per_frame = np.zeros(n_frames, int)
    previous = np.full(n_cols, NOT_SEEN, np.int8)  # the label at the last sighting
    last_ordered = np.full(n_cols, -1, int)
    for k in range(n_frames):
        seen = label[k] != NOT_SEEN
        back = seen & (label[k] == _ORDERED) & (previous == _UNIFORM)
        reversals += back
        per_frame[k] = int(back.sum())
        last_ordered[seen & (label[k] == _ORDERED)] = k
        previous[seen] = label[k][seen]
    ever_ordered = last_ordered >= 0
    for j in np.flatnonzero(ever_ordered & (previous == _UNIFORM)):
        after = np.flatnonzero(label[last_ordered[j] + 1 :, j] == _UNIFORM)
        conversion[j] = last_ordered[j] + 1 + after[0]
    initially_uniform = ~ever_ordered & (previous == _UNIFORM)
    return ColumnHistory(label, conversion, initially_uniform, reversals, per_frame)
