"""Size and shape of each dot from its footprint (no lattice needed).

A cube seen along a zone axis projects to a square: its edge is measured from
the minimum-area rectangle of the footprint's convex hull (rotating calipers),
scaled so that the rectangle's area equals the footprint's (pixelated edges
and rounded corners then do not bias the edge), and the rectangle's side
ratio and direction give the aspect ratio and the edges' orientation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .._types import DOT_COLUMNS, PHASE_DOT_PREFIXES, AreaFractions, PipelineResult

__all__ = [
    "DOT_COLUMNS",
    "DotShape",
    "dot_record",
    "dot_shapes",
    "edge_pixels",
    "has_phase_fractions",
    "min_area_rectangle",
    "one_dot_records",
    "phase_record",
    "refusal_reason",
]


@dataclasses.dataclass(frozen=True)
class DotShape:
    """Size and shape of one dot.

    Attributes
    ----------
    label : int
        Its value in the label image.
    y_px, x_px : float
        Centroid (row, col) [px].
    area_px : int
        Footprint area [px].
    edge_px : float
        Edge of the projected cube [px]: the mean side of the minimum-area
        rectangle, scaled to the footprint's area.
    aspect : float
        Long over short side of that rectangle (>= 1).
    orientation_deg : float
        Direction of the rectangle's edges [deg] in [0, 90), as a lattice rotation
        (angle of an edge from the row axis towards the column axis).
    touches_border : bool
        The footprint reaches the frame.
    """

    label: int
    y_px: float
    x_px: float
    area_px: int
    edge_px: float
    aspect: float
    orientation_deg: float
    touches_border: bool


def min_area_rectangle(points: np.ndarray) -> tuple[float, float, float]:
    """Minimum-area bounding rectangle of 2-D points (rotating calipers over the convex hull).

    Parameters
    ----------
    points : (K, 2) ndarray
        Points (row, col).

    Returns
    -------
    side_a, side_b : float
        Its sides, ``side_a`` along ``angle_deg``.
    angle_deg : float
        Direction of side ``a`` [deg] from the row axis, in [0, 90).
    """
    from scipy.spatial import ConvexHull

    pts = np.asarray(points, float)
    if len(pts) < 3 or np.linalg.matrix_rank(pts - pts.mean(axis=0)) < 2:
        span = np.ptp(pts, axis=0) if len(pts) else np.zeros(2)
        return float(span[0]), float(span[1]), 0.0
    hull = pts[ConvexHull(pts).vertices]
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    u = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    w = np.stack([-np.sin(angles), np.cos(angles)], axis=1)
    pu, pw = hull @ u.T, hull @ w.T
    a, b = np.ptp(pu, axis=0), np.ptp(pw, axis=0)
    best = int(np.argmin(a * b))
    return float(a[best]), float(b[best]), float(np.rad2deg(angles[best]) % 90.0)


def edge_pixels(mask: np.ndarray) -> np.ndarray:
    """``mask & ~ndimage.binary_erosion(mask)``: the pixels of ``mask`` with a 4-neighbour outside it or off the array.

    Four shifted ANDs where ndimage visits each pixel's cross: the same pixels (a test checks them),
    ~3.6 -> ~0.2 ms CPU for a 1024^2 dot's 700^2-pixel crop, three per ``analyze`` process.
    """
    mask = np.asarray(mask, dtype=bool)
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return mask & ~inner


def dot_shapes(labels: np.ndarray) -> list[DotShape]:
    """Size and shape of every labelled dot.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        0 on the support, ``k`` on dot ``k``.

    Returns
    -------
    list of DotShape
        One per label present, in increasing label order.
    """
    out = []
    shape = labels.shape
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == k
        # The centroid from the pixel counts per row and column, not every pixel's coordinates: integer sums
        # (exact in float64 below 2^53) over the count, rounded once, as the pixels' mean rounds them; the
        # outline pixels in the same (row-major) order. ~0.014 -> ~0.006 s CPU per call for a 1024^2 dot,
        # three calls per ``analyze`` process (benchmarks/process.py); the same shapes (a test checks them).
        counts = [np.count_nonzero(mask, axis=axis) for axis in (1, 0)]
        area = int(counts[0].sum())
        y_px, x_px = (int(np.arange(s.start, s.stop) @ n) / area for s, n in zip(sl, counts))
        # Corners of the outline pixels, so that the rectangle bounds the pixels, not their centres.
        er, ec = (v + s.start for v, s in zip(np.nonzero(edge_pixels(mask)), sl))
        corners = np.concatenate([np.stack([er + dr, ec + dc], axis=1) for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)])
        a, b, angle = min_area_rectangle(corners)
        scale = np.sqrt(area / (a * b)) if a * b > 0 else 1.0
        touches = bool(sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == shape[0] or sl[1].stop == shape[1])
        out.append(
            DotShape(
                label=k,
                y_px=y_px,
                x_px=x_px,
                area_px=area,
                edge_px=float(scale * 0.5 * (a + b)),
                aspect=float(max(a, b) / max(min(a, b), 1e-9)),
                orientation_deg=angle,
                touches_border=touches,
            )
        )
    return out


def dot_record(
    shape: DotShape,
    *,
    pixel_size_nm: float | None,
    status: str,
    message: str | None = None,
    lattice_orientation_deg: float | None = None,
    n_columns: int = 0,
    fractions: AreaFractions | None = None,
    phases: dict | None = None,
) -> dict:
    """One dot's row of ``dots.csv`` (:data:`DOT_COLUMNS`); lengths None without calibration, fractions None
    where not measured.

    With ``phases`` (the dot's phase-library stage, ``PipelineResult.phases``) the row adds
    ``calibration_status`` and, per phase of its ``phase_fractions``, ``phase_fraction:NAME``,
    ``phase_ci95_lo:NAME`` and ``phase_ci95_hi:NAME`` (:func:`stem_pipeline._types.dot_columns`).
    """
    s, px, f = shape, pixel_size_nm, fractions
    nm = (lambda v: None) if px is None else (lambda v: round(float(v) * px, 4))
    return {
        "dot": s.label,
        "x_px": round(s.x_px, 2),
        "y_px": round(s.y_px, 2),
        "x_nm": nm(s.x_px),
        "y_nm": nm(s.y_px),
        "edge_nm": nm(s.edge_px),
        "area_nm2": None if px is None else round(s.area_px * px**2, 3),
        "aspect": round(s.aspect, 3),
        "orientation_deg": round(s.orientation_deg, 2),
        "lattice_orientation_deg": None if lattice_orientation_deg is None else round(lattice_orientation_deg, 2),
        "touches_border": s.touches_border,
        "status": status,
        "message": message,
        "n_columns": n_columns,
        "ordered_fraction": None if f is None else round(f.ordered, 6),
        "uniform_fraction": None if f is None else round(f.uniform, 6),
        "uniform_ci95_lo": None if f is None else round(f.uniform_ci95[0], 6),
        "uniform_ci95_hi": None if f is None else round(f.uniform_ci95[1], 6),
        **phase_record(phases),
    }


def phase_record(phases: dict | None) -> dict:
    """The phase columns of a ``dots.csv`` or ``report.csv`` row (none when the phase-library stage did not run).

    Parameters
    ----------
    phases : dict or None
        With ``calibration`` and ``phase_fractions`` as in ``PipelineResult.phases`` or ``summary.json``.

    Returns
    -------
    dict
        ``calibration_status``, then ``phase_fraction:NAME``, ``phase_ci95_lo:NAME``, ``phase_ci95_hi:NAME``
        per phase; empty for no ``phases``.
    """
    if not phases:
        return {}
    out = {"calibration_status": (phases.get("calibration") or {}).get("status")}
    for name, v in (phases.get("phase_fractions") or {}).items():
        values = (v["fraction"], *v["ci95"])
        out.update({prefix + name: round(float(x), 6) for prefix, x in zip(PHASE_DOT_PREFIXES, values)})
    return out


def has_phase_fractions(result: PipelineResult) -> bool:
    """Whether the phase-library stage gave ``result`` fractions of at least one library phase."""
    from ..phases.assign import UNEXPLAINED

    return any(name != UNEXPLAINED for name in (result.phases or {}).get("phase_fractions") or {})


def refusal_reason(result: PipelineResult) -> str | None:
    """Why a dot's single-dot analysis gave no fractions, in the words of the output contract (None: it did)."""
    if result.status == "ok" and (result.fractions is not None or has_phase_fractions(result)):
        return None
    message = result.message or ""
    if result.status != "ok":
        if "columns found" in message:
            return f"too few columns: {message}"
        return f"lattice not resolved: {message}"
    if "grid" in message or "spacing" in message:
        return f"off the zone axis (no square CsPbI3/PbI2 grid): {message}"
    return message or "no fractions"


def _calibration_only(phases: dict | None) -> dict | None:
    """A refused dot's phases: its calibration check, no fractions."""
    return {"calibration": phases.get("calibration")} if phases else None


def one_dot_records(result: PipelineResult, lattice_orientation_deg: float | None) -> list[dict]:
    """The ``dots`` of a single-dot analysis: its crystal mask as one dot (none without a crystal mask).

    Parameters
    ----------
    result : PipelineResult
        The single-dot chain's result (:func:`stem_pipeline.pipeline.analyze`).
    lattice_orientation_deg : float or None
        Rotation of its column grid [deg].

    Returns
    -------
    list of dict
        One :func:`dot_record` (``ok`` with its fractions, or ``refused`` with the reason), or none.
    """
    if result.crystal_mask is None or not result.crystal_mask.any():
        return []
    (shape,) = dot_shapes(result.crystal_mask.astype(np.int32))
    reason = refusal_reason(result)
    return [
        dot_record(
            shape,
            pixel_size_nm=result.micrograph.pixel_size_nm,
            status="refused" if reason else "ok",
            message=reason,
            lattice_orientation_deg=lattice_orientation_deg,
            n_columns=0 if result.columns is None else len(result.columns),
            fractions=result.fractions if reason is None else None,
            phases=result.phases if reason is None else _calibration_only(result.phases),
        )
    ]
