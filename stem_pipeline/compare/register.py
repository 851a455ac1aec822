"""Register a periodic simulated image onto an experimental mean cell.

The simulation is a periodic image (one or more repeats of its cell, as a
unit-cell scan gives). Registration maps the experimental cell frame onto the
simulation frame:

- rotation (and mirror) and scale from the lattice vectors: the first
  experimental cell vector is aligned, with and without a mirror, with each
  short lattice vector of the simulation (``i A + j B``, ``|i|, |j| <= 2``),
  and the candidate with the best NCC is kept; the
  scale is taken from the lattices only when it is within ``max_scale_change``
  of the calibration (a calibration correction), otherwise the calibration is
  trusted, so a model with another period scores lower instead of being
  stretched to fit;
- sub-pixel translation by upsampled phase correlation of the experimental
  patch (periodic) with the simulation sampled on it;
- resampling: the simulation is evaluated (periodic cubic interpolation) at
  the experimental sample positions, a common physical patch of ``reps``
  experimental cells;
- intensity: a weighted affine fit (:func:`~stem_pipeline.compare.metrics.affine_match`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math

import numpy as np
from scipy import ndimage

from ..optics import source_blur
from .cell import MeanCell
from .metrics import ncc

logger = logging.getLogger("stem_pipeline")

__all__ = ["Registration", "blur_periodic", "register_cell", "render", "sample_periodic", "simulation_cell_vectors"]


@dataclasses.dataclass(frozen=True, eq=False)
class Registration:
    """How an experimental cell frame maps onto a simulation frame.

    A displacement ``d_e`` from the experimental cell origin (row, col) [nm]
    lands at ``d_e @ matrix + shift_nm`` in the simulation [nm].

    Attributes
    ----------
    matrix : (2, 2) ndarray
        Rotation (possibly with a mirror) times ``scale``.
    shift_nm : (2,) ndarray
        Simulation position of the experimental origin (row, col) [nm].
    scale : float
        Simulation length per experimental length (1 = calibration trusted).
    rotation_deg : float
        Rotation angle of the map [deg].
    mirrored : bool
        Whether the map includes a mirror.
    ncc : float
        Normalised cross-correlation after registration.
    """

    matrix: np.ndarray
    shift_nm: np.ndarray
    scale: float
    rotation_deg: float
    mirrored: bool
    ncc: float


def _pixel_sizes(pixel_size_nm: float | tuple[float, float]) -> np.ndarray:
    px = np.broadcast_to(np.asarray(pixel_size_nm, dtype=np.float64), (2,)).copy()
    if np.any(px <= 0):
        raise ValueError(f"pixel_size_nm must be positive, got {pixel_size_nm}")
    return px


def sample_periodic(
    image: np.ndarray, pixel_size_nm: float | tuple[float, float], positions_nm: np.ndarray, *, order: int = 3
) -> np.ndarray:
    """Evaluate a periodic image at physical positions.

    Parameters
    ----------
    image : (M, N) ndarray
        One or more whole repeats of a periodic pattern; pixel (0, 0) is at 0 nm.
    pixel_size_nm : float or (2,) tuple
        Pixel size (row, col) [nm].
    positions_nm : (..., 2) ndarray
        Positions (row, col) [nm], any values (wrapped).
    order : int
        Spline order.

    Returns
    -------
    (...) ndarray of float64
    """
    px = _pixel_sizes(pixel_size_nm)
    pos = np.asarray(positions_nm, dtype=np.float64) / px
    coords = [pos[..., 0] % image.shape[0], pos[..., 1] % image.shape[1]]
    return ndimage.map_coordinates(np.asarray(image, dtype=np.float64), coords, order=order, mode="grid-wrap")


def blur_periodic(image: np.ndarray, pixel_size_nm: float | tuple[float, float], source_fwhm_nm: float) -> np.ndarray:
    """Gaussian source-size blur of a periodic image (:func:`stem_pipeline.optics.source_blur`).

    Parameters
    ----------
    image : (M, N) ndarray
        Periodic image.
    pixel_size_nm : float or (2,) tuple
        Pixel size (row, col) [nm].
    source_fwhm_nm : float
        Full width at half maximum of the effective source [nm]; 0 returns a copy.
    """
    return source_blur(image, _pixel_sizes(pixel_size_nm), source_fwhm_nm, periodic=True)


def simulation_cell_vectors(image: np.ndarray, pixel_size_nm: float | tuple[float, float]) -> np.ndarray:
    """Repeat vectors of a periodic simulated image: its two edges (rows, each (row, col)) [nm]."""
    return np.diag(np.asarray(np.shape(image)[:2], dtype=np.float64) * _pixel_sizes(pixel_size_nm))


def _candidates(exp_cell_nm: np.ndarray, sim_cell_nm: np.ndarray, max_scale_change: float, max_index: int = 2):
    """Similarity maps (rows convention ``d_sim = d_exp @ m``) aligning the first
    experimental cell vector, optionally mirrored, with each short simulation lattice vector."""
    e = np.asarray(exp_cell_nm[0], dtype=np.float64)
    a, b = np.asarray(sim_cell_nm, dtype=np.float64)
    seen: set[tuple] = set()
    for mirrored in (False, True):
        flip = np.diag([1.0, -1.0]) if mirrored else np.eye(2)
        ef = e @ flip
        for i, j in itertools.product(range(-max_index, max_index + 1), repeat=2):
            if (i, j) == (0, 0) or math.gcd(abs(i), abs(j)) != 1:
                continue
            target = i * a + j * b
            phi = math.atan2(target[0], target[1]) - math.atan2(ef[0], ef[1])
            scale = float(np.linalg.norm(target) / np.linalg.norm(e))
            if abs(scale - 1) > max_scale_change:
                scale = 1.0
            key = (mirrored, round(math.degrees(phi) % 360, 1) % 360, round(scale, 4))
            if key in seen:
                continue
            seen.add(key)
            rot = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
            yield flip @ rot * scale, scale, math.degrees(phi), mirrored


def render(
    sim_image: np.ndarray,
    sim_pixel_size_nm: float | tuple[float, float],
    registration: Registration,
    positions_nm: np.ndarray,
    *,
    order: int = 3,
) -> np.ndarray:
    """The simulation evaluated at experimental positions through a registration.

    Parameters
    ----------
    sim_image : (M, N) ndarray
        Periodic simulated image.
    sim_pixel_size_nm : float or (2,) tuple
        Its pixel size [nm].
    registration : Registration
        From :func:`register_cell`.
    positions_nm : (..., 2) ndarray
        Experimental positions relative to the cell origin (row, col) [nm],
        e.g. ``MeanCell.positions_nm(reps)``.

    Returns
    -------
    (...) ndarray of float64
    """
    pos = np.asarray(positions_nm, dtype=np.float64) @ registration.matrix + registration.shift_nm
    return sample_periodic(sim_image, sim_pixel_size_nm, pos, order=order)


def register_cell(
    cell: MeanCell,
    sim_image: np.ndarray,
    sim_pixel_size_nm: float | tuple[float, float],
    *,
    sim_cell_vectors_nm: np.ndarray | None = None,
    reps: tuple[int, int] = (2, 2),
    max_scale_change: float = 0.05,
    upsample_factor: int = 20,
) -> Registration:
    """Register a periodic simulated image onto an experimental mean cell.

    Parameters
    ----------
    cell : MeanCell
        The experimental mean cell (calibrated).
    sim_image : (M, N) ndarray
        Periodic simulated image (whole repeats).
    sim_pixel_size_nm : float or (2,) tuple
        Pixel size of ``sim_image`` (row, col) [nm].
    sim_cell_vectors_nm : (2, 2) ndarray, optional
        Repeat vectors of the simulation [nm], paired with the experimental
        cell vectors; by default the image edges (one repeat per image).
    reps : tuple of int
        The common patch is ``reps`` experimental cells.
    max_scale_change : float
        Largest relative scale correction taken from the lattices; beyond it
        the calibration is trusted (scale 1).
    upsample_factor : int
        Sub-pixel precision of the phase correlation (1 / upsample_factor px).

    Returns
    -------
    Registration
        The candidate with the highest NCC over the patch.
    """
    from skimage.registration import phase_cross_correlation

    if sim_cell_vectors_nm is None:
        sim_cell_vectors_nm = simulation_cell_vectors(sim_image, sim_pixel_size_nm)
    positions = cell.positions_nm(reps)
    exp_patch, _ = cell.tile(reps)
    exp_patch = np.asarray(exp_patch, dtype=np.float64)
    n1, n2 = cell.shape
    step = cell.vectors_nm / np.array([[n1], [n2]])  # nm per patch pixel along each axis
    reference = exp_patch - exp_patch.mean()

    def align(m: np.ndarray, upsample: int, order: int) -> tuple[np.ndarray, float]:
        """Shift for the map ``m`` by phase correlation, and the NCC it reaches."""
        moving = render(
            sim_image, sim_pixel_size_nm, Registration(m, np.zeros(2), 1.0, 0.0, False, 0.0), positions, order=order
        )
        shift, _, _ = phase_cross_correlation(
            reference, moving - moving.mean(), upsample_factor=upsample, normalization=None
        )
        shift_nm = -((shift[0] * step[0] + shift[1] * step[1]) @ m)
        trial = Registration(m, shift_nm, 1.0, 0.0, False, 0.0)
        return shift_nm, ncc(exp_patch, render(sim_image, sim_pixel_size_nm, trial, positions, order=order))

    # Coarse pass over all candidates, then a sub-pixel pass on the best.
    scored = []
    for m, scale, angle, mirrored in _candidates(
        cell.vectors_nm, np.asarray(sim_cell_vectors_nm, float), max_scale_change
    ):
        scored.append((align(m, 2, 1)[1], m, scale, angle, mirrored))
    _, m, scale, angle, mirrored = max(scored, key=lambda x: x[0])
    shift_nm, score = align(m, upsample_factor, 3)
    best = Registration(m, shift_nm, scale, float(angle), bool(mirrored), score)
    logger.debug(
        "registered: scale %.4f, rotation %.1f deg, mirrored %s, NCC %.4f",
        best.scale,
        best.rotation_deg,
        best.mirrored,
        best.ncc,
    )
    return best
