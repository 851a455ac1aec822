"""Spatial (real-space) smoothing filters: Gaussian, median, non-local means, BM3D.

Every filter takes a 2-D image first and keyword-only options, returns a new
array (float32 stays float32, float64 stays float64, other dtypes become
float32), never changes its input, and rejects non-2-D input.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._common import check_image, logger


def gaussian(image: np.ndarray, *, sigma_px: float = 1.0) -> np.ndarray:
    """Gaussian smoothing (linear, so it keeps column intensity ratios on average).

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    sigma_px : float
        Standard deviation of the Gaussian kernel [px]; 0 returns a copy.

    Returns
    -------
    (M, N) ndarray
        The smoothed image, float32 unless the input was float64.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or has non-finite pixels, or ``sigma_px < 0``.

    Examples
    --------
    >>> import numpy as np
    >>> gaussian(np.ones((8, 8), np.float32), sigma_px=1.5).dtype
    dtype('float32')
    """
    arr, dtype = check_image(image)
    if sigma_px < 0:
        raise ValueError(f"sigma_px must be >= 0, got {sigma_px}")
    if sigma_px == 0:
        return arr.astype(dtype, copy=True)
    return ndimage.gaussian_filter(arr, float(sigma_px), mode="reflect").astype(dtype, copy=False)


def median(image: np.ndarray, *, size_px: int = 3) -> np.ndarray:
    """Median filter over a square window (removes impulse noise; non-linear).

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    size_px : int
        Window edge [px], odd and >= 1 (1 returns a copy).

    Returns
    -------
    (M, N) ndarray
        The filtered image, float32 unless the input was float64.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or ``size_px`` is not a positive odd integer.
    """
    arr, dtype = check_image(image)
    if int(size_px) != size_px or size_px < 1 or size_px % 2 == 0:
        raise ValueError(f"size_px must be a positive odd integer, got {size_px}")
    return ndimage.median_filter(arr, size=int(size_px), mode="reflect").astype(dtype, copy=True)


def anscombe(image: np.ndarray) -> np.ndarray:
    """Anscombe transform ``2 sqrt(x + 3/8)``: Poisson counts to unit-variance noise."""
    return 2.0 * np.sqrt(np.clip(image, 0, None) + 0.375)


def inverse_anscombe(image: np.ndarray) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse Anscombe transform (Makitalo & Foi 2011)."""
    y = np.maximum(np.asarray(image, dtype=np.float64), 0.8)
    s = np.sqrt(1.5)
    return 0.25 * y**2 + 0.25 * s / y - 1.375 / y**2 + 0.625 * s / y**3 - 0.125


def _noise_sigma(arr: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(arr.astype(np.float64, copy=False), channel_axis=None))


def _stabilised(func, arr: np.ndarray, poisson: bool):
    """Run ``func(x, sigma)`` on ``arr`` (or on its Anscombe transform for Poisson counts)."""
    if poisson:
        if arr.min() < 0:
            raise ValueError("poisson=True needs non-negative counts; the image has negative pixels")
        y = anscombe(arr.astype(np.float64))
        return inverse_anscombe(func(y, 1.0))
    return func(arr.astype(np.float64), _noise_sigma(arr))


def nlm(
    image: np.ndarray,
    *,
    h_factor: float = 0.8,
    patch_size_px: int = 5,
    patch_distance_px: int = 6,
    poisson: bool = False,
) -> np.ndarray:
    """Non-local means (scikit-image, fast mode) with the noise level estimated from the image.

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    h_factor : float
        Filter strength as a multiple of the estimated noise standard deviation.
    patch_size_px : int
        Patch edge [px].
    patch_distance_px : int
        Search radius [px].
    poisson : bool
        If True, the image is taken as Poisson counts and filtered in the
        Anscombe domain (unit noise), then transformed back.

    Returns
    -------
    (M, N) ndarray
        The filtered image, float32 unless the input was float64.

    Raises
    ------
    ValueError
        If ``image`` is not 2-D or has non-finite pixels.
    """
    from skimage.restoration import denoise_nl_means

    arr, dtype = check_image(image)

    def run(x: np.ndarray, sigma: float) -> np.ndarray:
        return denoise_nl_means(
            x,
            h=h_factor * sigma,
            sigma=sigma,
            patch_size=int(patch_size_px),
            patch_distance=int(patch_distance_px),
            fast_mode=True,
            channel_axis=None,
            preserve_range=True,
        )

    return np.asarray(_stabilised(run, arr, poisson)).astype(dtype, copy=False)


def bm3d(image: np.ndarray, *, sigma_factor: float = 1.0, poisson: bool = False) -> np.ndarray:
    """BM3D collaborative filtering (the optional ``bm3d`` package), noise level estimated from the image.

    Slow (tens of seconds per 1024x1024 image); a benchmark baseline more
    than a pipeline step.

    Parameters
    ----------
    image : (M, N) ndarray
        The image.
    sigma_factor : float
        Multiplies the estimated noise standard deviation passed to BM3D.
    poisson : bool
        If True, filter in the Anscombe domain (Poisson counts).

    Returns
    -------
    (M, N) ndarray
        The filtered image, float32 unless the input was float64.

    Raises
    ------
    ImportError
        If the ``bm3d`` package is not installed (``pip install stem-pipeline[bm3d]``).
    ValueError
        If ``image`` is not 2-D or has non-finite pixels.
    """
    arr, dtype = check_image(image)
    try:
        import bm3d as _bm3d
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'bm3d' denoising step needs the optional bm3d package: pip install 'stem-pipeline[bm3d]'"
        ) from exc

    def run(x: np.ndarray, sigma: float) -> np.ndarray:
        return _bm3d.bm3d(x, sigma_psd=max(sigma_factor * sigma, 1e-6))

    logger.debug("bm3d on a %s image", arr.shape)
    return np.asarray(_stabilised(run, arr, poisson)).astype(dtype, copy=False)
