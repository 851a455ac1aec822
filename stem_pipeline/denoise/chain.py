"""The denoising chain: named, validated steps run in order, loadable from YAML.

A chain is a :class:`DenoiseConfig` whose ``steps`` are step models told
apart by ``name``::

    steps:
      - name: gaussian
        sigma_px: 0.5
      - name: wiener
        strength: 1.5
      - name: rl
        iterations: 4

The chain estimates the white-noise power of its input once and carries it
through linear steps (a Gaussian multiplies it by the filter's power
transfer), so a Wiener or ABSF step after a Gaussian subtracts the noise that
is actually left; after a non-linear step the Fourier filter estimates the
noise again from the image.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ..config import StrictModel
from ..spectrum import half_power, periodic_rspectrum_alone
from ._common import check_image, logger, pixel_size_of
from .deconvolve import _richardson_lucy, probe_psf
from .fourier import _gain_filter, _half_white_level, fourier_filter
from .spatial import bm3d, gaussian, median, nlm


@dataclasses.dataclass
class _Run:
    """What the chain carries from step to step.

    Parameters
    ----------
    source : (M, N) ndarray
        The chain's input (validated; never written to).
    dtype : numpy dtype
        The output's dtype.
    pixel_size_nm : float or None
        For the deconvolution step.
    image : (M, N) ndarray
        The current image: each step replaces it.
    sigmas : list of float or None
        Gaussian sigmas applied so far [px] (their power transfer shapes the noise); None after a
        non-linear step.
    noise_white : float or None
        White-noise power of the input, once estimated.
    """

    source: np.ndarray
    dtype: np.dtype
    pixel_size_nm: float | None
    image: np.ndarray
    sigmas: list[float] | None = dataclasses.field(default_factory=list)
    noise_white: float | None = None

    def filtered_noise(self) -> functools.partial[np.ndarray] | None:
        """The input's white noise after the Gaussians applied so far, as a function of the frequency radius;
        None after a non-linear step (or before any Gaussian: the filter measures the white level itself)."""
        if not self.sigmas:
            return None
        if self.noise_white is None:
            spectrum = periodic_rspectrum_alone(self.source)
            self.noise_white = _half_white_level(half_power(spectrum), self.source.shape)
            del spectrum
        return functools.partial(_filtered_noise, self.noise_white, tuple(self.sigmas))


class GaussianStep(StrictModel):
    """Gaussian smoothing (:func:`~stem_pipeline.denoise.gaussian`)."""

    name: Literal["gaussian"] = Field("gaussian", description="Gaussian smoothing of the image.")
    sigma_px: float = Field(0.8, ge=0, description="Kernel standard deviation [px].")

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``; a linear step: the noise is tracked through it."""
        run.image = gaussian(run.image, sigma_px=self.sigma_px)
        if run.sigmas is not None:
            run.sigmas.append(self.sigma_px)


class MedianStep(StrictModel):
    """Median filter (:func:`~stem_pipeline.denoise.median`)."""

    name: Literal["median"] = Field("median", description="Median filter (each pixel the median of a square window).")
    size_px: int = Field(3, ge=1, description="Window edge [px], odd.")

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``."""
        run.image = median(run.image, size_px=self.size_px)
        run.sigmas = None


class NLMStep(StrictModel):
    """Non-local means (:func:`~stem_pipeline.denoise.nlm`)."""

    name: Literal["nlm"] = Field(
        "nlm", description="Non-local means (each pixel a mean of pixels with similar surrounding patches)."
    )
    h_factor: float = Field(0.8, gt=0, description="Filter strength h as a multiple of the estimated noise sigma.")
    patch_size_px: int = Field(5, ge=3, description="Edge of the compared patches [px].")
    patch_distance_px: int = Field(6, ge=1, description="Largest distance searched for similar patches [px].")
    poisson: bool = Field(False, description="Filter in the Anscombe domain (Poisson noise made Gaussian).")

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``."""
        run.image = nlm(
            run.image,
            h_factor=self.h_factor,
            patch_size_px=self.patch_size_px,
            patch_distance_px=self.patch_distance_px,
            poisson=self.poisson,
        )
        run.sigmas = None


class BM3DStep(StrictModel):
    """BM3D (:func:`~stem_pipeline.denoise.bm3d`; needs the optional ``bm3d`` package)."""

    name: Literal["bm3d"] = Field("bm3d", description="Block-matching 3-D filtering (needs the optional bm3d package).")
    sigma_factor: float = Field(1.0, gt=0, description="Noise sigma given to BM3D as a multiple of the estimated one.")
    poisson: bool = Field(False, description="Filter in the Anscombe domain (Poisson noise made Gaussian).")

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``."""
        run.image = bm3d(run.image, sigma_factor=self.sigma_factor, poisson=self.poisson)
        run.sigmas = None


class BraggStep(StrictModel):
    """Automatic Bragg-peak mask (:func:`~stem_pipeline.denoise.fourier_filter`, ``mode='bragg'``)."""

    name: Literal["bragg"] = Field(
        "bragg",
        description="Fourier filter that keeps only the automatically found Bragg peaks of the lattice.",
    )
    threshold: float = Field(
        8.0, gt=1, description="A spectral peak is a Bragg peak when it exceeds the local background by this factor."
    )
    radius_factor: float = Field(2.0, gt=0, description="Radius of each kept disc as a multiple of the peak width.")
    low_frequency_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Frequencies below this fraction of the lowest Bragg peak's are kept (the dot's outline and thickness).",
    )
    min_spacing_px: float = Field(2.5, ge=2, description="Shortest lattice period looked for [px].")

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``."""
        run.image = fourier_filter(
            run.image,
            mode="bragg",
            threshold=self.threshold,
            radius_factor=self.radius_factor,
            low_frequency_fraction=self.low_frequency_fraction,
            min_spacing_px=self.min_spacing_px,
        )
        run.sigmas = None


class WienerStep(StrictModel):
    """Kilaas-style Wiener filter (``mode='wiener'``)."""

    name: Literal["wiener"] = Field(
        "wiener", description="Kilaas-style Wiener filter (the power spectrum's noise floor taken out)."
    )
    strength: float = Field(1.2, gt=0, description="Over-subtraction of the noise power.")
    spectrum_smoothing_px: float = Field(3.0, ge=0, description="Smoothing of the power spectrum [FFT px].")
    gain_floor: float = Field(
        0.3, ge=0, lt=1, description="Smallest gain (a little noise is kept so no isolated spots survive alone)."
    )

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``, with the noise left by the Gaussians before it."""
        run.image = _gain_filter(
            run.image,
            mode="wiener",
            noise_power=run.filtered_noise(),
            strength=self.strength,
            spectrum_smoothing_px=self.spectrum_smoothing_px,
            gain_floor=self.gain_floor,
        ).astype(run.dtype, copy=False)
        run.sigmas = None


class ABSFStep(StrictModel):
    """Average background subtraction filter (``mode='absf'``)."""

    name: Literal["absf"] = Field(
        "absf",
        description="Average background subtraction filter (a smooth background spectrum taken out).",
    )
    strength: float = Field(1.0, gt=0, description="Multiple of the smooth background spectrum subtracted.")
    gain_floor: float = Field(0.3, ge=0, lt=1, description="Smallest gain.")

    def apply(self, run: _Run) -> None:
        """Run the step on ``run.image``, with the noise left by the Gaussians before it."""
        run.image = _gain_filter(
            run.image, mode="absf", noise_power=run.filtered_noise(), strength=self.strength, gain_floor=self.gain_floor
        ).astype(run.dtype, copy=False)
        run.sigmas = None


class RLStep(StrictModel):
    """Richardson-Lucy deconvolution with the probe PSF (needs the pixel size)."""

    name: Literal["rl"] = Field(
        "rl",
        description="Richardson-Lucy deconvolution with the probe's point-spread function (needs the pixel size).",
    )
    iterations: int = Field(
        5,
        ge=0,
        le=200,
        description="Maximum iterations; the stopping rule may end earlier. At most 200: the benchmark's optimum is 5, "
        "and with tol 0 an unbounded count never finished.",
    )
    tv_weight: float = Field(0.0, ge=0, le=0.1, description="Total-variation regularisation weight (0: plain RL).")
    tol: float = Field(1e-3, ge=0, description="Stop when an iteration changes the image by less than this fraction.")
    energy_kev: float = Field(200.0, gt=0, description="Beam energy of the probe [keV]; the file's, where it has one.")
    convergence_mrad: float = Field(
        25.0, gt=0, description="Probe convergence semi-angle [mrad]; the file's, where it has one."
    )
    defocus_nm: float = Field(0.0, description="Probe defocus [nm].")
    source_fwhm_nm: float = Field(
        0.04,
        ge=0,
        description="FWHM of the Gaussian effective source [nm]; the default (chosen by the benchmark) sits at the low "
        "end so that the deconvolution restores what the smoothing took, no more.",
    )

    def apply(self, run: _Run) -> None:
        """Deconvolve ``run.image`` with the probe PSF; skipped (with a warning) without a pixel size."""
        if run.pixel_size_nm is None:
            logger.warning(
                "denoise: skipping the 'rl' deconvolution step: it needs the pixel size "
                "(pass pixel_size_nm or a calibrated Micrograph)"
            )
            return
        psf = probe_psf(
            pixel_size_nm=run.pixel_size_nm,
            energy_kev=self.energy_kev,
            convergence_mrad=self.convergence_mrad,
            defocus_nm=self.defocus_nm,
            source_fwhm_nm=self.source_fwhm_nm,
        )
        held = [check_image(run.image)[0]]
        run.image = run.source  # the deconvolution frees its input once padded
        run.image = _richardson_lucy(
            held, run.dtype, psf, iterations=self.iterations, tv_weight=self.tv_weight, tol=self.tol
        )
        run.sigmas = None


Step = Annotated[
    GaussianStep | MedianStep | NLMStep | BM3DStep | BraggStep | WienerStep | ABSFStep | RLStep,
    Field(discriminator="name"),
]
STEP_TYPES: dict[str, type[StrictModel]] = {
    t.model_fields["name"].default: t
    for t in (GaussianStep, MedianStep, NLMStep, BM3DStep, BraggStep, WienerStep, ABSFStep, RLStep)
}


def _default_steps() -> list:
    return [GaussianStep(), WienerStep(), RLStep()]


class DenoiseConfig(StrictModel):
    """A denoising chain: the steps, run in order.

    The default follows the paper's DigitalMicrograph recipe (spatial filter,
    then FFT filter, then deconvolution) with parameters chosen by
    ``benchmarks/denoise.py``: ``gaussian(sigma_px=0.8)``,
    ``wiener(strength=1.2, spectrum_smoothing_px=3, gain_floor=0.3)``,
    ``rl(iterations=5, source_fwhm_nm=0.04)``; each step model's defaults are
    these, so ``from_steps("gaussian,wiener,rl")`` is the default chain.
    """

    steps: list[Step] = Field(default_factory=_default_steps, description="The steps, run in order.")

    @classmethod
    def from_steps(cls, names: str | Sequence[str]) -> DenoiseConfig:
        """Build a chain from step names with default parameters, e.g. ``"gaussian,wiener,rl"``.

        Raises
        ------
        ValueError
            If a name is unknown (the message lists the valid ones) or none is given.
        """
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        names = [n for n in names if n]
        if not names:
            raise ValueError(f"no denoising steps given; choose from {', '.join(STEP_TYPES)}")
        unknown = [n for n in names if n not in STEP_TYPES]
        if unknown:
            raise ValueError(
                f"unknown denoising step(s) {', '.join(map(repr, unknown))}; valid steps: {', '.join(STEP_TYPES)}"
            )
        return cls(steps=[STEP_TYPES[n]() for n in names])

    @property
    def step_names(self) -> list[str]:
        """Names of the steps in order."""
        return [s.name for s in self.steps]


def _filtered_noise(noise_white: float, sigmas: tuple[float, ...], f: np.ndarray) -> np.ndarray:
    """White noise of power ``noise_white`` after Gaussians of ``sigmas`` [px], at frequency radius ``f``."""
    out = np.full(f.shape, float(noise_white))
    for sigma_px in sigmas:
        out *= np.exp(-4 * np.pi**2 * sigma_px**2 * f**2)
    return out


def denoise(image: Any, config: DenoiseConfig | None = None, *, pixel_size_nm: float | None = None) -> np.ndarray:
    """Run a denoising chain on one image.

    Denoised images are for finding columns and for display; measure column
    intensities on the raw image (see :mod:`stem_pipeline.denoise`).

    Parameters
    ----------
    image : (M, N) ndarray or Micrograph
        The image (a Micrograph supplies its pixel size).
    config : DenoiseConfig or None
        The chain; None uses the default ``gaussian, wiener, rl``.
    pixel_size_nm : float or None
        Pixel size [nm], needed by the deconvolution step to compute the
        probe PSF. If it is None (and ``image`` carries none), a deconvolution
        step is **skipped** with a logged warning.

    Returns
    -------
    (M, N) ndarray
        The denoised image: float32 unless the input was float64. The input
        is never modified.

    Raises
    ------
    ValueError
        If the image is not 2-D (the message names the shape) or has
        non-finite pixels.

    Examples
    --------
    >>> from stem_pipeline.synthetic import make_dot
    >>> dot = make_dot((128, 128), dose=100, rng=0)
    >>> out = denoise(dot.image, pixel_size_nm=dot.pixel_size_nm)
    >>> out.dtype, out.shape
    (dtype('float32'), (128, 128))
    """
    config = DenoiseConfig() if config is None else config
    arr, dtype = check_image(image)
    run = _Run(source=arr, dtype=dtype, pixel_size_nm=pixel_size_of(image, pixel_size_nm), image=arr)
    for step in config.steps:
        step.apply(run)
    out = run.image
    if out is arr:
        out = arr.copy()
    return out.astype(dtype, copy=False)
