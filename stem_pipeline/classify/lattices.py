"""Classification of a crystal that holds two lattices: each lattice's region on its own grid, then merged.

A second phase on its own grid (e.g. PbI2 <1 -1 1> beside CsPbI3 [001]) has columns the first
grid does not predict. Each lattice's columns are classified in that lattice's region (the pixels
nearest to its columns) by :func:`~stem_pipeline.classify.classify_columns`, and the labels, region
maps and fractions are merged: the uniform fraction is the area-weighted mean of the regions', its
interval the area-weighted bounds (as if the regions' errors were fully correlated) combined in
quadrature with the placement of the boundary between the lattices' regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._stats import WIDTH95_SD, Z95
from .._types import LABELS, REGION_OUTSIDE, AreaFractions, Columns, Lattice, PhaseLabels
from ._core import ClassifyConfig, classification_intensity, classify_columns
from .applicability import TwoPhaseModelConfig, contrast_pattern_reasons


def classify_lattice_regions(
    parts: Sequence[Columns],
    regions: Sequence[np.ndarray],
    lattices: Sequence[Lattice],
    shape: tuple[int, ...],
    *,
    config: ClassifyConfig,
    two_phase: TwoPhaseModelConfig,
    boundary_sd_spacings: float,
    pixel_noise: float | None = None,
) -> tuple[PhaseLabels | None, AreaFractions | None, list[str]]:
    """Classify each lattice's columns in its own region and merge labels, region map and fractions.

    Parameters
    ----------
    parts : sequence of Columns
        Each lattice's refined and measured columns.
    regions : sequence of (M, N) ndarray of bool
        Each lattice's region (the crystal pixels nearest to its columns).
    lattices : sequence of Lattice
        Each part's column grid (:func:`stem_pipeline.lattice.find_lattices`): its vectors index the
        part's neighbours in :func:`~stem_pipeline.classify.classify_columns`.
    shape : tuple of int
        The image's shape.
    config : ClassifyConfig
        Passed to :func:`~stem_pipeline.classify.classify_columns` for each region.
    two_phase : TwoPhaseModelConfig
        Whether the contrast pattern of each region fits the two-phase model
        (:func:`~stem_pipeline.classify.contrast_pattern_reasons`).
    boundary_sd_spacings : float
        Uncertainty of the boundary between two lattices' regions [column spacings] (sd).
    pixel_noise : float, optional
        The image's pixel noise over the median column height, passed to
        :func:`~stem_pipeline.classify.classify_columns`.

    Returns
    -------
    labels : PhaseLabels or None
    fractions : AreaFractions or None
        None when no region has enough columns to classify.
    reasons : list of str
        Why the two-phase model does not apply (empty when it does). With one lattice the result
        is :func:`~stem_pipeline.classify.classify_columns`'s own.
    """
    results: list[tuple[Columns, np.ndarray, PhaseLabels, AreaFractions]] = []
    reasons: list[str] = []
    for cols, region, lattice in zip(parts, regions, lattices):
        if len(cols) < config.min_columns:
            continue
        labels, fractions = classify_columns(
            cols,
            shape=(shape[0], shape[1]),
            crystal_mask=region,
            lattice_vectors_px=lattice.vectors_px,
            pixel_noise=pixel_noise,
            config=config,
        )
        reasons += contrast_pattern_reasons(
            classification_intensity(cols, config.intensity),
            cols.rc,
            labels.label == LABELS.index("ordered"),
            spacing_px=lattice.spacing_px,
            config=two_phase,
        )
        results.append((cols, region, labels, fractions))
    if not results:
        return None, None, [*reasons, "too few columns to classify"]
    if len(results) == 1 and len(parts) == 1:
        return results[0][2], results[0][3], reasons
    merged = _merged_labels([(region, labels) for _, region, labels, _ in results], shape)
    areas = np.array([float(region.sum()) for _, region, _, _ in results])
    weights = areas / areas.sum()
    uniform = float(sum(w * r[3].uniform for w, r in zip(weights, results)))
    # Within-region intervals (area-weighted bounds, fully correlated) plus the placement of the
    # boundary between the lattices' regions, in quadrature.
    widths = [r[3].uniform_ci95[1] - r[3].uniform_ci95[0] for r in results]
    sd_within = float(sum(w * width for w, width in zip(weights, widths))) / WIDTH95_SD
    spacing_px = float(np.mean([lat.spacing_px for lat in lattices]))
    sd_boundary = shared_boundary_px(regions) * boundary_sd_spacings * spacing_px / areas.sum()
    half = Z95 * float(np.hypot(sd_within, sd_boundary))
    nm2 = [r[3].crystal_area_nm2 for r in results]
    fractions = AreaFractions(
        ordered=1.0 - uniform,
        uniform=uniform,
        uniform_ci95=(max(0.0, uniform - half), min(1.0, uniform + half)),
        crystal_area_nm2=None if None in nm2 else float(sum(a for a in nm2 if a is not None)),
        method=f"{len(results)} lattices, each region classified on its own grid; area-weighted fractions; 95 % "
        "interval from the regions' measurement intervals and a boundary between the lattices' regions placed "
        f"within {boundary_sd_spacings:g} column spacing (sd), in quadrature",
    )
    if sum(len(r[0]) for r in results) != sum(len(c) for c in parts):
        reasons.append("a lattice region has too few columns to classify")
    return merged, fractions, reasons


def _merged_labels(regions_labels: list[tuple[np.ndarray, PhaseLabels]], shape: tuple[int, ...]) -> PhaseLabels:
    """The regions' labels in order, and one region map with each region's own map inside it."""
    region_map = np.full(shape, REGION_OUTSIDE, np.int8)
    for region, labels in regions_labels:
        region_map[region] = labels.region_map[region]
    return PhaseLabels(
        label=np.concatenate([lab.label for _, lab in regions_labels]),
        contrast=np.concatenate([lab.contrast for _, lab in regions_labels]),
        order_parameter=np.concatenate([lab.order_parameter for _, lab in regions_labels]),
        region_map=region_map,
    )


def shared_boundary_px(regions: Sequence[np.ndarray]) -> float:
    """Length [px] of the boundary between different regions (4-neighbour pixel pairs)."""
    label = np.zeros(regions[0].shape, np.int16)
    for i, region in enumerate(regions, start=1):
        label[region] = i
    total = 0
    for a, b in ((label[1:, :], label[:-1, :]), (label[:, 1:], label[:, :-1])):
        total += int(np.sum((a != b) & (a > 0) & (b > 0)))
    return float(total)
