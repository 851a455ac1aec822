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

__all__ = ["DotShape", "dot_shapes", "min_area_rectangle"]

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
        rr, cc = np.nonzero(mask)
        rr, cc = rr + sl[0].start, cc + sl[1].start
        # Corners of the outline pixels, so that the rectangle bounds the pixels, not their centres.
        outline = (mask & ~ndimage.binary_erosion(mask))[mask]
        er, ec = rr[outline], cc[outline]
        corners = np.concatenate([np.stack([er + dr, ec + dc], axis=1) for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)])
        a, b, angle = min_area_rectangle(corners)
        area = len(rr)
        scale = np.sqrt(area / (a * b)) if a * b > 0 else 1.0
        touches = bool(rr.min() == 0 or cc.min() == 0 or rr.max() == shape[0] - 1 or cc.max() == shape[1] - 1)
        out.append(
            DotShape(
                label=k,
                y_px=float(rr.mean()),
                x_px=float(cc.mean()),
                area_px=area,
                edge_px=float(scale * 0.5 * (a + b)),
                aspect=float(max(a, b) / max(min(a, b), 1e-9)),
                orientation_deg=angle,
                touches_border=touches,
            )
        )
    return out
