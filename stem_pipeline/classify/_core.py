"""``classify_columns``: from measured columns to phase labels and area fractions."""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import numpy as np
from pydantic import Field
from scipy.spatial import cKDTree

from .._types import CONTRASTS, LABELS, AreaFractions, Columns, PhaseLabels
from ..config import StrictModel
from ..errors import NoCrystalError
from .features import ColumnFeatures, column_features, own_intensity_llr, superlattice_scan
from .model import (
    _clusters,
    minority_posterior,
    mixture_posterior,
    refine_boundaries,
    regularise_posterior,
    small_domains,
    uniform_minority_posterior,
)
from .regions import area_fractions, hull_mask, region_map_from_columns

__all__ = ["ClassifyConfig", "classification_intensity", "classify_columns"]

log = logging.getLogger("stem_pipeline")

_ORDERED, _UNIFORM = LABELS.index("ordered"), LABELS.index("uniform")
_BRIGHT, _DIM, _UNIFORM_C = (CONTRASTS.index(c) for c in ("bright", "dim", "uniform"))


#: Completeness of a column's neighbourhood (its columns in the local fit over the 90th percentile of all
#: columns') from which it is an interior column, whose order parameter fits the two-class mixture: 0.9 of
#: the ~21 columns of the default 2.6-spacing neighbourhood lets 2 be missing (a lost or dropped column), while a
#: column on a straight crystal edge misses ~8 and has a noisier fit that would blur the two classes.
INTERIOR_COMPLETENESS = 0.9

#: Largest number of mean-field iterations a config may ask for: the field settles within the
#: default 8-10, and an unbounded count (a fault-injection run tried 10^9) never finished.
MAX_MEAN_FIELD_ITERATIONS = 100


class ClassifyConfig(StrictModel):
    """Options of the contrast classification and the phase fractions."""

    intensity: Literal["height", "volume"] = Field(
        "height",
        description="Column intensity the classification compares: ``volume`` (:attr:`~stem_pipeline.Columns.intensity`), or ``height``, the Gaussian height refitted at each column's fitted width (``volume / (2 pi sigma_r sigma_c)``; :func:`classification_intensity`). The volume carries the noise of each column's fitted width squared: on 30 tuning dots at 400 counts (``benchmarks/labels.py``, seeds 30000-30029) its robust relative spread about the true column heights was 0.118 against the height's 0.053, and 210 of the 221 boundary columns whose own-intensity evidence pointed to the wrong phase read right with the true heights. ``height`` lowered the fraction errors' sd and largest error on 420 tuning and 360 held-out dots (``benchmarks/results/labels.md``); the default since then (``volume`` is the earlier behaviour).",
    )
    radius_spacings: float = Field(
        2.6, gt=1.0, le=6.0, description="Radius of the local superlattice fit, in column spacings."
    )
    max_index_residual: float = Field(
        0.3,
        gt=0.0,
        le=0.5,
        description="Neighbours further than this from integer lattice coordinates are left out of the local fit.",
    )
    weight_sigma_spacings: float | None = Field(
        1.0,
        gt=0.0,
        description="Width of Gaussian distance weights of the local fit, in column spacings (the column itself weighs most, which keeps domain boundaries in place); None weighs the neighbourhood uniformly.",
    )
    max_components: int = Field(
        2, ge=1, le=2, description="Largest number of mixture components (1 or 2); BIC chooses."
    )
    pure_threshold: float = Field(
        0.35,
        gt=0.0,
        lt=1.0,
        description="Adjusted alternation R^2 above which a single class is ``ordered`` (uniform regions scatter around 0, ordered ones sit near 0.5-0.9).",
    )
    min_separation: float = Field(
        0.2, ge=0.0, description="Mixture components closer than this in mean R^2 are one class."
    )
    minority_threshold: float = Field(
        0.7,
        gt=0.0,
        lt=1.0,
        description="Order parameter (adjusted alternation R^2) at or above which a column joins a small ordered domain, when the mixture finds one uniform class: a cluster of at least ``minority_min_columns`` such neighbouring columns is such a domain (:func:`~stem_pipeline.classify.minority_posterior`).",
    )
    minority_min_columns: int = Field(
        10,
        ge=0,
        description="Fewest neighbouring columns with R^2 at or above ``minority_threshold`` that make a small ordered domain when the mixture finds one uniform class (:func:`~stem_pipeline.classify.minority_posterior`); 0 switches the search off.",
    )
    uniform_minority_threshold: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="When the mixture finds one ordered class, a cluster of at least ``uniform_minority_min_columns`` neighbouring columns whose superlattice amplitude is at or below ``uniform_minority_threshold`` times the crystal's median amplitude is a small uniform domain (:func:`~stem_pipeline.classify.uniform_minority_posterior`). Its R^2 stays high (the local fit sees the ordered columns around it), its amplitude does not. Set on tuning dots (fields, seeds 20100-20107: a 23-column domain at a dot's edge, reported 0 at 100 and 400 counts, now 0.027 of 0.041; 204 pure dots and 420 mixed dots of ``benchmarks/unbiased.py``'s draw unchanged).",
    )
    uniform_minority_min_columns: int = Field(
        12,
        ge=0,
        description="Fewest columns of a small uniform domain in an ordered crystal (see ``uniform_minority_threshold``); 0 switches the search off.",
    )
    undetected_ordered_columns: int = Field(
        95,
        ge=0,
        description="The largest ordered domain, in columns, that a pure uniform result can have missed: its 95 % interval reaches down by that many columns' share. Measured on 480 simulated 8-14 nm dots with 0-10 % of the minor phase at 30 and 400 counts (``benchmarks/classify.py``): ordered domains of up to 92 columns were missed.",
    )
    undetected_uniform_columns: int = Field(
        15,
        ge=0,
        description="The largest uniform domain, in columns, that a pure ordered result can have missed: its 95 % interval reaches up by that many columns' share. Measured on the same dots as ``undetected_ordered_columns``: uniform domains of up to 14 columns were missed.",
    )
    mrf_beta: float = Field(
        3.0, ge=0.0, description="Coupling of the Potts random field that regularises the labels (0 switches it off)."
    )
    mrf_radius_spacings: float = Field(
        2.3,
        gt=1.0,
        le=4.0,
        description="Neighbourhood of the random field, in column spacings (2.3: the 20 nearest columns).",
    )
    small_domain_min_columns: int = Field(
        10,
        ge=0,
        description="Fewest columns of a small domain of the mixture's (a cluster of one label, neighbours within 1.5 spacings) that keeps the mixture's posterior through the random field, when its mean superlattice amplitude agrees with its label (above ``uniform_minority_threshold`` times the ordered interior columns' median amplitude for an ordered domain, at or below it for a uniform one; :func:`~stem_pipeline.classify.small_domains`); the boundary rounds then re-decide its edge. The random field's ~20-column neighbourhood erased such domains: they were the largest errors at 100 counts on the tuning dots of ``benchmarks/unbiased.py`` (seeds 30000-30139; 30058 +0.021, a 26-column ordered domain, 25 of its columns called uniform; 30116 -0.025). The amplitude test keeps out the mixture's false small domains (uniform columns beside ordered ones, whose scale-free R^2 reads high, and edge columns of ordered dots at 30 counts, whose R^2 is low): of the mixture's 70 domains of 10-40 columns on those dots at 100 counts it keeps the 46 whose columns are mostly of their label and none of the 24 mostly of the other (mean amplitude over the ordered level: ordered domains right 0.76-1.40, wrong 0.13-0.30; uniform right 0.09-0.47, wrong 0.53-0.79). Error of the uniform fraction on those 140 dots per dose (30 / 100 / 400 counts), before -> after: mean -0.0024 / -0.0018 / -0.0013 -> -0.0028 / -0.0025 / -0.0014, sd 0.0092 / 0.0057 / 0.0041 -> 0.0090 / 0.0042 / 0.0039, largest 0.029 / 0.025 / 0.017 -> 0.029 / 0.014 / 0.017; on 60 more tuning dots of that draw (seeds 57000-57059) largest 0.061 / 0.038 / 0.035 -> 0.024 / 0.030 / 0.022, sd 0.0120 / 0.0077 / 0.0070 -> 0.0074 / 0.0067 / 0.0051 (what is left there: ordered domains of 11-24 columns the mixture itself hardly sees). Issue 13's minority dots (``benchmarks/minority.py``, seeds 51000-51079): no pure dot changed; sum of errors about the same (ordered minorities 1.601 / 0.908 / 0.692 -> 1.606 / 0.899 / 0.694), largest the same. 0 switches it off (the earlier behaviour).",
    )
    small_domain_max_columns: int = Field(
        40,
        ge=1,
        description="Most columns of such a small domain (``small_domain_min_columns``): a larger domain outlasts the random field.",
    )
    scan_threshold: float = Field(
        6.0,
        ge=0.0,
        description="Pooled z-score of the ordered superlattice over a window of ``scan_radius_spacings`` (:func:`~stem_pipeline.classify.features.superlattice_scan`) above which a column taken for uniform, further than the window plus a spacing from any ordered domain of more than ``small_domain_max_columns`` columns, enters the boundary rounds as ordered (posterior 0.9); the rounds then decide the domain's edge. It finds ordered domains of ~10-30 columns inside uniform regions that the mixture's scale-free local fit hardly sees (the 100-count tail of issue 14). 0 switches it off. The scan's contrast leaves out columns at the crystal edge, whose dim outer row had made the whole tail of its null distribution (on the tuning dots' uniform columns and on cell-mosaic dots, ``tests/test_mosaic.py``, where the first version took uniform regions for ordered: 7 nm dots at 200 counts 0.598 -> 0.538 for a truth of 0.632). Set on the tuning dots of ``benchmarks/unbiased.py`` (seeds 30000-30139 and 57000-57059; SCAN_EDGE in ``benchmarks/unbiased.py`` has the numbers) and checked for false ordered columns on 30 cell-mosaic dots. Held-out seeds 82000-82119 (120 dots per dose at 30 / 100 / 400 counts, scored once with it, then once without as a comparison): error sd 0.0096 / 0.0063 / 0.0054 without -> 0.0089 / 0.0052 / 0.0047 with it, largest 0.043 / 0.032 / 0.034 -> 0.043 / 0.027 / 0.024 (``benchmarks/results/unbiased.md``).",
    )
    scan_radius_spacings: float = Field(
        2.5,
        gt=1.0,
        le=4.0,
        description="Window radius of the superlattice scan (``scan_threshold``), in column spacings.",
    )
    mrf_iterations: int = Field(10, ge=0, le=MAX_MEAN_FIELD_ITERATIONS, description="Mean-field iterations.")
    mrf_max_evidence: float = Field(
        4.0,
        gt=0.0,
        description="Clip of a column's own log-odds in the random field (4: 55 to 1), so that one column's saturated posterior cannot overrule a unanimous neighbourhood (at 30 counts, edge columns of pure CsPbI3 dots were kept ``uniform`` in bands along the edge).",
    )
    edge_confidence_power: float = Field(
        4.0,
        ge=0.0,
        description="A column's own evidence is weighed by the completeness of its neighbourhood (columns in its local fit over the 90th percentile) to this power, in the random field and the boundary pass.",
    )
    boundary_iterations: int = Field(
        8,
        ge=0,
        le=MAX_MEAN_FIELD_ITERATIONS,
        description="Mean-field iterations of the second pass that re-decides the columns at domain boundaries from their own intensity against one-sided predictions of both phases (:func:`~stem_pipeline.classify.own_intensity_llr`, :func:`~stem_pipeline.classify.refine_boundaries`); 0 switches it off.",
    )
    boundary_rounds: int = Field(
        2,
        ge=1,
        le=MAX_MEAN_FIELD_ITERATIONS,
        description="Most rounds of the boundary pass, each with the own-intensity evidence (:func:`~stem_pipeline.classify.own_intensity_llr`) recomputed from the previous round's labels; the rounds stop earlier when a round's labels repeat an earlier round's (a fixed point, or a cycle whose rounds' posteriors are averaged). More rounds are not a converged answer: on 420 tuning dots (``benchmarks/labels.py``, seeds 30000-30139) 63 still change after 10 rounds, and the rounds erode small domains further (``benchmarks/results/labels.md``).",
    )
    boundary_beta: float = Field(
        3.0,
        ge=0.0,
        description="Potts coupling of the boundary pass (:func:`~stem_pipeline.classify.refine_boundaries`), per unit of mean neighbour agreement (the random field's ``mrf_beta`` by default). A weaker coupling with more rounds (2.0 with ``boundary_rounds`` 10) was measured on tuning and held-out dots in ``benchmarks/results/labels.md`` and not adopted.",
    )
    hull_margin_spacings: float = Field(
        0.5,
        ge=0.0,
        description="When no crystal mask is given, the columns' convex hull is grown by this many column spacings.",
    )
    edge_from_intensity: bool = Field(
        True,
        description="In :func:`stem_pipeline.pipeline.analyze`, place the crystal's edge at the step of the image's diffuse intensity (:func:`~stem_pipeline.classify.diffuse_outline`), where it is found, instead of the columns' hull grown by ``hull_margin_spacings``.",
    )
    edge_smoothing_spacings: float = Field(
        1.0,
        gt=0.0,
        le=4.0,
        description="Gaussian smoothing of the image without its columns, in column spacings, from which the diffuse step is placed (set on tuning dots, seeds 30000-30059 of ``benchmarks/unbiased.py``: 0.5, 1.0 and 1.5 gave the same fractions within 0.0002 sd; 1.0 the best at every dose).",
    )
    edge_min_contrast: float = Field(
        3.0,
        ge=0.0,
        description="Smallest diffuse step, over the noise of the smoothed carbon, that places the crystal's edge (the tuning dots had 5.5 or more at 30 counts); below it the columns' hull grown by ``hull_margin_spacings`` is the crystal.",
    )
    edge_reach_spacings: float = Field(
        1.2,
        gt=0.0,
        description="A given crystal mask (and the diffuse outline) is clipped to the columns' convex hull grown by this many column spacings: the outermost columns lie less than a spacing inside the crystal's edge.",
    )
    boundary_sd_spacings: float = Field(
        0.02,
        ge=0.0,
        description="Standard deviation of the residual shift of the domain boundaries, in column spacings, without noise (see ``boundary_noise_spacings``), that enters the 95 % interval of the uniform fraction: with ``boundary_noise_spacings``, ``boundary_noise_power`` and ``edge_sd_spacings``, set so that about 95 % of 140 mixed tuning dots through ``pipeline.analyze`` at each dose lie within it (the draw of ``benchmarks/unbiased.py``, seeds 30000-30139 at 30, 100 and 400 counts, with the column heights, the edge at the diffuse step, faint maxima beyond it dropped and the mixture's small domains kept, ``small_domain_min_columns``; truth the domain area): 0.943 / 0.964 / 0.943, mean width 0.043 / 0.025 / 0.021, chosen on a grid (boundary 0-0.1, noise 0-12 with the power 2 or 0-2 with the power 1, edge 0-0.2 spacing) in the middle of the plateau of terms within 0.935-0.965 at every dose (noise 7-8 with 0.02 and 0.12). The terms before the small domains were kept (0.02, 1.0 with the power 1, 0.12) covered 0.950 / 0.993 / 0.971 of these dots with them. The coverage on held-out dots is in ``benchmarks/results/unbiased.md``.",
    )
    boundary_noise_spacings: float = Field(
        7.5,
        ge=0.0,
        description="Growth of the boundary shift with the image noise: its standard deviation is ``hypot(boundary_sd_spacings, boundary_noise_spacings * pixel_noise**boundary_noise_power)`` spacings, where ``pixel_noise`` is the pixel noise over the median column height, the pipeline's own measurement (:func:`~stem_pipeline.classify.pixel_noise`, given by :func:`stem_pipeline.pipeline.analyze`; median 0.13 / 0.07 / 0.034 at 30 / 100 / 400 counts), so the interval widens at low dose: 0.13 / 0.04 / 0.02 spacing at those medians. Set with ``boundary_sd_spacings`` on the same tuning dots: the labels' errors at domain boundaries grow with the noise (error sd inside both outlines 0.008 / 0.003 / 0.003 at 30 / 100 / 400 counts). 1.0 with the power 1 before the mixture's small domains were kept.",
    )
    boundary_noise_power: float = Field(
        2.0,
        ge=0.0,
        description="Power of the pixel noise in the boundary shift's noise part (``boundary_noise_spacings * pixel_noise**boundary_noise_power``). With the small domains kept (``small_domain_min_columns``) the labels' errors at 100 counts fell more than at 30: on the tuning dots no linear term (power 1, the earlier form, then with ``boundary_noise_spacings`` 1.0) gave coverage within 0.935-0.965 at all three doses (the best 0.95 +- 0.03), while the square did (see ``boundary_sd_spacings``).",
    )
    unknown_pixel_noise: float = Field(
        0.13,
        ge=0.0,
        description="The pixel noise over the median column height assumed where it is not known (``classify_columns`` without ``pixel_noise``; :func:`stem_pipeline.pipeline.analyze` where the crystal has no interior deep enough to read it): the median at 30 counts on the tuning dots, the lowest dose the interval terms were set at, so that an interval without a noise measurement errs wide rather than narrow (with no noise part, intervals on true column positions covered 0.35-0.85 of dots at 15-400 counts, ``benchmarks/results/classify.md``).",
    )
    edge_sd_spacings: float = Field(
        0.12,
        ge=0.0,
        description="Standard deviation of the placement of the crystal edge, in column spacings, that enters the 95 % interval of the uniform fraction, taken as coherent along each phase's share of the edge. Set with ``boundary_sd_spacings`` and ``boundary_noise_spacings`` for the coverage (0.06 before the faint maxima beyond the edge were dropped: with them the boundary term's noise part carried more of the edge's error). The edge part of the error (outside both the true and the measured outline) on those tuning dots with the edge at the diffuse step has sd 0.0056 / 0.0042 / 0.0031 at 30 / 100 / 400 counts (0.0094 / 0.0084 / 0.0082 with the columns' hull grown by half a spacing, whose outermost columns lie 0-1 spacing inside the edge): its rms over the rms edge length per area is 0.19 / 0.14 / 0.10 spacing; the rest of it the boundary term's noise part carries.",
    )
    hull_edge_sd_spacings: float = Field(
        0.2,
        ge=0.0,
        description="``edge_sd_spacings`` where the crystal edge is the columns' hull grown by ``hull_margin_spacings`` (no crystal mask given; :func:`stem_pipeline.pipeline.analyze` where no diffuse step is found or ``edge_from_intensity`` is off): the outermost columns lie anywhere from 0 to 1 spacing inside the edge, so that edge is misplaced by up to half a spacing either way. Set for the coverage on 50 tuning dots per dose of ``benchmarks/unbiased.py``'s draw (seeds 30000-30049, the edge from the hull, widths interpolated between runs at 0.06 and 0.29): 1.00 / 0.96 / 0.96 at 30 / 100 / 400 counts, mean width 0.070 / 0.046 / 0.035 (with ``edge_sd_spacings``' 0.06: 0.96 / 0.86 / 0.64).",
    )
    min_columns: int = Field(
        10, ge=1, description="Fewer columns than this raise :class:`~stem_pipeline.errors.NoCrystalError`."
    )


def classify_columns(
    columns: Columns,
    *,
    shape: tuple[int, int],
    crystal_mask: np.ndarray | None = None,
    lattice_vectors_px: np.ndarray | None = None,
    pixel_noise: float | None = None,
    config: ClassifyConfig | None = None,
) -> tuple[PhaseLabels, AreaFractions]:
    """Label every column ordered or uniform, map the phases and measure their area fractions.

    Parameters
    ----------
    columns : Columns
        Column positions ``rc`` (row, col) [px] and intensities on raw counts
        (``columns.intensity``: Gaussian volume, else cell intensity, else peak; the Gaussian height with
        ``config.intensity`` "height", see :func:`classification_intensity`).
    shape : tuple of int
        Shape (rows, cols) of the image the columns were found in.
    crystal_mask : (M, K) array_like of bool, optional
        Crystal pixels, used within ``config.edge_reach_spacings`` of the
        columns' convex hull (its edge placed within ``config.edge_sd_spacings``);
        None uses the hull grown by ``config.hull_margin_spacings`` (half a
        column spacing; its edge placed within ``config.hull_edge_sd_spacings``).
    lattice_vectors_px : (2, 2) array_like, optional
        The two primitive vectors (row, col) [px] of the column grid the
        columns were found on (:attr:`stem_pipeline.Lattice.vectors_px`, the
        a/2 grid in CsPbI3 [001], not the superlattice), used to index each
        column's neighbours. :func:`stem_pipeline.pipeline.analyze` passes
        the lattice it found; None estimates the vectors from the columns'
        nearest neighbours (:func:`~stem_pipeline.classify.estimate_lattice_vectors`).
    pixel_noise : float, optional
        The image's pixel noise over the median column height
        (:func:`~stem_pipeline.classify.pixel_noise`): the boundary placement
        of the interval grows with it (``config.boundary_noise_spacings``);
        None assumes ``config.unknown_pixel_noise`` (that of a 30-count image).
    config : ClassifyConfig, optional
        Options; defaults when None. The classification is deterministic.

    Returns
    -------
    labels : PhaseLabels
        Per-column ``label`` (ordered/uniform), ``contrast``
        (bright/dim/uniform), ``order_parameter`` (adjusted R^2 of the local
        bright/dim superlattice fit) and the pixel ``region_map``.
    fractions : AreaFractions
        Fractions of the crystal area with the 95 % measurement interval of
        the uniform fraction (column-label posteriors and boundary placement,
        see :func:`~stem_pipeline.classify.area_fractions` and
        ``fractions.method``); when every column has one label, the interval
        also reaches as far as the largest domain of the other phase that
        can go undetected (``config.undetected_*_columns``).

    Raises
    ------
    NoCrystalError
        If there are fewer than ``config.min_columns`` columns.
    ValueError
        If ``crystal_mask`` does not have the shape ``shape``.

    Examples
    --------
    >>> from stem_pipeline.synthetic import make_dot
    >>> from stem_pipeline import Columns
    >>> dot = make_dot((256, 256), dot_size_nm=6, dose=None, rng=0)
    >>> cols = Columns(rc=dot.rc, peak=dot.amplitude)
    >>> labels, fractions = classify_columns(cols, shape=dot.image.shape)
    >>> bool(abs(fractions.uniform - dot.uniform_fraction) < 0.1)
    True
    """
    config = ClassifyConfig() if config is None else config
    shape = (int(shape[0]), int(shape[1]))
    if len(columns) < config.min_columns:
        raise NoCrystalError(
            f"only {len(columns)} columns were found; at least {config.min_columns} are needed to classify"
        )
    rc = columns.rc
    intensity = classification_intensity(columns, config.intensity)
    feats = column_features(
        rc,
        intensity,
        radius_spacings=config.radius_spacings,
        max_index_residual=config.max_index_residual,
        weight_sigma_spacings=config.weight_sigma_spacings,
        lattice_vectors_px=lattice_vectors_px,
    )
    spacing_px = float(np.mean(np.linalg.norm(feats.lattice_vectors_px, axis=1)))
    p_ord, n_classes = _ordered_posterior(rc, intensity, feats, spacing_px, config)
    label = np.where(p_ord >= 0.5, _ORDERED, _UNIFORM).astype(np.int8)
    contrast = np.where(label == _UNIFORM, _UNIFORM_C, np.where(feats.on_bright_site, _BRIGHT, _DIM)).astype(np.int8)

    # The crystal ends where the given mask (the pipeline's outline at the diffuse intensity step) ends, within a
    # spacing of its outermost columns, whichever phase meets the edge; without a mask, half a spacing beyond them.
    mask = _crystal_area(shape, rc, crystal_mask, spacing_px=spacing_px, config=config)
    region, cell_area = region_map_from_columns(mask, rc, label)
    px = columns.pixel_size_nm
    noise = config.unknown_pixel_noise if pixel_noise is None else pixel_noise
    fractions = area_fractions(
        region,
        1.0 - p_ord,
        cell_area,
        pixel_size_nm=px,
        boundary_sd_px=float(
            np.hypot(config.boundary_sd_spacings, config.boundary_noise_spacings * noise**config.boundary_noise_power)
        )
        * spacing_px,
        edge_sd_px=(config.hull_edge_sd_spacings if crystal_mask is None else config.edge_sd_spacings) * spacing_px,
    )
    if np.all(label == label[0]):
        fractions = _allow_undetected_domains(fractions, len(rc), config)
    log.info(
        "classify: %d columns, %d class(es), uniform fraction %.3f [%.3f, %.3f]",
        len(rc),
        n_classes,
        fractions.uniform,
        *fractions.uniform_ci95,
    )
    labels = PhaseLabels(label=label, contrast=contrast, order_parameter=feats.alternation_r2, region_map=region)
    return labels, fractions


def classification_intensity(columns: Columns, source: Literal["height", "volume"] = "volume") -> np.ndarray:
    """The column intensity the classification compares.

    Parameters
    ----------
    columns : Columns
        Measured columns (:func:`~stem_pipeline.columns.measure_intensities`).
    source : {"height", "volume"}
        ``height``: the Gaussian height at the column's fitted width, ``volume / (2 pi sigma_r sigma_c)``
        [counts]; the volume alone multiplies it by the fitted width squared, whose noise (about 4 % per
        column at 400 counts in simulated dots) then dominates the contrast of neighbouring columns.
        ``volume``: :attr:`~stem_pipeline.Columns.intensity` as measured.

    Returns
    -------
    (N,) ndarray of float64
        The intensity; :attr:`~stem_pipeline.Columns.intensity` when the columns carry no volume or no
        widths.
    """
    if source == "height" and columns.volume is not None and columns.sigma is not None:
        sigma = np.asarray(columns.sigma, dtype=np.float64).reshape(-1, 2)
        return np.asarray(columns.volume, dtype=np.float64) / (2.0 * np.pi * sigma[:, 0] * sigma[:, 1])
    return np.asarray(columns.intensity, dtype=np.float64)


def _ordered_posterior(
    rc: np.ndarray, intensity: np.ndarray, feats: ColumnFeatures, spacing_px: float, config: ClassifyConfig
) -> tuple[np.ndarray, int]:
    """Each column's probability of the ordered class, and the number of classes found (1 or 2).

    The mixture of the order parameter (or, with one uniform class, a search for small ordered domains),
    then the random field (not on a small ordered domain the search found, nor on the mixture's small domains
    whose amplitude agrees with their label), the superlattice scan for ordered domains the mixture missed
    (with two classes) and the boundary rounds.
    """
    # Columns at the crystal edge see part of a neighbourhood: their fit is noisier.
    completeness = np.clip(feats.n_neighbours / max(float(np.percentile(feats.n_neighbours, 90)), 1.0), 0, 1)
    confidence = completeness**config.edge_confidence_power
    p_ord, n_classes = mixture_posterior(
        feats.alternation_r2,
        fit_mask=completeness >= INTERIOR_COMPLETENESS,
        max_components=config.max_components,
        pure_threshold=config.pure_threshold,
        min_separation=config.min_separation,
    )
    # A small ordered domain the cluster search finds is a connected cluster already: the random field, whose
    # ~20-column neighbourhood is as large as the domain, would erase it before the boundary pass re-decides its
    # edge (benchmarks/minority.py, tuning dots 51000-51079 with one ordered domain of 5-65 columns at 30, 100 and
    # 400 counts: 12 of 240 changed, each nearer the truth; no wholly uniform or ordered dot changed).
    small_domain = False
    if n_classes == 1 and config.minority_min_columns and p_ord.max() < 0.5:
        # One uniform class: look for ordered domains too small for the mixture.
        p_minor = minority_posterior(
            rc,
            feats.alternation_r2,
            spacing_px=spacing_px,
            threshold=config.minority_threshold,
            min_columns=config.minority_min_columns,
            fit_mask=completeness >= INTERIOR_COMPLETENESS,
        )
        if p_minor is not None:
            p_ord, n_classes, small_domain = p_minor, 2, True
    if n_classes == 1 and config.uniform_minority_min_columns and p_ord.min() >= 0.5:
        # One ordered class: look for uniform domains too small for the mixture (low superlattice amplitude).
        p_minor = uniform_minority_posterior(
            rc,
            feats.alternation,
            spacing_px=spacing_px,
            threshold=config.uniform_minority_threshold,
            min_columns=config.uniform_minority_min_columns,
            fit_mask=completeness >= INTERIOR_COMPLETENESS,
        )
        if p_minor is not None:
            p_ord, n_classes = p_minor, 2
    if n_classes == 2 and config.mrf_iterations > 0 and not small_domain:
        p_field = regularise_posterior(
            rc,
            p_ord,
            radius_px=config.mrf_radius_spacings * spacing_px,
            beta=config.mrf_beta,
            confidence=confidence,
            n_iter=config.mrf_iterations,
            max_evidence=config.mrf_max_evidence,
        )
        p_ord = _keep_small_domains(rc, p_ord, p_field, feats, completeness, spacing_px, config)
    if n_classes == 2 and config.scan_threshold > 0:
        p_ord = _scan_ordered_domains(rc, intensity, feats, p_ord, spacing_px, config)
    if n_classes == 2 and config.boundary_iterations > 0:
        p_ord = _boundary_rounds(rc, intensity, feats, p_ord, confidence, spacing_px, config)
    return p_ord, n_classes


def _keep_small_domains(
    rc: np.ndarray,
    p_mix: np.ndarray,
    p_field: np.ndarray,
    feats: ColumnFeatures,
    completeness: np.ndarray,
    spacing_px: float,
    config: ClassifyConfig,
) -> np.ndarray:
    """The random field's posterior, but the mixture's on its small domains whose amplitude agrees with their label.

    The random field's ~20-column neighbourhood is as large as a small domain of the mixture's, and erases or
    shrinks it; the mixture's small domains of ``config.small_domain_min_columns`` to
    ``config.small_domain_max_columns`` columns whose mean superlattice amplitude lies on their label's side of
    ``config.uniform_minority_threshold`` times the ordered level (:func:`~stem_pipeline.classify.small_domains`)
    keep the mixture's posterior for the boundary rounds.
    """
    if not config.small_domain_min_columns:
        return p_field
    ordered = p_mix >= 0.5
    interior = ordered & (completeness >= INTERIOR_COMPLETENESS)
    if not interior.any():
        return p_field
    keep = small_domains(
        rc,
        ordered,
        feats.alternation,
        spacing_px=spacing_px,
        amplitude_split=config.uniform_minority_threshold * float(np.median(feats.alternation[interior])),
        min_columns=config.small_domain_min_columns,
        max_columns=config.small_domain_max_columns,
    )
    return np.where(keep, p_mix, p_field)


def _scan_ordered_domains(
    rc: np.ndarray,
    intensity: np.ndarray,
    feats: ColumnFeatures,
    p_ord: np.ndarray,
    spacing_px: float,
    config: ClassifyConfig,
) -> np.ndarray:
    """The posterior, raised to 0.9 on uniform columns whose pooled superlattice evidence passes ``config.scan_threshold``.

    Only columns further than the window plus a spacing from every ordered domain larger than
    ``config.small_domain_max_columns`` columns: near a large domain the window sees its columns (the boundary
    rounds decide those edges).
    """
    ordered = p_ord >= 0.5
    group = _clusters(rc, spacing_px, ordered)
    large = ordered & (np.bincount(group)[group] > config.small_domain_max_columns)
    reach = (config.scan_radius_spacings + 1.0) * spacing_px
    far = cKDTree(rc[large]).query(rc)[0] > reach if large.any() else np.ones(len(rc), bool)
    score = superlattice_scan(
        rc,
        intensity,
        lattice_vectors_px=feats.lattice_vectors_px,
        radius_spacings=config.scan_radius_spacings,
        null_mask=~ordered,
        max_index_residual=config.max_index_residual,
    )
    found = ~ordered & far & (score >= config.scan_threshold)
    return np.where(found, np.maximum(p_ord, 0.9), p_ord)


def _boundary_rounds(
    rc: np.ndarray,
    intensity: np.ndarray,
    feats: ColumnFeatures,
    p_ord: np.ndarray,
    confidence: np.ndarray,
    spacing_px: float,
    config: ClassifyConfig,
) -> np.ndarray:
    """Boundary rounds until the labels repeat (a fixed point, or the mean posterior over a cycle) or ``boundary_rounds``.

    Each round re-decides the boundary columns from the own-intensity evidence of the previous round's
    labels. A fixed number of rounds is not an answer: on a small domain the rounds can alternate between
    two assignments (a 2-cycle), and which one a fixed count ends on then depends on anything that shifts
    the cycle's phase (a crop's margin). The rounds stop when a round's labels equal an earlier round's;
    over the rounds of that cycle each column gets its mean posterior, so columns the cycle agrees on keep
    their label and the others are decided by the average of the cycle's states.
    """
    history: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(config.boundary_rounds):
        own = own_intensity_llr(
            rc,
            intensity,
            p_ord >= 0.5,
            lattice_vectors_px=feats.lattice_vectors_px,
            radius_px=config.radius_spacings * spacing_px,
            max_index_residual=config.max_index_residual,
        )
        p_ord, _ = refine_boundaries(
            rc,
            feats.alternation,
            p_ord,
            mrf_radius_px=config.mrf_radius_spacings * spacing_px,
            confidence=confidence,
            beta=config.boundary_beta,
            n_iter=config.boundary_iterations,
            evidence=own,
        )
        hard = p_ord >= 0.5
        seen = [k for k, (h, _) in enumerate(history) if np.array_equal(h, hard)]
        if seen:
            cycle = [p for _, p in history[seen[0] + 1 :]] + [p_ord]
            return np.mean(cycle, axis=0)
        history.append((hard, p_ord))
    return p_ord


def _crystal_area(
    shape: tuple[int, int],
    rc: np.ndarray,
    crystal_mask: np.ndarray | None,
    *,
    spacing_px: float,
    config: ClassifyConfig,
) -> np.ndarray:
    """The columns' hull grown by ``config.hull_margin_spacings``; or ``crystal_mask`` within the hull grown by
    ``config.edge_reach_spacings``."""
    if crystal_mask is None:
        return hull_mask(shape, rc, margin_px=config.hull_margin_spacings * spacing_px)
    given = np.asarray(crystal_mask, dtype=bool)
    if given.shape != shape:
        raise ValueError(f"crystal_mask has shape {given.shape}, expected the image shape {shape}")
    return given & hull_mask(shape, rc, margin_px=config.edge_reach_spacings * spacing_px)


def _allow_undetected_domains(fractions: AreaFractions, n_columns: int, config: ClassifyConfig) -> AreaFractions:
    """Widen a one-phase result's interval by the share of the largest domain of the other phase that can go unseen."""
    pure_uniform = fractions.uniform >= 0.5
    n = config.undetected_ordered_columns if pure_uniform else config.undetected_uniform_columns
    share = min(1.0, n / max(n_columns, 1))
    lo, hi = fractions.uniform_ci95
    if pure_uniform:
        lo = max(0.0, min(lo, fractions.uniform - share))
    else:
        hi = min(1.0, max(hi, fractions.uniform + share))
    other = "an ordered" if pure_uniform else "a uniform"
    method = (
        f"{fractions.method}; one phase found: {other} domain of up to {n} columns ({share:.1%} of this crystal's "
        "columns) can go undetected (measured on simulated dots), so the interval reaches that far"
    )
    return dataclasses.replace(fractions, uniform_ci95=(lo, hi), method=method)
