"""The paper's case from abTEM: a Cs0.5FA0.5PbI3 two-phase dot as an abTEM cell mosaic.

Issue 5 ("a Cs0.5FA0.5PbI3 dot model from the simulate module should come out
near 0.5") and issue 7 ("compare on a simulated two-phase dot names the right
model for each region"). A full abTEM simulation of a 14 nm dot is days of
CPU here, so the dot is an **abTEM cell mosaic**
(:mod:`stem_pipeline.synthetic_mosaic`): one repeat cell of each pure phase is
simulated with abTEM through the cache (reduced, stated settings), and the
dot image tiles each phase's periodic cell image over a Voronoi domain map
(the synthetic generator's), on amorphous carbon, with Poisson noise.

Sections:
1. the uniform-phase candidates (PbI2 <1 -1 1>, PbI2 [-4 4 1], FAPbI3 [001]):
   what the lattice finder sees and the uniform fraction found for each;
2. the chosen pair: uniform fraction found vs truth at >= 3 doses (several
   dots per dose), with the 95 % interval and its coverage;
3. the model ranking (``compare_models``, the engine of ``stem-pipeline
   compare``) on one mosaic dot per region.

Run ``python benchmarks/paper_case.py [--quick]``; writes
``benchmarks/results/paper_case.md``. Simulations are cached (first run:
~15-20 min of abTEM on this machine; later runs: minutes).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "paper_case.md"

#: Reduced abTEM settings for every cell (the sim_configs use 0.0029 nm, 0.025 nm, 8 configs).
REDUCED = {
    "potential.sampling_nm": 0.006,  # largest simulated angle ~139 mrad: HAADF 68-139 mrad (not 68-280)
    "scan.sampling_nm": 0.04,  # ~0.039 nm pixels; the 0.085 nm source blur removes what this aliases
    "phonons.num_configs": 2,
}
#: One thickness series per model, shared by the mosaic cells and the compare fits (one cached run each).
THICKNESSES_NM = [1.9, 3.8, 5.7]
MOSAIC_THICKNESS_NM = 3.8
ORDERED = "cspbi3_001"
CANDIDATES = ["pbi2_1m11", "pbi2_441", "fapbi3_001"]  # uniform-phase candidates, physically closest first
MODELS = ["cspbi3_001", "fapbi3_001", "pbi2_1m11", "pbi2_441"]
#: Section 2's baseline: the synthetic generator's dot with the same layout and dose, pipeline defaults.
BASELINE = "baseline: synthetic make_dot, defaults"


def reduced_config(name: str):
    """The sim_configs/<name>.yaml model with the reduced settings of :data:`REDUCED`."""
    from stem_pipeline.simulate import load_config

    c = load_config(ROOT / "sim_configs" / f"{name}.yaml")
    return c.model_copy(
        update={
            "potential": c.potential.model_copy(update={"sampling_nm": REDUCED["potential.sampling_nm"]}),
            "scan": c.scan.model_copy(update={"sampling_nm": REDUCED["scan.sampling_nm"], "field_cells": (1, 1)}),
            "phonons": c.phonons.model_copy(update={"num_configs": REDUCED["phonons.num_configs"]}),
        }
    )


def write_reduced_yaml(folder: Path) -> dict[str, Path]:
    """Write each model's reduced config as <folder>/<name>.yaml (compare names models by file stem)."""
    paths = {}
    for name in MODELS:
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(reduced_config(name).model_dump(mode="json"), sort_keys=False))
        paths[name] = path
    return paths


def cells() -> dict:
    """Simulate (or load from the cache) every model's cell at the mosaic thickness; times in seconds."""
    from stem_pipeline.simulate.cells import simulate_cell

    out, times = {}, {}
    for name in MODELS:
        t0 = time.perf_counter()
        out[name] = simulate_cell(
            reduced_config(name), thickness_nm=MOSAIC_THICKNESS_NM, thicknesses_nm=THICKNESSES_NM, progress=False
        )
        times[name] = time.perf_counter() - t0
    return out, times


def lattice_of(image) -> str:
    from stem_pipeline.denoise import denoise
    from stem_pipeline.lattice import find_lattice
    from stem_pipeline.pipeline import PipelineConfig

    lat = find_lattice(denoise(image.data, PipelineConfig().denoise, pixel_size_nm=image.pixel_size_nm))
    if lat is None:
        return "none"
    return f"{lat.spacing_px * image.pixel_size_nm:.3f} nm, {lat.angle_deg:.0f} deg"


def pipeline_configs() -> dict:
    """The pipeline's defaults (see the results' notes)."""
    from stem_pipeline.pipeline import PipelineConfig

    return {"defaults": PipelineConfig()}


def analyze_dot(dot, config=None) -> dict:
    from stem_pipeline.pipeline import analyze

    t0 = time.perf_counter()
    result = analyze(dot.micrograph(), config)
    row = {"truth": dot.uniform_fraction, "status": result.status, "time_s": time.perf_counter() - t0}
    if result.status == "ok" and result.fractions is None:  # the two-phase model does not apply
        row["status"] = "no fractions: " + (result.message or "").split(": ", 1)[-1].split(" (")[0]
    if result.lattices:
        lat = result.lattices[0]
        row["lattice"] = f"{lat.spacing_px * dot.pixel_size_nm:.3f} nm {lat.angle_deg:.0f} deg"
    if row["status"] == "ok":
        f = result.fractions
        row.update(found=f.uniform, lo=f.uniform_ci95[0], hi=f.uniform_ci95[1], n_columns=len(result.columns))
        row["crystal_nm2"] = f.crystal_area_nm2
        inside = dot.region_map != 0
        row["mask_cover"] = float(result.crystal_mask[inside].mean())
    return row


def fmt(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['truth']:.3f} | {row['status']} | | | | | {row.get('lattice', '')}"
    err = row["found"] - row["truth"]
    inside = row["lo"] <= row["truth"] <= row["hi"]
    return (
        f"{row['truth']:.3f} | {row['found']:.3f} | {err:+.3f} | [{row['lo']:.3f}, {row['hi']:.3f}] | "
        f"{'yes' if inside else 'no'} | {row['mask_cover']:.2f} | {row.get('lattice', '')}"
    )


#: Wall time of each model's first (uncached) series run [s], measured once (shared machine; not re-measured here).
FIRST_RUN_S = {"cspbi3_001": "71 s", "fapbi3_001": "204 s", "pbi2_1m11": "1179 s", "pbi2_441": "1294 s"}

#: One-line results collected by the sections, printed first in the results file.
FINDINGS: list[str] = []

DOT = {"shape": (448, 448), "pixel_size_nm": 0.035, "dot_size_nm": 12.0, "domain_size_nm": 3.5}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer dots per dose")
    args = parser.parse_args(argv)
    from stem_pipeline.synthetic import make_dot
    from stem_pipeline.synthetic_mosaic import mosaic_dot

    t_start = time.perf_counter()
    n_dots = 2 if args.quick else 4
    doses = [30.0, 100.0, 400.0]
    lines = [
        "# The paper's case from abTEM: Cs0.5FA0.5PbI3 two-phase dot (abTEM cell mosaic)",
        "",
        f"Timings on a shared 2-core machine (x86_64, {platform.python_version()}) while other engineers' jobs ran."
        + (" `--quick` run." if args.quick else ""),
        "",
        "**How the dot is made** (`stem_pipeline.synthetic_mosaic`): one repeat cell of each pure phase is "
        "simulated with abTEM (`simulate_cell`, the simulate module's fast path, through its cache) at "
        f"{MOSAIC_THICKNESS_NM} nm (rounded to whole repeat cells), with the paper's optics but reduced "
        f"discretisation: potential sampling {REDUCED['potential.sampling_nm']} nm (HAADF integrated over "
        f"68-139 mrad instead of 68-280 mrad), scan step {REDUCED['scan.sampling_nm']} nm, "
        f"{REDUCED['phonons.num_configs']} frozen-phonon configurations, 0.16 nm slices, 0.085 nm source FWHM. "
        "`mosaic_dot` samples each phase's periodic cell image (cubic spline) over the Voronoi domain map of "
        "`synthetic.make_dot` (`synthetic.domain_map`), both phases on one lattice origin, adds the synthetic "
        "amorphous-carbon speckle (level 0.15 of a bright column) and Poisson noise at the dose (counts at a "
        "bright Pb-I column). Dots: "
        f"{DOT['shape'][0]}x{DOT['shape'][1]} px at {DOT['pixel_size_nm']} nm, {DOT['dot_size_nm']} nm square, "
        f"domains ~{DOT['domain_size_nm']} nm, random rotation, true uniform fraction from a random domain layout "
        "(probability 0.5 per domain).",
        "",
        "**What it ignores**: mixing of the two phases along the beam (every pixel sees one phase through the "
        "whole thickness, unlike the paper's 2x2x2-cell units), channelling and probe spreading across domain "
        "boundaries (the image switches phase sharply), interface strain and relaxation, thickness variation and "
        "the dot's faceted edges; the carbon is synthetic. So it tests the pipeline on abTEM contrast, not on a "
        "full dot simulation.",
        "",
    ]
    cell_set, sim_times = cells()
    lines += [
        "## Cells (abTEM, reduced settings)",
        "",
        "First (uncached) runs of the three-thickness series, measured once on this machine while other jobs "
        "ran: " + ", ".join(f"{k} {v}" for k, v in FIRST_RUN_S.items()) + ". The times in the table are this "
        "run's (cache hits are ~0).",
        "",
        "| model | cell [nm] | thickness [nm] | columns | "
        "lattice finder on a pure 12 nm dot | time [s] (cache hit if ~0) |",
        "|---|---|---|---|---|---|",
    ]
    rng = np.random.default_rng(0)
    for name, cell in cell_set.items():
        pure = mosaic_dot(
            cell,
            cell,
            DOT["shape"],
            pixel_size_nm=DOT["pixel_size_nm"],
            dot_size_nm=DOT["dot_size_nm"],
            uniform_fraction=0.0,
            dose=400.0,
            rotation_deg=7.0,
            rng=rng,
        )
        ext = cell.extent_nm
        lines.append(
            f"| {name} | {ext[0]:.3f} x {ext[1]:.3f} | {cell.thickness_nm:.2f} | {len(cell.sites_nm)} | "
            f"{lattice_of(pure.micrograph())} | {sim_times[name]:.0f} |"
        )
    o = cell_set[ORDERED]
    values = _site_values(o)
    lines += [
        "",
        "CsPbI3 [001] column heights in its cell, Pb-I first then I, I, Cs (abTEM HAADF, fraction of the "
        "beam): "
        + ", ".join(f"{v:.4f}" for v in values)
        + f"; dim / bright = {min(values[1:]) / values[0]:.2f}-{max(values[1:]) / values[0]:.2f}.",
        "",
    ]

    configs = pipeline_configs()
    lines += [
        "**Pipeline configuration.** `defaults` is `PipelineConfig()`. This benchmark first showed that the "
        "pipeline, tuned on the synthetic generator's dim/bright ratio of 0.6, failed on abTEM's ~0.3 (the "
        "lattice finder returned the 0.63 nm Pb-I superlattice and detection dropped the dim I and Cs columns); "
        "since then the lattice basis is the two strongest reflections and the detection threshold is 0.2 of the "
        "90th-percentile column height, with a lattice-neighbour check against edge noise (tests at ratio 0.3 in "
        "tests/test_applicability.py).",
        "",
    ]

    # 1. uniform-phase candidates
    lines += [
        "## 1. Which uniform phase the pipeline can take",
        "",
        "Candidates, physically closest first: **pbi2_1m11**, PbI2 (what FAPbI3 becomes under the beam, per "
        "the paper) along <1 -1 1>, the PbI2 axis whose projection comes closest to the paper's ~0.32 nm "
        "uniform grid (0.347 nm, 82 deg; sim_configs/README.md); **pbi2_441**, PbI2 along the paper's stated "
        "[-4 4 1], which projects to 1-D 0.228 nm fringes (no resolvable column grid); **fapbi3_001**, "
        "undecomposed FAPbI3 [001] (square 0.318 nm grid, but its FA column is nearly empty in HAADF, so "
        "it is a Pb-I/I pattern, not a uniform one). No model was tuned.",
        "",
        f"Ordered phase {ORDERED}. For each uniform candidate: a pure uniform dot (truth 1.0), a pure ordered "
        "dot (truth 0.0, same for every candidate) and one two-phase dot, dose 400. 'mask cover' is the "
        "fraction of the true dot area inside the pipeline's crystal mask; 'lattice' is what `find_lattice` "
        "returns on the two-phase dot (CsPbI3 column grid: 0.3145 nm, 90 deg).",
        "",
        "| pipeline | uniform phase | pure ordered found | pure uniform found | lattice (two-phase, raw) | truth | "
        "found | error | 95 % interval | truth inside | mask cover | lattice (pipeline) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    section1 = {}
    for label, config in configs.items():
        pure_o = mosaic_dot(
            o,
            o,
            DOT["shape"],
            pixel_size_nm=DOT["pixel_size_nm"],
            dot_size_nm=DOT["dot_size_nm"],
            uniform_fraction=0.0,
            rotation_deg=11.0,
            dose=400.0,
            rng=100,
        )
        row_o = analyze_dot(pure_o, config)
        for name in CANDIDATES:
            u = cell_set[name]
            pure_u = mosaic_dot(
                o,
                u,
                DOT["shape"],
                pixel_size_nm=DOT["pixel_size_nm"],
                dot_size_nm=DOT["dot_size_nm"],
                uniform_fraction=1.0,
                rotation_deg=11.0,
                dose=400.0,
                rng=100,
            )
            row_u = analyze_dot(pure_u, config)
            dot = mosaic_dot(
                o,
                u,
                DOT["shape"],
                pixel_size_nm=DOT["pixel_size_nm"],
                dot_size_nm=DOT["dot_size_nm"],
                domain_size_nm=DOT["domain_size_nm"],
                rotation_deg=11.0,
                dose=400.0,
                rng=101,
            )
            row = analyze_dot(dot, config)
            section1[label, name] = (row_o, row_u, row)
            lines.append(
                f"| {label} | {name} | {_found(row_o)} | {_found(row_u)} | {lattice_of(dot.micrograph())} | "
                f"{fmt(row)} |"
            )
        FINDINGS.append(
            f"`{label}`: pure CsPbI3 dot (truth 0) -> {_found(row_o)}; "
            + "; ".join(
                f"{n}: pure uniform (truth 1) -> {_found(section1[label, n][1])}, two-phase "
                f"(truth {section1[label, n][2]['truth']:.2f}) -> {_found(section1[label, n][2])}"
                for n in CANDIDATES
            )
        )
    lines.append("")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")  # partial results survive a failure below

    lines += _lattice_section(cell_set)
    RESULTS.write_text("\n".join(lines) + "\n")

    # 2. fraction vs truth at several doses
    chosen, why = _choose(section1, list(configs)[-1])
    lines += [
        f"## 2. Uniform fraction found vs truth ({ORDERED} + {chosen})",
        "",
        why,
        "",
        f"{n_dots} dots per dose (random layout, rotation 0-90 deg, centre offset +-1 nm; seeds 1000.., the same "
        "layouts at every dose, so only the noise changes with the dose).",
        "",
        "| pipeline | dose [counts] | truth | found | error | 95 % interval | truth inside | mask cover | "
        "lattice (pipeline) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    runs = dict(configs)
    runs[BASELINE] = configs["defaults"]
    for label, config in runs.items():
        for dose in doses:
            errs, cover = [], []
            for k in range(n_dots):
                r = np.random.default_rng(1000 + k)
                layout = dict(
                    pixel_size_nm=DOT["pixel_size_nm"],
                    dot_size_nm=DOT["dot_size_nm"],
                    domain_size_nm=DOT["domain_size_nm"],
                    rotation_deg=float(r.uniform(0, 90)),
                    center_offset_nm=tuple(r.uniform(-1, 1, 2)),
                    dose=dose,
                    rng=r,
                )
                if label == BASELINE:  # same layout (same draws from r), the generator's Gaussian contrast
                    dot = make_dot(DOT["shape"], **layout)
                else:
                    dot = mosaic_dot(o, cell_set[chosen], DOT["shape"], **layout)
                row = analyze_dot(dot, config)
                lines.append(f"| {label} | {dose:.0f} | {fmt(row)} |")
                if row["status"] == "ok":
                    errs.append(row["found"] - row["truth"])
                    cover.append(row["lo"] <= row["truth"] <= row["hi"])
            summary.append((label, dose, errs, cover))
    lines += [
        "",
        "| pipeline | dose | dots ok | mean error | max abs error | coverage of the 95 % interval |",
        "|---|---|---|---|---|---|",
    ]
    for label in runs:
        n_ok = sum(len(e) for lab, _, e, _ in summary if lab == label)
        what = "same layouts and doses" if label == BASELINE else f"{ORDERED} + {chosen} mosaic"
        FINDINGS.append(
            f"Fraction vs truth (`{label}`, {what}): {n_ok} of {n_dots * len(doses)} dots got fractions"
            + (
                f", max abs error {max(np.max(np.abs(e)) for lab, _, e, _ in summary if lab == label and e):.3f}"
                if n_ok
                else ""
            )
        )
    for label, dose, errs, cover in summary:
        if errs:
            lines.append(
                f"| {label} | {dose:.0f} | {len(errs)}/{n_dots} | {np.mean(errs):+.3f} | "
                f"{np.max(np.abs(errs)):.3f} | {np.mean(cover):.2f} |"
            )
        else:
            lines.append(f"| {label} | {dose:.0f} | 0/{n_dots} | | | |")
    lines.append("")
    RESULTS.write_text("\n".join(lines) + "\n")

    # 3. compare ranking per region
    lines += _compare_section(cell_set, chosen, configs)
    lines += ["", f"_(total {time.perf_counter() - t_start:.0f} s)_", ""]
    at = lines.index("") + 1
    lines[at:at] = ["## Summary (computed)", ""] + [f"- {f}" for f in FINDINGS] + [""]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)
    return 0


def _lattice_section(cell_set) -> list[str]:
    """What find_lattice returns on abTEM CsPbI3 [001] (+ PbI2 <1 -1 1>) dots, by thickness and strong_fraction."""
    from stem_pipeline.denoise import denoise
    from stem_pipeline.lattice import LatticeConfig, find_lattice
    from stem_pipeline.pipeline import PipelineConfig
    from stem_pipeline.simulate.cells import simulate_cell
    from stem_pipeline.synthetic_mosaic import mosaic_dot

    fractions = (0.15, 0.3, 0.5)
    lines = [
        "### Lattice finder on abTEM contrast (diagnostic)",
        "",
        "`find_lattice` on the denoised dot (dose 400, rotation 11 deg), for the cells at each thickness of the "
        "series; `strong_fraction` 0.15 is what `pipeline.analyze` uses (peaks weaker than 0.15 of the "
        "strongest are ignored so that weak CsPbI3 superlattice peaks do not double the grid). Expected: "
        "0.3145 nm 90 deg (CsPbI3 column grid); 0.629 nm is the Pb-I superlattice, 0.347 nm 82 deg the "
        "PbI2 <1 -1 1> grid.",
        "",
        "| thickness [nm] | dot | " + " | ".join(f"strong_fraction {f}" for f in fractions) + " |",
        "|---|---|" + "---|" * len(fractions),
    ]
    for t in THICKNESSES_NM:
        o = simulate_cell(reduced_config(ORDERED), thickness_nm=t, thicknesses_nm=THICKNESSES_NM)
        u = simulate_cell(reduced_config(CANDIDATES[0]), thickness_nm=t, thicknesses_nm=THICKNESSES_NM)
        for f_u, what in ((0.0, "pure CsPbI3"), (0.5, f"CsPbI3 + {CANDIDATES[0]}")):
            dot = mosaic_dot(
                o,
                u,
                DOT["shape"],
                pixel_size_nm=DOT["pixel_size_nm"],
                dot_size_nm=DOT["dot_size_nm"],
                uniform_fraction=f_u,
                rotation_deg=11.0,
                dose=400.0,
                rng=101,
            )
            den = denoise(dot.image, PipelineConfig().denoise, pixel_size_nm=dot.pixel_size_nm)
            cells = []
            for f in fractions:
                lat = find_lattice(den, LatticeConfig(strong_fraction=f))
                cells.append(
                    "none" if lat is None else f"{lat.spacing_px * dot.pixel_size_nm:.3f} nm {lat.angle_deg:.0f} deg"
                )
            lines.append(f"| {o.thickness_nm:.2f} / {u.thickness_nm:.2f} | {what} | " + " | ".join(cells) + " |")
    return lines + [""]


def _found(row: dict) -> str:
    return f"{row['found']:.3f}" if row["status"] == "ok" else row["status"]


def _site_values(cell) -> list[float]:
    """Cell-image values at the columns, bright (Pb) first."""
    from stem_pipeline.simulate.cells import sample_cell

    order = np.argsort(~cell.bright, kind="stable")
    return [float(v) for v in sample_cell(cell, cell.sites_nm[order])]


def _choose(section1: dict, label: str) -> tuple[str, str]:
    """The first candidate (physically closest first) that the pipeline reads as one crystal with CsPbI3.

    "Reads" means, with pipeline ``label``: the pure uniform dot gives >= 0.9 and the two-phase dot is within
    0.1 of its truth. Falls back to the first candidate, and says so.
    """
    for name in CANDIDATES:
        _, row_u, row = section1[label, name]
        if (
            row_u["status"] == "ok"
            and row_u["found"] >= 0.9
            and row["status"] == "ok"
            and abs(row["found"] - row["truth"]) <= 0.1
        ):
            return name, (
                f"Chosen uniform phase: **{name}**, the first of {CANDIDATES} (physically closest first) that the "
                f"pipeline (`{label}`) reads as one crystal with the CsPbI3 grid (pure uniform dot >= 0.9, two-phase "
                "dot within 0.1 of the truth in section 1)."
            )
    return CANDIDATES[0], (
        f"**No candidate passed** (pure uniform dot >= 0.9 and two-phase dot within 0.1, pipeline `{label}`): "
        f"section 2 uses {CANDIDATES[0]}, the physically closest, to show what happens."
    )


def _compare_section(cell_set: dict, chosen: str, configs: dict) -> list[str]:
    from stem_pipeline.compare import CompareConfig
    from stem_pipeline.comparison import compare_models
    from stem_pipeline.synthetic_mosaic import mosaic_dot

    options = CompareConfig(thicknesses_nm=THICKNESSES_NM)
    lines = [
        f"## 3. Model ranking per region (`compare_models`, {ORDERED} + {chosen} mosaic)",
        "",
        f"One mosaic dot (dose 400, truth thickness {MOSAIC_THICKNESS_NM} nm, rounded per model), models: "
        + ", ".join(MODELS)
        + " with the same reduced settings, thickness series "
        f"{THICKNESSES_NM} nm (the cells' own cached runs: the 'experiment' and the models share one abTEM run "
        "per model). `stem-pipeline compare` calls `compare_models` with the default `CompareConfig` (2-16 nm in "
        "8 steps), which the CLI cannot change; the series here is set in Python to keep the run affordable.",
        "",
    ]
    dot = mosaic_dot(
        cell_set[ORDERED],
        cell_set[chosen],
        DOT["shape"],
        pixel_size_nm=DOT["pixel_size_nm"],
        dot_size_nm=DOT["dot_size_nm"],
        domain_size_nm=4.5,
        rotation_deg=9.0,
        dose=400.0,
        rng=_balanced_seed(),
    )
    lines.append(f"Dot truth: uniform fraction {dot.uniform_fraction:.3f}.")
    lines.append("")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_reduced_yaml(Path(tmp))
        for label, config in configs.items():
            for region in ("ordered", "uniform", "all"):
                t0 = time.perf_counter()
                out = Path(tmp) / label.replace(" ", "_") / region
                try:
                    results = compare_models(
                        dot.micrograph(),
                        [paths[m] for m in MODELS],
                        region=region,
                        out=out,
                        config=config,
                        options=options,
                        progress=False,
                    )
                except Exception as exc:  # report, do not hide
                    lines += [
                        f"**pipeline {label}, --region {region}**: compare failed: `{type(exc).__name__}: {exc}`",
                        "",
                    ]
                    FINDINGS.append(
                        f"`compare_models` (`{label}`, region {region}): failed, `{type(exc).__name__}: {exc}`"
                    )
                    continue
                FINDINGS.append(f"`compare_models` (`{label}`, region {region}): first {results[0].model}")
                lines += [
                    f"**pipeline {label}, --region {region}** ({time.perf_counter() - t0:.0f} s):",
                    "",
                    "| rank | model | chi2 | NCC | SSIM | thickness [nm] | source FWHM [nm] | ratio exp | ratio sim |",
                    "|---|---|---|---|---|---|---|---|---|",
                ]
                for k, r in enumerate(results, 1):
                    lines.append(
                        f"| {k} | {r.model} | {_g(r.chi2)} | {_g(r.ncc, 3)} | {_g(r.ssim, 3)} | "
                        f"{_g(r.thickness_nm, 2)} | {_g(r.source_fwhm_nm, 3)} | {_g(r.column_ratio_exp, 2)} | "
                        f"{_g(r.column_ratio_sim, 2)} |"
                    )
                cells_info = json.loads((out / "comparison.json").read_text()).get("cells")
                lines += ["", f"cells folded: {cells_info}", ""]
        lines += _truth_ranking(dot, paths, options, cell_set, chosen)
    return lines


def _truth_ranking(dot, paths: dict, options, cell_set: dict, chosen: str) -> list[str]:
    """compare's fit and ranking with the TRUE columns, grid and regions of the mosaic (diagnostic)."""
    from stem_pipeline._types import LABELS
    from stem_pipeline.compare import comparison_from_fit, experimental_cell, fit_cell, rank, simulation_series

    lines = [
        "### Ranking with the true columns and regions (diagnostic)",
        "",
        "The same dot and models, but the experimental mean cells are folded from the mosaic's true columns, "
        "true region map and each phase's true column grid (instead of the pipeline's), then "
        "`compare.fit_cell` and `compare.rank` as in `compare_models` (supercell 2x2, chi2 with SEM weights). "
        "'sim cell = repeat' is what `compare_models` does (the simulated image's edges are its period); "
        "'sim cell = primitive' passes each model's primitive column period "
        "(`CellImage.primitive_vectors_nm`, e.g. the 0.347 nm grid of PbI2 <1 -1 1>, whose 0.456 x 4.705 nm "
        "orthogonal repeat holds 18 alike columns) as `fit_cell(sim_cell_vectors_nm=...)`.",
        "",
    ]
    series = {name: simulation_series(path, options, progress=False) for name, path in paths.items()}
    ordered = cell_set[ORDERED]
    # crystal-frame (row, col) vectors -> image vectors: the ordered grid's known rotation (grid @ frame)
    frame = np.linalg.solve(ordered.grid_vectors_nm() / dot.pixel_size_nm, dot.lattice_vectors_px)
    for region, cell in (("ordered", ordered), ("uniform", cell_set[chosen])):
        vectors = (cell.grid_vectors_nm() / dot.pixel_size_nm) @ frame
        keep = dot.label == LABELS.index(region)
        mean = experimental_cell(
            dot.micrograph(),
            dot.rc[keep],
            vectors,
            intensity=dot.amplitude[keep],
            supercell=options.supercell,
            oversample=options.oversample,
            min_cells=options.min_cells,
        )
        for how in ("repeat", "primitive"):
            entries = []
            for name, (images, thick, pixel) in series.items():
                sim_vectors = cell_set[name].primitive_vectors_nm() if how == "primitive" else None
                try:
                    fit = fit_cell(
                        mean,
                        images,
                        pixel,
                        thicknesses_nm=thick,
                        source_fwhms_nm=options.source_fwhms_nm,
                        reps=options.reps,
                        variance=options.variance,
                        max_scale_change=options.max_scale_change,
                        sim_cell_vectors_nm=sim_vectors,
                    )
                except Exception as exc:  # report, do not hide
                    lines.append(f"- {region} vs {name} (sim cell = {how}): fit failed `{type(exc).__name__}: {exc}`")
                    continue
                entries.append(comparison_from_fit(name, region, fit))
            lines += [
                "",
                f"**region {region}, sim cell = {how}** ({mean.count} true-column cells folded):",
                "",
                "| rank | model | chi2 | NCC | SSIM | thickness [nm] | source FWHM [nm] | ratio exp | ratio sim |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            if entries:
                FINDINGS.append(
                    f"compare fit on the true {region} region, sim cell = {how}: first {rank(entries)[0].model}"
                )
            for k, r in enumerate(rank(entries), 1):
                lines.append(
                    f"| {k} | {r.model} | {_g(r.chi2)} | {_g(r.ncc, 3)} | {_g(r.ssim, 3)} | {_g(r.thickness_nm, 2)} | "
                    f"{_g(r.source_fwhm_nm, 3)} | {_g(r.column_ratio_exp, 2)} | {_g(r.column_ratio_sim, 2)} |"
                )
    return lines + [""]


def _balanced_seed() -> int:
    """First seed whose compare dot has a true uniform fraction in 0.4-0.6 (both regions well sampled)."""
    from stem_pipeline.synthetic import domain_map

    for seed in range(100):
        region = domain_map(
            DOT["shape"],
            pixel_size_nm=DOT["pixel_size_nm"],
            dot_size_nm=DOT["dot_size_nm"],
            domain_size_nm=4.5,
            rotation_deg=9.0,
            rng=seed,
        )
        if 0.4 <= np.mean(region[region != 0] == 2) <= 0.6:
            return seed
    return 0


def _g(x, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}g}"


if __name__ == "__main__":
    raise SystemExit(main())
