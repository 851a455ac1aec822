"""abTEM cell mosaic: an affordable stand-in for a full simulation of a two-phase dot.

A full multislice simulation of a 14 nm Cs0.5FA0.5PbI3 dot is days of CPU on
a small machine. The mosaic instead simulates **one repeat cell of each pure
phase** with abTEM (:func:`stem_pipeline.simulate.cells.simulate_cell`, through the simulation cache) and
assembles a dot image by sampling each phase's periodic cell image over a
Voronoi domain map (:func:`stem_pipeline.synthetic.domain_map`, the layout of
:func:`stem_pipeline.synthetic.make_dot`), on amorphous carbon
(:func:`stem_pipeline.synthetic.amorphous_background`), with Poisson noise
(:func:`mosaic_dot`). Ground truth comes with it: region map, true uniform
fraction, and the true heavy-atom column positions and contrasts.

What it ignores: the beam sees a single phase through the whole thickness
at every pixel (no mixing of units along the beam as in the paper's 2x2x2-cell
unit model), there is no channelling or probe spreading across domain
boundaries (the image switches phase sharply at the boundary), both phases
share one lattice origin at the dot centre with no strain or interface
relaxation, the dot has flat faces and one thickness, and the carbon support
is the synthetic speckle, not simulated.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from ._types import CONTRASTS, LABELS, REGION_ORDERED, REGION_UNIFORM, Micrograph
from .simulate.cells import CellImage, sample_cell
from .simulate.structures import as_generator
from .synthetic import SyntheticDot, amorphous_background, apply_dose, domain_map, dot_frame

logger = logging.getLogger("stem_pipeline")

__all__ = ["MosaicDot", "mosaic_dot"]

_BRIGHT, _DIM, _UNIFORM = (CONTRASTS.index(c) for c in ("bright", "dim", "uniform"))


@dataclasses.dataclass(frozen=True, eq=False)
class MosaicDot(SyntheticDot):
    """A :class:`~stem_pipeline.synthetic.SyntheticDot` assembled from simulated cells.

    Extra attributes
    ----------------
    models : (2,) tuple of str
        Names of the ordered and uniform cells.
    thickness_nm : (2,) tuple of float
        Their thicknesses [nm].
    """

    models: tuple[str, str] = ("", "")
    thickness_nm: tuple[float, float] = (float("nan"), float("nan"))

    def micrograph(self, source: str = "mosaic") -> Micrograph:
        """The noisy image as a calibrated :class:`Micrograph` (metadata: models, thickness, dose)."""
        metadata = {
            "simulated": True,
            "mosaic": True,
            "models": list(self.models),
            "thickness_nm": list(self.thickness_nm),
            "dose": self.dose,
            "uniform_fraction": self.uniform_fraction,
        }
        return Micrograph(self.image, pixel_size_nm=self.pixel_size_nm, source=source, metadata=metadata)


def _phase_columns(cell: CellImage, frame, region: np.ndarray, phase: int, pixel_size_nm: float):
    """True columns of one phase: every site of the tiled cell whose pixel lies in that phase.

    Returns their positions (row, col) [px], bright flags and cell-image values at them.
    """
    center, u, w, half = frame
    ext = cell.extent_nm
    reach = half * pixel_size_nm * np.sqrt(2) + ext.max()
    ni, nj = (int(np.ceil(reach / e)) for e in ext)
    i, j = np.meshgrid(np.arange(-ni, ni + 1), np.arange(-nj, nj + 1), indexing="ij")
    crystal = cell.sites_nm[None, :, :] + np.stack([i.ravel() * ext[0], j.ravel() * ext[1]], axis=1)[:, None, :]
    bright = np.broadcast_to(cell.bright, crystal.shape[:2]).ravel()
    crystal = crystal.reshape(-1, 2)
    rc = center + (crystal[:, :1] * u + crystal[:, 1:] * w) / pixel_size_nm
    r, c = np.round(rc).astype(int).T
    ok = (r >= 0) & (r < region.shape[0]) & (c >= 0) & (c < region.shape[1])
    ok[ok] = region[r[ok], c[ok]] == phase
    return rc[ok], bright[ok], sample_cell(cell, crystal[ok])


def mosaic_dot(
    ordered: CellImage,
    uniform: CellImage,
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_size_nm: float = 0.035,
    dot_size_nm: float = 12.0,
    rotation_deg: float = 0.0,
    uniform_fraction: float = 0.5,
    domain_size_nm: float = 3.5,
    carbon_level: float = 0.15,
    carbon_contrast: float = 0.05,
    dose: float | None = 400.0,
    center_offset_nm: tuple[float, float] = (0.0, 0.0),
    rng: np.random.Generator | int | None = None,
) -> MosaicDot:
    """Assemble a two-phase dot image from two simulated periodic cells.

    Every pixel of the dot shows the cell image of its domain's phase,
    sampled (periodic cubic spline) at the pixel's position in the crystal
    frame; both phases share one lattice origin at the dot centre and the
    dot's rotation. The domain layout, dot frame and carbon support are those
    of :func:`stem_pipeline.synthetic.make_dot` (same parameters and same
    use of ``rng``: the region map equals ``domain_map(...)`` with the same
    seed).

    Parameters
    ----------
    ordered, uniform : CellImage
        The two phases' cell images (e.g. CsPbI3 [001] and the uniform
        phase) in the same units (both from abTEM, so their relative
        brightness is the simulated one), from :func:`simulate_cell`.
    shape : tuple of int
        Image shape (rows, cols).
    pixel_size_nm : float
        Pixel size of the mosaic [nm].
    dot_size_nm, rotation_deg, uniform_fraction, domain_size_nm, center_offset_nm
        As in :func:`stem_pipeline.synthetic.make_dot`.
    carbon_level, carbon_contrast : float
        Mean and speckle standard deviation of the carbon support (added
        everywhere, under the dot too), relative to the brightest pixel of
        the ordered cell image.
    dose : float or None
        Expected counts at the brightest pixel of the ordered cell (a bright
        column); None gives no noise and a unit-height bright column.
    rng : Generator, int or None
        Random source (domains, speckle, noise).

    Returns
    -------
    MosaicDot
        ``image`` (float32 counts), ``clean``, ``region_map``,
        ``uniform_fraction`` (truth), ``rc`` / ``contrast`` / ``label`` /
        ``amplitude`` of the true heavy-atom columns, the ordered column grid
        ``lattice_vectors_px`` [px], and the two models' names and thicknesses.

    Notes
    -----
    The mosaic ignores mixing of the phases along the beam, channelling and
    probe spreading across domain boundaries, interface strain, and thickness
    variation; see the module docstring.
    """
    rng = as_generator(rng)
    shape = (int(shape[0]), int(shape[1]))
    if pixel_size_nm <= 0:
        raise ValueError(f"pixel_size_nm={pixel_size_nm}: must be positive")
    placement: dict[str, Any] = {
        "pixel_size_nm": pixel_size_nm,
        "dot_size_nm": dot_size_nm,
        "rotation_deg": rotation_deg,
        "center_offset_nm": center_offset_nm,
    }
    # the synthetic generator's layout: same parameters, same draws from rng
    region = domain_map(shape, uniform_fraction=uniform_fraction, domain_size_nm=domain_size_nm, rng=rng, **placement)
    frame = dot_frame(shape, **placement)
    center, u, w, _ = frame
    scale = float(ordered.image.max())
    if not scale > 0:
        raise ValueError(f"ordered cell {ordered.name!r} has no positive pixel; is it a HAADF image?")

    crystal = np.zeros(shape)
    for phase, cell in ((REGION_ORDERED, ordered), (REGION_UNIFORM, uniform)):
        rr, cc = np.nonzero(region == phase)
        if len(rr) == 0:
            continue
        rel_nm = (np.stack([rr, cc], axis=1) - center) * pixel_size_nm
        crystal[rr, cc] = sample_cell(cell, np.stack([rel_nm @ u, rel_nm @ w], axis=1)) / scale
    clean = crystal + amorphous_background(
        shape, pixel_size_nm=pixel_size_nm, level=carbon_level, contrast=carbon_contrast, rng=rng
    )

    carbon = clean - crystal
    rc_o, bright_o, peak_o = _phase_columns(ordered, frame, region, REGION_ORDERED, pixel_size_nm)
    rc_u, _, peak_u = _phase_columns(uniform, frame, region, REGION_UNIFORM, pixel_size_nm)
    rc = np.concatenate([rc_o, rc_u])
    r, c = np.clip(np.round(rc).astype(int), 0, np.array(shape) - 1).T
    # noise-free column peak heights: the cell at the exact column position plus the carbon under it
    amplitude = np.concatenate([peak_o, peak_u]) / scale + carbon[r, c]
    contrast = np.concatenate([np.where(bright_o, _BRIGHT, _DIM), np.full(len(rc_u), _UNIFORM)]).astype(np.int8)
    label = np.where(contrast == _UNIFORM, LABELS.index("uniform"), LABELS.index("ordered")).astype(np.int8)

    image, clean, amplitude = apply_dose(clean, amplitude, dose=dose, rng=rng)
    grid = ordered.grid_vectors_nm() / pixel_size_nm
    vectors = grid[:, :1] * u + grid[:, 1:] * w
    return MosaicDot(
        image=image.astype(np.float32),
        clean=clean.astype(np.float32),
        pixel_size_nm=float(pixel_size_nm),
        rc=rc,
        contrast=contrast,
        label=label,
        amplitude=amplitude,
        region_map=region,
        lattice_vectors_px=vectors,
        dose=dose,
        models=(ordered.name, uniform.name),
        thickness_nm=(ordered.thickness_nm, uniform.thickness_nm),
    )
