"""A field of many dots: the dot is the unit of analysis.

``analyze_field`` splits the field into dots (:mod:`stem_pipeline.dots`)
before anything that depends on the lattice, measures every dot's size and
shape, and analyses each dot with the single-dot chain
(:func:`stem_pipeline.pipeline.analyze`) on a crop around it in which the
other dots' pixels are replaced by carbon drawn from the field's own support:
no other dot's lattice is in the crop, so denoising (Bragg masks, Wiener
filters) acts with the dot's own peaks only and cannot carry one dot's
lattice onto another. Columns are mapped back to field coordinates with their
dot id. A dot that cannot be analysed is kept with status ``refused`` and the
reason (also a dot whose outline overlaps another dot's: both lattices there,
:func:`stem_pipeline.dots.overlapping_dots`); dots of overview images (lattice not resolved) get ``overview``.

A field with at most one dot is analysed as a whole, as before fields existed
(the same numbers as :func:`~stem_pipeline.pipeline.analyze`), also when the
frame cuts that dot (its record says so), unless its crop covers less than
:data:`LONE_CROP_SHARE` of the frame: a small dot on a large field is analysed
on its crop, as the dots of a field of several are, so that the cost grows with
the dot and not with the frame. In a field of several dots, dots cut by the
frame are refused.

The field's fractions are area-weighted over its analysed dots; the 95 %
interval combines each dot's measurement interval with the between-dot spread
(random effects, DerSimonian-Laird, Student-t quantile; see :func:`field_fractions`).
The phase-library stage's fractions are pooled over the dots the same way, phase by
phase (:func:`field_phase_fractions`); each dot's row of ``dots.csv`` holds its own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ._stats import WIDTH95_SD
from ._tiles import within_distance
from ._types import (
    REGION_OUTSIDE,
    AreaFractions,
    Columns,
    Micrograph,
    PhaseLabels,
    PipelineResult,
)
from .dots.segment import OVERVIEW_PIXEL_NM
from .dots.shape import DOT_COLUMNS, DotShape, dot_record, dot_shapes, refusal_reason
from .io import as_micrograph, to_dataframe

logger = logging.getLogger("stem_pipeline")

__all__ = ["DOT_COLUMNS", "DotResult", "FieldResult", "analyze_field", "field_fractions", "field_phase_fractions"]

#: Carbon kept around a dot in its crop [nm] (the single-dot chain needs support around the crystal).
CROP_MARGIN_NM = 1.5
#: Other dots are blanked this far beyond their segmented edge [nm] (their lattice's last half cell).
BLANK_MARGIN_NM = 0.3
#: A lone dot whose crop (its bounding box and :data:`CROP_MARGIN_NM` of carbon) covers less than this
#: share of the frame's pixels is analysed on its crop; one filling more, as a whole image (as before fields).
LONE_CROP_SHARE = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class DotResult:
    """One dot of a field: its shape, status and (when analysed) its own analysis.

    Attributes
    ----------
    dot : int
        Dot id (1..K), its value in :attr:`FieldResult.labels`.
    shape : DotShape
        Centroid, edge, area, aspect, edge orientation, ``touches_border``.
    status : {"ok", "refused", "overview"}
        ``ok``: analysed with fractions; ``refused``: not analysed or no
        fractions (``message`` says why); ``overview``: size and shape only.
    message : str or None
        The reason for ``refused`` (or a remark).
    pixel_size_nm : float or None
        Pixel size [nm].
    lattice_orientation_deg : float or None
        Rotation of the dot's column grid [deg] in [0, 90), from the local lattice orientation.
    result : PipelineResult or None
        The single-dot analysis (of the crop, or of the whole image for a one-dot field).
    offset_rc : (int, int)
        Position of the crop's first pixel in the field (row, col) [px].
    """

    dot: int
    shape: DotShape
    status: str
    message: str | None = None
    pixel_size_nm: float | None = None
    lattice_orientation_deg: float | None = None
    result: PipelineResult | None = None
    offset_rc: tuple[int, int] = (0, 0)

    @property
    def fractions(self) -> AreaFractions | None:
        """The dot's area fractions (None unless ``ok``)."""
        return self.result.fractions if self.status == "ok" and self.result is not None else None

    @property
    def phase_fractions(self) -> dict:
        """The dot's phase-library fractions ({phase: {"fraction", "ci95"}}; empty unless ``ok``)."""
        if self.status != "ok" or self.result is None:
            return {}
        return self.result.phases.get("phase_fractions") or {}

    @property
    def columns(self) -> Columns | None:
        """The dot's columns in field coordinates (None when not analysed)."""
        if self.result is None or self.result.columns is None:
            return None
        cols = self.result.columns
        return cols.replace(rc=cols.rc + np.asarray(self.offset_rc, float))

    @property
    def analysis(self) -> PipelineResult:
        """The dot's own analysis, for a dot known to have one (a ValueError otherwise)."""
        if self.result is None:
            raise ValueError(f"dot {self.dot} was not analysed")
        return self.result

    @property
    def found_columns(self) -> Columns:
        """:attr:`columns`, for a dot known to have them (a ValueError otherwise)."""
        cols = self.columns
        if cols is None:
            raise ValueError(f"dot {self.dot} has no columns")
        return cols

    def area_nm2(self) -> float | None:
        """Footprint area [nm^2] (None without calibration)."""
        return None if self.pixel_size_nm is None else self.shape.area_px * self.pixel_size_nm**2

    def to_record(self) -> dict[str, Any]:
        """The dot's row of ``dots.csv`` (:data:`DOT_COLUMNS`); fractions None where not measured."""
        cols = self.columns
        return dot_record(
            self.shape,
            pixel_size_nm=self.pixel_size_nm,
            status=self.status,
            message=self.message,
            lattice_orientation_deg=self.lattice_orientation_deg,
            n_columns=0 if cols is None else len(cols),
            fractions=self.fractions,
            phases=self._phases_record(),
        )

    def _phases_record(self) -> dict | None:
        """The phase-library part of the dot's record: its calibration check, and its fractions when ``ok``."""
        phases = self.result.phases if self.result is not None else None
        if not phases:
            return None
        return {"calibration": phases.get("calibration"), "phase_fractions": self.phase_fractions}


@dataclasses.dataclass(frozen=True, eq=False)
class FieldResult:
    """Everything :func:`analyze_field` produced for one field.

    Attributes
    ----------
    result : PipelineResult
        The field as one result (the output contract's ``summary.json``,
        ``columns.csv`` and overlay): all analysed dots' columns and labels,
        field-level fractions, the field's status and message.
    dots : list of DotResult
        Every dot found, analysed or not.
    labels : (M, N) ndarray of int32
        0 on the support, ``k`` on dot ``k``.
    column_dot : (N,) ndarray of int
        Dot id of each column of ``result.columns``.
    """

    result: PipelineResult
    dots: list[DotResult]
    labels: np.ndarray
    column_dot: np.ndarray

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def fractions(self) -> AreaFractions | None:
        return self.result.fractions

    def columns_dataframe(self):
        """Every dot's columns (field coordinates) with ``dot``, ``label``, ``contrast`` and ``order_parameter``.

        Columns of dots that were not classified have ``label`` and ``contrast`` ``n/a``.
        """
        import pandas as pd

        frames = []
        for d in self.dots:
            cols = d.columns
            if cols is None:
                continue
            df = to_dataframe(cols, d.result.labels)
            df.insert(0, "dot", d.dot)
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else None

    def records(self) -> list[dict[str, Any]]:
        """One ``dots.csv`` record per dot (``result.dots``)."""
        return list(self.result.dots)

    def to_dataframe(self):
        """The dots as a pandas DataFrame with the columns of :data:`DOT_COLUMNS` (``result.dots_dataframe()``)."""
        return self.result.dots_dataframe()


def field_fractions(dots: list[DotResult]) -> AreaFractions | None:
    """Area-weighted fractions over the analysed dots, with a random-effects 95 % interval.

    The estimate is ``sum(w_i f_i)`` with ``w_i`` the dots' crystal areas,
    normalised. Each dot's measurement variance ``s_i^2`` is read from its
    interval (``(hi - lo) / 3.92``); the between-dot variance ``tau^2`` is the
    DerSimonian-Laird moment estimate. The variance of the estimate is the
    larger of the model's ``sum(w_i^2 (s_i^2 + tau^2))`` and the empirical
    (Hartung-Knapp-like) ``sum(w_i^2 (f_i - estimate)^2) / (1 - sum(w_i^2))``,
    and the interval is ``estimate +- t sqrt(variance)``, clipped to [0, 1],
    with ``t`` the 97.5 % quantile of Student's t with ``k - 1`` degrees of
    freedom for ``k`` dots (the DerSimonian-Laird variance with the normal
    quantile 1.96 covered the population fraction in only 0.76-0.83 of 2-6 dot
    fields; ``benchmarks/fields.py`` states the coverage of this one).
    It is an interval for the fraction of the population of dots the field
    samples (the sample's composition), not only of these dots. With one dot it
    is that dot's interval.

    Parameters
    ----------
    dots : list of DotResult

    Returns
    -------
    AreaFractions or None
        None when no dot has fractions.
    """
    measured = [(d, fr) for d in dots if (fr := d.fractions) is not None]
    if not measured:
        return None
    if len(measured) == 1:
        return measured[0][1]
    done = [fr for _, fr in measured]
    f = np.array([fr.uniform for fr in done])
    lo, hi = np.array([fr.uniform_ci95 for fr in done]).T
    s2 = np.maximum(((hi - lo) / WIDTH95_SD) ** 2, 1e-8)
    areas = np.array([fr.crystal_area_nm2 or d.shape.area_px for d, fr in measured], float)
    w = areas / areas.sum()
    # scipy.special's Student-t quantile, the value scipy.stats.t.ppf returns, without importing scipy.stats
    # (~0.3 s CPU of a multi-dot analyze process, benchmarks/process.py).
    from scipy.special import stdtrit

    tau2 = _dersimonian_laird(f, s2)
    estimate = float(np.sum(w * f))
    model = float(np.sum(w**2 * (s2 + tau2)))
    empirical = float(np.sum(w**2 * (f - estimate) ** 2)) / max(1.0 - float(np.sum(w**2)), 1e-12)
    half = float(stdtrit(len(done) - 1, 0.975)) * float(np.sqrt(max(model, empirical)))
    nm2 = [fr.crystal_area_nm2 for fr in done]
    return AreaFractions(
        ordered=1.0 - estimate,
        uniform=estimate,
        uniform_ci95=(max(0.0, estimate - half), min(1.0, estimate + half)),
        crystal_area_nm2=None if None in nm2 else float(sum(a for a in nm2 if a is not None)),
        method=f"{len(done)} dots, area-weighted; 95 % interval: random effects (DerSimonian-Laird between-dot "
        f"sd {np.sqrt(tau2):.3f}) combined with each dot's measurement interval, or the dots' empirical spread "
        f"if larger; Student-t quantile with {len(done) - 1} degrees of freedom",
    )


def field_phase_fractions(dots: list[DotResult]) -> dict:
    """The phase-library fractions over the analysed dots, phase by phase, as :func:`field_fractions` pools.

    Each phase's fraction is area-weighted over the dots with phase fractions (a dot without that
    phase counts with fraction 0 and interval [0, 0]); its 95 % interval is :func:`field_fractions`'s
    (each dot's interval combined with the between-dot spread). The dots are weighted by their crystal
    areas where the two-phase classifier measured every one's (then the phases of the paper's two-phase
    case pool exactly as its fractions), else by their footprints.

    Parameters
    ----------
    dots : list of DotResult

    Returns
    -------
    dict
        {phase: {"fraction", "ci95"}}; empty when no dot has phase fractions.
    """
    done = [d for d in dots if d.phase_fractions]
    names = list(dict.fromkeys(name for d in done for name in d.phase_fractions))
    crystal = [d.fractions.crystal_area_nm2 if d.fractions is not None else None for d in done]
    areas = crystal if None not in crystal else [d.area_nm2() for d in done]
    out = {}
    for name in names:
        pooled = field_fractions([_as_uniform(d, name, a) for d, a in zip(done, areas)])
        if pooled is not None:  # every dot here has fractions
            out[name] = {"fraction": pooled.uniform, "ci95": list(pooled.uniform_ci95)}
    return out


def _as_uniform(dot: DotResult, name: str, area: float | None) -> DotResult:
    """``dot`` with phase ``name``'s fraction and interval in the place of its uniform fraction, weighing ``area``."""
    share = dot.phase_fractions.get(name, {"fraction": 0.0, "ci95": [0.0, 0.0]})
    fractions = AreaFractions(
        ordered=1.0 - share["fraction"],
        uniform=share["fraction"],
        uniform_ci95=tuple(share["ci95"]),
        crystal_area_nm2=area,
    )
    return dataclasses.replace(dot, result=dataclasses.replace(dot.analysis, fractions=fractions))


def _field_phases(dots: list[DotResult], chosen: list[DotResult]) -> dict:
    """The field's phase-library results: columns' ``phase``/``site`` (of ``chosen``, in the merged
    columns' order), pooled ``phase_fractions`` and the dots' calibration checks; empty when no dot had the stage."""
    staged = [d for d in dots if d.result is not None and d.result.phases]
    if not staged:
        return {}
    per_dot = {d.dot: d.analysis.phases["calibration"] for d in staged}
    warned = [f"dot {k}: {c['message']}" for k, c in per_dot.items() if c.get("message")]
    statuses = {c["status"] for c in per_dot.values()}
    parts = [(d.analysis.phases, len(d.found_columns)) for d in chosen]
    return {
        "phase": np.concatenate([p["phase"] if p else np.full(n, "") for p, n in parts] or [np.zeros(0, str)]),
        "site": np.concatenate([p["site"] if p else np.full(n, "") for p, n in parts] or [np.zeros(0, str)]),
        "phase_fractions": field_phase_fractions(dots),
        "groups": [],
        "calibration": {
            "status": "warning" if "warning" in statuses else ("ok" if "ok" in statuses else sorted(statuses)[0]),
            "implied_pixel_size_nm": None,
            "spacing_error": None,
            "message": "; ".join(warned) or None,
            "dots": {str(k): c["status"] for k, c in per_dot.items()},
        },
    }


def _dersimonian_laird(f: np.ndarray, s2: np.ndarray) -> float:
    """Between-study variance ``tau^2`` of estimates ``f`` with within variances ``s2`` (DerSimonian-Laird)."""
    v = 1.0 / s2
    mean = np.sum(v * f) / np.sum(v)
    q = float(np.sum(v * (f - mean) ** 2))
    denom = float(np.sum(v) - np.sum(v**2) / np.sum(v))
    return max(0.0, (q - (len(f) - 1)) / denom) if denom > 0 else 0.0


def _carbon_fill(raw: np.ndarray, support: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values drawn from the support's own pixels (no lattice, the same counts statistics)."""
    pool = raw[support]
    if pool.size == 0:
        return np.full(n, float(np.median(raw)), raw.dtype)
    return rng.choice(pool, size=n)


def _crop_boxes(labels: np.ndarray, px: float) -> dict[int, tuple[slice, slice]]:
    """Each dot's crop, by label: its bounding box grown by :data:`CROP_MARGIN_NM`, within the frame.

    One pass over the labels, instead of an image-sized mask per dot.
    """
    margin = int(np.ceil(CROP_MARGIN_NM / px))
    rows, cols = labels.shape
    return {
        k: (
            slice(max(sl[0].start - margin, 0), min(sl[0].stop + margin, rows)),
            slice(max(sl[1].start - margin, 0), min(sl[1].stop + margin, cols)),
        )
        for k, sl in enumerate(ndimage.find_objects(labels), start=1)
        if sl is not None
    }


def _analyze_dot(
    micrograph: Micrograph,
    labels: np.ndarray,
    shape: DotShape,
    box: tuple[slice, slice],
    support: np.ndarray,
    config,
    rng: np.random.Generator,
) -> tuple[PipelineResult, tuple[int, int]]:
    """The single-dot chain on the crop ``box`` around one dot, the other dots blanked with carbon."""
    from .pipeline import analyze

    px = micrograph.pixel_size_nm
    if px is None:
        raise ValueError(f"{micrograph.source}: a field's dots are cropped in nm and need the pixel size")
    crop = np.array(micrograph.data[box], copy=True)
    own = labels[box]
    mine = own == shape.label
    others = (own > 0) & ~mine
    if others.any():
        others = ndimage.distance_transform_edt(~others) <= BLANK_MARGIN_NM / px
        others &= ~mine
        crop[others] = _carbon_fill(micrograph.data, support, int(others.sum()), rng)
    sub = micrograph.replace(data=crop, source=f"{micrograph.source} dot {shape.label}")
    return analyze(sub, config, check_dots=False), (int(box[0].start), int(box[1].start))


def analyze_field(
    micrograph: Micrograph | np.ndarray | Any,
    config=None,
    *,
    pixel_size_nm: float | None = None,
    rng: np.random.Generator | int | None = 0,
) -> FieldResult:
    """Analyse a field of dots: every dot found, sized, and analysed on its own or refused with a reason.

    Parameters
    ----------
    micrograph : Micrograph, HyperSpy Signal2D or (M, N) ndarray
        The raw image, as :func:`stem_pipeline.pipeline.analyze` takes it.
    config : PipelineConfig, optional
        The single-dot chain's configuration (defaults when None).
    pixel_size_nm : float, optional
        Pixel size [nm]; needed for an array, and overrides a Micrograph's or signal's.
    rng : Generator, int or None
        Random source of the carbon pixels that replace the other dots around each dot.

    Returns
    -------
    FieldResult
        ``result.status`` is ``ok`` when the field holds at least one dot,
        ``no_crystal`` when it holds none; ``result.message`` counts the dots
        by status and reason.
    """
    from .dots import overlapping_dots, segment_field, segment_overview
    from .pipeline import PipelineConfig, analyze, denoise_config_for

    micrograph = as_micrograph(micrograph, pixel_size_nm=pixel_size_nm)
    config = config or PipelineConfig()
    # The file's optics for the 'rl' step, decided (and any default warned about) once, not per dot.
    config = config.model_copy(update={"denoise": denoise_config_for(micrograph, config.denoise)})
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    px = micrograph.pixel_size_nm
    raw = np.asarray(micrograph.data)
    if px is not None and px >= OVERVIEW_PIXEL_NM:
        labels = segment_overview(raw, pixel_size_nm=px)
        dots = [
            DotResult(
                dot=s.label,
                shape=s,
                status="overview",
                pixel_size_nm=px,
                message="overview image: lattice not resolved at this pixel size; size and shape only",
            )
            for s in dot_shapes(labels)
        ]
        base = PipelineResult(
            micrograph=micrograph, status="ok" if dots else "no_crystal", config_hash=config.config_hash()
        )
        return _assemble(base, dots, labels, raw)
    if px is None:  # no calibration: no band of spacings to segment with; the image is one dot
        result = analyze(micrograph, config)
        labels = (result.crystal_mask if result.crystal_mask is not None else np.zeros(raw.shape, bool)).astype(
            np.int32
        )
        return _single(result, labels, px, None)
    labels, lattice_field, _ = segment_field(raw, pixel_size_nm=px)
    shapes = dot_shapes(labels)
    rotation = _rotations(labels, shapes, lattice_field)
    overlaps: dict[int, set[int]] = {}
    if len(shapes) > 1:
        joined, overlaps = overlapping_dots(raw, labels, rotation, pixel_size_nm=px)
        if joined is not labels:  # pieces that were only the overlap of two dots joined their dot
            labels, shapes = joined, dot_shapes(joined)
            rotation = _rotations(labels, shapes, lattice_field)
    del lattice_field  # large (complex per pixel); the single-dot chain needs the memory
    boxes = _crop_boxes(labels, px)
    if len(shapes) <= 1 and not (shapes and _crop_share(boxes[shapes[0].label], raw.shape) < LONE_CROP_SHARE):
        result = analyze(micrograph, config, check_dots=False)
        if not shapes and result.crystal_mask is not None and result.status == "ok":
            labels = result.crystal_mask.astype(np.int32)  # a lattice the segmentation's band does not pass
            shapes = dot_shapes(labels)
        lattice_labels = labels
        labels, unresolved = _with_unresolved(raw, labels, px)
        known = shapes if labels is lattice_labels else None  # no region added: the same shapes
        return _single(result, labels, px, rotation.get(1), unresolved, shapes=known)
    labels, unresolved = _with_unresolved(raw, labels, px)
    support = ~within_distance(labels > 0, BLANK_MARGIN_NM / px)  # by row blocks: no float64 image copies
    dots = []
    for shape in shapes:
        dot = DotResult(
            dot=shape.label,
            shape=shape,
            status="refused",
            pixel_size_nm=px,
            lattice_orientation_deg=rotation[shape.label],
        )
        if shape.touches_border and len(shapes) > 1:
            dots.append(dataclasses.replace(dot, message="cut by the frame edge"))
            continue
        if shape.label in overlaps:
            others = ", ".join(str(k) for k in sorted(overlaps[shape.label]))
            message = f"overlapping another dot: dot {others} (both lattices where their outlines overlap)"
            dots.append(dataclasses.replace(dot, message=message))
            continue
        result, offset = _analyze_dot(micrograph, labels, shape, boxes[shape.label], support, config, rng)
        result = _slim(result, raw, offset)
        reason = refusal_reason(result)
        status = "refused" if reason else "ok"
        note = _lone_note(shape, reason) if len(shapes) == 1 else reason
        dots.append(dataclasses.replace(dot, status=status, message=note, result=result, offset_rc=offset))
    # A lone dot's lattice is the image's (translation-invariant: summary.json's ``lattice``), as when analysed whole.
    lattices = dots[0].result.lattices if len(dots) == 1 and dots[0].result is not None else ()
    base = PipelineResult(micrograph=micrograph, status="ok", config_hash=config.config_hash(), lattices=lattices)
    return _assemble(base, dots + unresolved, labels, raw)


def _rotations(labels: np.ndarray, shapes: list[DotShape], lattice_field) -> dict[int, float]:
    """Each dot's lattice rotation [deg], read on the lattice field's map.

    The labels are the map's repeated over its blocks: each block's first pixel is the map's label
    (an image-sized mask per dot, reduced to the map, took ~1 s and a float32 image copy each).
    """
    on_map = labels[:: lattice_field.factor, :: lattice_field.factor]
    return {s.label: float(lattice_field.rotation_deg(on_map == s.label)) for s in shapes}


def _slim(result: PipelineResult, raw: np.ndarray, offset: tuple[int, int]) -> PipelineResult:
    """A dot's result without the copies the field no longer needs.

    Its raw image becomes a view of the field (instead of the crop with the other dots blanked,
    which only the analysis needed) and its crystal mask goes (the field's is its dot labels):
    a 64-dot 8192^2 field held ~440 MB of such crops until it was assembled.
    """
    (r0, c0), (h, w) = offset, result.micrograph.shape
    view = result.micrograph.replace(data=raw[r0 : r0 + h, c0 : c0 + w])
    return dataclasses.replace(result, micrograph=view, crystal_mask=None)


def _with_unresolved(raw: np.ndarray, labels: np.ndarray, px: float) -> tuple[np.ndarray, list[DotResult]]:
    """The lattice dots' labels with the bright regions without a lattice added after them, and their refusals."""
    from .dots import unresolved_regions

    extra = unresolved_regions(raw, labels, pixel_size_nm=px)
    if not extra.any():
        return labels, []
    labels = np.where(extra > 0, extra + int(labels.max()), labels).astype(np.int32)
    first = int(labels.max()) - int(extra.max()) + 1
    refused = [
        DotResult(
            dot=s.label,
            shape=s,
            status="refused",
            pixel_size_nm=px,
            message="lattice not resolved: a bright region without a lattice in the band of column spacings "
            "(off the zone axis, amorphous or too thick)" + ("; cut by the frame edge" if s.touches_border else ""),
        )
        for s in dot_shapes(labels)
        if s.label >= first
    ]
    return labels, refused


def _single(
    result: PipelineResult,
    labels: np.ndarray,
    px: float | None,
    rotation: float | None,
    unresolved: Sequence[DotResult] = (),
    *,
    shapes: list[DotShape] | None = None,
) -> FieldResult:
    """A field of at most one lattice dot: the whole-image analysis is the dot's (the numbers of ``analyze``).

    Bright regions without a lattice (``unresolved``, labelled after the lattice dot) are listed as refused;
    the whole-image analysis finds no columns on them. ``shapes``: ``dot_shapes(labels)`` when the caller
    has them (measuring a 1024^2 dot's again took ~0.015 s CPU, benchmarks/process.py).
    """
    extra = list(unresolved)
    shapes = [s for s in (dot_shapes(labels) if shapes is None else shapes) if s.label not in {d.dot for d in extra}]
    dots = []
    if shapes:
        reason = refusal_reason(result)
        dots.append(
            DotResult(
                dot=shapes[0].label,
                shape=shapes[0],
                status="refused" if reason else "ok",
                message=_lone_note(shapes[0], reason),
                pixel_size_nm=px,
                lattice_orientation_deg=rotation,
                result=result,
            )
        )
    dots += extra
    if extra:
        note = _field_message(dots)
        result = dataclasses.replace(result, message=f"{result.message}; {note}" if result.message else note)
    n = 0 if result.columns is None or not shapes else len(result.columns)
    result = dataclasses.replace(result, dots=[d.to_record() for d in dots])
    return FieldResult(result=result, dots=dots, labels=labels, column_dot=np.full(n, shapes[0].label if shapes else 0))


def _crop_share(box: tuple[slice, slice], shape: tuple[int, ...]) -> float:
    """The share of the frame's pixels that the crop ``box`` covers."""
    return (box[0].stop - box[0].start) * (box[1].stop - box[1].start) / (shape[0] * shape[1])


def _lone_note(shape: DotShape, reason: str | None) -> str | None:
    """The message of a field's only dot: its refusal reason, or that the frame cuts it.

    A lone dot is analysed also when the frame cuts it (a zoomed-in dot), as before fields existed.
    """
    return reason or ("touches the frame edge: fractions are of its visible part" if shape.touches_border else None)


def _field_message(dots: list[DotResult]) -> str | None:
    """``"5 dots: 3 analysed; 2 refused (cut by the frame edge: 2)"``."""
    if not dots:
        return "no dot found"
    by_status: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for d in dots:
        by_status[d.status] = by_status.get(d.status, 0) + 1
        if d.status == "refused":
            key = (d.message or "").split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    parts = [f"{by_status.get('ok', 0)} analysed"]
    if by_status.get("refused"):
        parts.append(f"{by_status['refused']} refused (" + ", ".join(f"{k}: {v}" for k, v in reasons.items()) + ")")
    if by_status.get("overview"):
        parts.append(f"{by_status['overview']} sized only (overview image)")
    return f"{len(dots)} dot{'' if len(dots) == 1 else 's'}: " + "; ".join(parts)


def _assemble(base: PipelineResult, dots: list[DotResult], labels: np.ndarray, raw: np.ndarray) -> FieldResult:
    """The field as one PipelineResult: analysed dots' columns and labels merged, field fractions.

    When some dots are classified and others not, the merged ``columns``/``labels`` hold the classified
    dots' columns (labels must cover every column); :meth:`FieldResult.columns_dataframe` lists all.
    """
    display = ndimage.gaussian_filter(raw, 1.0, output=np.float32)
    region_map = np.full(raw.shape, REGION_OUTSIDE, np.int8)
    labelled, unlabelled = [], []
    for d in dots:
        res = d.result
        if res is None:
            continue
        if res.denoised is not None:
            (r0, c0), (h, w) = d.offset_rc, res.denoised.shape
            mine = labels[r0 : r0 + h, c0 : c0 + w] == d.dot
            display[r0 : r0 + h, c0 : c0 + w][mine] = res.denoised[mine]
        if d.columns is None:
            continue
        if res.labels is not None:
            (r0, c0), (h, w) = d.offset_rc, res.labels.region_map.shape
            own = res.labels.region_map != REGION_OUTSIDE
            region_map[r0 : r0 + h, c0 : c0 + w][own] = res.labels.region_map[own]
            labelled.append(d)
        else:
            unlabelled.append(d)
    chosen = labelled or unlabelled
    merged = Columns.concatenate([d.found_columns for d in chosen]) if chosen else None
    labels_all = None
    if labelled:
        parts = [lab for d in labelled if (lab := d.analysis.labels) is not None]
        labels_all = PhaseLabels(
            label=np.concatenate([p.label for p in parts]),
            contrast=np.concatenate([p.contrast for p in parts]),
            order_parameter=np.concatenate([p.order_parameter for p in parts]),
            region_map=region_map,
        )
    timings: dict[str, float] = {}
    for d in dots:
        for k, v in (d.result.timings_s if d.result is not None else {}).items():
            timings[k] = round(timings.get(k, 0.0) + v, 4)
    result = dataclasses.replace(
        base,
        status="ok" if dots else "no_crystal",
        denoised=display,
        crystal_mask=labels > 0,
        columns=merged,
        labels=labels_all,
        fractions=field_fractions(dots),
        phases=_field_phases(dots, chosen),
        timings_s=timings,
        message=_field_message(dots),
        dots=[d.to_record() for d in dots],
    )
    dot_ids = np.concatenate([np.full(len(d.found_columns), d.dot) for d in chosen]) if chosen else np.zeros(0, int)
    return FieldResult(result=result, dots=dots, labels=labels, column_dot=dot_ids)
