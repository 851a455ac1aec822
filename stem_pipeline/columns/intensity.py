"""Column intensities on raw counts: Gaussian volume, Voronoi-cell sum, peak, background."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._types import Columns, Micrograph
from . import _windows
from ._windows import as_image, batches, neighbour_index, solve_batched, spacing_from, voronoi_mask, windows
from .config import ColumnsConfig

logger = logging.getLogger("stem_pipeline")

__all__ = ["measure_intensities", "linear_fit"]


def linear_fit(
    image: np.ndarray,
    rc: np.ndarray,
    sigma: np.ndarray,
    half: int,
    *,
    index: np.ndarray | None = None,
    mask_neighbours: bool = True,
    batch_size: int = 8192,
) -> dict[str, np.ndarray]:
    """Fit height and background plane of Gaussians at fixed positions and widths.

    Linear least squares of ``A g(r) + b0 + b_r dr + b_c dc`` over each
    column's own Voronoi cell inside its ``2 half + 1`` window.

    Parameters
    ----------
    image : (M, N) ndarray
        Image [counts]. Not modified.
    rc : (K, 2) ndarray
        All column positions (row, col) [px] (the Voronoi cells use all of them).
    sigma : (K, 2) ndarray
        Gaussian widths (row, col) [px].
    half : int
        Window half-width [px].
    index : (L,) ndarray of int, optional
        Fit only these columns; default all.
    mask_neighbours : bool
        Restrict each window to the column's Voronoi cell.
    batch_size : int
        Columns processed at once.

    Returns
    -------
    dict of (L,) ndarray
        ``amplitude`` (height above the plane) [counts], ``background`` (the
        plane at the column) [counts], ``cell_intensity`` (sum of image minus
        plane over the cell) [counts], ``peak`` (image at the nearest pixel)
        [counts], ``n_pixels``.
    """
    rc = np.asarray(rc, dtype=np.float64)
    index = np.arange(len(rc)) if index is None else np.asarray(index)
    nbr = neighbour_index(rc)
    out = {k: np.full(len(index), np.nan) for k in ("amplitude", "background", "cell_intensity", "peak")}
    out["n_pixels"] = np.zeros(len(index), np.int64)
    for sl in batches(len(index), batch_size, half_px=half):
        idx = index[sl]
        win = windows(image.shape, rc[idx], half)
        vals = win.values(image)
        w = win.valid.copy()
        if mask_neighbours:
            w &= voronoi_mask(win, rc[idx], rc[nbr[idx]])
        u = win.centre[:, :1] + win.dr[None, :] - rc[idx, :1]
        v = win.centre[:, 1:] + win.dc[None, :] - rc[idx, 1:]
        g = np.exp(-0.5 * ((u / sigma[idx, :1]) ** 2 + (v / sigma[idx, 1:]) ** 2))
        design = np.stack([g, np.ones_like(g), u, v], axis=-1)  # plane in offsets from the column
        dw = design * w[..., None]
        ata = np.matmul(dw.transpose(0, 2, 1), design)
        atb = np.einsum("npk,np->nk", dw, vals)
        ata += 1e-9 * np.einsum("nkk->nk", ata).max(axis=1)[:, None, None] * np.eye(4)
        coef = solve_batched(ata, atb)
        plane = coef[:, 1:2] + coef[:, 2:3] * u + coef[:, 3:4] * v
        out["amplitude"][sl] = coef[:, 0]
        out["background"][sl] = coef[:, 1]
        out["cell_intensity"][sl] = np.sum(np.where(w, vals - plane, 0.0), axis=1)
        out["n_pixels"][sl] = w.sum(axis=1)
        pr = np.clip(np.rint(rc[idx, 0]).astype(int), 0, image.shape[0] - 1)
        pc = np.clip(np.rint(rc[idx, 1]).astype(int), 0, image.shape[1] - 1)
        out["peak"][sl] = image[pr, pc]
    too_few = out["n_pixels"] < 5
    for k in ("amplitude", "background", "cell_intensity"):
        out[k][too_few] = np.nan
    return out


def measure_intensities(
    raw_image: np.ndarray | Micrograph,
    columns: Columns,
    *,
    window_px: int | None = None,
    config: ColumnsConfig | None = None,
) -> Columns:
    """Measure column intensities on the raw counts at the refined positions.

    Parameters
    ----------
    raw_image : (M, N) ndarray or Micrograph
        The raw (not denoised) image [counts]. Not modified.
    columns : Columns
        Refined columns (positions and, if present, ``sigma`` from
        :func:`refine_columns`; without ``sigma`` a width of
        :data:`~stem_pipeline.columns._windows.TYPICAL_SIGMA_SPACINGS` (0.15) of
        the nearest-neighbour distance is assumed).
    window_px : int, optional
        Half-width of the square window [px]; default
        ``config.window_fraction`` times the median nearest-neighbour distance.
    config : ColumnsConfig, optional
        Defaults if None.

    Returns
    -------
    Columns
        A new Columns with ``volume`` = ``2 pi A s_r s_c`` (the Gaussian
        height ``A`` refitted on the raw image at fixed position and width,
        jointly with a background plane) [counts px^2], ``cell_intensity``
        (background-subtracted sum over the Voronoi cell clipped to the
        window) [counts], ``peak`` (raw value at the nearest pixel) [counts]
        and ``background`` (the plane at the column) [counts]. Columns whose
        cell has fewer than 5 pixels in the image get NaN.
    """
    data, pixel_size_nm = as_image(raw_image, "raw_image")
    config = config or ColumnsConfig()
    rc = np.asarray(columns.rc, dtype=np.float64)
    n = len(rc)
    if n == 0:
        empty = np.zeros(0)
        return columns.replace(volume=empty, cell_intensity=empty, peak=empty, background=empty)
    if window_px is None:
        spacing = spacing_from(None, rc)
        window_px = max(2, int(round(config.window_fraction * spacing)))
    if columns.sigma is not None:
        sigma = np.asarray(columns.sigma, dtype=np.float64)
    else:
        spacing = spacing_from(None, rc) if n >= 2 else 2.0 * window_px
        sigma = np.full((n, 2), _windows.TYPICAL_SIGMA_SPACINGS * spacing)
        logger.info("measure_intensities: no fitted widths; assuming sigma = %.2f px", sigma[0, 0])
    fit = linear_fit(
        data, rc, sigma, int(window_px), mask_neighbours=config.mask_neighbours, batch_size=config.batch_size
    )
    volume = 2.0 * np.pi * fit["amplitude"] * sigma[:, 0] * sigma[:, 1]
    changes: dict[str, Any] = dict(
        volume=volume, cell_intensity=fit["cell_intensity"], peak=fit["peak"], background=fit["background"]
    )
    if columns.pixel_size_nm is None and pixel_size_nm is not None:
        changes["pixel_size_nm"] = pixel_size_nm
    return columns.replace(**changes)
