"""Benchmark of stem_pipeline.simulate on CsPbI3 [001] with the paper's optics (200 kV, 25 mrad).

Parts (all by default; ``--parts`` picks some, each rewrites its own section of
benchmarks/results/simulate.md):

* ``speed``: exact (abTEM multislice scanned over a 4 x 4-cell field inside a
  4 x 4-cell potential, as a user would do) against fast (one repeat cell
  scanned inside a >= 1.8 nm (3 x 3-cell) potential, then tiled): time ratio,
  peak memory, and the maximum deviation / maximum (i) without phonons (the
  tiling approximation alone), (ii) with phonons against the exact image
  averaged over its 16 equivalent cells, (iii) the phonon noise floor (two
  exact runs with different seeds, and two fast runs).
* ``series``: thickness series from one run (exit planes) vs separate runs.
* ``prism``: the opt-in PRISM engine (``SMatrix``, interpolation = repeats of
  the cell in the supercell) against the one-cell multislice.
* ``convergence``: potential sampling 0.008 / 0.006 / 0.004 / 0.0029 / 0.002 nm on a
  thin cell (HAADF 68-100 mrad for all), the outer angle 200 vs 280 mrad, the
  number of frozen phonons for 2 % column-ratio stability, and the supercell
  size; run with direct abTEM calls.
* ``subcell``: the fast path's sub-cell scan (``scan.subcell``) against the whole
  repeat cell for the configs whose repeat cell has one (CsPbI3 [110], PbI2):
  time ratio and maximum deviation, static, reduced discretisation.
* ``cost``: every shipped config at its own settings: one frozen-phonon
  configuration over one and two rows of its scan, timed, extrapolated to the
  whole scan and all configurations (linear in both); the dot from the time of
  one FFT of its potential grid times the PRISM plane waves and slices.
* ``cheap``: an FFT-fast potential grid (``potential.fast_fft``), and with it
  0.004 nm / HAADF 68-200 mrad, against the configs' own discretisation on a
  sub-field (one scan row, one phonon configuration, the same displacements):
  cost ratio and deviation.
* ``workers``: ``num_workers`` 1 vs 2 (Dask threads over phonon configurations
  and scan chunks) on a small config.
* ``dot``: a small cs50fa50 dot (2x2x2 units of 2x2x2 cells, coarse stated settings, one configuration):
  the cell mosaic (``stem_pipeline.synthetic_mosaic``'s method), a thickness-weighted mix and PRISM with
  two probe windows against the exact multislice of the same dot (image and per-column errors, the
  pipeline's labels); the 14 nm dot's cost at cheaper settings from a model fitted to the PRISM runs; the
  coarse settings against the full ones on the CsPbI3 cell.
* ``done``: the issue's "done when" command, ``stem-pipeline simulate
  sim_configs/cspbi3_001.yaml --thickness-nm 6.29``, against an independent
  abTEM multislice of the same cell and optics written here (ASE atoms, abTEM
  probe/potential/scan/detector, abTEM's own source blur and tiling).

Reduced settings so the benchmark fits a shared 2-core machine are stated in
each section. ``--quick`` shrinks every part to a few minutes in all.

Run: ``python benchmarks/simulate.py [--quick] [--parts speed series ...]``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

os.environ.setdefault("STEM_PIPELINE_CACHE", tempfile.mkdtemp(prefix="stem_sim_bench_"))

from stem_pipeline.simulate import SimulationConfig, load_config, simulate, simulate_thickness_series  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "simulate.md"
PARTS = ("speed", "series", "prism", "convergence", "done", "subcell", "cost", "cheap", "workers", "dot")
#: The shipped configs whose cost the ``cost`` part measures.
SHIPPED = ("cspbi3_001", "fapbi3_001", "cspbi3_110", "pbi2_441", "pbi2_1m11", "cs50fa50_qd")
A = 6.29  # CsPbI3 lattice constant [Angstrom]
#: Debye-Waller B [Angstrom^2] of the reference runs (the same literature values as the configs)
B_CSPBI3 = {"Pb": 2.5, "I": 5.0, "Cs": 5.0}


def bench_config(*, sampling_nm=0.008, per_cell=8, field=4, num_configs=0, seed=0, haadf=(68, 100), **extra):
    """CsPbI3 [001] at reduced discretisation; ``per_cell`` scan positions per 0.629 nm cell."""
    d = {
        "name": "bench_cspbi3_001",
        "structure": {"kind": "cspbi3", "zone_axis": [0, 0, 1]},
        "microscope": {"haadf_mrad": list(haadf)},
        "potential": {"sampling_nm": sampling_nm, "slice_thickness_nm": 0.1573},
        "scan": {"sampling_nm": 0.629 / per_cell + 1e-6, "field_cells": [field, field], "min_supercell_nm": 1.8},
        "phonons": {"num_configs": num_configs, "seed": seed},
        "fast": {"engine": "multislice"},
    }
    for key, value in extra.items():
        d[key] = {**d.get(key, {}), **value} if isinstance(value, dict) else value
    return SimulationConfig.model_validate(d)


def timed(fn):
    """(result, seconds, peak traced memory [MiB]) of fn()."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def cpu_timed(fn):
    """(result, wall seconds, CPU seconds of this process, all threads) of fn().

    On this shared machine the wall time depends on the other jobs; the CPU time is the work
    (= the wall time on a quiet core with one worker).
    """
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def dev(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max b [%]."""
    return float(100 * np.abs(a - b).max() / b.max())


def cell_mean(img: np.ndarray, field: int) -> np.ndarray:
    """Average a field of field x field identical cells into one cell."""
    n = img.shape[0] // field
    return img.reshape(field, n, field, n).mean(axis=(0, 2))


def ratios(cell: np.ndarray) -> tuple[float, float]:
    """(Pb-I / Cs, Pb-I / I) column values of a one-cell image sampled with an even grid."""
    h = cell.shape[-1] // 2
    pbi = cell[..., 0, 0]
    return pbi / cell[..., h, h], pbi / (0.5 * (cell[..., 0, h] + cell[..., h, 0]))


# ------------------------------------------------------------------ independent abTEM


def reference_measurement(
    *, nz, tiles, sampling_nm, scan_per_cell, num_configs, seed, slices_per_cell=4, ensemble_mean=True, scan=None
):
    """Direct abTEM multislice of CsPbI3 [001] (no stem_pipeline code): one cell scanned.

    Returns the FlexibleAnnularDetector measurement and the wall time.
    """
    import abtem
    import dask
    from ase import Atoms

    # atoms listed in the order of stem_pipeline's zone-axis cell, so that a given seed gives
    # the same frozen-phonon displacements in both (the comparison then tests the code path,
    # not phonon sampling noise)
    cell = Atoms(
        "CsIIPbI",
        scaled_positions=[(0.5, 0.5, 0.5), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0), (0, 0, 0.5)],
        cell=[A] * 3,
        pbc=True,
    )
    atoms = cell * (1, 1, nz) * (tiles, tiles, 1)
    if num_configs:
        sigmas = {el: math.sqrt(b / (8 * math.pi**2)) for el, b in B_CSPBI3.items()}
        atoms = abtem.FrozenPhonons(
            atoms=atoms, num_configs=num_configs, sigmas=sigmas, seed=seed, ensemble_mean=ensemble_mean
        )
    n = math.ceil(A / (sampling_nm * 10))
    with abtem.config.set({"device": "cpu", "fftw.threads": 1}), dask.config.set(scheduler="threads", num_workers=1):
        potential = abtem.Potential(
            atoms=atoms, gpts=(tiles * n, tiles * n), slice_thickness=A / slices_per_cell, parametrization="lobato"
        )
        probe = abtem.Probe(energy=200e3, semiangle_cutoff=25.0)
        if scan is None:
            scan = abtem.GridScan(start=(0.0, 0.0), end=(A, A), gpts=(scan_per_cell, scan_per_cell), endpoint=False)
        t0 = time.perf_counter()
        measurement = probe.scan(potential=potential, scan=scan, detectors=abtem.FlexibleAnnularDetector())
        measurement = measurement.compute(progress_bar=False)
    return measurement, time.perf_counter() - t0


def haadf_cell(measurement, inner, outer) -> np.ndarray:
    """Integrated ring as (..., rows=y, cols=x)."""
    return np.swapaxes(np.asarray(measurement.integrate_radial(inner=inner, outer=outer).array), -1, -2)


# ------------------------------------------------------------------ parts


def part_speed(quick: bool) -> list[str]:
    field = 4
    thicknesses = [1.89] if quick else [6.29, 13.84]
    per_cell = 6
    rows = []
    # warm-up (numba JIT, FFTW plans for both grid sizes) so the first timed run does not pay it
    warm = bench_config(per_cell=2, field=field)
    for method in ("fast", "exact"):
        simulate(warm, thickness_nm=0.629, method=method, cache=False, progress=False)
    for t in thicknesses:
        cfg = bench_config(per_cell=per_cell, field=field)
        fast, t_f, m_f = timed(lambda: simulate(cfg, thickness_nm=t, method="fast", cache=False, progress=False))
        exact, t_e, m_e = timed(lambda: simulate(cfg, thickness_nm=t, method="exact", cache=False, progress=False))
        rf, re_ = ratios(fast.data[:per_cell, :per_cell]), ratios(cell_mean(exact.data, field))
        rows.append(
            f"| {fast.metadata['thickness_nm']:.2f} | static | {t_e:.1f} | {t_f:.1f} | **{t_e / t_f:.1f}x** |"
            f" (i) **{dev(fast.data, exact.data):.2f} %** | {m_e:.0f} / {m_f:.0f} |"
            f" {re_[0]:.2f} / {rf[0]:.2f} | {re_[1]:.2f} / {rf[1]:.2f} |"
        )
        print(rows[-1], flush=True)
    # phonons at the first thickness: exact with 1 configuration per seed (16 cells = 16 samples
    # per column), fast with n_fast configurations per seed
    t = thicknesses[0]
    n_fast = 4
    ex, fa, times = [], [], []
    for seed in (0, 1):
        c_ex = bench_config(per_cell=per_cell, field=field, num_configs=1, seed=seed)
        c_fa = bench_config(per_cell=per_cell, field=field, num_configs=n_fast, seed=seed)
        img, t_e, m_e = timed(lambda: simulate(c_ex, thickness_nm=t, method="exact", cache=False, progress=False))
        ex.append(img.data)
        img, t_f, m_f = timed(lambda: simulate(c_fa, thickness_nm=t, method="fast", cache=False, progress=False))
        fa.append(img.data[:per_cell, :per_cell])
        times.append((t_e, t_f))
    avg = [cell_mean(e, field) for e in ex]
    rf, re_ = ratios(fa[0]), ratios(avg[0])
    rows.append(
        f"| {t:.2f} | phonons: exact 1 config x 16 cells, fast {n_fast} configs | {times[0][0]:.1f} |"
        f" {times[0][1]:.1f} | {times[0][0] / times[0][1]:.1f}x | (ii) **{dev(fa[0], avg[0]):.2f} %** |"
        f" {m_e:.0f} / {m_f:.0f} | {re_[0]:.2f} / {rf[0]:.2f} | {re_[1]:.2f} / {rf[1]:.2f} |"
    )
    floor = (
        f"(iii) Phonon noise floor at {t:.2f} nm (max deviation / max between two seeds): exact single cells"
        f" (1 configuration) **{dev(ex[1], ex[0]):.1f} %**; exact averaged over the 16 cells"
        f" **{dev(avg[1], avg[0]):.2f} %**; fast ({n_fast} configurations) **{dev(fa[1], fa[0]):.2f} %**."
        " Deviation (ii) cannot be smaller than these: 2 % is below the phonon sampling noise of a"
        f" {n_fast}-configuration one-cell run."
    )
    n_exact = f"{field * per_cell}x{field * per_cell}"
    return [
        "## Fast (one cell, tiled) vs exact (full field)",
        "",
        f"Settings: field {field}x{field} cells (2.5 nm); exact = abTEM multislice scan of the whole field"
        f" ({n_exact} probe positions) in a {field}x{field}-cell potential; fast = one-cell scan"
        f" ({per_cell}x{per_cell} positions) in a 3x3-cell (1.89 nm) potential, tiled. Reduced to fit the machine:"
        " potential sampling 0.008 nm (so HAADF is 68-100 mrad, not 68-280), scan step"
        f" {0.629 / per_cell:.3f} nm, 4 slices per cell, source FWHM 0.085 nm. Memory: tracemalloc peak of"
        " Python/numpy allocations during the run.",
        "",
        "| thickness [nm] | phonons | exact [s] | fast [s] | time ratio (goal >= 8x) | max deviation / max"
        " (goal <= 2 %) | peak mem exact / fast [MiB] | PbI/Cs exact / fast | PbI/I exact / fast |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        floor,
        "",
        "The ideal time ratio is (field cells) x (exact potential area / fast potential area) ="
        f" {field**2} x {(field / 3) ** 2:.2f} = {field**2 * (field / 3) ** 2:.0f}x here; it grows with the field.",
    ]


def part_series(quick: bool) -> list[str]:
    series_t = [0.63, 1.26, 1.89] if quick else [3.15, 6.29, 9.44, 12.58]
    cfg = bench_config(per_cell=8)
    (stack, thick, _), t_series, _ = timed(
        lambda: simulate_thickness_series(cfg, series_t, cache=False, progress=False)
    )
    t_sep, devs = 0.0, []
    for k, t in enumerate(series_t):
        img, dt, _ = timed(lambda: simulate(cfg, thickness_nm=t, cache=False, progress=False))
        t_sep += dt
        devs.append(dev(stack[k], img.data))
    return [
        "## Thickness series",
        "",
        f"Fast path, static lattice, settings of the speed table. Thicknesses {[round(float(x), 2) for x in thick]} nm:"
        f" one run with exit planes every cell **{t_series:.1f} s** vs separate runs **{t_sep:.1f} s**"
        f" (**{t_sep / t_series:.1f}x**); largest deviation series vs separate run {max(devs):.3f} % of the maximum.",
    ]


def part_prism(quick: bool) -> list[str]:
    import abtem

    t = 1.89 if quick else 6.29
    ms = bench_config(per_cell=8)
    pr = bench_config(per_cell=8, fast={"engine": "prism"})
    a, t_ms, m_ms = timed(lambda: simulate(ms, thickness_nm=t, cache=False, progress=False))
    try:
        b, t_pr, m_pr = timed(lambda: simulate(pr, thickness_nm=t, cache=False, progress=False))
        result = f"PRISM {t_pr:.1f} s vs multislice {t_ms:.1f} s (**{t_ms / t_pr:.2f}x**), max deviation {dev(b.data, a.data):.1f} %"
    except ValueError as exc:
        result = f"PRISM failed: {exc}"
    n = math.ceil(A / 0.08)
    s_matrix = abtem.SMatrix(
        potential=abtem.Potential(atoms=abtem.orthogonalize_cell(_cell()) * (3, 3, 1), gpts=3 * n),
        energy=200e3,
        semiangle_cutoff=25.0,
        interpolation=3,
    )
    beams = len(s_matrix.wave_vectors)
    return [
        "## PRISM (opt-in engine)",
        "",
        f"CsPbI3 [001], {t:.2f} nm, static, settings of the speed table but an 8x8 one-cell scan; SMatrix in the 3x3-cell potential with"
        f" interpolation 3 (= repeats of the cell, so the probe window is one 0.629 nm cell) and semiangle_cutoff"
        f" 25 mrad: **{beams} plane waves** vs **64 probe positions** for the one-cell multislice. {result}.",
        "",
        "Each plane wave costs a full multislice in the 3x3-cell potential, like one probe position, and the"
        " window of one cell crops the probe tails. A PRISM plane-wave count below the probe count needs cells"
        " with fewer beams than scan positions (beams ~ pi (alpha/lambda)^2 x cell area, positions ~ cell"
        " area / step^2, i.e. a scan step below ~0.045 nm at 25 mrad and 200 kV at best, and the window"
        " penalty remains). PRISM therefore stays opt-in (`fast.engine: prism`); it is the fast path for dots.",
    ]


def _cell():
    from ase import Atoms

    return Atoms(
        "PbIIICs",
        scaled_positions=[(0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (0.5, 0.5, 0.5)],
        cell=[A] * 3,
        pbc=True,
    )


def part_convergence(quick: bool) -> list[str]:
    nz = 3
    samplings = [0.008, 0.006] if quick else [0.008, 0.006, 0.004, 0.0029, 0.002]
    n_conf = 2 if quick else 4
    rows = []
    for s in samplings:
        m, dt = reference_measurement(nz=nz, tiles=3, sampling_nm=s, scan_per_cell=8, num_configs=n_conf, seed=0)
        outer_max = float(m.outer_angle)
        ranges = [(68, 100)] + [(68, o) for o in (200, 280) if o <= outer_max]
        for r in ranges:
            a, b = ratios(haadf_cell(m, *r))
            rows.append(f"| {s} | {r[0]}-{r[1]} | {outer_max:.0f} | {a:.3f} | {b:.3f} | {dt:.0f} |")
            print(rows[-1], flush=True)
    # frozen phonons: per-configuration images, delta-method standard error of a ratio of means,
    # at the column centres without blur and after the default 0.085 nm source blur
    from scipy import ndimage

    nzp, n_single, per = (3, 6, 12) if quick else (10, 12, 12)
    m, dt = reference_measurement(
        nz=nzp, tiles=3, sampling_nm=0.008, scan_per_cell=per, num_configs=n_single, seed=0, ensemble_mean=False
    )
    cells = haadf_cell(m, 68, 100)  # (configs, rows, cols)
    sigma_px = 0.085 / (2 * math.sqrt(2 * math.log(2))) / (A / 10 / per)
    blurred = ndimage.gaussian_filter(cells, sigma=(0, sigma_px, sigma_px), mode="wrap")
    h = per // 2
    # integrated: each column's Voronoi square (half a cell wide) summed, the column
    # "cell intensity"; the square grid of columns has a half-cell period
    q = h // 2
    shifted = np.roll(cells, (q, q), axis=(1, 2))
    sums = shifted.reshape(len(cells), 2, h, 2, h).sum(axis=(2, 4))  # (configs, 2, 2) half-cell squares
    integrated = np.zeros_like(cells)
    integrated[:, 0, 0], integrated[:, h, h] = sums[:, 0, 0], sums[:, 1, 1]
    integrated[:, 0, h], integrated[:, h, 0] = sums[:, 0, 1], sums[:, 1, 0]
    ph_rows = []
    for label, stack in (
        ("centre, no blur", cells),
        ("centre, 0.085 nm source blur", blurred),
        ("integrated over its Voronoi square", integrated),
    ):
        pbi, cs, i_col = stack[:, 0, 0], stack[:, h, h], 0.5 * (stack[:, 0, h] + stack[:, h, 0])
        for name, den in (("PbI/Cs", cs), ("PbI/I", i_col)):
            z = pbi / pbi.mean() - den / den.mean()  # linearised relative error of the ratio of means
            rel1 = float(np.std(z, ddof=1))  # one configuration
            need = math.ceil((rel1 / 0.01) ** 2)
            ph_rows.append(
                f"| {name} | {label} | {pbi.mean() / den.mean():.3f} | "
                + " | ".join(f"{100 * rel1 / math.sqrt(k):.1f} %" for k in (1, 2, 4, 8, 16))
                + f" | {need} |"
            )
    # supercell size (our code path, static, deterministic)
    sc_rows, ref = [], None
    for size in (2.5, 1.8, 1.2):
        cfg = bench_config(sampling_nm=0.006, per_cell=8, field=1, scan={"min_supercell_nm": size})
        img, dt_s, _ = timed(lambda: simulate(cfg, thickness_nm=1.89 if quick else 6.29, cache=False, progress=False))
        ref = img.data if ref is None else ref
        a, b = ratios(img.data)
        sc_rows.append(
            f"| {math.ceil(size * 10 / A)}x{math.ceil(size * 10 / A)} ({size} nm) | {dt_s:.1f} | {dev(img.data, ref):.2f} % | {a:.3f} | {b:.3f} |"
        )
    return [
        "## Convergence (direct abTEM calls, CsPbI3 [001])",
        "",
        f"Potential sampling: one cell scanned 8x8 (positions on the columns, no source blur) in a 3x3-cell"
        f" potential, {nz * 0.629:.2f} nm thick, {n_conf} frozen-phonon configurations with the same seed (the same"
        " displacements at every sampling, so only the sampling changes), 4 slices per cell. The 68-100 mrad"
        " range is what every sampling simulates; wider rings where the sampling reaches them.",
        "",
        "| potential sampling [nm] | HAADF [mrad] | largest simulated angle [mrad] | PbI/Cs | PbI/I | run [s] |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Frozen phonons: {n_single} single configurations (0.008 nm sampling, {nzp * 0.629:.2f} nm, HAADF 68-100 mrad,"
        f" {per}x{per} scan per cell; column values at the column centres). Relative standard error of the ratio of means with N"
        " configurations, rel(1) / sqrt(N); 'N for 2 %' is the N with a standard error <= 1 % (so a 95 %"
        " interval within +-2 %).",
        "",
        "| ratio | column value | ratio of means | N=1 | N=2 | N=4 | N=8 | N=16 | N for 2 % |",
        "|---|---|---|---|---|---|---|---|---|",
        *ph_rows,
        "",
        f"Supercell (potential) size of the fast path: static, 0.006 nm sampling, {1.89 if quick else 6.29} nm,"
        " source blur on; deviation against the 4x4-cell (2.5 nm) potential.",
        "",
        "| supercell | run [s] | max deviation / max | PbI/Cs | PbI/I |",
        "|---|---|---|---|---|",
        *sc_rows,
    ]


def part_done(quick: bool, reuse: Path | None = None) -> list[str]:
    """The issue's command, then checks against direct abTEM calls.

    (1) Multislice: an independent abTEM run at a subset of the CLI's probe positions (every
    second one plus the Cs column) against the CLI's unblurred run, read from the cache folder
    the CLI wrote. (2) Post-processing: abTEM's periodic Gaussian filter and tiling applied to
    that run against the .tif. (3) Calibration read back from the .tif.
    """
    import abtem
    import yaml

    from stem_pipeline import io

    path = ROOT / "sim_configs" / "cspbi3_001.yaml"
    cfg = load_config(path)
    if quick:  # a cheap stand-in with the same code paths
        cfg = cfg.model_copy(
            update={
                "potential": cfg.potential.model_copy(update={"sampling_nm": 0.008}),
                "scan": cfg.scan.model_copy(update={"sampling_nm": 0.0787, "field_cells": (8, 8)}),  # >= 64 px
                "phonons": cfg.phonons.model_copy(update={"num_configs": 1}),
                "microscope": cfg.microscope.model_copy(update={"haadf_mrad": (68.0, 100.0)}),
            }
        )
        path = Path(tempfile.mkdtemp()) / "quick.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    work = reuse or Path(tempfile.mkdtemp(prefix="stem_sim_done_"))
    out, cache = work / "cell.tif", work / "cache"
    if reuse is None:
        env = dict(os.environ, STEM_PIPELINE_CACHE=str(cache))
        cmd = ["stem-pipeline", "-q", "simulate", str(path), "--thickness-nm", "6.29", "--out", str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        (work / "cli_seconds.txt").write_text(f"{time.perf_counter() - t0:.0f}")
    t_cli = float((work / "cli_seconds.txt").read_text())
    img = io.load(out)
    (entry,) = cache.glob("*.npz")
    with np.load(entry) as npz:
        raw = npz["haadf"][0]  # the CLI's run before blur and tiling, (rows=y, cols=x)
    per_cell = raw.shape[0]
    # (1) independent multislice at a subset of the same probe positions
    idx = sorted(set(range(0, per_cell, 2)) | {per_cell // 2})
    step = A / per_cell
    xy = np.array([(i * step, j * step) for i in idx for j in idx])
    tiles = math.ceil(cfg.scan.min_supercell_nm * 10 / A)
    m, t_ref = reference_measurement(
        nz=10,
        tiles=tiles,
        sampling_nm=cfg.potential.sampling_nm,
        scan_per_cell=per_cell,
        num_configs=cfg.phonons.num_configs,
        seed=cfg.phonons.seed,
        slices_per_cell=round(A / (cfg.potential.slice_thickness_nm * 10)),
        scan=abtem.CustomScan(positions=xy),
    )
    inner, outer = cfg.microscope.haadf_mrad
    outer = min(outer, float(m.outer_angle))
    ref = np.asarray(m.integrate_radial(inner=inner, outer=outer).array).reshape(len(idx), len(idx)).T  # (y, x)
    sub = raw[np.ix_(idx, idx)]
    # (2) abTEM's own source blur and tiling of the CLI's run
    sigma = cfg.microscope.source_fwhm_nm * 10 / (2 * math.sqrt(2 * math.log(2)))
    images = abtem.Images(array=raw.T.copy(), sampling=(step, step))
    post = np.asarray(
        images.gaussian_filter(sigma=sigma, boundary="periodic").tile(tuple(cfg.scan.field_cells)).array
    ).T
    k = idx.index(per_cell // 2)
    r_ref = (ref[0, 0] / ref[k, k], ref[0, 0] / (0.5 * (ref[0, k] + ref[k, 0])))
    r_raw, r_cli = ratios(raw), ratios(img.data[:per_cell, :per_cell])
    return [
        "## Done-when: `stem-pipeline simulate sim_configs/cspbi3_001.yaml --thickness-nm 6.29`"
        + (" (QUICK stand-in: reduced settings)" if quick else ""),
        "",
        f"Config defaults: potential sampling {cfg.potential.sampling_nm} nm, HAADF {inner:.0f}-{outer:.0f} mrad,"
        f" scan step {cfg.scan.sampling_nm} nm ({per_cell}x{per_cell} per cell), {cfg.phonons.num_configs}"
        f" frozen-phonon configurations, {tiles}x{tiles}-cell potential, 4 slices per cell, field"
        f" {cfg.scan.field_cells[0]}x{cfg.scan.field_cells[1]} cells, source FWHM {cfg.microscope.source_fwhm_nm} nm.",
        "",
        f"* CLI wall time **{t_cli:.0f} s** ({t_cli / 60:.1f} min, including start-up); image"
        f" {img.shape[0]}x{img.shape[1]} px, calibration read back from the .tif **{img.pixel_size_nm:.5f} nm/px**"
        f" (expected {step / 10:.5f} = 0.629 nm / {per_cell}).",
        f"* Independent abTEM multislice (ASE atoms, abTEM FrozenPhonons with the same seed and Debye-Waller sigmas,"
        f" abTEM Probe/Potential/FlexibleAnnularDetector) at {len(xy)} of the {per_cell**2} probe positions"
        f" ({t_ref:.0f} s): max deviation from the CLI's unblurred run **{dev(sub, ref):.4f} %** of the maximum.",
        f"* abTEM's periodic Gaussian source blur and tiling of that run vs the .tif: max deviation"
        f" **{dev(img.data, post):.4f} %**.",
        f"* Column ratios at these settings, with the source blur (the .tif): Pb-I/Cs **{r_cli[0]:.2f}**,"
        f" Pb-I/I **{r_cli[1]:.2f}**; at the column centres without blur (CLI run / independent): Pb-I/Cs"
        f" {r_raw[0]:.2f} / {r_ref[0]:.2f}, Pb-I/I {r_raw[1]:.2f} / {r_ref[1]:.2f}. With"
        f" {cfg.phonons.num_configs} configurations these carry a phonon-sampling standard error of roughly"
        " 7.5-12 % (convergence section, blurred peaks).",
    ]


# ------------------------------------------------------------------ report


def _reduced(cfg: SimulationConfig, **update) -> SimulationConfig:
    """``cfg`` with some of its blocks updated (``block={"field": value}``) or fields replaced."""
    data = cfg.model_dump(mode="json")
    for key, value in update.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return SimulationConfig.model_validate(data)


def part_subcell(quick: bool) -> list[str]:
    """Sub-cell scan (``scan.subcell``) vs the whole repeat cell, static, reduced discretisation."""
    from stem_pipeline.simulate.run import _crystal_plan, build_structure

    lines = [
        "## Sub-cell scan of the fast path (`scan.subcell`)",
        "",
        "Each config at reduced discretisation (potential sampling 0.008 nm, HAADF 68-100 mrad, static lattice, "
        "no cache), 0.085 nm source blur on: the fast path scanning the whole orthogonal repeat cell "
        "(`scan.subcell: false`) against scanning its sub-cell and tiling it (`true`). Static, so the deviation is "
        "the method's own: the sub-cells hold the same columns, each shifted along the beam as a whole, so their "
        "atoms come in another order from the entrance surface (and slice boundaries fall elsewhere).",
        "",
        "| config | thickness [nm] | sub-cell (rows x cols) | probe positions whole / sub | whole [CPU s] | sub [CPU s] "
        "| speed-up | max deviation / max | rms deviation / mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cases = {"cspbi3_110": 6.23, "pbi2_441": 3.23, "pbi2_1m11": 2.11}
    if quick:
        cases = {"cspbi3_110": 1.78}
    for name, thickness in cases.items():
        base = _reduced(
            load_config(ROOT / "sim_configs" / f"{name}.yaml"),
            potential={"sampling_nm": 0.008},
            microscope={"haadf_mrad": [68, 100]},
            phonons={"num_configs": 0},
            scan={"field_cells": [1, 1]},
        )
        images, seconds, positions = {}, {}, {}
        for sub in (False, True):
            cfg = _reduced(base, scan={"subcell": sub})
            plan = _crystal_plan(cfg, build_structure(cfg, thickness_nm=thickness), "fast")
            positions[sub] = plan.scan_gpts[0] * plan.scan_gpts[1]
            img, _, seconds[sub] = cpu_timed(
                lambda cfg=cfg: simulate(cfg, thickness_nm=thickness, cache=False, progress=False)
            )
            images[sub] = img.data
        whole, part = images[False], images[True]
        if whole.shape != part.shape:  # a different whole number of steps per cell: compare on one grid
            from stem_pipeline.simulate.run import _fourier_resample

            part = _fourier_resample(part, whole.shape)
        rms = float(100 * np.sqrt(np.mean((part - whole) ** 2)) / whole.mean())
        factor = build_structure(base, thickness_nm=0.01).info["subcell"]
        lines.append(
            f"| {name} | {thickness} | {factor[1]} x {factor[0]} | {positions[False]} / {positions[True]} "
            f"| {seconds[False]:.0f} | {seconds[True]:.0f} | {seconds[False] / seconds[True]:.1f}x "
            f"| {dev(part, whole):.2f} % | {rms:.2f} % |"
        )
        print(lines[-1], flush=True)
    return lines


def _chunk_seconds(cfg: SimulationConfig, rows: int) -> float:
    """CPU seconds of one abTEM run of ``cfg``'s fast plan over its first ``rows`` scan rows."""
    return _chunk(cfg, rows)[1]


def _chunk(cfg: SimulationConfig, rows: int, *, device: str = "cpu") -> tuple[float, float, np.ndarray]:
    """Wall and CPU seconds, and HAADF values (x, rows), of ``cfg``'s fast plan over its first ``rows`` scan rows.

    ``device`` "gpu" computes with CuPy (``benchmarks/gpu.py``); its wall time includes the copy back.
    """
    import dataclasses

    from stem_pipeline.simulate.run import _abtem_settings, _crystal_plan, _run_abtem, build_structure

    atoms = build_structure(cfg)
    plan = _crystal_plan(cfg, atoms, "fast")
    nx, ny = plan.scan_gpts
    chunk = dataclasses.replace(
        plan, scan_gpts=(nx, rows), extent_angstrom=(plan.extent_angstrom[0], plan.extent_angstrom[1] * rows / ny)
    )
    supercell = atoms * (plan.tiles[0], plan.tiles[1], 1)
    with _abtem_settings(1, device=device):
        (out, _), wall, cpu = cpu_timed(lambda: _run_abtem(cfg, supercell, plan=chunk, exit_every=None, progress=False))
    return wall, cpu, out["haadf"]


def _dot_cost(cfg: SimulationConfig) -> tuple[str, float]:
    """A lower bound of a dot's PRISM run [s]: plane waves x slices x 2 FFTs of its potential grid x configs."""

    from stem_pipeline.simulate.run import build_structure

    atoms = build_structure(cfg)
    k = _prism_cost(cfg, atoms)
    waves, slices = k["waves"], k["slices"]
    wave = np.ones(k["grid"], dtype=np.complex64)
    _, _, t_pair = cpu_timed(lambda: np.fft.ifft2(np.fft.fft2(wave)))
    n = max(cfg.phonons.num_configs, 1)
    what = (
        f"{len(atoms)} atoms, potential {k['grid'][0]}x{k['grid'][1]} px x {slices} slices, "
        f"PRISM interpolation {k['interpolation']}: {waves} plane waves x {slices} slices x one FFT pair "
        f"({t_pair:.2f} s measured) x {n} configurations"
    )
    return what, waves * slices * t_pair * n


def part_cost(quick: bool) -> list[str]:
    """Every shipped config at its own settings: measured chunk times extrapolated to the whole run."""
    from stem_pipeline.simulate.run import _crystal_plan, build_structure

    lines = [
        "## Cost of every shipped config at its own settings",
        "",
        "Crystals: one frozen-phonon configuration of the fast path (the config's potential, sampling, slices and "
        "thickness) over the first 1 and 2 rows of its scan, CPU time (no cache; the machine was shared, so the "
        "CPU time is the work, as on a quiet core with one worker); the full run is extrapolated as "
        "configurations x (fixed + per-position x positions), fixed and per-position from the two chunks. abTEM "
        "runs the whole scan in larger batches, so this is an estimate; sim_configs/README.md compares it with "
        "the full runs that were made. Dot: a lower bound from the FFT time alone (building the potential excluded).",
        "",
        "| config | probe positions whole cell / sub-cell | configurations | 1 row [CPU s] | 2 rows [CPU s] "
        "| per position [CPU s] | estimate, whole cell (shipped) | estimate, `scan.subcell: true` (opt-in) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = SHIPPED[:2] if quick else SHIPPED
    for name in names:
        cfg = load_config(ROOT / "sim_configs" / f"{name}.yaml")
        if cfg.structure.kind == "dot":
            what, estimate = _dot_cost(cfg)
            lines.append(f"| {name} | {what} | {cfg.phonons.num_configs} | | | | >= {estimate / 3600:.0f} h | |")
            print(lines[-1], flush=True)
            continue
        one = _reduced(cfg, phonons={"num_configs": 1})
        atoms = build_structure(cfg)
        positions = {}
        for sub in (False, True):
            plan = _crystal_plan(_reduced(cfg, scan={"subcell": sub}), atoms, "fast")
            positions[sub] = plan.scan_gpts[0] * plan.scan_gpts[1]
        per_row = _crystal_plan(cfg, atoms, "fast").scan_gpts[0]
        t1, t2 = _chunk_seconds(one, 1), _chunk_seconds(one, 2)
        per_position = max(t2 - t1, 1e-9) / per_row
        fixed = max(t1 - per_position * per_row, 0.0)
        n = max(cfg.phonons.num_configs, 1)
        est = {sub: n * (fixed + per_position * positions[sub]) for sub in (False, True)}
        lines.append(
            f"| {name} | {positions[False]} / {positions[True]} | {n} | {t1:.1f} | {t2:.1f} | {per_position:.3f} "
            f"| {_duration(est[False])} | {_duration(est[True])} |"
        )
        print(lines[-1], flush=True)
    return lines


#: The cheaper discretisations measured by ``part_cheap``: an FFT-fast potential grid (a slightly finer
#: sampling), and with it the convergence study's 0.004 nm / 200 mrad.
#: ``--configs``: the configs ``part_cheap`` measures (its own choice when empty).
CHEAP_CONFIGS: list[str] = []
CHEAP = {
    "fast FFT grid": {"potential": {"fast_fft": True}},
    "0.004 nm / 200 mrad, fast FFT grid": {
        "potential": {"sampling_nm": 0.004, "fast_fft": True},
        "microscope": {"haadf_mrad": [68, 200]},
    },
}


def part_cheap(quick: bool) -> list[str]:
    """Cheaper discretisations against the configs' own on a sub-field (one scan row, one phonon configuration)."""
    from stem_pipeline.simulate.run import _crystal_plan, build_structure

    lines = [
        "## Cheaper discretisations on a sub-field of each config",
        "",
        "The first row of the whole-cell scan at the config's thickness, one frozen-phonon configuration with the "
        "config's seed (the same displacements), raw HAADF at the probe positions (no source blur, which would "
        "lower the deviations), against the plain 0.0029 nm grid at 68-280 mrad (the configs before issue 20). 'fast FFT "
        "grid' rounds the potential points per repeat cell up to an FFT-fast count (`potential.fast_fft`; "
        "e.g. 217 = 7 x 31 -> 220 per CsPbI3 cell, 1623 = 3 x 541 -> 1650 along PbI2 [1 -1 1]), a slightly "
        "finer sampling. CPU seconds; whole run = the row's CPU time per position (its fixed cost included, so "
        "an over-estimate) x the whole cell's positions x 1 / 2 / 4 configurations.",
        "",
        "| config | setting | potential grid | row [CPU s] | cost ratio | max deviation / max "
        "| mean deviation / mean | whole run, 1 / 2 / 4 configurations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = CHEAP_CONFIGS or (("cspbi3_001",) if quick else ("pbi2_1m11", "pbi2_441", "cspbi3_110", "cspbi3_001"))
    for name in names:
        own = _reduced(
            load_config(ROOT / "sim_configs" / f"{name}.yaml"),
            phonons={"num_configs": 1},
            potential={"fast_fft": False},
        )
        atoms = build_structure(own)
        gpts = _crystal_plan(own, atoms, "fast").scan_gpts
        _, ref_t, ref = _chunk(own, 1)
        for label, update in {"plain grid (shipped before)": {}, **CHEAP}.items():
            cfg = _reduced(own, **update)
            t, img = (ref_t, ref) if not update else _chunk(cfg, 1)[1:]
            grid = "x".join(str(g) for g in _crystal_plan(cfg, atoms, "fast").potential_gpts)
            whole = t / img.size * gpts[0] * gpts[1]
            mean_dev = 100 * abs(float(img.mean()) - float(ref.mean())) / float(ref.mean())
            lines.append(
                f"| {name} | {label} | {grid} | {t:.0f} | {ref_t / t:.1f}x | {dev(img, ref):.1f} % | {mean_dev:.1f} % "
                f"| {' / '.join(_duration(n * whole) for n in (1, 2, 4))} |"
            )
            print(lines[-1], flush=True)
    return lines


def part_workers(quick: bool) -> list[str]:
    """1 vs 2 local Dask threads, and a 2-process local dask.distributed cluster, on a small config."""
    from distributed import Client

    from stem_pipeline.batch import local_cluster

    cfg = bench_config(sampling_nm=0.008, per_cell=8, field=1, num_configs=2 if quick else 4)
    thickness = 1.89 if quick else 6.29
    runs, images = {}, {}
    load = [os.getloadavg()[0]]
    for label, workers in (("1 thread", 1), ("2 threads", 2)):
        one = cfg.model_copy(update={"num_workers": workers})
        images[label], runs[label], _ = cpu_timed(
            lambda one=one: simulate(one, thickness_nm=thickness, cache=False, progress=False).data
        )
    with local_cluster(2) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("abtem"))  # the workers' import is start-up, not simulation
        label = "2 processes (LocalCluster, `--scheduler`)"
        images[label], runs[label], _ = cpu_timed(
            lambda: simulate(cfg, thickness_nm=thickness, cache=False, progress=False, scheduler=client).data
        )
    load.append(os.getloadavg()[0])
    base = runs["1 thread"]
    lines = [
        "## Parallel frozen-phonon configurations and scan chunks (`num_workers`, `--workers`, `--scheduler`)",
        "",
        f"CsPbI3 [001], one cell scanned 8x8 in a 3x3-cell potential, 0.008 nm potential sampling, {thickness} nm, "
        f"{cfg.phonons.num_configs} frozen-phonon configurations, no cache; wall time (the machine's load average "
        f"was {load[0]:.1f} before and {load[1]:.1f} after, on 2 cores, so a speed-up is bounded by what the other "
        "jobs leave).",
        "",
        "| run | wall [s] | speed-up | max deviation from 1 thread |",
        "|---|---|---|---|",
    ]
    for label, seconds in runs.items():
        lines.append(
            f"| {label} | {seconds:.1f} | {base / seconds:.2f}x | {dev(images[label], images['1 thread']):.4f} % |"
        )
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def write_sections(sections: dict[str, list[str]], quick: bool) -> str:
    header = [
        "# Simulation benchmark: CsPbI3 [001], fast (one cell, tiled) vs exact (full field), convergence, done-when",
        "",
        f"Timings on a shared 2-core machine ({platform.machine()}) while other engineers' jobs ran; abTEM on CPU,"
        " 1 worker, 1 FFTW thread. Absolute times are noisy; ratios measured in the same run are less so."
        " Sections can be re-run separately (`--parts`); each notes whether it came from `--quick`.",
        "",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if "<!-- section:" not in text:
        text = "\n".join(header)
    for name in PARTS:
        if name not in sections:
            continue
        body = "\n".join(sections[name] + ([""] if not quick else ["", "_(--quick run)_", ""]))
        block = f"<!-- section:{name} -->\n{body}\n<!-- /section:{name} -->"
        pattern = re.compile(rf"<!-- section:{name} -->.*?<!-- /section:{name} -->", re.S)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text.rstrip("\n") + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, fast variants of every part")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--done-reuse",
        type=Path,
        metavar="DIR",
        help="done part: reuse a CLI run (DIR/cell.tif, DIR/cache/, DIR/cli_seconds.txt) instead of running it",
    )
    parser.add_argument("--configs", nargs="+", default=[], help="cheap part: these sim_configs names only")
    args = parser.parse_args()
    CHEAP_CONFIGS.extend(args.configs)
    funcs = {
        "speed": part_speed,
        "series": part_series,
        "prism": part_prism,
        "convergence": part_convergence,
        "done": lambda quick: part_done(quick, args.done_reuse),
        "subcell": part_subcell,
        "cost": part_cost,
        "cheap": part_cheap,
        "workers": part_workers,
        "dot": part_dot,
    }
    sections = {}
    for name in args.parts:
        t0 = time.perf_counter()
        sections[name] = funcs[name](args.quick) + ["", f"_(part took {time.perf_counter() - t0:.0f} s)_"]
        print("\n".join(sections[name]), flush=True)
        write_sections(sections, args.quick)
    sys.stdout.write(RESULTS.read_text())


# ------------------------------------------------------------------ dot: cell mosaic and cheaper PRISM on a small dot

#: The small dot of ``part_dot``: ``cs50fa50_qd`` with a 2-unit (4-cell, 2.53 nm) edge, coarse and stated settings.
DOT_SMALL = {
    "dot": {"edge_nm": 2.6},
    "potential": {"sampling_nm": 0.008},
    "scan": {"sampling_nm": 0.05},
    "phonons": {"num_configs": 1},
}
#: PRISM runs on the small dot: (interpolation, slice thickness [nm], potential sampling [nm]); window = field /
#: interpolation: 3 is the config's 1.2 nm window (1.18 nm here, 1.24 nm on the 14 nm dot), 5 a 0.71 nm window
#: (about one 0.63 nm cell), 7 a 0.5 nm window.
DOT_PRISM = ((3, 0.16, 0.008), (5, 0.16, 0.008), (5, 0.32, 0.008), (7, 0.32, 0.01))
#: Full-setting discretisation of the config against the small dot's, compared on the pure cells.
DOT_FULL = {"potential": {"sampling_nm": 0.0029}, "scan": {"sampling_nm": 0.025}}


class _SmallDot:
    """The small dot's geometry: its columns [nm] and the FA units above each point."""

    def __init__(self, cfg: SimulationConfig):
        from stem_pipeline.simulate.run import build_structure

        atoms = build_structure(cfg)
        self.atoms = atoms
        self.is_fa = atoms.info["unit_is_fa"]  # (x, y, z), the beam along z from z = 0
        self.a = atoms.info["a_angstrom"] / 10
        self.unit = cfg.dot.unit_cells * self.a
        self.margin = cfg.dot.margin_nm
        n = self.is_fa.shape[0] * cfg.dot.unit_cells
        i, j = (g.ravel() for g in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))  # i: rows (y), j: x
        sites = {"Pb-I": [(0, 0)], "I": [(0, 0.5), (0.5, 0)], "A": [(0.5, 0.5)]}
        self.columns = {
            kind: np.concatenate([np.stack([(i + dy) * self.a, (j + dx) * self.a], axis=1) for dy, dx in d])
            for kind, d in sites.items()
        }  # crystal frame (row, col) [nm]; the image frame adds the margin

    def stack(self, rel_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(FA units along the beam, FA at the entrance) at crystal-frame points; -1 outside the cube.

        A cell's columns lie at 0 and a / 2 from its origin, so a unit's footprint starts a / 4 before it.
        """
        u = np.floor((rel_nm + self.a / 4) / self.unit).astype(int)
        inside = np.all((u >= 0) & (u < self.is_fa.shape[0]), axis=1)
        count, entrance = np.full(len(rel_nm), -1), np.full(len(rel_nm), -1)
        column = self.is_fa[u[inside, 1], u[inside, 0], :]  # (x, y) = (col, row)
        count[inside], entrance[inside] = column.sum(axis=1), column[:, 0]
        return count, entrance


def _mosaics(dot: _SmallDot, cells: dict, shape: tuple[int, int], pixel_nm: float) -> dict[str, np.ndarray]:
    """The cell mosaic of the dot (one phase per pixel, as ``mosaic_dot``) and a thickness-weighted mix."""
    from stem_pipeline.simulate.cells import sample_cell

    rr, cc = np.indices(shape)
    rel = np.stack([rr.ravel(), cc.ravel()], axis=1) * pixel_nm - dot.margin
    count, entrance = dot.stack(rel)
    n_z = dot.is_fa.shape[2]
    cs, fa = (sample_cell(cells[k], rel) for k in ("cs", "fa"))
    inside = count >= 0
    major = np.where(2 * count == n_z, entrance, 2 * count > n_z)  # ties: the unit at the entrance surface
    out = {
        "cell mosaic (one phase per pixel: the majority along the beam, ties the entrance unit)": np.where(
            major, fa, cs
        ),
        "thickness-weighted mix of the two cells": (count * fa + (n_z - count) * cs) / n_z,
    }
    return {k: np.where(inside, v, 0.0).reshape(shape) for k, v in out.items()}


def _column_values(image: np.ndarray, rc_nm: np.ndarray, pixel_nm: float) -> np.ndarray:
    """Cubic-spline values of ``image`` at (row, col) positions [nm] (pixel k at k * ``pixel_nm``)."""
    from scipy import ndimage

    return ndimage.map_coordinates(image.astype(np.float64), (rc_nm / pixel_nm).T, order=3, mode="nearest")


def _pipeline_labels(image: np.ndarray, pixel_nm: float, truth_rc_nm: np.ndarray) -> tuple[np.ndarray, str]:
    """``analyze`` on the image (cubic zoom to 0.025 nm pixels, 1 nm of vacuum, Poisson at 1000 counts, seed 1).

    Returns the label at each truth column (-1: no column found within 0.1 nm) and the fractions found.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from stem_pipeline.pipeline import analyze

    px, pad = 0.025, 40
    n = int(image.shape[0] * pixel_nm / px)
    grid = np.meshgrid(*[np.arange(n) * px / pixel_nm] * 2, indexing="ij")  # pixel k at k * px [nm]
    big = np.pad(
        np.clip(ndimage.map_coordinates(image.astype(np.float64), grid, order=3, mode="nearest"), 0, None), pad
    )
    noisy = np.random.default_rng(1).poisson(big / big.max() * 1000).astype(np.float32)
    result = analyze(noisy, pixel_size_nm=px)
    labels = np.full(len(truth_rc_nm), -1)
    if result.columns is None or result.labels is None:
        return labels, f"{result.status}: {result.message}"
    found = (result.columns.rc - pad) * px  # [nm] in the simulated image's frame
    dist, idx = cKDTree(found).query(truth_rc_nm)
    labels[dist < 0.1] = result.labels.label[idx[dist < 0.1]]
    f = result.fractions
    return labels, "no fractions" if f is None else f"uniform {f.uniform:.2f}"


def _errors(image: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> str:
    """max |image - ref| / max ref and rms / mean ref [%] over ``mask``."""
    d = (image - ref)[mask]
    return f"{100 * np.abs(d).max() / ref[mask].max():.1f} % | {100 * np.sqrt(np.mean(d**2)) / ref[mask].mean():.1f} %"


def _prism_cost(cfg: SimulationConfig, atoms) -> dict:
    """The work terms of a dot's PRISM run: plane waves x slices x grid FFT, and positions x waves x window."""
    import abtem

    from stem_pipeline.simulate.run import _dot_plan

    plan = _dot_plan(cfg, atoms, "fast")
    waves = len(
        abtem.SMatrix(
            energy=cfg.microscope.energy_kev * 1e3,
            semiangle_cutoff=cfg.microscope.convergence_mrad,
            interpolation=plan.interpolation,
            gpts=plan.potential_gpts,
            extent=tuple(np.diag(atoms.cell)[:2]),
        ).wave_vectors
    )
    slices = math.ceil(atoms.cell[2, 2] / plan.slice_thickness_angstrom)
    g = plan.potential_gpts[0] * plan.potential_gpts[1]
    window = g / plan.interpolation**2
    positions = plan.scan_gpts[0] * plan.scan_gpts[1]
    return {
        "interpolation": plan.interpolation,
        "waves": waves,
        "build": waves * slices * g * math.log2(g),
        "reduce": positions * waves * window,
        "memory_gb": waves * g * 8 / 1e9,
        "grid": plan.potential_gpts,
        "positions": positions,
        "slices": slices,
    }


def part_dot(quick: bool) -> list[str]:
    """The cell mosaic and cheaper PRISM settings against the exact path on a small cs50fa50 dot."""
    from stem_pipeline.simulate.cells import simulate_cell

    base = load_config(ROOT / "sim_configs" / "cs50fa50_qd.yaml")
    cfg = _reduced(base, **DOT_SMALL)
    if quick:
        cfg = _reduced(cfg, scan={"sampling_nm": 0.1})
    dot = _SmallDot(cfg)
    field_nm = dot.atoms.cell[0, 0] / 10
    runs, cpu = {}, {}
    exact, _, cpu["exact"] = cpu_timed(lambda: simulate(cfg, method="exact", cache=False, progress=False))
    pixel = exact.pixel_size_nm
    runs["exact"] = exact.data
    costs = {}
    for q, dz, dx in DOT_PRISM:
        one = _reduced(
            cfg,
            fast={"prism_window_nm": 0.999 * field_nm / q},
            potential={"slice_thickness_nm": dz, "sampling_nm": dx},
        )
        label = f"PRISM, interpolation {q}, slices {dz} nm, potential {dx} nm"
        costs[label] = _prism_cost(one, dot.atoms)
        img, _, cpu[label] = cpu_timed(lambda one=one: simulate(one, method="fast", cache=False, progress=False))
        runs[label] = img.data
    # the two pure phases at the dot's (Vegard) lattice constant and thickness, the same settings
    cell_cfg = {
        key: _reduced(
            load_config(ROOT / "sim_configs" / f"{name}.yaml"),
            structure={"a_nm": dot.a, "fa_orientation": "random", "seed": 0},
            potential={"sampling_nm": cfg.potential.sampling_nm, "fast_fft": False},
            scan={"sampling_nm": cfg.scan.sampling_nm, "field_cells": [1, 1]},
            phonons={"num_configs": 1},
            microscope={"haadf_mrad": list(cfg.microscope.haadf_mrad)},
            thickness_nm=dot.atoms.cell[2, 2] / 10,
        )
        for key, name in (("cs", "cspbi3_001"), ("fa", "fapbi3_001"))
    }
    cells, cell_cpu = {}, 0.0
    for key, c in cell_cfg.items():
        cells[key], _, t = cpu_timed(lambda c=c: simulate_cell(c, cache=False))
        cell_cpu += t
    ref = runs["exact"]
    rr, cc = np.indices(ref.shape)
    rel = np.stack([rr.ravel(), cc.ravel()], axis=1) * pixel - dot.margin
    inside = (dot.stack(rel)[0] >= 0).reshape(ref.shape)
    mosaics = _mosaics(dot, cells, ref.shape, pixel)
    images = {**{k: v for k, v in runs.items() if k != "exact"}, **mosaics}
    all_rc = np.concatenate(list(dot.columns.values()))
    kinds = np.concatenate([[k] * len(v) for k, v in dot.columns.items()])
    n_fa = dot.stack(all_rc)[0]
    truth = {name: _column_values(img, all_rc + dot.margin, pixel) for name, img in {"exact": ref, **images}.items()}
    labels = {name: _pipeline_labels(img, pixel, all_rc + dot.margin) for name, img in {"exact": ref, **images}.items()}

    n_units = dot.is_fa.shape[0]
    lines = [
        "## The cell mosaic and cheaper PRISM settings on a small cs50fa50 dot (`--parts dot`, issue 20 goal 3)",
        "",
        f"The dot: `cs50fa50_qd.yaml` with `dot.edge_nm` {cfg.dot.edge_nm} -> {n_units}x{n_units}x{n_units} units of "
        f"2x2x2 cells ({dot.is_fa.sum()} FA, random, seed 0), a = {dot.a:.4f} nm (Vegard), a "
        f"{n_units * dot.unit:.2f} nm cube in a {field_nm:.2f} nm field ({cfg.dot.margin_nm} nm vacuum), "
        f"{len(dot.atoms)} atoms. Coarse, stated settings for every run here (the full ones are unaffordable even "
        f"for this dot, below): potential {cfg.potential.sampling_nm} nm (HAADF "
        f"{exact.metadata['detector_mrad'][0]:.0f}-{exact.metadata['detector_mrad'][1]:.0f} mrad: the ring is "
        f"clipped at the largest simulated angle), slices {cfg.potential.slice_thickness_nm} nm, scan step "
        f"{cfg.scan.sampling_nm} nm ({ref.shape[0]}x{ref.shape[1]} px of {pixel:.4f} nm), one frozen-phonon "
        "configuration (seed 0: the same displacements in the exact and PRISM runs of the dot; the cells have "
        "their own), 0.085 nm source blur, no cache. The reference is the **exact path** (`method: exact`: "
        "abTEM multislice with a probe at every position over the whole dot).",
        "",
        "What each route is:",
        "",
        "* **PRISM, interpolation q** (`method: fast`, the config's engine): abTEM `SMatrix` with the probe "
        "window = field / q (`fast.prism_window_nm` sets q); the window crops the probe's tails.",
        "* **cell mosaic** (`stem_pipeline.synthetic_mosaic`'s method): one repeat cell of CsPbI3 [001] and one of "
        "FAPbI3 [001] (random FA orientation), each at the dot's lattice constant and thickness, the same "
        "settings, simulated by the fast path (`simulate_cell`); every pixel inside the cube shows the cell "
        "image (periodic cubic spline) of one phase: the majority of the units along the beam there, a tie "
        "(one Cs and one FA unit) taking the unit at the entrance surface; vacuum outside. It ignores the "
        "mixing of units along the beam, which this dot has at every column.",
        "* **thickness-weighted mix** (not shipped, measured as the obvious cheap improvement): each pixel "
        "is (FA units x FA cell + Cs units x Cs cell) / units along the beam.",
        "",
        f"CPU time (one process, 1 FFTW thread, shared machine): exact {cpu['exact']:.0f} s, "
        + ", ".join(f"{k} {cpu[k]:.0f} s" for k in costs)
        + f", both cells {cell_cpu:.0f} s.",
        "",
        "**Error against the exact path**, image inside the cube (max |d| / max, rms / mean), and per column "
        "(the blurred image at each projected column: relative error, median / max over the columns):",
        "",
        "| route | CPU [s] | image max | image rms | Pb-I columns | I columns | A columns "
        "| labels agreeing with the exact image's | fractions found |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    found_ref = labels["exact"][0]
    for name in ("exact", *images):
        img = ref if name == "exact" else images[name]
        rel_err = np.abs(truth[name] - truth["exact"]) / truth["exact"]
        per_kind = " | ".join(
            f"{100 * np.median(rel_err[kinds == k]):.0f} / {100 * rel_err[kinds == k].max():.0f} %"
            for k in ("Pb-I", "I", "A")
        )
        lab, fractions = labels[name]
        both = (lab >= 0) & (found_ref >= 0)
        agree = (
            f"{int((lab[both] == found_ref[both]).sum())} / {int(both.sum())}"
            if name != "exact"
            else (f"({int((found_ref >= 0).sum())} of {len(found_ref)} columns found)")
        )
        err = "- | -" if name == "exact" else _errors(img, ref, inside)
        t = f"{cpu[name]:.0f}" if name in cpu else f"{cell_cpu:.0f} (cells)"
        lines.append(f"| {name} | {t} | {err} | {per_kind} | {agree} | {fractions} |")
        print(lines[-1], flush=True)
    # the mosaic's systematic error by the make-up of the column along the beam
    lines += [
        "",
        "Mean column value by the FA units along the beam (0, 1, 2 of 2), exact vs cell mosaic vs mix (HAADF "
        "fraction of the beam x 1000); the per-column scatter of the exact image within a group comes from the "
        "single phonon configuration:",
        "",
        "| column | FA units along the beam | columns | exact | cell mosaic | mix |",
        "|---|---|---|---|---|---|",
    ]
    names = list(mosaics)
    for k in ("Pb-I", "I", "A"):
        for m in range(dot.is_fa.shape[2] + 1):
            sel = (kinds == k) & (n_fa == m)
            if sel.any():
                vals = " | ".join(f"{1000 * truth[n][sel].mean():.2f}" for n in ("exact", *names))
                lines.append(f"| {k} | {m} | {int(sel.sum())} | {vals} |")
    lines += _dot_cost_lines(base, cfg, costs, cpu)
    lines += _dot_discretisation_lines(cell_cfg, quick)
    return lines


def _dot_cost_lines(base: SimulationConfig, small: SimulationConfig, costs: dict, cpu: dict) -> list[str]:
    """The 14 nm dot's PRISM cost from a two-term model fitted on the small dot's PRISM runs."""
    from scipy.optimize import nnls

    from stem_pipeline.simulate.run import build_structure

    qs = list(costs)
    design = np.array([[costs[q]["build"], costs[q]["reduce"]] for q in qs])
    coef = nnls(design, np.array([cpu[q] for q in qs]))[0]
    atoms = build_structure(base)
    field = atoms.cell[0, 0] / 10
    settings = {
        "as shipped (0.0029 nm, 0.025 nm scan, 1.2 nm window, 4 configurations)": (base, 4),
        "0.008 nm, 0.05 nm scan, 1.2 nm window, 1 configuration": (_reduced(base, **DOT_SMALL), 1),
        "0.008 nm, 0.05 nm scan, 0.7 nm window, 1 configuration": (
            _reduced(base, **DOT_SMALL, fast={"prism_window_nm": 0.7}),
            1,
        ),
        "0.008 nm, 0.05 nm scan, 0.7 nm window, 0.32 nm slices, 1 configuration": (
            _reduced(
                base,
                **{**DOT_SMALL, "potential": {"sampling_nm": 0.008, "slice_thickness_nm": 0.32}},
                fast={"prism_window_nm": 0.7},
            ),
            1,
        ),
        "0.01 nm, 0.05 nm scan, 0.5 nm window, 0.32 nm slices, 1 configuration": (
            _reduced(
                base,
                **{**DOT_SMALL, "potential": {"sampling_nm": 0.01, "slice_thickness_nm": 0.32}},
                fast={"prism_window_nm": 0.5},
            ),
            1,
        ),
    }
    lines = [
        "",
        "**Cost of the whole 14 nm dot** (`cs50fa50_qd.yaml`: "
        f"{len(atoms)} atoms, {field:.2f} nm field). The PRISM runs above fitted to CPU = "
        f"{coef[0]:.3g} s x (plane waves x slices x G log2 G, G the potential grid points: building the S-matrix) + "
        f"{coef[1]:.3g} s x (positions x plane waves x window points: the reduction), non-negative least squares "
        "("
        + ", ".join(f"{q}: {cpu[q]:.0f} s measured, {design[i] @ coef:.0f} s fitted" for i, q in enumerate(qs))
        + "); the 14 nm dot's terms from its own plan, per configuration, times the configurations. Building "
        "the potential and abTEM's overheads are in the fit only as far as they scale like the two terms, so this "
        "is an estimate, not a measurement; the S-matrix (plane waves x grid x 8 bytes, complex64) must also fit "
        "in memory (this machine: 23 GB, shared).",
        "",
        "| 14 nm dot | interpolation | plane waves | potential grid x slices | positions | S-matrix | CPU estimate "
        "| within 30 min? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, (c, n) in settings.items():
        k = _prism_cost(c, atoms)
        est = n * (coef[0] * k["build"] + coef[1] * k["reduce"])
        ok = "yes" if est <= 1800 and k["memory_gb"] < 8 else "no"
        lines.append(
            f"| {label} | {k['interpolation']} | {k['waves']} | {k['grid'][0]}^2 x {k['slices']} | {k['positions']} "
            f"| {k['memory_gb']:.1f} GB | {_duration(est)} | {ok} |"
        )
        print(lines[-1], flush=True)
    return lines


def _dot_discretisation_lines(cell_cfg: dict, quick: bool) -> list[str]:
    """The small dot's discretisation against the config's full one, on the CsPbI3 cell (same displacements)."""
    from stem_pipeline.simulate.cells import sample_cell, simulate_cell

    if quick:
        return ["", "(--quick: the full-setting cell is not run.)"]
    coarse_cfg = cell_cfg["cs"]
    full_cfg = _reduced(
        coarse_cfg,
        potential={**DOT_FULL["potential"], "fast_fft": True},
        scan=DOT_FULL["scan"],
        microscope={"haadf_mrad": [68, 280]},
    )
    (coarse, _, t_coarse), (full, _, t_full) = (
        cpu_timed(lambda c=c: simulate_cell(c, cache=False)) for c in (coarse_cfg, full_cfg)
    )
    rr, cc = np.indices(full.image.shape)
    pos = np.stack([rr.ravel(), cc.ravel()], axis=1) * np.asarray(full.pixel_size_nm)
    c = sample_cell(coarse, pos).reshape(full.image.shape)
    f = full.image.astype(np.float64)
    scaled = c * f.mean() / c.mean()
    site = {name: np.array([xy]) for name, xy in (("Pb-I", (0, 0)), ("I", (0, 0.5)), ("A", (0.5, 0.5)))}
    ext = full.extent_nm
    values = {
        name: {k: float(sample_cell(img, v * ext)[0]) for k, v in site.items()}
        for name, img in (("c", coarse), ("f", full))
    }
    ratio = {n: (v["Pb-I"] / v["A"], v["Pb-I"] / v["I"]) for n, v in values.items()}
    return [
        "",
        "**The coarse settings against the config's full ones**, on the CsPbI3 [001] cell at the dot's lattice "
        f"constant and thickness ({coarse.thickness_nm:.2f} nm), one configuration with the same displacements: "
        f"full = 0.0029 nm (FFT-fast grid), HAADF 68-280 mrad, 0.025 nm scan ({t_full:.0f} CPU s); coarse = "
        f"0.008 nm, HAADF 68-103 mrad, 0.05 nm scan ({t_coarse:.0f} CPU s), sampled onto the full image's grid. "
        f"Mean signal coarse / full {c.mean() / f.mean():.3f} (the clipped 103-280 mrad share); after scaling to "
        f"the same mean, max deviation {100 * np.abs(scaled - f).max() / f.max():.1f} % of the maximum, rms "
        f"{100 * np.sqrt(np.mean((scaled - f) ** 2)) / f.mean():.1f} % of the mean; column ratios Pb-I/Cs "
        f"{ratio['c'][0]:.2f} vs {ratio['f'][0]:.2f}, Pb-I/I {ratio['c'][1]:.2f} vs {ratio['f'][1]:.2f} "
        "(coarse vs full). FAPbI3 was not run at the full setting (time).",
    ]


if __name__ == "__main__":
    main()
