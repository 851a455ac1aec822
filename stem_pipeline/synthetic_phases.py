"""Synthetic dots made of library phases: each part of a dot drawn from a phase's column grid.

:func:`make_phase_dot` draws a square dot cut into parts (side by side), each
holding one phase's columns at its own spacing and orientation, with the
phase's expected relative site intensities as column heights. The truth is
each part's share of the dot's area and every column's phase and site: the
known answer the phase-library tests measure against (e.g. a CsPbBr3 part
beside a CsPbI3 part: two halides, two spacings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .phases.sites import ColumnGrid
from .synthetic import amorphous_background, apply_dose, render_gaussians

__all__ = ["PhaseDot", "make_phase_dot"]


@dataclasses.dataclass(frozen=True, eq=False)
class PhaseDot:
    """A synthetic dot of library phases and its truth.

    Attributes
    ----------
    image : (M, N) ndarray of float32
        The noisy image [counts].
    pixel_size_nm : float
        Pixel size [nm].
    rc : (K, 2) ndarray
        True column positions (row, col) [px].
    part : (K,) ndarray of int
        The part (index into ``names``) each column belongs to.
    site : (K,) ndarray of str
        Each column's site name.
    names : tuple of str
        The phase of each part.
    fractions : dict of str to float
        Each phase's share of the dot's area.
    """

    image: np.ndarray
    pixel_size_nm: float
    rc: np.ndarray
    part: np.ndarray
    site: np.ndarray
    names: tuple[str, ...]
    fractions: dict


def _part_columns(grid: ColumnGrid, centre: np.ndarray, rotation_deg: float, px: float, reach_px: float):
    """Columns (positions [px], heights, site names) of one grid around ``centre``, empty sites left out."""
    t = np.radians(rotation_deg)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    vectors = grid.vectors_nm @ rotation.T / px
    n = int(np.ceil(reach_px / np.linalg.norm(vectors, axis=1).min())) + 2
    steps = np.array([(i, j) for i in range(-n, n + 1) for j in range(-n, n + 1)])
    site = grid.site_index(steps)
    keep = grid.relative_intensity[site] > 0
    return centre + steps[keep] @ vectors, grid.relative_intensity[site[keep]], grid.names[site[keep]]


def make_phase_dot(
    grids: Sequence[ColumnGrid],
    names: Sequence[str],
    *,
    shares: Sequence[float] | None = None,
    rotations_deg: Sequence[float] | None = None,
    shape: tuple[int, int] = (448, 448),
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 12.0,
    column_sigma_nm: float = 0.045,
    dot_background: float = 0.1,
    dose: float | None = 100.0,
    rng: np.random.Generator | int | None = None,
) -> PhaseDot:
    """Draw a square dot cut into side-by-side parts, one library phase each.

    Parameters
    ----------
    grids : sequence of ColumnGrid
        One grid per part (e.g. ``phase.grids()[0]``: all its heavy columns).
    names : sequence of str
        The phase of each part.
    shares : sequence of float, optional
        Each part's share of the dot's width (and area); equal by default.
    rotations_deg : sequence of float, optional
        In-plane rotation of each part's grid [deg]; 0 by default.
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm : float
        Pixel size [nm].
    dot_size_nm : float
        Edge of the square dot [nm].
    column_sigma_nm : float
        Gaussian width of a column image [nm].
    dot_background : float
        Diffuse signal inside the dot, relative to the brightest column.
    dose : float or None
        Expected counts at the brightest column's peak; None: no noise.
    rng : Generator, int or None
        Random source (carbon speckle, noise).

    Returns
    -------
    PhaseDot
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    k = len(grids)
    share = np.full(k, 1.0 / k) if shares is None else np.asarray(shares, float) / np.sum(shares)
    rotations = np.zeros(k) if rotations_deg is None else np.asarray(rotations_deg, float)
    centre = (np.asarray(shape, float) - 1) / 2
    half = dot_size_nm / pixel_size_nm / 2
    edges = centre[1] - half + 2 * half * np.concatenate([[0.0], np.cumsum(share)])
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    inside = (np.abs(rows - centre[0]) <= half) & (np.abs(cols - centre[1]) <= half)
    pieces: list[tuple[np.ndarray, ...]] = []
    for i, grid in enumerate(grids):
        pos, h, s = _part_columns(grid, centre, rotations[i], pixel_size_nm, half * 1.5)
        keep = (np.abs(pos[:, 0] - centre[0]) <= half) & (pos[:, 1] >= edges[i]) & (pos[:, 1] < edges[i + 1])
        pieces.append((pos[keep], h[keep], s[keep], np.full(keep.sum(), i)))
    rc, height, site, part = (np.concatenate(x) for x in zip(*pieces))
    sigma_px = column_sigma_nm / pixel_size_nm
    clean = render_gaussians(shape, rc, height, sigma_px)
    clean += ndimage.gaussian_filter(inside.astype(float), sigma_px) * dot_background
    clean += amorphous_background(shape, pixel_size_nm=pixel_size_nm, rng=rng)
    image, _, _ = apply_dose(clean, height, dose=dose, rng=rng)
    fractions: dict[str, float] = {}
    for name, s_i in zip(names, share):
        fractions[name] = fractions.get(name, 0.0) + float(s_i)
    return PhaseDot(
        image=image.astype(np.float32),
        pixel_size_nm=float(pixel_size_nm),
        rc=rc,
        part=part,
        site=site,
        names=tuple(names),
        fractions=fractions,
    )
