"""Register a periodic simulated image onto an experimental mean cell.

The simulation is a periodic image (one or more repeats of its cell, as a
unit-cell scan gives). Registration maps the experimental cell frame onto the
simulation frame:

- rotation (and mirror) and scale from the lattice vectors: the experimental
  (super)cell vectors are paired with the simulation's repeat vectors; every
  symmetry-equivalent pairing is tried and the best kept; the
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

import numpy as np
from scipy import ndimage

from .cell import MeanCell
from .metrics import affine_match, ncc

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


def blur_periodic(image: np.ndarray, pixel_size_nm: float | tuple[float, float], sigma_nm: float) -> np.ndarray:
    """Gaussian source-size blur of a periodic image.

    Parameters
    ----------
    image : (M, N) ndarray
        Periodic image.
    pixel_size_nm : float or (2,) tuple
        Pixel size (row, col) [nm].
    sigma_nm : float
        Gaussian standard deviation of the effective source [nm]; 0 returns a copy.
    """
    img = np.asarray(image, dtype=np.float64)
    if sigma_nm <= 0:
        return img.copy()
    return ndimage.gaussian_filter(img, sigma_nm / _pixel_sizes(pixel_size_nm), mode="wrap")


def simulation_cell_vectors(image: np.ndarray, pixel_size_nm: float | tuple[float, float]) -> np.ndarray:
    """Repeat vectors of a periodic simulated image: its two edges (rows, each (row, col)) [nm]."""
    return np.diag(np.asarray(np.shape(image)[:2], dtype=np.float64) * _pixel_sizes(pixel_size_nm))


def _candidates(exp_cell_nm: np.ndarray, sim_cell_nm: np.ndarray, max_scale_change: float):
    """Similarity maps from every symmetry-equivalent pairing of the cell vectors."""
    a, b = sim_cell_nm
    inv = np.linalg.inv(exp_cell_nm)
    seen: list[np.ndarray] = []
    for (p, q), s1, s2 in itertools.product(((a, b), (b, a)), (1, -1), (1, -1)):
        t = inv @ np.stack([s1 * p, s2 * q])
        w, _, vt = np.linalg.svd(t)
        u = w @ vt
        scale = float(np.sqrt(abs(np.linalg.det(t))))
        if abs(scale - 1) > max_scale_change:
            scale = 1.0
        m = scale * u
        if any(np.allclose(m, s, atol=1e-6) for s in seen):
            continue
        seen.append(m)
        yield m, scale, u


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
    best: Registration | None = None
    for m, scale, u in _candidates(cell.vectors_nm, np.asarray(sim_cell_vectors_nm, float), max_scale_change):
        trial = Registration(m, np.zeros(2), scale, 0.0, False, 0.0)
        moving = render(sim_image, sim_pixel_size_nm, trial, positions, order=1)
        shift, _, _ = phase_cross_correlation(
            exp_patch - exp_patch.mean(),
            moving - moving.mean(),
            upsample_factor=upsample_factor,
            normalization=None,
        )
        d_exp = shift[0] * step[0] + shift[1] * step[1]
        shift_nm = -(d_exp @ m)
        trial = dataclasses.replace(trial, shift_nm=shift_nm)
        matched, _, _ = affine_match(render(sim_image, sim_pixel_size_nm, trial, positions), exp_patch)
        score = ncc(exp_patch, matched)
        if best is None or score > best.ncc:
            det = np.linalg.det(u)
            angle = float(np.degrees(np.arctan2(u[0, 1], u[0, 0])))
            best = Registration(m, shift_nm, scale, angle, bool(det < 0), score)
    assert best is not None
    logger.debug(
        "registered: scale %.4f, rotation %.1f deg, mirrored %s, NCC %.4f",
        best.scale,
        best.rotation_deg,
        best.mirrored,
        best.ncc,
    )
    return best
