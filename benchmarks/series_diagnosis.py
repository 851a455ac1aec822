"""Why frame series at 30 counts per frame miss f0: the first frame's pooled read, column by column.

Usage: ``python benchmarks/series_diagnosis.py``

The series of benchmarks/series.py whose f0 missed by more than 0.03 (all at 30 counts per frame:
seeds 5003 and 11001 at 5 frames, 5002 at 10 frames; diagnosis seeds since) and two of them at 100 counts
for contrast are analysed by :func:`stem_pipeline.series.analyze_series`; each tracked column is matched to
the generator's nearest column, whose first uniform frame ``c`` is the truth (0: uniform in frame 0,
whether from the start or converted in the first half-frame's dose; ``F``: never within the series).
The first frame's pooled read (the columns' posterior probability of being uniform there, area-weighted)
is compared with the same area sum of the true states, and its error is split by the true ``c``. Also:
each column's intensity noise from frame to frame against the typical step at conversion, and the
leverage of each frame's error on the fitted f0. Writes ``benchmarks/results/series_diagnosis.md``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from series import DC, TOTAL_DOSE, reads, record, score, simulate

from stem_pipeline._types import LABELS
from stem_pipeline.series import pool
from stem_pipeline.series.fit import fit_model

CASES = ((5003, 5, 30.0), (11001, 5, 30.0), (5002, 10, 30.0), (5003, 5, 100.0), (5002, 10, 100.0))
#: Groups of the true first uniform frame c: (label, lowest c, highest c or None for "never").
GROUPS = (("0", 0, 0), ("1", 1, 1), ("2", 2, 2), (">= 3, in the series", 3, -1), ("never", None, None))


#: The code this page diagnoses, and what changed since its first version.
CODE = (
    "Re-run 2026-11-30 on the code with issue 19's intensity levels (each column's level joins its change "
    "point's likelihood, `series.pool.state_levels`; `results/series.md`: f0 within 0.03 in every two-phase "
    "series since). The first version of this page (before the levels) found the 5-frame, 30-count misses in "
    "frame 0's read of the columns that convert in frame 1 (pooled P(uniform in frame 0) 0.27-0.33 for them)."
)

#: A hand-run comparison kept from the page's first version (not re-run by this script).
HEIGHTS = """## With the column heights as the classification intensity (issue 14's `classify.intensity="height"`, now the default; recorded 2026-11-29, before issue 19's intensity levels)

The same diagnosis series (all looked at before; no held-out claim), `analyze_series` with each intensity
(script: the benchmark's `make_series` arguments, `PipelineConfig(classify={"intensity": ...})`):

| seed, frames, counts | f0 error, volume | f0 error, height | Dc error, volume | Dc error, height |
|---|---|---|---|---|
| 5003, 5, 30 | +0.043 | +0.048 | +6.2 % | +9.2 % |
| 11001, 5, 30 | +0.047 | +0.054 | +10.7 % | +9.1 % |
| 12002, 5, 30 | +0.045 | +0.048 | +3.0 % | +3.0 % |
| 5002, 10, 30 | -0.036 | -0.014 | -7.5 % | -3.9 % |
| 8001, 5, 100 (test seed) | -0.029 | -0.014 | -6.9 % | -4.7 % |
| 8000, 5, 100 (test seed) | +0.007 | -0.000 | -0.4 % | -1.6 % |

The heights fix the pulled-down miss (5002) and give seed 8001 a margin (it passed its 0.03 test limit by
0.001), but the 5-frame, 30-count misses (the first frame's read at step / noise ~2.4, passed into f0 with
leverage 1.05) stay, slightly larger. The series benchmark's tables above were recorded with the volumes and
were not re-run."""


def true_change_frame(s, r) -> np.ndarray:
    """Each tracked column's first uniform frame in the generator's truth (its nearest true column)."""
    offset = s.drift_rc_px[r.reference_frame]
    candidates = [cKDTree(s.rc + sign * offset).query(r.reference_rc) for sign in (1.0, -1.0)]
    _, match = min(candidates, key=lambda q: float(np.median(q[0])))
    uniform = s.label[:, match] == LABELS.index("uniform")
    return np.where(uniform.any(axis=0), np.argmax(uniform, axis=0), s.n_frames)


def leverage(n_frames: int, f0: float = 0.3) -> np.ndarray:
    """Change of the fitted f0 per unit error of each frame (the stated model, equal weights, the benchmark's doses)."""
    dose = (np.arange(n_frames) + 0.5) * TOTAL_DOSE / n_frames
    clean = 1 - (1 - f0) * np.exp(-dose / DC)
    sigma = np.full(n_frames, 0.012)
    base = fit_model("exponential", dose, clean, sigma).f0
    out = []
    for k in range(n_frames):
        bumped = clean.copy()
        bumped[k] += 0.01
        out.append((fit_model("exponential", dose, bumped, sigma).f0 - base) / 0.01)
    return np.array(out)


def diagnose(seed: int, n_frames: int, counts: float) -> tuple[str, list[str]]:
    """One case: its summary row and its rows by true change frame."""
    s, r, elapsed = simulate(n_frames, counts, seed)
    raw = record(n_frames, counts, seed, s, r, elapsed)
    c = true_change_frame(s, r)
    area = r.cell_area_px
    p0 = np.nan_to_num(reads(raw)[0][:1])  # the pooled frame 0 (as the benchmark fits it)
    p_col = np.nan_to_num(r.change_points.p_converted[0])
    col_truth = float(area @ (c == 0)) / area.sum()
    # Robust noise sd from the frame-to-frame differences (median absolute difference of a Gaussian pair).
    noise = float(np.nanmedian(np.abs(np.diff(r.column_intensity, axis=0)))) / (0.6745 * np.sqrt(2))
    step = pool.typical_step(r.column_intensity, r.change_points)
    case = f"{seed}, {n_frames}, {counts:g}"
    row = (
        f"| {case} | {score(raw)['f0_err']:+.3f} | {p0[0] - s.uniform_fraction[0]:+.3f} | {p0[0] - col_truth:+.3f} | "
        f"{s.uniform_fraction[0] - col_truth:+.3f} | {noise:.3f} | {step:.3f} | {step / noise:.1f} |"
    )
    rows = []
    for name, lo, hi in GROUPS:
        m = c == n_frames if lo is None else (c >= lo) & (c <= (n_frames - 1 if hi == -1 else hi))
        if not m.any():
            continue
        read_uniform = float(np.mean(r.history.label[0, m] == LABELS.index("uniform")))
        contribution = float(area[m] @ (p_col[m] - (c[m] == 0))) / area.sum()
        rows.append(
            f"| {case} | {name} | {m.sum()} | {read_uniform:.2f} | {p_col[m].mean():.2f} | {contribution:+.3f} |"
        )
    return row, rows


def main() -> None:
    logging.getLogger("stem_pipeline").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    summary = [
        "| seed, frames, counts | f0 error | frame 0: pooled - truth | pooled - column truth | truth - column truth "
        "| intensity noise sd | typical step | step / noise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = [
        "| seed, frames, counts | true first uniform frame c | columns | read uniform in frame 0 | pooled P(uniform "
        "in frame 0) | contribution to frame 0's error |",
        "|---|---|---|---|---|---|",
    ]
    for case in CASES:
        row, rows = diagnose(*case)
        summary.append(row)
        groups += rows
        print(row, flush=True)
    lev = ["| frames | leverage of frames 0, 1, 2 | sum over all frames |", "|---|---|---|"]
    for n_frames in (5, 10, 20):
        g = leverage(n_frames)
        lev.append(f"| {n_frames} | {', '.join(f'{v:+.2f}' for v in g[:3])} | {g.sum():.2f} |")
    text = "\n".join(
        [
            "# Frame series at 30 counts per frame: where the f0 misses come from",
            "",
            CODE,
            "",
            *summary,
            "",
            "'Column truth': the area of the tracked columns (their Voronoi cells) uniform in frame 0; 'truth': the "
            "domain area of the generator (`SyntheticSeries.uniform_fraction`), the benchmark's truth. Intensity "
            "noise: each column's intensity (relative to the frame's mean column) from frame to frame; typical "
            "step: its mean step at conversion (`pool.typical_step` under the series' change points).",
            "",
            *groups,
            "",
            "Leverage: the change of the fitted f0 (the stated exponential, equal weights, f0 = 0.3, Dc = "
            f"{DC:g} e/A^2, {TOTAL_DOSE:g} e/A^2 in all) per unit error of a frame:",
            "",
            *lev,
            "",
            HEIGHTS,
        ]
    )
    out = Path(__file__).parent / "results" / "series_diagnosis.md"
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
