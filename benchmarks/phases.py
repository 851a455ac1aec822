"""Benchmark of the phase library (stem_pipeline.phases): expected site intensities and classification.

Parts (``--parts`` picks some; each writes its own section of benchmarks/results/phases.md):

* ``intensities``: the fast projected-Z estimate (sum of Z^1.7 per column per unit length)
  against abTEM HAADF site intensities of CsPbI3 [001] (one repeat cell, paper optics
  200 kV / 25 mrad, HAADF 68-160 mrad: the 0.005 nm potential sampling simulates up to
  ~167 mrad; 2 frozen phonons; thickness series 1.3 / 2.5 / 3.8 nm from one run: reduced
  so that it runs in minutes on the shared 2-core machine). The simulation is cached
  (``STEM_PIPELINE_CACHE``).
* ``accuracy``: CsPbBr3 [001] beside CsPbI3 [001] in one dot (two halides, a/2 = 0.294 and
  0.3145 nm; ``stem_pipeline.synthetic_phases``) through ``pipeline.analyze`` at 30 / 100 /
  400 counts, seeds never used by the tests or to choose a default: each phase's fraction
  error, the share of columns given the right phase and site, and interval coverage.
* ``real``: the real CsPbBr3 [100] image (StatSTEM) and the uncalibrated NSMO [110] image
  (kemstem), from ``../shared/realdata``.

Run: ``python benchmarks/phases.py [--quick] [--parts intensities accuracy real]``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("STEM_PIPELINE_CACHE", str(Path(tempfile.gettempdir()) / "stem_pipeline_phase_bench"))

HERE = Path(__file__).parent
REALDATA = HERE.parents[1] / "shared" / "realdata"
OUT = HERE / "results" / "phases.md"


def intensities(quick: bool) -> str:
    from stem_pipeline.phases import default_library
    from stem_pipeline.phases.simulated import simulated_site_intensities
    from stem_pipeline.simulate import SimulationConfig

    thicknesses = [1.258, 2.516, 3.774]
    cfg = SimulationConfig.model_validate(
        {
            "name": "cspbi3_001_phase_bench",
            "structure": {"kind": "cspbi3", "zone_axis": [0, 0, 1]},
            "microscope": {"haadf_mrad": [68, 100] if quick else [68, 160]},
            "potential": {"sampling_nm": 0.008 if quick else 0.005, "slice_thickness_nm": 0.16},
            "scan": {"sampling_nm": 0.05 if quick else 0.03, "field_cells": [1, 1], "min_supercell_nm": 1.2},
            "phonons": {"num_configs": 2, "seed": 0},
            "fast": {"engine": "multislice"},
            "thickness_nm": thicknesses[-1],
        }
    )
    grid = default_library()["CsPbI3 [001]"].grids()[0]
    fast = {str(n): float(v) for n, v in zip(grid.names, grid.relative_intensity)}
    lines = [
        "## Site intensities: projected-Z estimate against abTEM (CsPbI3 [001])",
        "",
        f"abTEM: one repeat cell, 200 kV, 25 mrad, HAADF {cfg.microscope.haadf_mrad[0]:g}-"
        f"{cfg.microscope.haadf_mrad[1]:g} mrad, potential sampling {cfg.potential.sampling_nm} nm, scan step "
        f"{cfg.scan.sampling_nm} nm, {cfg.phonons.num_configs} frozen phonons, source blur 0.085 nm; column "
        "intensity = the blurred image at the column (peak), and the same above the cell's minimum; relative to Pb-I.",
        "Fast estimate: sum of Z^1.7 per atom per unit length (thickness-independent).",
        "",
        "| thickness [nm] | site | fast estimate | abTEM peak | abTEM above background | fast / abTEM (above bg) |",
        "|---|---|---|---|---|---|",
    ]
    start = time.perf_counter()
    for t in thicknesses:
        sim = simulated_site_intensities(cfg, thickness_nm=t, thicknesses_nm=thicknesses)
        for name in ("Pb-I", "I", "Cs"):
            s = sim[name]
            lines.append(
                f"| {t:.2f} | {name} | {fast[name]:.3f} | {s['peak']:.3f} | {s['above_background']:.3f} "
                f"| {fast[name] / s['above_background']:.2f} |"
            )
    lines += [
        "",
        f"Simulation time (all thicknesses, first run; cached after): {time.perf_counter() - start:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def accuracy(quick: bool) -> str:
    from scipy.spatial import cKDTree

    from stem_pipeline.phases import default_library
    from stem_pipeline.pipeline import analyze
    from stem_pipeline.synthetic_phases import make_phase_dot

    library = default_library()
    names = ["CsPbBr3 [001]", "CsPbI3 [001]"]
    grids = [library[n].grids()[0] for n in names]
    seeds = range(1000, 1003 if quick else 1012)
    lines = [
        "## Two halides in one dot: CsPbBr3 [001] beside CsPbI3 [001]",
        "",
        "Synthetic 12 nm dots (0.035 nm/px, 448^2 px) cut into a CsPbBr3 part (share drawn from 0.2-0.8) and a CsPbI3 "
        "part, heights from the projected-Z site intensities, Poisson noise at the stated counts on the brightest "
        f"column; seeds {seeds.start}-{seeds.stop - 1} (not used by tests or defaults). Fraction errors are against "
        "the parts' shares of the dot's area; phase and site against the true column nearest each found one (< 2 px).",
        "",
        "| counts | dots | dots with both phases | mean abs error | max abs error | within 0.03 | coverage of 95 % interval "
        "| right phase | right site |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dose in (30, 100, 400):
        errors, covered, both, phase_ok, site_ok = [], [], 0, [], []
        for seed in seeds:
            share = np.random.default_rng(seed).uniform(0.2, 0.8)
            dot = make_phase_dot(grids, names, shares=[share, 1 - share], dose=dose, rng=seed)
            result = analyze(dot.image, pixel_size_nm=dot.pixel_size_nm)
            fractions = result.phases.get("phase_fractions") or {}
            both += set(names) <= set(fractions)
            for name in names:
                f = fractions.get(name, {"fraction": 0.0, "ci95": [0.0, 0.0]})
                errors.append(abs(f["fraction"] - dot.fractions[name]))
                covered.append(f["ci95"][0] <= dot.fractions[name] <= f["ci95"][1])
            dist, idx = cKDTree(dot.rc).query(result.columns.rc)
            m = dist < 2
            phase_ok.append(np.mean(result.phases["phase"][m] == np.asarray(dot.names)[dot.part[idx[m]]]))
            site_ok.append(np.mean(result.phases["site"][m] == dot.site[idx[m]]))
        e = np.array(errors)
        lines.append(
            f"| {dose} | {len(seeds)} | {both} | {e.mean():.3f} | {e.max():.3f} | {np.mean(e <= 0.03):.2f} "
            f"| {np.mean(covered):.2f} | {np.mean(phase_ok):.3f} | {np.mean(site_ok):.3f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join([*lines, ""])


def real(quick: bool) -> str:
    import pandas as pd
    from scipy.spatial import cKDTree

    from stem_pipeline.io import load
    from stem_pipeline.pipeline import analyze

    lines = ["## Real images", ""]
    path = REALDATA / "statstem_cspbbr3_100.tif"
    if not path.is_file():
        return "\n".join([*lines, "../shared/realdata is not present: not run.", ""])
    result = analyze(load(path))
    ref = pd.read_csv(REALDATA / "reference" / "statstem_cspbbr3_100_ref_columns.csv")
    rc = result.columns.rc
    dist, idx = cKDTree(ref[["y_px", "x_px"]].to_numpy()).query(rc)
    m = dist < 3
    agree = np.mean((result.phases["site"][m] == "Pb-Br") == (ref["type"].to_numpy()[idx[m]] == "Pb"))
    cal = result.phases["calibration"]
    lines += [
        f"* CsPbBr3 [100] (StatSTEM example, 0.0311 nm/px in the file): phase fractions "
        f"{ {k: round(v['fraction'], 3) for k, v in result.phases['phase_fractions'].items()} }; {m.sum()} of "
        f"{len(ref)} reference columns matched within 3 px, site agrees with StatSTEM's Pb/Cs type for "
        f"{agree:.1%}; calibration: spacing {100 * cal['spacing_error']:+.1f} % off CsPbBr3 [001], implied pixel "
        f"size {cal['implied_pixel_size_nm']:.4f} nm (the manifest's Pb-Pb 0.523 nm vs a = 0.587 nm says ~11 %).",
    ]
    nsmo = analyze(load(REALDATA / "kemstem_nsmo110.tif"))
    lines += [
        f"* NSMO [110] (no calibration): calibration status {nsmo.phases['calibration']['status']}, phase fractions "
        f"{nsmo.phases['phase_fractions'] or None}, two-phase fractions {nsmo.fractions}; candidates "
        + ", ".join(f"{c['phase']} {c['probability']:.2f}" for c in nsmo.phases["groups"][0]["candidates"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def _write(sections: dict[str, str]) -> None:
    text = OUT.read_text() if OUT.is_file() else "# Phase library\n\n"
    for name, body in sections.items():
        marker = f"<!-- {name} -->"
        block = f"{marker}\n{body}\n{marker}\n"
        pattern = re.compile(re.escape(marker) + r".*?" + re.escape(marker) + r"\n", re.S)
        text = pattern.sub(lambda _: block, text) if marker in text else text + block
    OUT.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run; results are printed, not recorded")
    parser.add_argument("--parts", nargs="+", default=["intensities", "accuracy", "real"])
    args = parser.parse_args()
    parts = {"intensities": intensities, "accuracy": accuracy, "real": real}
    sections = {}
    for name in args.parts:
        sections[name] = parts[name](args.quick)
        print(sections[name], flush=True)
    if not args.quick:
        _write(sections)


if __name__ == "__main__":
    sys.exit(main())
