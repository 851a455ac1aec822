"""Synthetic frame series of one dot under the beam, with known damage kinetics and drift.

One dot of :func:`stem_pipeline.synthetic.make_dot` is imaged ``n_frames``
times. Between frames the beam converts ordered (CsPbI3-like) columns to
uniform (PbI2-like) ones, the dot drifts, and every frame has its own Poisson
noise.

Damage model (the truth the series analysis must recover)
    Every ordered column ``i`` has a conversion dose ``d_i``; it is ordered in
    the frames whose cumulative dose is below ``d_i`` and uniform from then on
    (the physics runs one way). The doses are the quantiles of an
    exponential distribution of mean ``critical_dose_e_per_A2`` (stratified,
    so the converted share of the ordered area follows
    ``1 - exp(-D / Dc)`` closely), handed out in the order of each column's
    distance to the nearest uniform column plus a Gaussian jitter
    (``boundary_jitter_nm``): columns next to a domain boundary convert first
    and the conversion spreads inwards, stochastically. In a dot with no
    uniform domain the distance is to the dot's edge. The uniform area
    fraction at cumulative dose ``D`` is then close to
    ``f(D) = 1 - (1 - f0) exp(-D / Dc)``. The truth of every frame is the
    domain area, as in single images (``SyntheticDot.region_map``, so ``f0`` is
    the dot's ``uniform_fraction``), where every pixel of an ordered domain
    takes the state of its nearest ordered column: uniform once that column has converted.

Dose convention
    Frame ``k`` (0-based) is shown at the cumulative dose at the middle of its
    exposure, ``(k + 0.5) * dose_per_frame``; it shows the columns converted
    by then.

Drift
    A slow linear drift (``scan_velocity_px`` per frame) plus a random jump of
    up to ``max_jump_px`` between frames, keeping every step within
    ``max_step_px``. During a frame the dot keeps moving at the linear
    velocity, so the rows of a frame are sheared: row ``r`` of ``M`` is
    displaced by ``v * (r / M - 0.5)`` relative to the frame's middle row.
    ``drift_rc_px[k]`` is the displacement of frame ``k``'s middle row
    relative to frame 0's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ._types import LABELS, REGION_ORDERED, REGION_UNIFORM
from .synthetic import _as_rng, dot_frame, make_dot, region_uniform_fraction, render_gaussians

_ORDERED, _UNIFORM = LABELS.index("ordered"), LABELS.index("uniform")


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticSeries:
    """A synthetic frame series and its ground truth.

    Attributes
    ----------
    frames : (F, M, N) ndarray of float32
        The noisy frames [counts].
    pixel_size_nm : float
        Pixel size [nm].
    dose_per_frame_e_per_A2 : float
        Electron dose of one frame [e/A^2].
    cumulative_dose_e_per_A2 : (F,) ndarray
        Cumulative dose at the middle of each frame's exposure [e/A^2].
    drift_rc_px : (F, 2) ndarray
        Displacement (row, col) of each frame's content relative to frame 0 [px].
    scan_velocity_px : (2,) ndarray
        The linear drift (row, col) per frame [px].
    rc : (K, 2) ndarray
        True column positions (row, col) in frame 0's middle-row coordinates [px].
    initial_label : (K,) ndarray of int8
        Phase codes (index into ``LABELS``) before any dose.
    conversion_dose_e_per_A2 : (K,) ndarray
        Dose at which each column turns uniform (0 for columns uniform from the start).
    label : (F, K) ndarray of int8
        Phase codes of every column in every frame.
    uniform_fraction : (F,) ndarray
        True uniform area fraction of each frame.
    zero_dose_uniform_fraction : float
        True uniform area fraction before any dose (f0).
    critical_dose_e_per_A2 : float
        The model's critical dose Dc [e/A^2].
    counts : float
        Expected counts at a bright column peak in one frame.
    """

    frames: np.ndarray
    pixel_size_nm: float
    dose_per_frame_e_per_A2: float
    cumulative_dose_e_per_A2: np.ndarray
    drift_rc_px: np.ndarray
    scan_velocity_px: np.ndarray
    rc: np.ndarray
    initial_label: np.ndarray
    conversion_dose_e_per_A2: np.ndarray
    label: np.ndarray
    uniform_fraction: np.ndarray
    zero_dose_uniform_fraction: float
    critical_dose_e_per_A2: float
    counts: float

    @property
    def n_frames(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])


def conversion_doses(
    rc: np.ndarray,
    label: np.ndarray,
    *,
    critical_dose_e_per_A2: float,
    edge_distance_px: np.ndarray,
    pixel_size_nm: float,
    boundary_jitter_nm: float = 0.15,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Conversion dose of every column: boundary-started, stochastic, exponential overall.

    Parameters
    ----------
    rc : (K, 2) ndarray
        Column positions (row, col) [px].
    label : (K,) ndarray of int
        Phase codes before any dose (index into ``LABELS``).
    critical_dose_e_per_A2 : float
        Mean conversion dose Dc [e/A^2] (> 0).
    edge_distance_px : (K,) ndarray
        Each column's distance to the dot's edge [px]; used when there is no uniform column.
    pixel_size_nm : float
        Pixel size [nm].
    boundary_jitter_nm : float
        Standard deviation of the random term added to the distance to the boundary [nm].
    rng : Generator, int or None
        Random source.

    Returns
    -------
    (K,) ndarray
        Conversion doses [e/A^2]; 0 for uniform columns.
    """
    if not critical_dose_e_per_A2 > 0:
        raise ValueError(f"critical_dose_e_per_A2={critical_dose_e_per_A2}: must be positive")
    rng = _as_rng(rng)
    ordered = np.flatnonzero(label == _ORDERED)
    out = np.zeros(len(rc))
    if len(ordered) == 0:
        return out
    uniform = label == _UNIFORM
    if uniform.any():
        dist_px = cKDTree(rc[uniform]).query(rc[ordered])[0]
    else:
        dist_px = np.asarray(edge_distance_px, float)[ordered]
    score = dist_px * pixel_size_nm + boundary_jitter_nm * rng.standard_normal(len(ordered))
    # Stratified exponential quantiles: the converted share follows 1 - exp(-D/Dc) closely.
    q = (np.arange(len(ordered)) + rng.random(len(ordered))) / len(ordered)
    doses = np.sort(-critical_dose_e_per_A2 * np.log1p(-q))
    out[ordered[np.argsort(score, kind="stable")]] = doses
    return out


def _drift_path(
    n_frames: int, *, velocity: np.ndarray, max_jump_px: float, max_step_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Cumulative displacement (row, col) of each frame: linear velocity plus bounded random jumps."""
    steps = np.zeros((n_frames, 2))
    for k in range(1, n_frames):
        angle, size = rng.uniform(0, 2 * np.pi), max_jump_px * np.sqrt(rng.random())
        step = velocity + size * np.array([np.cos(angle), np.sin(angle)])
        norm = np.linalg.norm(step)
        steps[k] = step * min(1.0, max_step_px / norm) if norm > 0 else step
    return np.cumsum(steps, axis=0)


def make_series(
    shape: tuple[int, int] = (320, 320),
    *,
    n_frames: int = 10,
    counts: float = 100.0,
    zero_dose_uniform_fraction: float = 0.35,
    critical_dose_e_per_A2: float = 2000.0,
    dose_per_frame_e_per_A2: float = 250.0,
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 8.0,
    domain_size_nm: float = 3.0,
    boundary_jitter_nm: float = 0.15,
    scan_velocity_px: tuple[float, float] = (0.6, -0.4),
    max_jump_px: float = 3.0,
    max_step_px: float = 5.0,
    rng: np.random.Generator | int | None = None,
    **dot_kwargs,
) -> SyntheticSeries:
    """Make a frame series of one two-phase dot converting under the beam (see the module docstring).

    Parameters
    ----------
    shape : tuple of int
        Frame shape (rows, cols).
    n_frames : int
        Number of frames (>= 2).
    counts : float
        Expected counts at a bright column peak in one frame.
    zero_dose_uniform_fraction : float
        Probability that a domain is uniform before any dose (the realised
        area fraction is ``SyntheticSeries.zero_dose_uniform_fraction``).
    critical_dose_e_per_A2 : float
        Critical dose Dc of the conversion [e/A^2].
    dose_per_frame_e_per_A2 : float
        Dose of one frame [e/A^2].
    pixel_size_nm, dot_size_nm, domain_size_nm
        As in :func:`stem_pipeline.synthetic.make_dot`.
    boundary_jitter_nm : float
        Randomness of the conversion order around the distance to the boundary [nm].
    scan_velocity_px : tuple of float
        Linear drift (row, col) per frame [px].
    max_jump_px : float
        Largest random jump between frames [px].
    max_step_px : float
        Largest total displacement between two frames [px].
    rng : Generator, int or None
        Random source.
    **dot_kwargs
        Passed on to :func:`stem_pipeline.synthetic.make_dot` (e.g. ``rotation_deg``, ``uniform_ratio``).

    Returns
    -------
    SyntheticSeries
    """
    if n_frames < 2:
        raise ValueError(f"n_frames={n_frames}: a series needs at least 2 frames")
    if not counts > 0:
        raise ValueError(f"counts={counts}: must be positive")
    rng = _as_rng(rng)
    shape = (int(shape[0]), int(shape[1]))
    dot = make_dot(
        shape,
        pixel_size_nm=pixel_size_nm,
        dot_size_nm=dot_size_nm,
        domain_size_nm=domain_size_nm,
        uniform_fraction=zero_dose_uniform_fraction,
        dose=None,
        rng=rng,
        **dot_kwargs,
    )
    sigma_px = dot_kwargs.get("column_sigma_nm", 0.045) / pixel_size_nm
    uniform_height = dot_kwargs.get("uniform_ratio", 0.8)
    # Everything but the columns (diffuse dot signal, carbon) moves rigidly with the dot.
    static = dot.clean - render_gaussians(shape, dot.rc, dot.amplitude, sigma_px)
    center, u, w, half = dot_frame(
        shape,
        pixel_size_nm=pixel_size_nm,
        dot_size_nm=dot_size_nm,
        rotation_deg=dot_kwargs.get("rotation_deg", 0.0),
        center_offset_nm=dot_kwargs.get("center_offset_nm", (0, 0)),
    )
    rel = dot.rc - center
    edge_px = half - np.maximum(np.abs(rel @ u), np.abs(rel @ w))
    d_conv = conversion_doses(
        dot.rc,
        dot.label,
        critical_dose_e_per_A2=critical_dose_e_per_A2,
        edge_distance_px=edge_px,
        pixel_size_nm=pixel_size_nm,
        boundary_jitter_nm=boundary_jitter_nm,
        rng=rng,
    )
    dose = (np.arange(n_frames) + 0.5) * dose_per_frame_e_per_A2
    velocity = np.asarray(scan_velocity_px, float)
    drift = _drift_path(n_frames, velocity=velocity, max_jump_px=max_jump_px, max_step_px=max_step_px, rng=rng)
    shear = (dot.rc[:, :1] / shape[0] - 0.5) * velocity  # within-frame scan drift of each column
    frames = np.empty((n_frames, *shape), np.float32)
    labels = np.empty((n_frames, len(dot.rc)), np.int8)
    fractions = np.empty(n_frames)
    # Truth: every pixel of an ordered domain follows its nearest ordered column.
    ordered_px = np.argwhere(dot.region_map == REGION_ORDERED)
    ordered_cols = np.flatnonzero(dot.label == _ORDERED)
    owner = ordered_cols[cKDTree(dot.rc[ordered_cols]).query(ordered_px)[1]] if len(ordered_cols) else None
    for k in range(n_frames):
        converted = (dot.label == _ORDERED) & (d_conv < dose[k])
        labels[k] = np.where(converted, _UNIFORM, dot.label)
        height = np.where(converted, uniform_height, dot.amplitude)
        clean = render_gaussians(shape, dot.rc + drift[k] + shear, height, sigma_px)
        clean += ndimage.shift(static, drift[k], order=1, mode="nearest")
        frames[k] = rng.poisson(np.clip(clean, 0, None) * counts)
        region = dot.region_map.copy()
        if owner is not None:
            region[tuple(ordered_px.T)] = np.where(converted[owner], REGION_UNIFORM, REGION_ORDERED)
        fractions[k] = region_uniform_fraction(region)
    return SyntheticSeries(
        frames=frames,
        pixel_size_nm=float(pixel_size_nm),
        dose_per_frame_e_per_A2=float(dose_per_frame_e_per_A2),
        cumulative_dose_e_per_A2=dose,
        drift_rc_px=drift,
        scan_velocity_px=velocity,
        rc=dot.rc,
        initial_label=dot.label,
        conversion_dose_e_per_A2=d_conv,
        label=labels,
        uniform_fraction=fractions,
        zero_dose_uniform_fraction=dot.uniform_fraction,
        critical_dose_e_per_A2=float(critical_dose_e_per_A2),
        counts=float(counts),
    )
