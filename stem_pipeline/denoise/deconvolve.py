"""Richardson-Lucy deconvolution with the probe intensity as the point-spread function.

The probe is computed from the optics (no abTEM import, so it takes
milliseconds): the aberration-free (or defocused) aperture-limited probe of
the given convergence semi-angle at the given energy, whose intensity is an
Airy pattern in focus, convolved with a Gaussian effective source.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..optics import electron_wavelength_nm, sigma_from_fwhm
from ._common import FFT_WORKERS, check_image, logger


def probe_psf(
    size: int | tuple[int, int] | None = None,
    *,
    pixel_size_nm: float,
    energy_kev: float = 200.0,
    convergence_mrad: float = 25.0,
    defocus_nm: float = 0.0,
    source_fwhm_nm: float = 0.04,
) -> np.ndarray:
    """Probe intensity at the image's pixel size, normalised to unit sum.

    The coherent probe is the inverse Fourier transform of a circular
    aperture of semi-angle ``convergence_mrad`` with the defocus phase
    ``pi * lambda * defocus * k**2``, computed on a grid fine enough to hold
    the aperture and sampled at the pixel positions; its intensity is then
    convolved with a Gaussian source of FWHM ``source_fwhm_nm``.

    Parameters
    ----------
    size : int or tuple of int or None
        Edge (or (rows, cols)) of the returned kernel [px], odd; None picks
        one that holds 3 Airy radii plus 3 source sigmas.
    pixel_size_nm : float
        Pixel size [nm].
    energy_kev : float
        Beam energy [keV].
    convergence_mrad : float
        Probe convergence semi-angle [mrad].
    defocus_nm : float
        Residual defocus [nm].
    source_fwhm_nm : float
        FWHM of the Gaussian effective source [nm] (0: coherent probe).

    Returns
    -------
    (P, Q) ndarray of float64
        The PSF, centred at (P // 2, Q // 2), summing to 1.

    Raises
    ------
    ValueError
        If a physical parameter is not positive (``source_fwhm_nm`` and
        ``defocus_nm`` may be 0) or ``size`` is not a positive odd integer.

    Examples
    --------
    >>> psf = probe_psf(pixel_size_nm=0.035)
    >>> round(float(psf.sum()), 6), psf.shape[0] % 2
    (1.0, 1)
    """
    for name, value in (
        ("pixel_size_nm", pixel_size_nm),
        ("energy_kev", energy_kev),
        ("convergence_mrad", convergence_mrad),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if source_fwhm_nm < 0:
        raise ValueError(f"source_fwhm_nm must be >= 0, got {source_fwhm_nm}")
    lam = electron_wavelength_nm(energy_kev)
    alpha = convergence_mrad * 1e-3
    sigma_src_nm = sigma_from_fwhm(source_fwhm_nm)
    if size is None:
        extent_nm = 3 * 0.61 * lam / alpha + 3 * sigma_src_nm + abs(defocus_nm) * alpha
        half = max(2, int(np.ceil(extent_nm / pixel_size_nm)))
        shape = (2 * half + 1, 2 * half + 1)
    else:
        edges = np.ravel(size)
        edges = np.repeat(edges, 2) if edges.size == 1 else edges
        if edges.size != 2 or any(int(s) != s or s < 1 or s % 2 == 0 for s in edges):
            raise ValueError(f"size must be a positive odd integer (or two), got {size}")
        shape = (int(edges[0]), int(edges[1]))
    # Fine grid holding the aperture (Nyquist > 2 alpha / lambda) and twice the kernel.
    over = max(1, int(np.ceil(pixel_size_nm / (lam / (4 * alpha)))))
    dx = pixel_size_nm / over
    n = int(2 * max(shape) * over + 1)
    n = max(n, int(np.ceil(24 * lam / alpha / dx)) | 1)
    k = sfft.fftfreq(n, d=dx)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    kmax = alpha / lam
    edge = 0.5 / (n * dx)  # half an FFT pixel of soft edge against aliasing
    aperture = np.clip((kmax - np.sqrt(k2)) / (2 * edge) + 0.5, 0, 1)
    wave = aperture * np.exp(-1j * np.pi * lam * defocus_nm * k2)
    intensity = np.abs(sfft.fftshift(sfft.ifft2(wave))) ** 2
    c = n // 2
    rows = c + over * (np.arange(shape[0]) - shape[0] // 2)
    cols = c + over * (np.arange(shape[1]) - shape[1] // 2)
    psf = intensity[np.ix_(rows, cols)]
    if sigma_src_nm > 0:
        psf = ndimage.gaussian_filter(psf, sigma_src_nm / pixel_size_nm, mode="constant")
    return psf / psf.sum()


def _kernel_rfft2(kernel: np.ndarray, shape: tuple[int, int], dtype: type) -> np.ndarray:
    """``rfft2`` of ``kernel`` zero-padded to ``shape`` and centred on pixel (0, 0), cast to ``dtype``.

    Equal to ``rfft2`` of the padded, rolled kernel (a real FFT along the rows, then a complex one
    along the columns), but only the kernel's rows are transformed along the rows and the columns are
    transformed a block at a time, so no full-size float64 or complex128 array is made.
    """
    kr, kc = kernel.shape
    rows = np.zeros((kr, shape[1]))
    rows[:, :kc] = kernel
    rows = sfft.rfft(np.roll(rows, -(kc // 2), axis=1), axis=1)
    at = (np.arange(kr) - kr // 2) % shape[0]  # the kernel rows' places in the rolled array
    out = np.empty((shape[0], rows.shape[1]), dtype)
    step = max(1, (1 << 20) // shape[0])
    for start in range(0, rows.shape[1], step):
        block = np.zeros((shape[0], min(step, rows.shape[1] - start)), complex)
        block[at] = rows[:, start : start + block.shape[1]]
        out[:, start : start + block.shape[1]] = sfft.fft(block, axis=0, workers=FFT_WORKERS)
    return out


def _tv_divergence(u: np.ndarray, eps: float) -> np.ndarray:
    """div(grad u / |grad u|) with forward differences and backward divergence."""
    gr = np.diff(u, axis=0, append=u[-1:, :])
    gc = np.diff(u, axis=1, append=u[:, -1:])
    norm = np.sqrt(gr**2 + gc**2 + eps**2)
    gr /= norm
    gc /= norm
    return np.diff(gr, axis=0, prepend=0 * gr[:1, :]) + np.diff(gc, axis=1, prepend=0 * gc[:, :1])


def richardson_lucy(
    image: np.ndarray,
    psf: np.ndarray,
    *,
    iterations: int = 10,
    tv_weight: float = 0.0,
    tol: float = 1e-3,
) -> np.ndarray:
    """Richardson-Lucy deconvolution, optionally total-variation regularised.

    Negative images are shifted to positive for the iterations and shifted
    back; edges are handled by reflective padding.

    Parameters
    ----------
    image : (M, N) ndarray
        The image (counts, or a denoised version of them).
    psf : (P, Q) ndarray
        Point-spread function, e.g. from :func:`probe_psf`; normalised here.
    iterations : int
        Maximum number of iterations (0 returns a copy).
    tv_weight : float
        Total-variation regularisation weight (Dey et al. 2006; the TV term
        is scale-free, typical values 0.001-0.01); 0 gives plain RL.
        Suppresses the noise amplification of late iterations.
    tol : float
        Stopping rule: stop once an iteration changes the estimate by less
        than this fraction (relative L2 norm).

    Returns
    -------
    (M, N) ndarray
        The deconvolved image, float32 unless the input was float64.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D, ``psf`` is not a 2-D non-negative kernel
        with a positive sum, or ``iterations < 0``.
    """
    arr, dtype = check_image(image)
    return _richardson_lucy([arr], dtype, psf, iterations=iterations, tv_weight=tv_weight, tol=tol)


def _richardson_lucy(
    held: list[np.ndarray], dtype: np.dtype, psf: np.ndarray, *, iterations: int, tv_weight: float, tol: float
) -> np.ndarray:
    """:func:`richardson_lucy` of the checked image in ``held``, which is emptied once the image is padded:
    a caller that passes its only reference frees the image before the iterations (one image copy less)."""
    arr = held.pop()
    kernel = np.asarray(psf, dtype=np.float64)
    if kernel.ndim != 2 or kernel.min() < 0 or not kernel.sum() > 0:
        raise ValueError(f"psf must be a 2-D non-negative kernel with a positive sum, got shape {kernel.shape}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if iterations == 0:
        return arr.astype(dtype, copy=True)
    kernel = kernel / kernel.sum()
    work = np.float32 if dtype == np.float32 else np.float64
    pr, pc = kernel.shape[0] // 2 + 1, kernel.shape[1] // 2 + 1
    shape = (sfft.next_fast_len(arr.shape[0] + 2 * pr, real=True), sfft.next_fast_len(arr.shape[1] + 2 * pc, real=True))
    data = np.pad(
        arr.astype(work, copy=False),
        ((pr, shape[0] - arr.shape[0] - pr), (pc, shape[1] - arr.shape[1] - pc)),
        mode="reflect",
    )
    low = float(data.min())
    offset = (1e-3 * max(float(np.abs(data).mean()), 1e-12)) - low if low <= 0 else 0.0
    data += work(offset)
    crop = (slice(pr, pr + arr.shape[0]), slice(pc, pc + arr.shape[1]))
    del arr
    otf = _kernel_rfft2(kernel, shape, np.complex64 if work == np.float32 else np.complex128)

    def spectrum_times_otf(x: np.ndarray, *, adjoint: bool = False) -> np.ndarray:
        spectrum = sfft.rfft2(x, workers=FFT_WORKERS)
        if adjoint:  # x * conj(h) as conj(conj(x) * h): no conjugate copy of the transfer function
            np.conjugate(spectrum, out=spectrum)
            spectrum *= otf
            np.conjugate(spectrum, out=spectrum)
        else:
            spectrum *= otf
        return spectrum

    def inverse(spectrum: np.ndarray) -> np.ndarray:
        return sfft.irfft2(spectrum, s=shape, workers=FFT_WORKERS, overwrite_x=True)

    # In-place updates, each intermediate freed as soon as it is used: at most the data, the estimate, the
    # transfer function and two padded-image-sized arrays at once (benchmarks/memory.py).
    tiny = work(1e-6 * float(data.mean()))
    u = data.copy()
    for i in range(int(iterations)):
        ratio = inverse(spectrum_times_otf(u))
        np.maximum(ratio, tiny, out=ratio)
        np.divide(data, ratio, out=ratio)
        spectrum = spectrum_times_otf(ratio, adjoint=True)
        del ratio
        update = inverse(spectrum)
        del spectrum
        update *= u
        if tv_weight > 0:
            update /= np.maximum(1.0 - tv_weight * _tv_divergence(u, 1e-3 * float(data.mean())), 0.2)
        norm_u = float(np.linalg.norm(u))
        u -= update
        change = float(np.linalg.norm(u)) / max(norm_u, 1e-30)
        u = update
        if change < tol:
            logger.debug("richardson_lucy: converged after %d iterations (change %.2g)", i + 1, change)
            break
    del data
    out = u[crop] - offset
    return out.astype(dtype, copy=False)
