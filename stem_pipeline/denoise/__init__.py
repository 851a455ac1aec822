"""Denoising: the paper's DigitalMicrograph chain, automatic and measured.

The authors smoothed with a spatial filter, removed noise with an FFT mask and
deconvolved, by hand in DigitalMicrograph. This package does the same
automatically: spatial filters (:func:`gaussian`, :func:`median`,
:func:`nlm`, :func:`bm3d`), Fourier filters (:func:`fourier_filter` with the
modes ``bragg``, ``wiener`` and ``absf``, Bragg peaks found by
:func:`find_bragg_peaks`), and Richardson-Lucy deconvolution
(:func:`richardson_lucy`) with the probe PSF from the optics
(:func:`probe_psf`), composed by :func:`denoise` from a validated
:class:`DenoiseConfig`.

Quantification on honest data
-----------------------------
Denoised images are for **finding columns and for display only**. Every
filter here but the Gaussian is non-linear or adaptive and can shift
intensity between columns, so the pipeline measures column intensities
(Gaussian volumes, Voronoi-cell sums, bright/dim ratios) on the **raw**
counts, at the positions found on the denoised image. Do the same in your own
scripts.

All functions take a 2-D image first and keyword-only options, keep float32
as float32 (float64 as float64), never modify their input and reject
non-2-D input with a ``ValueError`` naming the shape.
"""

from ..optics import electron_wavelength_nm
from .chain import (
    STEP_TYPES,
    ABSFStep,
    BM3DStep,
    BraggStep,
    DenoiseConfig,
    GaussianStep,
    MedianStep,
    NLMStep,
    RLStep,
    WienerStep,
    denoise,
)
from .deconvolve import probe_psf, richardson_lucy
from .fourier import MODES, find_bragg_peaks, fourier_filter, white_noise_power
from .metrics import psnr_affine
from .spatial import anscombe, bm3d, gaussian, inverse_anscombe, median, nlm

__all__ = [
    "ABSFStep",
    "BM3DStep",
    "BraggStep",
    "DenoiseConfig",
    "GaussianStep",
    "MODES",
    "MedianStep",
    "NLMStep",
    "RLStep",
    "STEP_TYPES",
    "WienerStep",
    "anscombe",
    "bm3d",
    "denoise",
    "electron_wavelength_nm",
    "find_bragg_peaks",
    "fourier_filter",
    "gaussian",
    "inverse_anscombe",
    "median",
    "nlm",
    "probe_psf",
    "psnr_affine",
    "richardson_lucy",
    "white_noise_power",
]
