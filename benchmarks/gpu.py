"""The simulations on a CUDA GPU (``simulate --device gpu``): speed-up and full-setting times (issue 20 goal 3).

Needs CuPy and a CUDA device; never part of the tests. Run on a machine with a GPU, in this order, each part
only while time is left (``--budget-s``):

1. **Speed-up on the same work** (``speedup``): each crystal config's fast plan, one frozen-phonon configuration
   of its own seed over its first ``--rows`` scan rows (the method of ``simulate.py --parts cost``), on one CPU
   core (one Dask worker, one FFTW thread) and on the GPU; wall times, and the largest difference of the two
   HAADF arrays. Both are warmed up first on one row of the first config (CUDA context and cuFFT plans; Numba's
   compilation of abTEM's CPU kernels).
2. **Every shipped config at its documented settings** (``full``) through the command line, as a user runs it:
   ``stem-pipeline -q simulate CONFIG --device gpu --no-cache --out FILE``, wall time of the whole process
   (start-up and writing included), cheapest first; a run that would outlast the time left is stopped and
   reported as not finished.
3. **The cs50fa50 dot** (``dot``): ``cs50fa50_qd.yaml`` at its documented discretisation (0.0029 nm, 0.025 nm
   scan, 1.2 nm PRISM window, 4 configurations) with smaller cube edges, on the GPU; the PRISM work terms
   (plane waves x slices x G log2 G) of each and of the 14 nm dot, so the whole dot's GPU time follows from the
   same cost model as the CPU estimate in ``simulate.py --parts dot``.

Usage (on the GPU machine): ``python benchmarks/gpu.py --out DIR [--budget-s 500]``; writes ``DIR/gpu.md``
(copied by hand into ``benchmarks/results/gpu.md``) and the simulated images of the ``full`` part.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from simulate import ROOT, _chunk, _prism_cost, _reduced  # noqa: E402  (benchmarks/ is the script's folder)

from stem_pipeline.simulate import check_device, load_config, simulate  # noqa: E402

#: The crystal configs of the speed-up part, with the scan rows each runs.
SPEEDUP = {"cspbi3_001": 2, "cspbi3_110": 2, "pbi2_1m11": 1}
#: The shipped configs at full settings, cheapest first (CPU estimates of ``simulate.py --parts cost``, 1 core).
FULL = {"cspbi3_001": 430, "fapbi3_001": 484, "cspbi3_110": 745, "pbi2_441": 5040, "pbi2_1m11": 8640}
#: Cube edges [nm] of the dot part (the 14 nm dot's own discretisation).
DOT_EDGES = (2.6, 5.1)


class Clock:
    """The time left of the run's budget."""

    def __init__(self, budget_s: float):
        self.end = time.monotonic() + budget_s

    def left(self) -> float:
        """Seconds left."""
        return self.end - time.monotonic()


def environment() -> list[str]:
    """What the numbers were measured on."""
    import abtem
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return [
        f"GPU: {name}, {props['totalGlobalMem'] / 2**30:.0f} GiB; CuPy {cupy.__version__}, abTEM {abtem.__version__}, "
        f"NumPy {np.__version__}; {os.cpu_count()} CPU cores on the same machine; Python {sys.version.split()[0]}.",
        "",
    ]


def part_speedup(clock: Clock) -> list[str]:
    """The same chunk on one CPU core and on the GPU."""
    lines = [
        "## Speed-up on the same work (one configuration, the first scan rows)",
        "",
        "| config | rows x positions per row | CPU, 1 core [s] | GPU [s] | speed-up | max difference / max |",
        "|---|---|---|---|---|---|",
    ]
    first = _reduced(load_config(ROOT / "sim_configs" / f"{next(iter(SPEEDUP))}.yaml"), phonons={"num_configs": 1})
    for device in ("cpu", "gpu"):
        _chunk(first, 1, device=device)
    for name, rows in SPEEDUP.items():
        if clock.left() < 120:
            lines.append(f"| {name} | not run: time left {clock.left():.0f} s |")
            break
        cfg = _reduced(load_config(ROOT / "sim_configs" / f"{name}.yaml"), phonons={"num_configs": 1})
        cpu_wall, _, cpu = _chunk(cfg, rows)
        gpu_wall, _, gpu = _chunk(cfg, rows, device="gpu")
        diff = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
        lines.append(
            f"| {name} | {rows} x {cpu.shape[0]} | {cpu_wall:.1f} | {gpu_wall:.2f} | {cpu_wall / gpu_wall:.0f}x "
            f"| {100 * diff:.4f} % |"
        )
        print(lines[-1], flush=True)
    return lines + [""]


def part_full(clock: Clock, out: Path) -> list[str]:
    """Every shipped crystal config through the command line on the GPU."""
    lines = [
        "## Every shipped crystal config at its documented settings, on the GPU",
        "",
        "`stem-pipeline -q simulate sim_configs/CONFIG.yaml --device gpu --no-cache --out CONFIG.npy`, wall time of "
        "the whole process; the CPU column is the 1-core estimate of `simulate.py --parts cost` on the project's "
        "machine (README).",
        "",
        "| config | GPU, whole process [s] | CPU estimate, 1 core [s] | ratio | image |",
        "|---|---|---|---|---|",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name, cpu_s in FULL.items():
        limit = clock.left() - 30
        if limit < 30:
            lines.append(f"| {name} | not run: time left {clock.left():.0f} s | {cpu_s} | | |")
            continue
        target = out / f"{name}.npy"
        cmd = [sys.executable, "-m", "stem_pipeline.cli", "-q", "simulate", str(ROOT / "sim_configs" / f"{name}.yaml")]
        cmd += ["--device", "gpu", "--no-cache", "--out", str(target)]
        t0 = time.perf_counter()
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            lines.append(f"| {name} | not finished in {limit:.0f} s | {cpu_s} | > {cpu_s / limit:.0f}x? | |")
            print(lines[-1], flush=True)
            continue
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            lines.append(
                f"| {name} | failed after {wall:.1f} s (exit {done.returncode}): {done.stderr.strip()[-300:]} | {cpu_s} | | |"
            )
        else:
            image = done.stdout.strip().rpartition("(")[2].rstrip(")")  # "104x104 px, 0.0242 nm/px"
            lines.append(f"| {name} | {wall:.1f} | {cpu_s} | {cpu_s / wall:.0f}x | {image} |")
        print(lines[-1], flush=True)
    return lines + [""]


def part_dot(clock: Clock) -> list[str]:
    """The cs50fa50 dot at its documented discretisation, small edges, on the GPU."""
    from stem_pipeline.simulate.run import build_structure

    base = load_config(ROOT / "sim_configs" / "cs50fa50_qd.yaml")
    whole = _prism_cost(base, build_structure(base))
    lines = [
        "## The cs50fa50 dot at its documented discretisation, on the GPU",
        "",
        f"`cs50fa50_qd.yaml` as shipped ({base.phonons.num_configs} configurations, potential "
        f"{base.potential.sampling_nm} nm, scan {base.scan.sampling_nm} nm, PRISM window {base.fast.prism_window_nm} nm) "
        "with a smaller `dot.edge_nm`; `simulate(..., device='gpu', cache=False)`, wall time. Build term = plane waves "
        "x slices x G log2 G (G the potential grid points), the cost model of `simulate.py --parts dot`.",
        "",
        "| edge [nm] | plane waves | grid x slices | S-matrix [GB] | build term | GPU [s] | s per 1e12 build units |",
        "|---|---|---|---|---|---|---|",
    ]
    rates = []
    for edge in DOT_EDGES:
        if clock.left() < 60:
            lines.append(f"| {edge} | not run: time left {clock.left():.0f} s |")
            break
        cfg = _reduced(base, dot={"edge_nm": edge})
        k = _prism_cost(cfg, build_structure(cfg))
        t0 = time.perf_counter()
        simulate(cfg, cache=False, progress=False, device="gpu")
        wall = time.perf_counter() - t0
        rates.append(wall / k["build"] * 1e12)
        lines.append(
            f"| {edge} | {k['waves']} | {k['grid'][0]}x{k['grid'][1]} x {k['slices']} | {k['memory_gb']:.2f} "
            f"| {k['build']:.3g} | {wall:.1f} | {rates[-1]:.1f} |"
        )
        print(lines[-1], flush=True)
    lines.append(
        f"| {base.dot.edge_nm} (shipped) | {whole['waves']} | {whole['grid'][0]}x{whole['grid'][1]} x "
        f"{whole['slices']} | {whole['memory_gb']:.0f} | {whole['build']:.3g} | "
        + (f"~{rates[-1] * whole['build'] / 1e12 / 60:.0f} min by the last rate |" if rates else "|")
        + " |"
    )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.md and the images")
    parser.add_argument("--budget-s", type=float, default=500, help="stop starting parts after this long")
    parser.add_argument("--parts", nargs="+", choices=("speedup", "full", "dot"), default=["speedup", "full", "dot"])
    args = parser.parse_args()
    check_device("gpu")
    clock = Clock(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Simulation on a GPU (`benchmarks/gpu.py`, issue 20 goal 3)", "", *environment()]
    print("\n".join(lines), flush=True)
    parts = {"speedup": part_speedup, "full": lambda c: part_full(c, args.out), "dot": part_dot}
    for name in args.parts:
        try:
            lines += parts[name](clock)
        except Exception as exc:  # one part failing (e.g. out of GPU memory) must not lose the others' numbers
            traceback.print_exc()
            lines += [f"## Part `{name}` failed: {type(exc).__name__}: {str(exc)[:500]}", ""]
        (args.out / "gpu.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
