"""Vectorised sub-pixel refinement of all columns at once.

Centre of mass, then a 2-D Gaussian on a local background plane fitted
jointly by a batched Levenberg-Marquardt in numpy: every column is one small
least-squares problem, and all of them advance together (one ``(N, P, 7)``
Jacobian and a batched ``solve`` per iteration). Windows are sized from the
lattice spacing; each column sees only the pixels of its own Voronoi cell
inside its window (neighbours masked), and optionally its fitted neighbours
are subtracted and the fit repeated (neighbours modelled).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import numpy as np

from .._types import Columns, Micrograph
from ..lattice import Lattice
from ._windows import (
    TYPICAL_SIGMA_SPACINGS,
    Windows,
    as_image,
    batches,
    neighbour_index,
    solve_batched,
    spacing_from,
    voronoi_mask,
    windows,
)
from .config import ColumnsConfig

logger = logging.getLogger("stem_pipeline")

__all__ = ["refine_columns", "gaussian_model"]


def gaussian_model(
    params: np.ndarray, dr: np.ndarray, dc: np.ndarray, *, elliptical: bool, jacobian: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Batched Gaussian-on-a-plane model and its Jacobian.

    Parameters
    ----------
    params : (N, K) ndarray
        ``r0, c0, A, s[, s_c], b0, b_r, b_c`` per column: centre relative to
        the window centre [px], height, width(s) [px], plane offset and slopes.
    dr, dc : (P,) ndarray
        Pixel offsets from the window centre [px].
    elliptical : bool
        Two widths (K = 8) or one (K = 7).
    jacobian : bool
        Also return the Jacobian.

    Returns
    -------
    model : (N, P) ndarray
    jac : (N, P, K) ndarray or None
    """
    terms = _Terms.of(params, dr, dc, elliptical=elliptical)
    model = terms.model(params, dr, dc)
    return model, terms.jacobian(params, dr, dc) if jacobian else None


@dataclasses.dataclass
class _Terms:
    """The parts of :func:`gaussian_model` that its model and its Jacobian share, per column and pixel."""

    u: np.ndarray  # (N, P) row offset from the centre [px]
    v: np.ndarray  # (N, P) column offset from the centre [px]
    isr2: np.ndarray  # (N, 1) 1 / s_r^2
    isc2: np.ndarray  # (N, 1) 1 / s_c^2
    e: np.ndarray  # (N, P) the unit Gaussian
    ae: np.ndarray  # (N, P) the Gaussian
    elliptical: bool

    @classmethod
    def of(cls, params: np.ndarray, dr: np.ndarray, dc: np.ndarray, *, elliptical: bool) -> _Terms:
        r0, c0, amp = params[:, 0:1], params[:, 1:2], params[:, 2:3]
        sr, sc = (params[:, 3:4], params[:, 4:5]) if elliptical else (params[:, 3:4],) * 2
        u = dr[None, :] - r0
        v = dc[None, :] - c0
        isr2, isc2 = 1.0 / (sr * sr), 1.0 / (sc * sc)
        e = np.exp(-0.5 * (u * u * isr2 + v * v * isc2))
        return cls(u=u, v=v, isr2=isr2, isc2=isc2, e=e, ae=amp * e, elliptical=elliptical)

    def rows(self, index: np.ndarray) -> _Terms:
        """The terms of the columns ``index`` (the same numbers as computing them for those columns alone)."""
        return _Terms(
            u=self.u[index],
            v=self.v[index],
            isr2=self.isr2[index],
            isc2=self.isc2[index],
            e=self.e[index],
            ae=self.ae[index],
            elliptical=self.elliptical,
        )

    def model(self, params: np.ndarray, dr: np.ndarray, dc: np.ndarray) -> np.ndarray:
        """The model (N, P)."""
        k = 5 if self.elliptical else 4
        b0, br, bc = params[:, k : k + 1], params[:, k + 1 : k + 2], params[:, k + 2 : k + 3]
        return self.ae + b0 + br * dr[None, :] + bc * dc[None, :]

    def jacobian(self, params: np.ndarray, dr: np.ndarray, dc: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """The Jacobian (N, P, K), its float64 values stored as ``dtype`` (float32: as ``astype`` would round them)."""
        u, v, isr2, isc2, ae = self.u, self.v, self.isr2, self.isc2, self.ae
        jac: np.ndarray = np.empty(ae.shape + (params.shape[1],), dtype)
        jac[..., 0] = ae * u * isr2
        jac[..., 1] = ae * v * isc2
        jac[..., 2] = self.e
        if self.elliptical:
            jac[..., 3] = ae * u * u * isr2 / params[:, 3:4]
            jac[..., 4] = ae * v * v * isc2 / params[:, 4:5]
            k = 5
        else:
            jac[..., 3] = ae * (u * u + v * v) * isr2 / params[:, 3:4]
            k = 4
        jac[..., k] = 1.0
        jac[..., k + 1] = dr[None, :]
        jac[..., k + 2] = dc[None, :]
        return jac


def _normal_equations(
    jac: np.ndarray, w: np.ndarray, res: np.ndarray, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """``J^T W J`` (N, K, K) and ``J^T W r`` (N, K); ``dtype=float32`` halves the cost of the
    search direction (the accepted steps are still judged by the float64 cost)."""
    jac = jac.astype(dtype, copy=False)
    jw = jac * w[..., None].astype(dtype, copy=False)
    jtj = np.matmul(jw.transpose(0, 2, 1), jac).astype(np.float64)
    return jtj, np.einsum("npk,np->nk", jw, res.astype(dtype, copy=False)).astype(np.float64)


def _levenberg_marquardt(
    vals: np.ndarray,
    w: np.ndarray,
    p0: np.ndarray,
    dr: np.ndarray,
    dc: np.ndarray,
    config: ColumnsConfig,
    *,
    max_shift: float,
    sigma_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit all windows at once.

    Steps that would move the centre more than ``max_shift`` from ``p0``,
    take a width outside ``sigma_range`` or make the height negative are
    rejected like steps that raise the cost (bounded Levenberg-Marquardt).

    Returns params (N, K), residual sum of squares (N,) and the (N, 2)
    variances of the centre from the heteroscedasticity-consistent (sandwich)
    covariance ``(J^T J)^-1 J^T diag(r^2) J (J^T J)^-1``, which stays right
    under Poisson noise (brighter pixels noisier).
    """
    el = config.elliptical
    p = p0.copy()
    terms = _Terms.of(p, dr, dc, elliptical=el)
    res = vals - terms.model(p, dr, dc)
    # The search direction needs the Jacobian in float32 only (see _normal_equations), and only for the
    # accepted steps: computing it as float32, for those alone, took a third of the fit's CPU less than
    # the float64 Jacobian of every trial step (benchmarks/process.py); the same numbers either way.
    jac = terms.jacobian(p, dr, dc, np.float32)
    cost = np.sum(w * res * res, axis=1)
    n, k = p.shape
    lam = np.full(n, 1e-3)
    active = np.ones(n, bool)
    eye = np.eye(k)
    for _ in range(config.max_iterations):
        active_idx = np.nonzero(active)[0]
        if active_idx.size == 0:
            break
        # no copies while every column is still active
        idx: np.ndarray | slice = slice(None) if active_idx.size == n else active_idx
        jtj, grad = _normal_equations(jac[idx], w[idx], res[idx], np.float32)
        diag = np.einsum("nkk->nk", jtj)
        aug = jtj + (lam[idx, None] * diag + 1e-12 * diag.max(axis=1, keepdims=True) + 1e-30)[:, :, None] * eye
        step = solve_batched(aug, grad)
        p_new = p[idx] + step
        t_new = _Terms.of(p_new, dr, dc, elliptical=el)
        r_new = vals[idx] - t_new.model(p_new, dr, dc)
        c_new = np.sum(w[idx] * r_new * r_new, axis=1)
        sig = np.abs(p_new[:, 3 : 5 if el else 4])
        inside = (
            (np.hypot(p_new[:, 0] - p0[idx, 0], p_new[:, 1] - p0[idx, 1]) <= max_shift)
            & np.all((sig >= sigma_range[0]) & (sig <= sigma_range[1]), axis=1)
            & (p_new[:, 2] > 0)
        )
        better = np.isfinite(c_new) & (c_new <= cost[idx]) & inside
        good = active_idx[better]
        p[good], res[good], cost[good] = p_new[better], r_new[better], c_new[better]
        if good.size == n:  # every column stepped: no row copies
            jac = t_new.jacobian(p_new, dr, dc, np.float32)
        elif good.size:
            jac[good] = t_new.rows(better).jacobian(p_new[better], dr, dc, np.float32)
        lam[good] = np.maximum(lam[good] / 3.0, 1e-9)
        lam[active_idx[~better]] *= 4.0
        # Converged: the centre moves less than `tolerance` px, the other parameters by less
        # than `tolerance` relative to their size (background slopes relative to the height).
        scale = np.abs(p_new)
        scale[:, :2] = 1.0
        scale[:, -2:] = np.abs(p_new[:, 2:3])
        small = np.all(np.abs(step) <= config.tolerance * (scale + 1e-12), axis=1)
        done = (better & small) | (lam[active_idx] > 1e8)
        active[active_idx[done]] = False
    jac = _Terms.of(p, dr, dc, elliptical=el).jacobian(p, dr, dc)  # float64 for the covariance
    jtj, _ = _normal_equations(jac, w, res)
    meat, _ = _normal_equations(jac, w * res * res, res)
    dof = np.maximum(w.sum(axis=1) - k, 1)
    var = np.full((n, 2), np.nan)
    solvable = np.linalg.matrix_rank(jtj) == k
    if solvable.any():
        inv = np.linalg.inv(jtj[solvable])
        cov = inv @ meat[solvable] @ inv
        var[solvable] = np.einsum("nkk->nk", cov)[:, :2] * (w[solvable].sum(axis=1) / dof[solvable])[:, None]
    return p, cost, var


def _centre_of_mass(
    img: np.ndarray, rc: np.ndarray, nbr: np.ndarray, half: int, radius: float, config: ColumnsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Iterated, background-subtracted centre of mass in a disk (own Voronoi cell)."""
    rc = rc.copy()
    ok = np.ones(len(rc), bool)
    for _ in range(config.com_iterations):
        for sl in batches(len(rc), config.batch_size, half_px=half):
            win = windows(img.shape, rc[sl], half)
            vals = win.values(img)
            pr = win.centre[:, :1] + win.dr[None, :]
            pc = win.centre[:, 1:] + win.dc[None, :]
            w = win.valid & ((pr - rc[sl, :1]) ** 2 + (pc - rc[sl, 1:]) ** 2 <= radius * radius)
            if config.mask_neighbours:
                w &= voronoi_mask(win, rc[sl], rc[nbr[sl]])
            low = np.where(w, vals, np.inf).min(axis=1, keepdims=True)
            wt = np.where(w, vals - low, 0.0)
            total = wt.sum(axis=1)
            good = total > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                new = np.stack([(wt * pr).sum(axis=1), (wt * pc).sum(axis=1)], axis=1) / total[:, None]
            sub = rc[sl]
            sub[good] = new[good]
            rc[sl] = sub
            ok[sl] &= good
    return rc, ok


def _initial_params(vals: np.ndarray, w: np.ndarray, win: Windows, rc: np.ndarray, spacing: float, el: bool):
    """Starting values of the Gaussian fit from the window pixels."""
    r0 = rc[:, 0] - win.centre[:, 0]
    c0 = rc[:, 1] - win.centre[:, 1]
    # 20th percentile of the window's own pixels (0 when none is inside the image).
    count = w.sum(axis=1)
    ranked = np.sort(np.where(w, vals, np.inf), axis=1)
    b0 = ranked[np.arange(len(vals)), np.maximum((0.2 * (count - 1)).astype(int), 0)]
    b0 = np.where(count > 0, b0, 0.0)
    d2 = (win.dr[None, :] - r0[:, None]) ** 2 + (win.dc[None, :] - c0[:, None]) ** 2
    near = w & (d2 <= max(1.0, (0.1 * spacing) ** 2))
    amp = np.where(near, vals, 0.0).sum(axis=1) / np.maximum(near.sum(axis=1), 1) - b0
    amp = np.maximum(amp, 1e-6 * (np.abs(b0) + 1))
    wt = np.where(w & (d2 <= (0.35 * spacing) ** 2), np.clip(vals - b0[:, None], 0, None), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt((wt * d2).sum(axis=1) / wt.sum(axis=1) / 2.0)
    s = np.clip(np.nan_to_num(s, nan=TYPICAL_SIGMA_SPACINGS * spacing), 0.5, 0.3 * spacing)
    zero = np.zeros_like(b0)
    cols = [r0, c0, amp, s] + ([s] if el else []) + [b0, zero, zero]
    return np.stack(cols, axis=1)


def refine_columns(
    image: np.ndarray | Micrograph,
    columns: Columns,
    *,
    lattice: Lattice | None = None,
    window_px: int | None = None,
    method: Literal["gaussian", "com"] | None = None,
    config: ColumnsConfig | None = None,
) -> Columns:
    """Refine every column position at once: centre of mass, then a 2-D Gaussian.

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The (denoised) image the columns were found on. Not modified.
    columns : Columns
        Starting positions (``rc`` (row, col) [px]).
    lattice : Lattice, optional
        Sets the window size, the centre-of-mass radius and the limits of a
        good fit; default: the median nearest-neighbour distance of the columns.
    window_px : int, optional
        Half-width of the square fit window [px] (the window is
        ``2 * window_px + 1`` wide); default ``config.window_fraction`` spacings.
    method : {"gaussian", "com"}, optional
        ``"com"`` stops after the centre of mass; default ``config.method``.
    config : ColumnsConfig, optional
        Refinement parameters; defaults if None.

    Returns
    -------
    Columns
        A new Columns with ``rc``, ``amplitude`` [counts above background],
        ``sigma`` (N, 2) [px], ``background`` (the plane at the centre) [counts],
        ``rc_std`` (N, 2) [px] (per axis, from the sandwich covariance of
        the fit, valid under Poisson noise) and ``fit_ok``. Failed fits (no convergence to a sensible
        Gaussian, a shift over ``max_shift_fraction`` spacings, a width out of
        range, too few pixels) keep their input position, get
        ``fit_ok=False``, the median fitted width, amplitude and background
        from the starting values, and ``rc_std=NaN``; they are never dropped.
        With ``method="com"`` the widths are moment estimates and ``rc_std``
        is NaN.
    """
    data, _ = as_image(image)
    config = config or ColumnsConfig()
    method = method or config.method
    if method not in ("gaussian", "com"):
        raise ValueError(f"method must be 'gaussian' or 'com', got {method!r}")
    rc_in = np.asarray(columns.rc, dtype=np.float64)
    n = len(rc_in)
    if n == 0:
        empty = np.zeros(0)
        return columns.replace(
            amplitude=empty,
            sigma=np.zeros((0, 2)),
            background=empty,
            rc_std=np.zeros((0, 2)),
            fit_ok=np.zeros(0, bool),
        )
    if lattice is None and window_px is not None and n < 2:
        spacing = window_px / config.window_fraction
    else:
        spacing = spacing_from(lattice, rc_in)
    half = int(window_px) if window_px is not None else max(2, int(round(config.window_fraction * spacing)))
    img = data if data.dtype == np.float64 else data.astype(np.float32, copy=False)
    max_shift = config.max_shift_fraction * spacing
    nbr = neighbour_index(rc_in)

    rc_com, com_ok = _centre_of_mass(img, rc_in, nbr, half, config.com_radius_fraction * spacing, config)
    com_ok &= np.hypot(*(rc_com - rc_in).T) <= max_shift
    rc_com[~com_ok] = rc_in[~com_ok]
    fit = _fit_gaussians(img, rc_com, nbr, half, spacing, method, config)
    k_sigma = 2 if config.elliptical else 1
    params = fit.params
    sig = np.abs(params[:, 3 : 3 + k_sigma])
    sigma = np.repeat(sig, 2 // k_sigma, axis=1) if not config.elliptical else sig
    amp = params[:, 2]
    b = params[:, 3 + k_sigma : 6 + k_sigma]
    rc_fit = fit.centres + params[:, :2]
    background = b[:, 0] + b[:, 1] * params[:, 0] + b[:, 2] * params[:, 1]
    if method == "com":
        ok = com_ok
        rc_out = rc_com
        rc_std = np.full((n, 2), np.nan)
    else:
        shift = np.hypot(*(rc_fit - rc_in).T)
        ok = (
            np.all(np.isfinite(params), axis=1)
            & np.all(np.isfinite(fit.cov_rc), axis=1)
            & (amp > 0)
            & np.all(sigma >= config.min_sigma_px, axis=1)
            & np.all(sigma <= config.max_sigma_fraction * spacing, axis=1)
            & (shift <= max_shift)
            & np.all((rc_fit >= -0.5) & (rc_fit <= np.array(img.shape) - 0.5), axis=1)
            & (fit.n_pix >= params.shape[1] + 3)
        )
        rc_out = np.where(ok[:, None], rc_fit, rc_in)
        rc_std = np.where(ok[:, None], np.sqrt(np.abs(fit.cov_rc)), np.nan)
        if (~ok).any():
            fallback = np.median(sigma[ok], axis=0) if ok.any() else np.full(2, TYPICAL_SIGMA_SPACINGS * spacing)
            sigma = np.where(ok[:, None], sigma, fallback)
            logger.info("refine_columns: %d of %d Gaussian fits failed (flagged, input positions kept)", (~ok).sum(), n)
    if (~ok).any() and method == "gaussian":
        amp, background = _fallback_levels(img, rc_out, sigma, half, amp, background, ~ok)
    return columns.replace(rc=rc_out, amplitude=amp, sigma=sigma, background=background, rc_std=rc_std, fit_ok=ok)


@dataclasses.dataclass
class _Fit:
    """The Gaussian fits of N columns (or their starting values, for ``method="com"``)."""

    params: np.ndarray  # (N, 6 + k_sigma): row, col (from the window centre), amplitude, sigma(s), background plane
    cov_rc: np.ndarray  # (N, 2) variance of the position (row, col) [px^2]; NaN without a fit
    n_pix: np.ndarray  # (N,) pixels in the fit window
    centres: np.ndarray  # (N, 2) window centre pixels


def _fit_gaussians(
    img: np.ndarray,
    rc_com: np.ndarray,
    nbr: np.ndarray,
    half: int,
    spacing: float,
    method: str,
    config: ColumnsConfig,
) -> _Fit:
    """Batched Gaussian fits of every column's window, with ``config.subtract_neighbours`` passes that subtract
    the neighbours' fitted Gaussians first; ``method="com"`` returns the starting values."""
    n = len(rc_com)
    el = config.elliptical
    k_sigma = 2 if el else 1
    max_shift = config.max_shift_fraction * spacing
    sigma_range = (config.min_sigma_px, config.max_sigma_fraction * spacing)
    params = np.zeros((n, 6 + k_sigma))
    cov_rc = np.full((n, 2), np.nan)
    n_pix = np.zeros(n, np.int64)
    centres = np.zeros((n, 2), np.int64)
    subtract = None
    passes = 1 + (config.subtract_neighbours if method == "gaussian" else 0)
    for pass_index in range(passes):
        for sl in batches(n, config.batch_size, half_px=half):
            win = windows(img.shape, rc_com[sl], half)
            vals = win.values(img)
            if subtract is not None:
                own, _ = gaussian_model(
                    _amplitude_only(params[sl], k_sigma), win.dr, win.dc, elliptical=el, jacobian=False
                )
                vals = vals - (win.values(subtract) - own)
            w = win.valid.copy()
            if config.mask_neighbours:
                w &= voronoi_mask(win, rc_com[sl], rc_com[nbr[sl]])
            centres[sl] = win.centre
            n_pix[sl] = w.sum(axis=1)
            if pass_index == 0:
                p0 = _initial_params(vals, w, win, rc_com[sl], spacing, el)
            else:
                p0 = params[sl]
            if method == "com":
                params[sl] = p0
                continue
            params[sl], _, cov_rc[sl] = _levenberg_marquardt(
                vals,
                w.astype(np.float64),
                p0,
                win.dr,
                win.dc,
                config,
                max_shift=max_shift,
                sigma_range=sigma_range,
            )
        if pass_index + 1 < passes:
            subtract = _render(img.shape, params, centres, half, el)
    return _Fit(params=params, cov_rc=cov_rc, n_pix=n_pix, centres=centres)


def _amplitude_only(params: np.ndarray, k_sigma: int) -> np.ndarray:
    """Same parameters with the background plane zeroed (the Gaussian alone)."""
    p = params.copy()
    p[:, 3 + k_sigma :] = 0.0
    return p


def _render(shape: tuple[int, int], params: np.ndarray, centres: np.ndarray, half: int, el: bool) -> np.ndarray:
    """Image of all fitted Gaussians (no background), each within its window."""
    out = np.zeros(shape[0] * shape[1])
    k_sigma = 2 if el else 1
    good = np.all(np.isfinite(params), axis=1) & (params[:, 2] > 0)
    for sl in batches(len(params), 8192, half_px=half):
        win = windows(shape, centres[sl].astype(np.float64), half)
        g, _ = gaussian_model(_amplitude_only(params[sl], k_sigma), win.dr, win.dc, elliptical=el, jacobian=False)
        sel = win.valid & good[sl, None]
        np.add.at(out, win.flat[sel], g[sel])
    return out.reshape(shape)


def _fallback_levels(img, rc, sigma, half, amp, background, failed):
    """Amplitude and background of failed fits from a linear fit at fixed position and width."""
    from .intensity import linear_fit

    idx = np.nonzero(failed)[0]
    fit = linear_fit(img, rc, sigma, half, index=idx)
    amp, background = amp.copy(), background.copy()
    amp[idx], background[idx] = fit["amplitude"], fit["background"]
    return amp, background
