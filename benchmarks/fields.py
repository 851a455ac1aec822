"""Benchmark of fields of many dots: detection, size, per-dot fractions, field interval coverage, time.

1. Detection and size (segmentation only, :func:`stem_pipeline.dots.segment_field`) against dose
   and pixel size: synthetic fields (``stem_pipeline.synthetic_field.make_field``) of 8-12 nm dots
   at random rotations, one touching pair and one dot cut by the frame per field. A dot wholly
   inside the field is found when one found dot covers it with intersection-over-union > 0.8; a
   touching pair is split when both are found as different dots; a found dot is spurious when
   less than half of it lies on a true dot. The edge error is against the edge of the area the
   dot's columns cover (the generator's truth).
2. Overview fields (``make_overview_field``, 0.1-0.3 nm/px): detection and edge error [px].
3. Per-dot fractions and the field interval (``stem_pipeline.field.analyze_field``): fields of 4
   dots (one touching pair), every dot of a field drawn with the same domain probability p; per-dot
   fraction error against the dot's true fraction; coverage of the field's 95 % interval (random
   effects, DerSimonian-Laird) of (a) p, the composition of the population of dots the field
   samples, and (b) the area-weighted true fraction of the field's analysed dots. Beside it, the
   same dots analysed alone (``pipeline.analyze`` on a crop of the same noisy field around the dot's
   true footprint, the other dots' true footprints replaced by carbon): the error the single-dot
   chain makes on these dots, and the paired difference that the field path (segmentation, crop,
   blanking) adds to it.
4. Time and peak memory (tracemalloc) of ``analyze_field`` on 1024x1024 fields against the number of dots.
5. Touching pairs of one lattice rotation (``make_field`` with one rotation for both dots, 8-10 nm,
   placed flush, 640x640 at 0.035 nm/px): no rotation change to split them at, only the outline's
   shape (distance-transform watershed of a non-convex or elongated region): split, merged, or
   otherwise missed.

Usage: ``python benchmarks/fields.py [--quick]``; prints markdown and writes
``benchmarks/results/fields.md`` (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from stem_pipeline.dots import dot_shapes, segment_field, segment_overview
from stem_pipeline.field import _dersimonian_laird, analyze_field
from stem_pipeline.pipeline import analyze
from stem_pipeline.synthetic_field import make_field, make_overview_field, match_labels

RESULTS = Path(__file__).resolve().parent / "results" / "fields.md"
#: First seeds of the detection and fraction fields: fresh held-out sets after issue 13's fixes of the
#: field path (before: 1000 and 3000; the fraction fields of 13000 showed a second dot wrongly called
#: cut by the frame, fixed before the fields of 15000; the tuning of the fixes used seeds 7000-7515).
DETECTION_SEED = 11000
FRACTIONS_SEED = 15000
SAME_ROTATION_SEED = 5000


def detection(doses, pixel_sizes, n_fields, seed0):
    rows = []
    for px in pixel_sizes:
        side = round(min(30.0 / px, 1024))  # 20-30 nm fields
        for dose in doses:
            found = inside = pairs = split = spurious = 0
            errors, times = [], []
            n = 4 if side * px >= 28 else 3
            for fld in _drawn_fields(
                n_fields,
                seed0,
                shape=(side, side),
                n_dots=n,
                n_touching_pairs=1,
                n_cut=1,
                dot_sizes_nm=(8.0, 12.0) if n == 4 else (7.0, 9.0),
                dose=dose,
                pixel_size_nm=px,
            ):
                t0 = time.perf_counter()
                labels, _, _ = segment_field(fld.image, pixel_size_nm=px)
                times.append(time.perf_counter() - t0)
                match = match_labels(labels, fld.labels)
                shapes = {s.label: s for s in dot_shapes(labels)}
                truth = dot_shapes(fld.labels)
                for k in fld.inside:
                    inside += 1
                    v, iou = match[k]
                    if iou > 0.8:
                        found += 1
                        errors.append((shapes[v].edge_px - truth[k].edge_px) * px)
                for a, b in fld.touching:
                    pairs += 1
                    split += match[a][1] > 0.8 and match[b][1] > 0.8 and match[a][0] != match[b][0]
                spurious += sum((fld.labels[labels == v] > 0).mean() < 0.5 for v in range(1, int(labels.max()) + 1))
            err = np.abs(errors)
            rows.append(
                f"| {px} | {dose:g} | {side} | {found}/{inside} | {split}/{pairs} | {spurious} | "
                f"{np.mean(errors):+.3f} | {err.max():.3f} | {np.mean(times):.1f} |"
            )
            print(rows[-1], flush=True)
    return rows, (
        "| pixel [nm] | dose [counts] | field [px] | dots inside found | touching pairs split | spurious dots | "
        "mean edge error [nm] | max abs edge error [nm] | segmentation time per field [s] |\n|---|---|---|---|---|---|---|---|---|"
    )


def _drawn_fields(n_fields: int, seed0: int, *, shape, **kwargs):
    """``make_field`` at seeds ``seed0``, ``seed0 + 1``, ... until ``n_fields`` are drawn: a seed whose layout finds
    no room (``make_field`` raises ValueError) is passed over (and printed), the next one taken."""
    seed = seed0
    for _ in range(n_fields):
        while True:
            try:
                fld = make_field(shape, rng=seed, **kwargs)
            except ValueError as err:
                print(f"seed {seed} passed over: {err}", flush=True)
                seed += 1
                continue
            seed += 1
            yield fld
            break


def same_rotation(doses, n_pairs, px=0.035, seed0=SAME_ROTATION_SEED):
    """Touching pairs of one lattice rotation (placed flush, gap <= 1 px): split, merged or otherwise missed."""
    rows = []
    for dose in doses:
        split = merged = 0
        for i in range(n_pairs):
            rotation = float(np.random.default_rng(seed0 + i).uniform(0, 90))
            fld = make_field(
                (640, 640),
                n_dots=2,
                n_touching_pairs=1,
                rotations_deg=(rotation, rotation),
                dot_sizes_nm=(8.0, 10.0),
                dose=dose,
                pixel_size_nm=px,
                rng=seed0 + i,
            )
            labels, _, _ = segment_field(fld.image, pixel_size_nm=px)
            (a, b), match = fld.touching[0], match_labels(labels, fld.labels)
            split += match[a][1] > 0.8 and match[b][1] > 0.8 and match[a][0] != match[b][0]
            merged += match[a][0] == match[b][0] and match[a][0] > 0
        other = n_pairs - split - merged
        rows.append(f"| {px} | {dose:g} | {split}/{n_pairs} | {merged}/{n_pairs} | {other}/{n_pairs} |")
        print(rows[-1], flush=True)
    return rows, (
        "| pixel [nm] | dose [counts] | pairs split | pairs merged into one dot | otherwise missed (a dot cut in two, "
        "or the boundary off: IoU <= 0.8) |\n|---|---|---|---|---|"
    )


def overview(pixel_sizes, n_fields, seed0=2000):
    rows = []
    for px in pixel_sizes:
        found = total = pairs = split = 0
        errors = []
        for i in range(n_fields):
            side = round(100.0 / px)  # 100 nm fields
            fld = make_overview_field((side, side), n_dots=10, n_touching_pairs=1, pixel_size_nm=px, rng=seed0 + i)
            labels = segment_overview(fld.image, pixel_size_nm=px)
            match = match_labels(labels, fld.labels)
            shapes = {s.label: s for s in dot_shapes(labels)}
            truth = dot_shapes(fld.labels)
            for k, (v, iou) in enumerate(match):
                total += 1
                if iou > 0.8:
                    found += 1
                    errors.append(shapes[v].edge_px - truth[k].edge_px)
            for a, b in fld.touching:
                pairs += 1
                split += match[a][1] > 0.8 and match[b][1] > 0.8 and match[a][0] != match[b][0]
        rows.append(
            f"| {px} | {found}/{total} | {split}/{pairs} | {np.mean(errors):+.2f} | {np.abs(errors).max():.2f} |"
        )
        print(rows[-1], flush=True)
    return rows, (
        "| pixel [nm] | dots found | touching pairs split | mean edge error [px] | max abs edge error [px] |\n"
        "|---|---|---|---|---|"
    )


def fractions(doses, n_fields, seed0):
    rows = []
    pool: dict[float, list] = {}  # p -> analysed dots (for the resampled coverage below)
    beyond: list[str] = []  # the dots beyond the limit, with their errors in the field and alone
    reasons: list[str] = []  # the refused dots' reasons
    for m, dose in enumerate(doses):
        errs, cover_p, cover_field, widths, n_dots, cover_z = [], 0, 0, [], 0, 0
        refused: list[str] = []
        alone_errs: list[float] = []
        beyond_here: list[str] = []
        limit = 0.03 if dose >= 100 else 0.06
        times = []
        for i in range(n_fields):
            rng = np.random.default_rng(seed0 + 100 * m + i)  # other fields at every dose
            p = float(rng.choice([0.2, 0.5, 0.8]))
            fld = make_field(
                (1024, 1024),
                n_dots=4,
                n_touching_pairs=1,
                dot_sizes_nm=(8.0, 11.0),
                uniform_fractions=(p,) * 4,
                dose=dose,
                pixel_size_nm=0.035,
                rng=rng,
            )
            t0 = time.perf_counter()
            res = analyze_field(fld.micrograph())
            times.append(time.perf_counter() - t0)
            areas, truths = _per_dot(fld, res, errs, alone_errs, beyond_here, refused, limit)
            n_dots += len(res.dots)
            f = res.fractions
            if f is None:
                continue
            lo, hi = f.uniform_ci95
            widths.append(hi - lo)
            cover_p += lo <= p <= hi
            field_truth = float(np.dot(areas, truths) / np.sum(areas))
            cover_field += lo <= field_truth <= hi
            cover_z += _covers_with_normal_quantile([d for d in res.dots if d.fractions is not None], p)
            pool.setdefault(p, []).extend((dose, i, d) for d in res.dots if d.fractions is not None)
        e, a = np.abs(errs), np.abs(alone_errs)
        paired = np.abs(np.asarray(errs) - np.asarray(alone_errs))
        n = len(widths)
        rows.append(
            f"| {dose:g} | {n_fields} | {n_dots} ({len(refused)} refused) | {np.mean(e):.3f} | {np.percentile(e, 90):.3f} | "
            f"{e.max():.3f} | {np.mean(e <= limit):.2f} | {np.nanmax(a):.3f} | {np.nanmean(a <= limit):.2f} | "
            f"{np.nanmean(paired):.4f} / {np.nanmax(paired):.3f} | {cover_p / n:.2f} | "
            f"{cover_field / n:.2f} | {np.mean(widths):.3f} | {cover_z / n:.2f} | {np.mean(times):.1f} |"
        )
        print(rows[-1], flush=True)
        reasons.extend(f"{dose:g} counts: {message}" for message in refused)
        beyond.extend(f"{dose:g} counts: {dot}" for dot in beyond_here)
    rows.append("")
    rows.append("Dots beyond the limit: " + ("; ".join(beyond) or "none") + ".")
    rows.append("")
    rows.append("Refused dots: " + ("; ".join(reasons) or "none") + ".")
    rows.append("")
    rows.append(_resampled_coverage(pool))
    return rows, (
        "| dose [counts] | fields | dots | mean abs per-dot error | 90th pct | max | share within limit (0.03; 0.06 at 30) | "
        "the same dots alone: max | alone: share within limit | mean / max abs(field - alone) | "
        "field CI coverage of p | field CI coverage of the field's own fraction | mean CI width | "
        "coverage of p by DerSimonian-Laird alone with the normal quantile | analyze_field time per field [s] |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )


def _per_dot(fld, res, errs: list, alone_errs: list, beyond: list, refused: list, limit: float):
    """Each analysed dot's error in the field and alone (appended to ``errs``, ``alone_errs``; the dots
    beyond ``limit`` to ``beyond``, the refused dots' reasons to ``refused``); the analysed dots' true
    areas and fractions."""
    areas, truths = [], []
    for d in res.dots:
        k = int(np.bincount(fld.labels[res.labels == d.dot]).argmax()) - 1
        if d.fractions is None:
            refused.append(f"{fld.dots[k].edge_nm:.1f} nm dot, {d.message}")
            continue
        truth = fld.dots[k]
        errs.append(d.fractions.uniform - truth.uniform_fraction)
        areas.append(truth.area_px)
        truths.append(truth.uniform_fraction)
        alone = analyze(fld.alone(k)).fractions
        alone_errs.append(np.nan if alone is None else alone.uniform - truth.uniform_fraction)
        if abs(errs[-1]) > limit:
            beyond.append(
                f"{truth.edge_nm:.1f} nm dot, true {truth.uniform_fraction:.3f}, in the field "
                f"{d.fractions.uniform:.3f}, alone {truth.uniform_fraction + alone_errs[-1]:.3f}"
            )
    return areas, truths


def _resampled_coverage(pool: dict[float, list], n_draws: int = 2000, sizes=(2, 3, 4, 6)) -> str:
    """Coverage of p by fields re-assembled from analysed dots of the same p (each from a different field)."""
    from stem_pipeline.field import field_fractions

    rng = np.random.default_rng(0)
    parts = []
    for k in sizes:
        hits_t = hits_z = n = 0
        for _ in range(n_draws // len(sizes)):
            p = float(rng.choice(sorted(pool)))
            dots = pool[p]
            picked, fields = [], set()
            for j in rng.permutation(len(dots)):
                dose, field, dot = dots[j]
                if (dose, field) not in fields:
                    picked.append(dot)
                    fields.add((dose, field))
                if len(picked) == k:
                    break
            if len(picked) < k:
                continue
            lo, hi = field_fractions(picked).uniform_ci95
            hits_t += lo <= p <= hi
            hits_z += _covers_with_normal_quantile(picked, p)
            n += 1
        if n:
            parts.append(f"{k} dots: {hits_t / n:.2f} (DerSimonian-Laird with 1.96: {hits_z / n:.2f}; {n} fields)")
    return (
        "Coverage of p by fields re-assembled from these analysed dots (same p, each dot from a different "
        f"field, {n_draws} draws): " + "; ".join(parts) + "."
    )


def _covers_with_normal_quantile(dots, p: float) -> bool:
    """Whether the DerSimonian-Laird interval with 1.96 (no empirical floor, no Student t) covers ``p``."""
    f = np.array([d.fractions.uniform for d in dots])
    lo, hi = np.array([d.fractions.uniform_ci95 for d in dots]).T
    s2 = np.maximum(((hi - lo) / 3.92) ** 2, 1e-8)
    w = np.array([d.fractions.crystal_area_nm2 for d in dots])
    w = w / w.sum()
    half = 1.96 * np.sqrt(np.sum(w**2 * (s2 + (_dersimonian_laird(f, s2) if len(f) > 1 else 0.0))))
    return bool(np.sum(w * f) - half <= p <= np.sum(w * f) + half)


def scaling(counts, seed0=4000):
    rows = []
    for n in counts:
        fld = make_field(
            (1024, 1024), n_dots=n, dot_sizes_nm=(6.0, 7.0), dose=200, pixel_size_nm=0.035, gap_nm=1.5, rng=seed0 + n
        )
        tracemalloc.start()
        t0 = time.perf_counter()
        res = analyze_field(fld.micrograph())
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append(f"| {n} | {len(res.dots)} | {elapsed:.1f} | {elapsed / max(n, 1):.2f} | {peak:.0f} |")
        print(rows[-1], flush=True)
    return rows, (
        "| dots in the field | dots reported | analyze_field time [s] | per dot [s] | peak traced memory [MiB] |\n"
        "|---|---|---|---|---|"
    )


SECTIONS = {
    "detection": "## Detection and size (segmentation)",
    "overview": "## Overview images (lattice not resolved)",
    "fractions": "## Per-dot fractions and the field interval (analyze_field)",
    "scaling": "## Time and memory against the number of dots (1024x1024, 6-7 nm dots, 200 counts)",
    "same_rotation": "## Touching dots of one rotation (segmentation; split by the outline's shape only)",
}
NOTE = (
    "Dots at random in-plane rotations; detection: 1 touching pair and 1 dot cut by the frame per field (the "
    "cut dot is reported `refused`, not counted in 'inside'); seeds 11000+ (detection), 2000+ (overview), "
    "15000 + 100 x dose index + field (fractions), 4000+ (timing), 5000+ (touching pairs of one rotation). "
    "The field interval is area-weighted over the analysed dots: a DerSimonian-Laird random-effects variance "
    "(each dot's measurement interval plus the between-dot spread) or the dots' empirical spread if larger, with "
    "the Student-t quantile for k - 1 degrees of freedom (k dots). It is meant to cover the composition p of the "
    "population of dots; the coverage of the field's own area-weighted fraction is shown beside it. Touching "
    "pairs of one rotation: none of 40 merged into one dot; of the 3 missed, 2 had one dot of the pair cut in two "
    "by the watershed and 1 its boundary off (the watershed's seeds and the outline's concavity, not a merge). "
    "Timings on the project's shared 2-core machine under a load of ~4.5 (other jobs running): absolute times "
    "are pessimistic.\n\n"
    "Issue 13, the field path (detection and fractions re-run on fresh seeds, 11000+ and 15000+; before: "
    "1000+ and 3000+). (a) Touching dots refused as overlapping: not a dose effect. The same layout read "
    "0.0144-0.0152 at 30, 60, 100 and 400 counts; the dot's own ordered superlattice (2,1) reflection "
    "(0.281 nm, atan(1/2) = 26.6 deg from its axes) lay at the neighbour's rotation (the pair was 26.7 deg "
    "apart), and the whole band of spacings passed it. The overlap test now reads the ring of the grids' main "
    "reflections (0.295-0.37 nm): touching pairs <= 0.0024 of the peak, 1 nm overlaps >= 0.0149 (threshold "
    "0.012 kept), 30-400 counts, tuning seeds 7000-7007, 7100-7109, 7200-7203. (b) Dots called cut by the "
    "frame: the 0.3 nm smoothing of the lattice strength carried an outline 3-5 px inside the frame onto it; "
    "outlines at the frame are now trimmed back to the crystal by the raw intensity of each line along the "
    "frame (tuning crops, seeds 7500-7502: dots 1-3 px inside called cut 22/72 -> 2/72; dots cut by 10-40 px "
    "still called cut 67/72, as before; dots cut by only 3 px (0.06-0.1 nm) called cut 11/36, before 17/36). "
    "Old held-out fraction fields (3000+) re-run with (a) and the first form of (b): refused 2 / 1 / 0 -> "
    "0 / 0 / 0 at 30 / 100 / 400 counts, per-dot max error unchanged (0.131 / 0.062 / 0.046, 96 / 90 / 98 % "
    "within the limits). Fresh fields 13000+ then showed one more dot called cut (5 px inside, bright carbon at "
    "the frame): the trim now cuts at the innermost line of support; 15000+ claims after that. (d) The dots "
    "beyond the limits are the single-dot chain's (field and alone within 0.007 of each other), except one at "
    "100 counts (true 0.934: field 0.969, alone 0.942); at 30 counts none is the field path's (paired max "
    "0.014). Size: at 0.02 nm/px one touching pair of nearly one rotation (1.3 deg apart, below the 1.5 deg "
    "rotation split) was split by shape with its boundary 0.6 nm off (IoU 0.82 / 0.87): edge errors 0.63-0.66 nm. "
    "A region the watershed splits in two now has its boundary on the common edge of two projected squares in "
    "its lattice's frame (each dot's width across the split axis from its outer half; tuning layouts of two "
    "touching dots 0-1.5 deg apart, 0.02-0.04 nm/px, 30-400 counts, seeds 8000-8059: pairs beyond 0.3 nm or "
    "missed 6/60 -> 3/60, the 3 left cut wrongly by the watershed itself, IoU <= 0.8 before and after): that "
    "pair 0.63-0.66 -> <= 0.16 nm, all dots <= 0.183 nm; the other rows and the pairs of one rotation unchanged; the fraction fields re-run with it: 90th "
    "percentile at 30 counts 0.039 -> 0.037, 6-dot re-assembled coverage 0.94 -> 0.93, the rest within 0.001 (times aside). "
    "(e) The dot at 100 counts off in the field and not alone (seed 15100, its first dot; a diagnosis seed since): not "
    "the field path. Its 837 columns in two crops of the field, with 1.5 and 2.0 nm margins (0.969 and 0.922), agree "
    "to 0.023 px, 0.2 % in intensity and 0.003 in order parameter; the classifier's mixture finds 138-139 ordered columns, the random field 49-50, the first "
    "boundary round 54-55 (truth: 0.066 of the area, ~55 columns), and the second round 26 or 64 depending on the crop "
    "alone: crop margins 1.5 / 2.0 / 3.0 nm give 0.969 / 0.922 / 0.937 in the field and 0.922 / - / 0.937-0.942 alone; "
    "with 1 or 3 boundary rounds every crop gives 0.914-0.938. The boundary pass oscillates on this minority domain "
    "(the single-dot chain's, `classify`); nothing was changed for it here. Time against dots: since a lone dot whose "
    "crop covers less than half the frame is analysed on its crop (issue 20), the 1-dot field's row is 1.0 s (1.8 s "
    "before, whole-image; separate runs).\n\n"
    "(f) The three dots beyond the limits in the 15000+ run with the column heights (diagnosed on those dots, alone "
    "and in the field; the fix chosen and checked on tuning dots). 400 counts, seed 15209, dot k = 1 (9.1 nm, a 0.053 "
    "uniform minority of 41 columns, read 0.103): the mixture called 52 columns uniform, the random field 49, the "
    "boundary rounds 75 / 81 (88-90 with 3-5 rounds): the domain was grown into the ordered crystal. Every column of "
    "the domain has ordered neighbours (no interior column), so `own_intensity_llr` gave no column any evidence and "
    "the boundary pass fell back to the amplitude midpoint, whose uniform level came from the domain's own boundary "
    "columns (0.060; the true uniform columns' median 0.041, the ordered level 0.141) with 10x the ordered variance: "
    "ordered columns next to the domain (amplitude 0.075-0.117) read uniform. Fix "
    "(`classify.features.MIN_INTERIOR_COLUMNS`): a phase with fewer than 5 interior columns takes the other phase's "
    "prediction spread (the uniform over the ordered spread: median 0.82-0.86, 5-95 % 0.65-1.0 on tuning dots "
    "30000-30139). That dot: 0.103 -> 0.051 (the true labels on its found columns: 0.051). Checked on tuning dots "
    "claimed nowhere: 420 dots of `unbiased.py`'s draw (seeds 30000-30139, cached classification inputs, "
    "`labels.py`): none changed; 359 field dots (the fractions fields of seeds 21000 + 100 x dose index + field, 30 "
    "fields per dose, each dot alone): 9 changed, sum of |error| 0.099 -> 0.050 (a 0.064 uniform minority at 400 "
    "counts +0.017 -> -0.003; two worse by <= 0.006). Tried and not adopted: phase levels only from columns outside "
    "the boundary band (a phase without them keeps the random field's labels): on the field tuning dots 29 changed, "
    "sum of |error| 0.31 -> 0.47 (ordered minorities lost the band level's pull, which had offset the order "
    "parameter's bias against them). The fractions table above is the re-run with the fix (commit 8e473be): 400 "
    "counts max 0.050 -> 0.028 (98 -> 100 % within), 90th percentile 0.019 -> 0.016; 100 counts paired |field - "
    "alone| max 0.014 -> 0.005 (seed 15100, first dot, alone 0.939 -> 0.928, field 0.925, truth 0.934); 30 counts "
    "identical (the times per field, 3.9-5.1 s against 1.6-1.9 s, are the machine's load of ~7 during the run). Before (commit 4516bdd), mean / 90th pct / max / share within: 30 counts 0.014 / 0.027 / 0.068 / "
    "0.98, 100 counts 0.010 / 0.018 / 0.030 / 0.98, 400 counts 0.009 / 0.019 / 0.050 / 0.98 (alone max 0.067 / "
    "0.031 / 0.048). The two misses left are not the column labels' alone. 100 counts, seed 15103, dot k = 0 (8.9 nm, "
    "true 0.466, read 0.435): its columns are labelled right but for 5 of 768 (the true labels on the found columns "
    "give 0.440); the crystal area the columns span (hull + half a spacing) misses 1,897 px of uniform domain at the "
    "dot's edge (2.9 % of the dot) and reaches 1,150 px beyond the outline on the ordered side: the two phases' "
    "grids (a/2 and the ~3.2 A uniform grid) end at different depths inside the outline (the interval's edge term; "
    "the crystal outline is issue 14's). 30 counts, seed 15006, dot k = 2 (9.6 nm, true 0.399, read 0.332): the "
    "edge as above, -0.023 (true labels on the found columns: 0.376), and the boundary pass at 30 counts, -0.040 "
    "(the random field's labels: 0.372): the own-intensity evidence is weak (median log-likelihood ratio -0.83 on "
    "the true uniform band columns, 30 % of them with the wrong sign) and the Potts coupling erodes the uniform "
    "domain (28 true uniform columns newly ordered in the first round)."
)

#: The runs recorded after the note (their paragraphs (g)-(i), with the tables of fresh fields), kept when the
#: results are rewritten.
LATER_RUNS = """

(g) The fractions table above is the re-run after issue 14's crystal edge at the diffuse intensity step and its re-set interval were merged (main after e1a62f3, with `MIN_INTERIOR_COLUMNS`): every dot within the limits at every dose, max 0.053 / 0.017 / 0.024 at 30 / 100 / 400 counts (alone 0.052 / 0.016 / 0.024). The two misses of (f) were the crystal edge's, as diagnosed: seed 15103's and seed 15006's dots are now within the limits. Before (commit 8e473be, the edge from the columns' hull), mean / 90th pct / max / share within: 30 counts 0.014 / 0.027 / 0.068 / 0.98, 100 counts 0.010 / 0.018 / 0.030 / 0.98, 400 counts 0.008 / 0.016 / 0.028 / 1.00; paired |field - alone| max 0.024 / 0.005 / 0.007. These seeds (15000+) were looked at to diagnose single dots ((e), (f)); no default was set on them. A fresh set of fraction fields is recorded below as (h).

(h) Fresh fraction fields, seeds 25000+ (never used before; `python benchmarks/fields.py --sections fractions --fractions-seed 25000 --no-write`, main at 41941bb, scored once), the same columns as the fractions table:

| dose [counts] | fields | dots | mean abs per-dot error | 90th pct | max | share within limit (0.03; 0.06 at 30) | the same dots alone: max | alone: share within limit | mean / max abs(field - alone) | field CI coverage of p | field CI coverage of the field's own fraction | mean CI width | coverage of p by DerSimonian-Laird alone with the normal quantile | analyze_field time per field [s] |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| 30 | 13 | 52 (0 refused) | 0.010 | 0.028 | 0.048 | 1.00 | 0.034 | 1.00 | 0.0029 / 0.020 | 0.92 | 1.00 | 0.466 | 0.85 | 3.3 |
| 100 | 13 | 52 (0 refused) | 0.006 | 0.015 | 0.030 | 0.96 | 0.030 | 0.96 | 0.0011 / 0.008 | 1.00 | 1.00 | 0.496 | 0.69 | 4.3 |
| 400 | 13 | 52 (0 refused) | 0.003 | 0.007 | 0.012 | 1.00 | 0.015 | 1.00 | 0.0012 / 0.009 | 0.92 | 1.00 | 0.479 | 0.77 | 4.5 |

Dots beyond the limit: 100 counts, two dots (10.6 and 10.4 nm) with a 3 % ordered minority (truth 0.970) read as wholly uniform, 1.000 in the field and alone: an ordered domain of ~30 columns, below the classifier's detection limit (`undetected_ordered_columns`, whose share the one-phase interval includes), not the field path's. Refused dots: none.


(i) 2026-11-29. Why a ~30-column ordered domain is missed, and the detection limit of small minorities (issue 13's misses in (h); measured on tuning dots only, `benchmarks/minority.py`, seeds 51000-51079, never used elsewhere). Each tuning dot is an 8-11 nm dot (0.035 nm/px, random rotation) of one phase holding exactly one connected domain of the other phase of 5-65 true columns (layouts drawn until one has a single such domain), at 30, 100 and 400 counts; beside them 60 wholly uniform and 40 wholly ordered dots per dose (20 of each an earlier draw of 12 nm unrotated dots). Every dot ran once through `pipeline.analyze`; the classifier was re-run on its cached classification inputs. Where the ordered domain is lost (`classify._core._ordered_posterior`): an ordered domain of a few dozen columns is too small for the mixture of the order parameter (one uniform class), and is then found only by the cluster search (`minority_posterior`: at least `minority_min_columns` = 10 neighbouring columns with R^2 >= `minority_threshold` = 0.7). The local superlattice fit of a column in such a domain sees uniform neighbours, so its R^2 falls: at 100 counts the missed domains of 20-38 columns had only 4-8 columns at R^2 >= 0.7 (median R^2 of their columns 0.26-0.58), short of 10. That is the detection limit at 100 counts. Lowering the seed test was measured and not adopted: R^2 >= 0.7 with 8 columns, or >= 0.6-0.65 with 8-10, found more domains but called a false ordered domain of 7-18 columns in 1 of 60 wholly uniform dots per dose (noisy fits of edge columns in a 12 nm dot), a one-phase dot made two-phase with a narrow interval. Second, where the search did find the domain, the Potts random field erased it: its neighbourhood (2.3 spacings, ~20 columns) is as large as the domain, so the domain's edge columns, whose search posterior is near 0.5, flip first and the rest follow (with the seed test lowered to R^2 >= 0.6 and 8 columns, two tuning dots at 100 counts had 10-11 columns found and 0 after the random field; with the default test 12 dot-doses, below). Changed (`_ordered_posterior`, commit c32c55e): a small ordered domain the cluster search found skips the random field and goes to the boundary rounds, which re-decide its edge from the columns' own intensities (a cluster is spatially coherent already; a pure dot never reaches this path unless the unchanged search finds a cluster). Of 240 ordered-minority dot-doses 12 changed, every one nearer the truth (sum of |error| 0.439 -> 0.155; e.g. 30 counts, 40 columns +0.050 -> -0.002; 100 counts, 36 columns +0.039 -> +0.022), none of the 420 uniform-minority and pure dot-doses changed, nor any of 120 dots of `unbiased.py`'s tuning draw (seeds 30000-30039 at the three doses, cached inputs, `labels.py`: mean +0.0003 / +0.0012 / +0.0014, largest 0.035 / 0.024 / 0.026, coverage 0.93 / 0.95 / 0.97, identical before and after). The cost: 5 of the 12 had been covered by the one-phase interval (which reaches down by `undetected_ordered_columns`' share) and, found now with 38-66 % of their columns, are not covered by the two-phase interval (ordered-minority coverage 0.96 / 0.93 / 0.86 -> 0.94 / 0.91 / 0.85 at 30 / 100 / 400 counts). Detection (some columns of the minority called), recall of its true columns, and errors, before -> after where they changed:

| dose [counts] | minority | true columns | dots | detected (before -> after) | recall of its columns | mean abs error | max abs error | interval coverage |
|---|---|---|---|---|---|---|---|---|
| 30 | ordered | 5-19 | 20 | 0.05 | 0.01 | 0.016 | 0.029 | 0.95 |
| 30 | ordered | 20-29 | 11 | 0.09 | 0.09 | 0.025 | 0.035 | 1.00 |
| 30 | ordered | 30-39 | 19 | 0.37 -> 0.53 | 0.32 -> 0.40 | 0.028 -> 0.024 | 0.057 | 1.00 -> 0.89 |
| 30 | ordered | 40-49 | 7 | 0.29 -> 0.43 | 0.28 -> 0.41 | 0.035 -> 0.028 | 0.064 | 1.00 |
| 30 | ordered | 50-65 | 20 | 0.80 -> 0.85 | 0.66 -> 0.74 | 0.022 -> 0.017 | 0.059 | 0.90 |
| 30 | uniform | 5-19 | 14 | 0.79 | 0.61 | 0.008 | 0.020 | 0.79 |
| 30 | uniform | 20-29 | 4 | 1.00 | 0.84 | 0.007 | 0.014 | 1.00 |
| 30 | uniform | 30-39 | 10 | 1.00 | 0.86 | 0.006 | 0.022 | 0.90 |
| 30 | uniform | 40-49 | 7 | 1.00 | 0.86 | 0.008 | 0.013 | 0.86 |
| 30 | uniform | 50-65 | 4 | 1.00 | 0.89 | 0.007 | 0.018 | 0.75 |
| 30 | none (uniform dot) | - | 60 | false domain in 0 -> 0 | - | 0.000 | 0.000 | 1.00 |
| 30 | none (ordered dot) | - | 40 | false domain in 1 -> 1 | - | 0.000 | 0.009 | 0.97 |
| 100 | ordered | 5-19 | 20 | 0.05 | 0.05 | 0.015 | 0.029 | 1.00 |
| 100 | ordered | 20-29 | 11 | 0.18 | 0.17 | 0.023 | 0.035 | 1.00 |
| 100 | ordered | 30-39 | 19 | 0.79 -> 0.84 | 0.71 -> 0.75 | 0.012 -> 0.011 | 0.054 | 0.95 -> 0.89 |
| 100 | ordered | 40-49 | 7 | 1.00 | 0.94 | 0.003 | 0.006 | 0.86 |
| 100 | ordered | 50-65 | 20 | 1.00 | 0.94 | 0.006 | 0.025 | 0.85 |
| 100 | uniform | 5-19 | 14 | 0.64 | 0.56 | 0.007 | 0.020 | 0.86 |
| 100 | uniform | 20-29 | 4 | 1.00 | 0.95 | 0.003 | 0.008 | 0.75 |
| 100 | uniform | 30-39 | 10 | 1.00 | 0.98 | 0.003 | 0.006 | 1.00 |
| 100 | uniform | 40-49 | 7 | 1.00 | 0.95 | 0.004 | 0.008 | 0.86 |
| 100 | uniform | 50-65 | 4 | 1.00 | 0.96 | 0.004 | 0.006 | 1.00 |
| 100 | none (uniform dot) | - | 60 | false domain in 0 -> 0 | - | 0.000 | 0.000 | 1.00 |
| 100 | none (ordered dot) | - | 40 | false domain in 0 -> 0 | - | 0.000 | 0.000 | 1.00 |
| 400 | ordered | 5-19 | 20 | 0.10 | 0.10 | 0.014 | 0.029 | 1.00 |
| 400 | ordered | 20-29 | 11 | 0.36 -> 0.45 | 0.33 -> 0.37 | 0.019 -> 0.017 | 0.035 | 0.91 -> 0.82 |
| 400 | ordered | 30-39 | 19 | 0.95 | 0.85 -> 0.87 | 0.008 -> 0.007 | 0.030 | 0.68 |
| 400 | ordered | 40-49 | 7 | 1.00 | 0.99 | 0.002 | 0.004 | 1.00 |
| 400 | ordered | 50-65 | 20 | 1.00 | 0.99 | 0.003 | 0.009 | 0.85 |
| 400 | uniform | 5-19 | 14 | 0.64 | 0.64 | 0.007 | 0.020 | 0.71 |
| 400 | uniform | 20-29 | 4 | 1.00 | 0.99 | 0.002 | 0.003 | 1.00 |
| 400 | uniform | 30-39 | 10 | 1.00 | 0.96 | 0.003 | 0.008 | 0.80 |
| 400 | uniform | 40-49 | 7 | 1.00 | 0.98 | 0.002 | 0.005 | 0.86 |
| 400 | uniform | 50-65 | 4 | 1.00 | 1.00 | 0.002 | 0.003 | 1.00 |
| 400 | none (uniform dot) | - | 60 | false domain in 0 -> 0 | - | 0.000 | 0.000 | 1.00 |
| 400 | none (ordered dot) | - | 40 | false domain in 0 -> 0 | - | 0.000 | 0.000 | 1.00 |

The detection limit, then: an ordered domain is found in most dots from ~30-40 columns at 100 and 400 counts (0.84 / 0.95 of 30-39-column domains, 0.18 / 0.45 of 20-29) and only from ~50 at 30 counts (0.85 of 50-65; 0.53 of 30-39); a uniform domain in an ordered dot from ~20 columns at every dose (0.64-0.79 below 20, as before). (h)'s two misses (~30 ordered columns at 100 counts) lie at this limit; it is lowered there only where the search finds the seeds. Not done: a seed test that separates 20-30-column domains from the noise of edge columns (e.g. the coherence of the bright sublattice's parity over the cluster) and an interval that keeps part of the one-phase allowance for a domain found by the search.

Fresh fraction fields, seeds 35000+ (never used before: 35000-35212; `python benchmarks/fields.py --sections fractions --fractions-seed 35000 --no-write`, this branch at c32c55e, scored once):

| dose [counts] | fields | dots | mean abs per-dot error | 90th pct | max | share within limit (0.03; 0.06 at 30) | the same dots alone: max | alone: share within limit | mean / max abs(field - alone) | field CI coverage of p | field CI coverage of the field's own fraction | mean CI width | coverage of p by DerSimonian-Laird alone with the normal quantile | analyze_field time per field [s] |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| 30 | 13 | 52 (0 refused) | 0.009 | 0.021 | 0.056 | 1.00 | 0.056 | 1.00 | 0.0025 / 0.014 | 0.92 | 1.00 | 0.443 | 0.85 | 4.1 |
| 100 | 13 | 52 (0 refused) | 0.007 | 0.015 | 0.035 | 0.98 | 0.039 | 0.98 | 0.0028 / 0.022 | 1.00 | 1.00 | 0.586 | 1.00 | 3.9 |
| 400 | 13 | 53 (0 refused) | 0.013 | 0.010 | 0.276 | 0.96 | 0.034 | 0.98 | 0.0095 / 0.277 | 1.00 | 1.00 | 0.425 | 0.92 | 3.7 |

Dots beyond the limit: 100 counts, an 8.2 nm dot, true 0.416, in the field 0.382, alone 0.377 (a mixed dot: the single-dot chain's, not a small minority); 400 counts, field 35202 (third field): the touching pair's 9.7 nm dot (true 0.841; alone 0.842) cut in two by the watershed (its parts 24,794 and 49,444 px, the larger IoU 0.62; 4,697 px of it went to its partner), its two parts read 0.565 and 1.000 and counted as two dots (53 dots): a segmentation miss, not the classifier's. Refused dots: none. Coverage of p by re-assembled fields: 2 / 3 / 4 / 6 dots 0.97 / 0.96 / 0.97 / 0.95 (DerSimonian-Laird with 1.96: 0.73 / 0.79 / 0.83 / 0.82). Issue 13's per-dot criterion on these fresh fields: 100 / 98 / 96 % within the limits at 30 / 100 / 400 counts, not met at 100 and 400 counts (one single-dot miss at 0.035, one touching dot split in two).

(j) The same fresh fields (seeds 35000+) re-run on the merged code (main 395d0c0, 2026-11-29 late: (i)'s change with issue 14's faint maxima beyond the crystal edge dropped and its interval re-set, and issue 20's outline on block means; `python benchmarks/fields.py --sections fractions --fractions-seed 35000 --no-write`, a confirmation, nothing chosen on it; times on a quiet machine):

| dose [counts] | fields | dots | mean abs per-dot error | 90th pct | max | share within limit (0.03; 0.06 at 30) | the same dots alone: max | alone: share within limit | mean / max abs(field - alone) | field CI coverage of p | field CI coverage of the field's own fraction | mean CI width | coverage of p by DerSimonian-Laird alone with the normal quantile | analyze_field time per field [s] |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| 30 | 13 | 52 (0 refused) | 0.008 | 0.015 | 0.056 | 1.00 | 0.056 | 1.00 | 0.0023 / 0.013 | 0.92 | 1.00 | 0.444 | 0.77 | 1.8 |
| 100 | 13 | 52 (0 refused) | 0.006 | 0.014 | 0.029 | 1.00 | 0.034 | 0.98 | 0.0024 / 0.022 | 1.00 | 1.00 | 0.574 | 1.00 | 1.8 |
| 400 | 13 | 53 (0 refused) | 0.013 | 0.010 | 0.276 | 0.96 | 0.034 | 0.98 | 0.0095 / 0.275 | 1.00 | 1.00 | 0.424 | 0.92 | 1.8 |

Dots beyond the limit: 400 counts only, field 35202's touching dot split in two by the watershed (as in (i); its parts 0.565 and 1.000, the dot alone 0.840, true 0.841). The 100-count miss of (i) (8.2 nm, true 0.416, 0.382) now reads within the limit (100-count max 0.029): of the changes since (i), only issue 14's dropping of faint maxima beyond the edge moves point estimates by more than 1e-4. Issue 13's per-dot criterion on these fields: 100 / 100 / 96 % within the limits at 30 / 100 / 400 counts; every dot the segmentation delimits right is within its limit, the one miss is a touching pair not split right, which issue 13's touching criterion (at least 90 % of pairs split right) allows for.

(k) Segmentation no longer cuts one dot of a flush touching pair in two (branch h13, 2026-11-30). Diagnosis, on (i)/(j)'s field 35202 (a diagnosis seed since): the touching pair's rotations were 27.7 and 28.3 deg (below the 1.5 deg rotation split) and the dots sat flush along their common edge, so their region was one nearly rectangular outline (aspect 1.93, solidity 0.966, no neck). Its distance transform has a ridge along the long axis; the ridge's maxima gave the watershed three seeds, and the region was cut across the ridge into three pieces (77,150 / 30,093 / 49,616 px; the middle one a sliver of aspect 3.6). `square_boundaries` leaves regions of more than two pieces alone. The same ridge can also give a single seed, and then the pair stays merged as one dot. Changed (`dots.segment`): (1) `merge_fragments`: a watershed piece that is not one projected cube (solidity >= 0.93 and aspect <= 1.4, the same test that sends a region to the watershed; the aspect is not tested at the frame) joins the adjacent piece it makes one cube with, squarest union first, until no such union is left. This runs only on regions the watershed cut into three or more pieces; a region cut in two is left alone, because the union of its two pieces is the region, which failed that test. (2) `halves`: a region that failed the test but gave one seed is cut across its principal axis at its median, and the cut stands when both halves are cubes. Both then go through `square_boundaries`. The pieces of one region all have one lattice rotation (`split_by_orientation` runs first), so their rotations agree by construction; no spacing test was added. Cost: only regions the watershed acts on. Tuning (seeds chosen for it, not claimed): 180 touching pairs 0-1.5 deg apart (8 and 10 nm, flush, 0.02 / 0.035 / 0.04 nm/px, 30 / 100 / 400 counts, 20 each, seeds 45000-47219): split 159 -> 174 with (1), 175 with (2); cut into three or four pieces 15 -> 0; merged 4 -> 3. The 5 left: 3 merged, where the pair's region reaches the frame (one dot at or within a few px of it, so the region's aspect is not tested) and 2 split with the boundary off (IoU 0.64-0.79), both unchanged. 10 of the 175 split pairs have an edge error above 0.3 nm (max 0.71 nm); all but one (a pair that was cut in three before and is 0.34 nm off now) are the same pairs and errors as before, left as they were. Detection fields of seeds 45000+ (`--detection-seed 45000`): 117/117 found, 45/45 pairs split, 0 spurious, edge <= 0.210 nm; overview unchanged (90/90, 9/9); the recorded touching pairs of one rotation (seeds 5000+) 37 -> 38 of 40 split. Field 35202 re-run: its four dots read 0.860 / 0.748 / 0.903 / 0.833 against 0.862 / 0.760 / 0.905 / 0.841 (the dot that was cut, 0.565 and 1.000 before, now 0.833; alone 0.840). Also: a detection seed whose layout finds no room (`make_field` raises) is now passed over and the next seed used; at 0.03 and 0.04 nm/px this skipped 66002 here (45001 and 45003 in tuning).

Fresh held-out sets, each scored once (this branch at 9945483; `python benchmarks/fields.py --sections fractions --fractions-seed 65000 --no-write`, then `--sections detection,same_rotation --detection-seed 66000 --same-rotation-seed 67000 --no-write`). Fractions, seeds 65000+:

| dose [counts] | fields | dots | mean abs per-dot error | 90th pct | max | share within limit (0.03; 0.06 at 30) | the same dots alone: max | alone: share within limit | mean / max abs(field - alone) | field CI coverage of p | field CI coverage of the field's own fraction | mean CI width | coverage of p by DerSimonian-Laird alone with the normal quantile | analyze_field time per field [s] |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| 30 | 13 | 52 (0 refused) | 0.008 | 0.016 | 0.053 | 1.00 | 0.053 | 1.00 | 0.0018 / 0.013 | 0.92 | 1.00 | 0.488 | 0.92 | 1.7 |
| 100 | 13 | 52 (0 refused) | 0.005 | 0.014 | 0.022 | 1.00 | 0.021 | 1.00 | 0.0018 / 0.017 | 0.92 | 1.00 | 0.468 | 0.85 | 1.8 |
| 400 | 13 | 52 (0 refused) | 0.004 | 0.008 | 0.014 | 1.00 | 0.016 | 1.00 | 0.0012 / 0.008 | 1.00 | 1.00 | 0.390 | 0.77 | 1.8 |

No dot beyond the limit and none refused: issue 13's per-dot criterion is met on these fields, 100 / 100 / 100 % within the limits at 30 / 100 / 400 counts (52 dots each, every touching pair found as two dots). Coverage of p by re-assembled fields: 2 / 3 / 4 / 6 dots 0.94 / 0.97 / 0.95 / 0.93 (DerSimonian-Laird with 1.96: 0.68 / 0.79 / 0.80 / 0.84). Detection, seeds 66000+ (66002 passed over at 0.03 and 0.04 nm/px):

| pixel [nm] | dose [counts] | field [px] | dots inside found | touching pairs split | spurious dots | mean edge error [nm] | max abs edge error [nm] | segmentation time per field [s] |
|---|---|---|---|---|---|---|---|---|
| 0.02 | 30 | 1024 | 10/10 | 5/5 | 0 | +0.002 | 0.202 | 0.3 |
| 0.02 | 100 | 1024 | 10/10 | 5/5 | 0 | +0.003 | 0.193 | 0.2 |
| 0.02 | 400 | 1024 | 10/10 | 5/5 | 0 | -0.001 | 0.196 | 0.2 |
| 0.03 | 30 | 1000 | 15/15 | 5/5 | 0 | -0.045 | 0.143 | 0.4 |
| 0.03 | 100 | 1000 | 15/15 | 5/5 | 0 | -0.047 | 0.157 | 0.4 |
| 0.03 | 400 | 1000 | 15/15 | 5/5 | 0 | -0.045 | 0.162 | 0.4 |
| 0.04 | 30 | 750 | 15/15 | 5/5 | 0 | -0.032 | 0.154 | 0.2 |
| 0.04 | 100 | 750 | 15/15 | 5/5 | 0 | -0.034 | 0.165 | 0.2 |
| 0.04 | 400 | 750 | 15/15 | 5/5 | 0 | -0.037 | 0.173 | 0.2 |

120/120 dots found, 45/45 touching pairs split, 0 spurious, edge error <= 0.202 nm. Touching pairs of one rotation, seeds 67000+ (0.035 nm/px, 20 per dose): 18/20 split at 30 and at 200 counts, 0/20 merged, 2/20 otherwise missed each (36/40, 90 %). The misses are two layouts at both doses (67000, one of whose dots reaches the frame, and 67008). Each was split into two dots with the boundary off (IoU 0.69-0.85, one dot of each pair <= 0.79); none was cut into three and none merged (looked at after scoring; nothing changed for them). Confirmation on the merged code (main 6d0e99b: with issue 14's small domains kept through the random field and issue 20's start-up savings; the same seeds 65000+, nothing chosen on them): max 0.053 / 0.018 / 0.014, mean abs 0.009 / 0.005 / 0.004, 100 / 100 / 100 % within the limits, 0 refused, field CI coverage of p 0.92 / 0.92 / 1.00.
"""


def _previous_sections() -> dict[str, str]:
    """The sections of the recorded results, by key (kept when a run recomputes only some)."""
    if not RESULTS.is_file():
        return {}
    text = RESULTS.read_text()
    out = {}
    for key, heading in SECTIONS.items():
        if heading in text:
            body = text.split(heading, 1)[1]
            out[key] = heading + body.split("\n## ", 1)[0].split("\nDots at random", 1)[0].rstrip() + "\n"
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few fields, for a smoke run (results not written)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS)
    )
    parser.add_argument("--detection-seed", type=int, default=DETECTION_SEED, help="first seed of the detection fields")
    parser.add_argument("--fractions-seed", type=int, default=FRACTIONS_SEED, help="first seed of the fraction fields")
    parser.add_argument(
        "--same-rotation-seed",
        type=int,
        default=SAME_ROTATION_SEED,
        help="first seed of the touching pairs of one rotation",
    )
    parser.add_argument("--no-write", action="store_true", help="print only (e.g. a re-run on earlier seeds)")
    args = parser.parse_args(argv)
    q = args.quick
    chosen = args.sections.split(",")
    sections = {} if q else _previous_sections()
    runs = {
        "detection": lambda: detection(
            [30, 100, 400] if not q else [100],
            [0.02, 0.03, 0.04] if not q else [0.035],
            2 if q else 5,
            seed0=args.detection_seed,
        ),
        "overview": lambda: overview([0.1, 0.2, 0.3] if not q else [0.2], 1 if q else 3),
        "fractions": lambda: fractions([30, 100, 400] if not q else [100], 2 if q else 13, seed0=args.fractions_seed),
        "scaling": lambda: scaling([1, 2, 4, 8] if not q else [1, 4]),
        "same_rotation": lambda: same_rotation(
            [30, 200] if not q else [200], 4 if q else 20, seed0=args.same_rotation_seed
        ),
    }
    for key in chosen:
        start = time.perf_counter()
        rows, head = runs[key]()
        sections[key] = (
            "\n".join([SECTIONS[key] + "\n", head, *rows, "", f"({time.perf_counter() - start:.0f} s)"]) + "\n"
        )
        text = (
            "# Fields of many dots\n\n"
            + "\n".join(sections[k] for k in SECTIONS if k in sections)
            + "\n"
            + NOTE
            + LATER_RUNS
        )
        if not (q or args.no_write):
            RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
