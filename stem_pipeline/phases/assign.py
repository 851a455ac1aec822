"""The phase-library stage: every column's phase and site, phase fractions and the calibration check.

Runs after the two-phase classification. Each lattice's columns form a group,
split by the classifier's ``ordered``/``uniform`` labels when it labelled them;
:func:`~stem_pipeline.phases.match.explain_columns` names the library phase
that explains each group best. A group's area is its lattice region (and
label region); a group no phase explains is ``unexplained``, never forced.

Calibration. A calibrated image is checked against the phase of its largest
group: a spacing 5-15 % off (``PhasesConfig.calibration_warning``,
``max_spacing_error``) gets a warning naming the pixel size that phase implies.
An uncalibrated image gets phase fractions only when every group is explained
unambiguously (the best phase explains it, holds ``min_probability`` of the
likelihood and has a contrasted site pattern: a grid of alike columns could be
any material at any scale) and all groups imply one pixel size within the shape
tolerance; that pixel size is then reported and used, with a warning.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.spatial import cKDTree

from .._stats import Z95
from .._types import LABELS, REGION_OUTSIDE
from .config import PhasesConfig
from .library import Phase
from .match import explain_columns
from .regions import local_spacing, split_by_spacing

logger = logging.getLogger("stem_pipeline")

__all__ = ["UNEXPLAINED", "assign_phases"]

#: The phase name of columns and areas no library phase explains.
UNEXPLAINED = "unexplained"


def _aligned(a: np.ndarray, b: np.ndarray, *, max_scale: float, max_angle_deg: float = 5.0) -> bool:
    """Whether two lattices are one grid a few per cent apart in spacing: same directions, near lengths."""
    la, lb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if abs(lb.min() / la.min() - 1) > max_scale or abs(lb.max() / la.max() - 1) > max_scale:
        return False
    cos = np.abs((a / la[:, None]) @ (b / lb[:, None]).T)
    return bool(np.all(cos.max(axis=0) >= np.cos(np.radians(max_angle_deg))))


def _groups(parts, regions, lattices, labels, max_scale: float) -> list[tuple[int, str | None, np.ndarray, np.ndarray]]:
    """(lattice index, label name or None, column index into the pooled columns, region mask) per group.

    Lattices along the same directions with spacings within ``max_scale`` are pooled (two phases a few
    per cent apart, which the lattice finder split between its grids column by column): their parts
    are then told apart by local spacing (:func:`_explained_parts`).
    """
    starts = np.concatenate([[0], np.cumsum([len(c) for c in parts])])
    owner = list(range(len(parts)))
    for k in range(1, len(parts)):
        for j in range(k):
            if owner[j] == j and _aligned(lattices[j].vectors_px, lattices[k].vectors_px, max_scale=max_scale):
                owner[k] = j
                break
    out: list[tuple[int, str | None, np.ndarray, np.ndarray]] = []
    for k in sorted(set(owner)):
        members = [j for j in range(len(parts)) if owner[j] == k]
        index = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in members])
        region = np.logical_or.reduce([regions[j] for j in members])
        if labels is None:
            out.append((k, None, index, region))
            continue
        for code, name in enumerate(LABELS):
            sel = labels.label[index] == code
            if sel.any():
                out.append((k, name, index[sel], region & (labels.region_map == code + 1)))
    return out


def _explained_parts(
    rc, intensity, spacing, index, region, lattice, pixel_size_nm, library, config: PhasesConfig, site_intensities
):
    """[(column indices, region, fits)] of one group: the group itself, or its two parts of different spacing.

    A group whose local spacings (``spacing``, measured among all the columns) are bimodal is cut in two
    (:func:`~.regions.split_by_spacing`), each
    part fitted on its own lattice vectors; the cut stands when two different phases explain the
    parts, or when the whole is unexplained and a part is explained.
    """
    from ..classify import estimate_lattice_vectors
    from ..lattice import reduce_basis

    def fit(sub, vectors):
        if len(sub) < config.min_columns:
            return []
        return explain_columns(
            rc[sub],
            intensity[sub],
            vectors,
            library,
            pixel_size_nm=pixel_size_nm,
            config=config,
            site_intensities=site_intensities,
        )

    fits = fit(index, lattice.vectors_px)
    whole = [(index, region, fits)]
    split = split_by_spacing(spacing[index], min_columns=config.min_columns)
    if split is None:
        return whole
    subs = [index[s] for s in split]
    sub_fits = [fit(sub, reduce_basis(estimate_lattice_vectors(rc[sub]))) for sub in subs]
    best = [f[0].phase if f and f[0].explains else None for f in sub_fits]
    two_phases = all(best) and best[0] != best[1]
    if not two_phases and (fits and fits[0].explains or not any(best)):
        return whole
    tree = cKDTree(rc[index])
    pixels = np.argwhere(region)
    owner = np.isin(tree.query(pixels)[1], split[1]).astype(int)
    sub_regions = []
    for part in (0, 1):
        mask = np.zeros_like(region)
        mask[tuple(pixels[owner == part].T)] = True
        sub_regions.append(mask)
    return list(zip(subs, sub_regions, sub_fits))


def _consistent_with(library: dict[str, Phase], label: str | None) -> dict[str, Phase]:
    """The phases a two-phase label allows: ``uniform`` columns only phases with a uniform grid, ``ordered`` the others.

    The two-phase classifier has already told the contrasted columns from the alike ones, with a
    spatial prior; the library only names them (a few bright boundary columns in a uniform region
    otherwise make a one-in-four phase fit it better than the uniform one).
    """
    if label is None:
        return library
    want_uniform = label == "uniform"
    return {name: p for name, p in library.items() if any(g.uniform for g in p.grids()) == want_uniform}


def _record(lattice: int, label, index, region, phase: str, fits) -> dict:
    """One group's JSON record: where it is, its phase and every candidate phase's fit."""
    return {
        "lattice": lattice,
        "label": label,
        "n_columns": int(len(index)),
        "area_px": float(region.sum()),
        "phase": phase,
        "candidates": [
            {
                "phase": f.phase,
                "probability": round(f.probability, 4),
                "explains": f.explains,
                "implied_pixel_size_nm": round(f.implied_pixel_size_nm, 6),
                "spacing_error": None if f.spacing_error is None else round(f.spacing_error, 4),
            }
            for f in fits
        ],
    }


def _unambiguous(fits, config: PhasesConfig) -> bool:
    """Whether one phase identifies uncalibrated columns: it explains them, holds ``config.min_probability`` of
    the likelihood, and its pattern has contrast (a grid of alike columns says nothing without a scale)."""
    return (
        bool(fits) and fits[0].explains and fits[0].probability >= config.min_probability and not fits[0].grid.uniform
    )


def assign_phases(
    parts,
    regions: list[np.ndarray],
    lattices,
    labels,
    two_phase=None,
    *,
    pixel_size_nm: float | None,
    library: dict[str, Phase],
    config: PhasesConfig,
    source: str = "image",
    site_intensities: dict[str, dict[str, float]] | None = None,
) -> dict:
    """Phase and site of every column, phase fractions with intervals, and the calibration check.

    Parameters
    ----------
    parts : list of Columns
        Each lattice's columns, in the pooled order (lattice 0 first).
    regions : list of (M, N) ndarray of bool
        Each lattice's crystal region.
    lattices : list of Lattice
        The lattices (``vectors_px``, ``spacing_px``).
    labels : PhaseLabels or None
        The two-phase classifier's labels of the pooled columns, if it ran.
    two_phase : AreaFractions or None
        The two-phase classifier's fractions: when its two labels are explained
        by two phases, those phases' fractions and intervals are its own.
    pixel_size_nm : float or None
        The image's calibration.
    library : dict of str to Phase
        The phases to try.
    config : PhasesConfig
        Tolerances.
    source : str
        The image's name, for the warnings.
    site_intensities : dict, optional
        {phase: {site: relative intensity}} replacing the projected-Z estimate
        (see :func:`~stem_pipeline.phases.match.explain_columns`).

    Returns
    -------
    dict
        ``phase``, ``site`` ((N,) str arrays; "" for columns of groups too small
        to classify), ``phase_fractions`` ({phase: {"fraction", "ci95"}}, empty
        when not reported), ``groups`` (one record per group) and
        ``calibration`` (``status``: "ok", "warning", "uncalibrated_implied",
        "uncalibrated_ambiguous" or "unchecked"; ``implied_pixel_size_nm``;
        ``spacing_error``; ``message``).
    """
    n = sum(len(p) for p in parts)
    phase = np.full(n, "", dtype=object)
    site = np.full(n, "", dtype=object)
    intensity = np.concatenate([p.intensity for p in parts]) if parts else np.zeros(0)
    rc = np.concatenate([p.rc for p in parts]) if parts else np.zeros((0, 2))
    spacing = local_spacing(rc)
    records, fits_by_group, group_regions = [], [], []
    for k, label, index, region in _groups(parts, regions, lattices, labels, config.max_spacing_error):
        # Uncalibrated, every phase is tried: fractions then need one phase alone to explain the columns.
        candidates = library if pixel_size_nm is None else _consistent_with(library, label)
        explained = _explained_parts(
            rc, intensity, spacing, index, region, lattices[k], pixel_size_nm, candidates, config, site_intensities
        )
        if len(candidates) < len(library) and not any(f and f[0].explains for _, _, f in explained):
            # No phase of the label's kind explains the group (e.g. a few boundary columns the classifier
            # called uniform): every phase is tried before the group is called unexplained.
            explained = _explained_parts(
                rc, intensity, spacing, index, region, lattices[k], pixel_size_nm, library, config, site_intensities
            )
        for sub, sub_region, fits in explained:
            best = fits[0] if fits and fits[0].explains else None
            phase[sub] = best.phase if best else (UNEXPLAINED if len(sub) >= config.min_columns else "")
            if best is not None:
                site[sub] = best.site
            fits_by_group.append(fits)
            group_regions.append(sub_region)
            records.append(_record(k, label, sub, sub_region, str(phase[sub[0]]) if len(sub) else "", fits))
    calibration = _calibration(records, fits_by_group, pixel_size_nm, config, source)
    fractions = {}
    if calibration["status"] != "uncalibrated_ambiguous" and sum(r["area_px"] for r in records) > 0:
        fractions = _fractions(records, group_regions, lattices)
        fractions.update(_two_phase_fractions(records, two_phase))
    return {
        "phase": phase.astype(str),
        "site": site.astype(str),
        "phase_fractions": fractions,
        "groups": records,
        "calibration": calibration,
    }


def _calibration(records, fits_by_group, pixel_size_nm, config: PhasesConfig, source: str) -> dict:
    """The calibration check of the largest explained group (see the module docstring)."""
    explained = [(r["area_px"], i) for i, r in enumerate(records) if r["phase"] not in ("", UNEXPLAINED)]
    if pixel_size_nm is None:
        fits = [fits_by_group[i] for _, i in explained]
        implied = [f[0].implied_pixel_size_nm for f in fits]
        if (
            explained
            and len(explained) == sum(1 for r in records if r["phase"])
            and all(_unambiguous(f, config) for f in fits)
            and np.ptp(implied) <= config.shape_tolerance * np.mean(implied)
        ):
            used = float(np.average(implied, weights=[a for a, _ in explained]))
            message = (
                f"{source}: uncalibrated; the lattice matches one library phase ({records[explained[0][1]]['phase']}), "
                f"which implies a pixel size of {used:.5g} nm: used for the phase fractions"
            )
            logger.warning(message)
            return {
                "status": "uncalibrated_implied",
                "implied_pixel_size_nm": used,
                "spacing_error": None,
                "message": message,
            }
        message = (
            f"{source}: uncalibrated and the lattice matches no single library phase unambiguously: no phase fractions"
        )
        logger.warning(message)
        return {
            "status": "uncalibrated_ambiguous",
            "implied_pixel_size_nm": None,
            "spacing_error": None,
            "message": message,
        }
    if not explained:
        return {"status": "unchecked", "implied_pixel_size_nm": None, "spacing_error": None, "message": None}
    best = fits_by_group[max(explained)[1]][0]
    if abs(best.spacing_error) < config.calibration_warning:
        return {
            "status": "ok",
            "implied_pixel_size_nm": best.implied_pixel_size_nm,
            "spacing_error": best.spacing_error,
            "message": None,
        }
    message = (
        f"{source}: the column spacing is {100 * best.spacing_error:+.1f} % off {best.phase}'s: check the "
        f"calibration; that phase implies a pixel size of {best.implied_pixel_size_nm:.5g} nm "
        f"(the file gives {pixel_size_nm:.5g} nm)"
    )
    logger.warning(message)
    return {
        "status": "warning",
        "implied_pixel_size_nm": best.implied_pixel_size_nm,
        "spacing_error": best.spacing_error,
        "message": message,
    }


def _fractions(records, group_regions, lattices) -> dict:
    """Area fraction of each phase, with a 95 % interval from the placement of the boundaries between phases.

    A boundary between two phases' areas is placed within half a column spacing (sd, as for two
    lattices in :mod:`stem_pipeline.pipeline`); a phase's interval is its fraction +-1.96 sd of
    its boundary length times that shift, over the crystal area.
    """
    from ..classify import boundary_length_px

    names = list(dict.fromkeys(r["phase"] or UNEXPLAINED for r in records))
    areas = np.array([r["area_px"] for r in records])
    total = float(areas.sum())
    spacing_px = float(np.mean([lat.spacing_px for lat in lattices]))
    out = {}
    for name in names:
        mine = np.array([(r["phase"] or UNEXPLAINED) == name for r in records])
        fraction = float(areas[mine].sum()) / total
        code = np.full(group_regions[0].shape, REGION_OUTSIDE, np.int8)
        for region, is_mine in zip(group_regions, mine):
            code[region] = 1 if is_mine else 2
        half = Z95 * boundary_length_px(code) * 0.5 * spacing_px / total
        out[name] = {"fraction": fraction, "ci95": [max(0.0, fraction - half), min(1.0, fraction + half)]}
    return out


def _two_phase_fractions(records, two_phase) -> dict:
    """The classifier's own fractions and interval for the two phases its labels map to one-to-one."""
    if two_phase is None:
        return {}
    by_label: dict[str, set[str]] = {}
    for r in records:
        by_label.setdefault(r["label"], set()).add(r["phase"])
    if set(by_label) != set(LABELS) or any(len(p) != 1 for p in by_label.values()):
        return {}
    ordered, uniform = (next(iter(by_label[name])) for name in LABELS)
    if ordered == uniform or UNEXPLAINED in (ordered, uniform) or "" in (ordered, uniform):
        return {}
    lo, hi = two_phase.uniform_ci95
    return {
        ordered: {"fraction": two_phase.ordered, "ci95": [1.0 - hi, 1.0 - lo]},
        uniform: {"fraction": two_phase.uniform, "ci95": [lo, hi]},
    }
