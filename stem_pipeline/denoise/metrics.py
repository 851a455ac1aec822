"""Image-quality metric used by the denoising benchmark and tests."""

from __future__ import annotations

import numpy as np


def psnr_affine(image: np.ndarray, clean: np.ndarray) -> tuple[float, np.ndarray]:
    """PSNR against a noise-free reference after the best affine fit ``a * image + b``.

    The fit makes filters that rescale or offset the image comparable.

    Parameters
    ----------
    image : (M, N) ndarray
        The denoised image.
    clean : (M, N) ndarray
        The noise-free reference.

    Returns
    -------
    psnr : float
        ``10 log10(range(clean)**2 / MSE)`` [dB].
    fitted : (M, N) ndarray of float64
        The affine fit of ``image`` to ``clean`` (e.g. for SSIM).
    """
    x = np.asarray(image, dtype=np.float64).ravel()
    c = np.asarray(clean, dtype=np.float64).ravel()
    if x.shape != c.shape:
        raise ValueError(f"image and clean must have the same shape, got {np.shape(image)} and {np.shape(clean)}")
    a = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(a, c, rcond=None)
    fitted = a @ coef
    mse = float(np.mean((fitted - c) ** 2))
    return float(10 * np.log10((c.max() - c.min()) ** 2 / max(mse, 1e-300))), fitted.reshape(np.shape(image))
