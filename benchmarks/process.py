"""Benchmark: the whole ``stem-pipeline analyze`` process, per stage, against atomap; and its scaling.

Usage: ``python benchmarks/process.py [--quick] [--baseline SRC] [--repeat N] [--no-scaling]``

1. **One 1024x1024 dot** (the image of ``benchmarks/columns.py``: ``make_dot``, 14 nm at
   0.02 nm/px, 400 counts, seed 2) saved as an ImageJ TIFF, analysed by a fresh
   ``stem-pipeline -q analyze dot.tif --out OUT`` process (``cli.run``, the console script).
   Its CPU time (user + system, all threads, interpreter start included, from ``wait4``), wall
   time and peak RSS; inside it, the CPU time of each stage (``time.process_time`` around the
   library functions, wrapped as the command imports their modules; each stage's own time
   without the stages it calls; a stage's lazy imports count in it). ``--baseline SRC`` runs the same process from another source tree
   (e.g. an exported older commit) in the same run, alternating, for a before/after table;
   the best of ``--repeat`` runs of each. Each source tree is byte-compiled first, as ``pip install``
   does: where ``PYTHONDONTWRITEBYTECODE`` is set (as on the project's machine) every process would
   otherwise compile the package's modules again, which an installed package never does.
   Against it, in the same run: atomap's 2-D Gaussian refinement (``benchmarks/columns.py``'s
   harness) of the columns nearest the centre, CPU time extrapolated to the process's
   column count.
2. **Scaling** (``--no-scaling`` skips it): the same process for 512^2 .. 4096^2 images of
   1024^2 dot tiles (``benchmarks/memory.py``'s inputs) and for fields of 1, 4 and 12 dots
   (``make_field``); CPU, wall, peak RSS, per megapixel and per 1,000 columns.

3. **Dots side by side** (``--dots-only``): only the fields of 1, 4 and 12 dots, each run from this
   tree and from ``--baseline`` alternately (best of ``--repeat``), for a before/after table of a change
   of the field path (issue 20 goal 4: a lone small dot analysed on its crop); written to
   ``benchmarks/results/process_dots.md``, leaving ``process.md`` as it is.

Writes ``benchmarks/results/process.md`` (``--quick``: prints only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "process.md"
DOTS_RESULTS = HERE / "results" / "process_dots.md"

#: Stages timed inside the process: label -> (module, function). Nested calls count once, in the
#: innermost stage; a function missing from a source tree is not timed there.
STAGES = {
    "load (read + validate)": ("stem_pipeline.io", "load"),
    "denoise": ("stem_pipeline.denoise", "denoise"),
    "lattice": ("stem_pipeline.lattice", "find_lattices"),
    "crystal mask": ("stem_pipeline.lattice", "crystal_masks"),
    "find columns": ("stem_pipeline.columns", "find_columns"),
    "refine columns": ("stem_pipeline.columns", "refine_columns"),
    "intensities": ("stem_pipeline.columns", "measure_intensities"),
    # Called per lattice region by classify_lattice_regions, which holds its own reference to it.
    "classify": ("stem_pipeline.classify.lattices", "classify_columns"),
    "phase library (assign phases)": ("stem_pipeline.phases", "assign_phases"),
    # The crystal's edge at the diffuse intensity step and the pixel noise (issue 14), called by analyze.
    "crystal outline + pixel noise": ("stem_pipeline.pipeline", "_crystal_outline"),
    "analysis, rest (regions, fractions)": ("stem_pipeline.pipeline", "analyze"),
    "dot segmentation": ("stem_pipeline.dots", "segment_field"),
    "field, rest (crops, dots.csv records)": ("stem_pipeline.field", "analyze_field"),
    "overlay.png": ("stem_pipeline.report.overlay", "save_overlay"),
    "thumbnail.png": ("stem_pipeline.report.batch", "save_thumbnail"),
    "columns.csv, dots.csv, summary.json": ("stem_pipeline.outputs", "write_result"),
    "report.{csv,json,html} + histograms": ("stem_pipeline.report.batch", "write_reports"),
}

# The child: the console script (cli.run) as it runs, with the stages' functions wrapped as their modules
# are imported, where the command imports them (an import hook), so that the process loads them as it would.
_CHILD = r"""
import atexit, importlib.machinery, json, sys, time
stages = json.loads(sys.argv[1])
own = {label: None for label in stages}
stack, first = [], []
def wrap(label, func):
    def timed(*args, **kwargs):
        stack.append(0.0)
        t0 = time.process_time()
        if not first:
            first.append(t0)
        try:
            return func(*args, **kwargs)
        finally:
            spent = time.process_time() - t0
            inner = stack.pop()
            own[label] += spent - inner
            if stack:
                stack[-1] += spent
    return timed
targets = {}
for label, (module, name) in stages.items():
    targets.setdefault(module, []).append((label, name))
class WrapOnImport:
    @staticmethod
    def find_spec(fullname, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path) if fullname in targets else None
        if spec is None:
            return None
        execute = spec.loader.exec_module
        def exec_module(module):
            execute(module)
            for label, name in targets[fullname]:
                if hasattr(module, name):  # a function missing from a source tree is not timed there
                    setattr(module, name, wrap(label, getattr(module, name)))
                    own[label] = 0.0
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, WrapOnImport)
sys.argv = ["stem-pipeline", *sys.argv[2:]]
def report():
    # Peak RSS of this process since exec (ru_maxrss would count the parent's RSS at fork).
    hwm = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    before = first[0] if first else time.process_time()
    print(json.dumps({"stages": own, "before_cpu_s": before, "peak_rss_mb": hwm}), flush=True)
# At the exit, however the console script ends the process (sys.exit, or atexit handlers then os._exit).
atexit.register(report)
from stem_pipeline import cli
cli.run()
"""


def run_process(args: list[str], *, src: Path = ROOT) -> dict:
    """One fresh ``stem-pipeline`` process with ``args`` from source tree ``src``; its CPU, wall and peak RSS
    (the child's VmHWM)."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-P", "-c", _CHILD, json.dumps(STAGES), *args],  # -P: src's package, not the cwd's
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"analyze failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(cpu_s=usage.ru_utime + usage.ru_stime, wall_s=wall)
    return result


def compile_tree(src: Path) -> None:
    """Byte-compile ``src``'s ``stem_pipeline`` package (``__pycache__``, ignored by git), as an install does."""
    import compileall

    compileall.compile_dir(str(src / "stem_pipeline"), quiet=1)


def _trees(baseline: Path | None) -> dict[str, Path]:
    """This source tree (``after``) and the baseline's (``before``), each byte-compiled."""
    trees = {"after": ROOT} | ({"before": baseline} if baseline else {})
    for src in trees.values():
        compile_tree(src)
    return trees


def best_runs(path: Path, tmp: Path, trees: dict[str, Path], repeat: int) -> dict[str, dict]:
    """The lowest-CPU of ``repeat`` analyze processes of ``path`` per tree, the trees alternating; outputs in
    ``tmp/out_<tree>``."""
    best: dict[str, dict] = {}
    for _ in range(repeat):
        for name, src in trees.items():
            run = run_process(analyze_args(path, tmp / f"out_{name}"), src=src)
            if name not in best or run["cpu_s"] < best[name]["cpu_s"]:
                best[name] = run
    return best


def analyze_args(path: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "analyze", str(path), "--out", str(out), "--overwrite", *extra]


def _summary(out: Path, path: Path) -> dict:
    return json.loads((out / path.stem / "summary.json").read_text())


def process_benchmark(tmp: Path, *, repeat: int, baseline: Path | None, n_atomap: int) -> dict:
    """Best-of-``repeat`` process runs (alternating with the baseline's) and atomap on the same image."""
    sys.path.insert(0, str(HERE))
    from columns import _atomap_refine, _central_subset

    from stem_pipeline import io
    from stem_pipeline.columns import find_columns
    from stem_pipeline.lattice import crystal_mask, find_lattice
    from stem_pipeline.synthetic import make_dot

    dot = make_dot((1024, 1024), pixel_size_nm=0.02, dot_size_nm=14.0, dose=400, rng=2)
    path = io.save(dot.micrograph(), tmp / "dot1024.tif")
    trees = _trees(baseline)
    best = best_runs(path, tmp, trees, repeat)
    for name in trees:
        best[name]["n_columns"] = _summary(tmp / f"out_{name}", path)["n_columns"]
    # atomap's Gaussian refinement of the columns nearest the centre, from our starting positions.
    lat = find_lattice(dot.image)
    start = find_columns(dot.image, lattice=lat, mask=crystal_mask(dot.image, lat))
    subset = _central_subset(start.rc, dot.image.shape, n_atomap)
    atomap_cpu, _ = _atomap_refine(dot.image, start.rc[subset], "gaussian", clock=time.process_time)
    return {
        "runs": best,
        "atomap_cpu_per_column_s": atomap_cpu / len(subset),
        "atomap_columns": len(subset),
        "identical": _same_results(tmp, path, list(trees)),
    }


def _same_results(tmp: Path, path: Path, names: list[str]) -> dict | None:
    """Whether the before and after runs wrote the same columns.csv and fractions (None without a baseline).

    ``identical``: the columns both versions write, cell for cell as written (the bytes of those columns),
    and the fractions; ``added`` / ``removed``: columns only the after / before version writes (a newer
    stage's output, e.g. ``phase`` and ``site``, is not a change of the shared results).
    """
    import csv

    if "before" not in names:
        return None
    a, b = (tmp / f"out_{n}" / path.stem for n in ("before", "after"))
    tables = []
    for folder in (a, b):
        with open(folder / "columns.csv", newline="") as f:
            rows = list(csv.reader(f))
        tables.append({name: [row[k] for row in rows[1:]] for k, name in enumerate(rows[0])})
    shared = [name for name in tables[0] if name in tables[1]]
    same_csv = all(tables[0][name] == tables[1][name] for name in shared)
    same_fractions = _summary(a.parent, path)["fractions"] == _summary(b.parent, path)["fractions"]
    return {
        "identical": same_csv and same_fractions,
        "added": [name for name in tables[1] if name not in tables[0]],
        "removed": [name for name in tables[0] if name not in tables[1]],
    }


def scaling_benchmark(tmp: Path, sizes: list[int], dot_counts: list[int]) -> dict:
    """The process on images of growing size and on fields of growing dot count."""
    sys.path.insert(0, str(HERE))
    from memory import make_inputs

    rows: dict[str, list[dict]] = {"pixels": [], "dots": []}
    for size in sizes:
        path = make_inputs(tmp, size)["field"]
        run = run_process(analyze_args(path, tmp / "out_px", "--pixel-size-nm", "0.02"))
        run.update(
            label=f"{size}²", megapixels=size * size / 1e6, n_columns=_summary(tmp / "out_px", path)["n_columns"]
        )
        rows["pixels"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "stages"}), file=sys.stderr, flush=True)
    for n in dot_counts:
        path = field_input(tmp, n)
        run = run_process(analyze_args(path, tmp / "out_dots"))
        summary = _summary(tmp / "out_dots", path)
        run.update(label=f"{n} dot(s)", megapixels=2048 * 2048 / 1e6, n_columns=summary["n_columns"])
        run["n_dots_found"] = summary.get("n_dots")
        rows["dots"].append(run)
        print(json.dumps({k: v for k, v in run.items() if k != "stages"}), file=sys.stderr, flush=True)
    return rows


def field_input(tmp: Path, n: int) -> Path:
    """The 2048^2 field of ``n`` dots of 7-9 nm at 0.035 nm/px (``make_field``, seed 100 + n), as a TIFF."""
    from stem_pipeline import io
    from stem_pipeline.synthetic_field import make_field

    fld = make_field((2048, 2048), n_dots=n, dot_sizes_nm=(7.0, 9.0), dose=200, pixel_size_nm=0.035, rng=100 + n)
    return io.save(fld.micrograph(), tmp / f"field{n}.tif")


def dots_side_by_side(tmp: Path, dot_counts: list[int], *, repeat: int, baseline: Path | None) -> list[dict]:
    """The fields of ``dot_counts`` dots, each run from this tree and ``baseline`` alternately (best of ``repeat``)."""
    trees = _trees(baseline)
    rows = []
    for n in dot_counts:
        path = field_input(tmp, n)
        best = best_runs(path, tmp, trees, repeat)
        for name, run in best.items():
            summary = _summary(tmp / f"out_{name}", path)
            run.update(label=f"{n} dot(s), {name}", n_columns=summary["n_columns"], fractions=summary["fractions"])
        rows.append({"n": n, "runs": best, "identical": _same_results(tmp, path, list(trees))})
        print(
            json.dumps({k: {"cpu_s": r["cpu_s"], "n_columns": r["n_columns"]} for k, r in best.items()}),
            file=sys.stderr,
        )
    return rows


def dots_table(rows: list[dict], *, baseline: str | None, repeat: int) -> list[str]:
    """Before/after per field (CPU, wall, RSS, columns, uniform fraction), then the per-stage CPU of every run."""
    names = [n for n in ("before", "after") if n in rows[0]["runs"]]
    lines = [
        "## Fields of 1, 4 and 12 dots, side by side",
        "",
        "The fresh `analyze` process on `make_field` 2048² fields at 0.035 nm/px with 1, 4 and 12 dots of 7-9 nm "
        f"(200 counts, seed 100 + dots), best of {repeat} runs of each version, alternating"
        + (f"; `before`: the source tree `{baseline}`" if baseline else "")
        + ". Identical: the columns.csv cells and fractions of before and after.",
        "",
        "| field of 2048² | "
        + " | ".join(
            f"{what} {n}" for what in ("CPU [s]", "wall [s]", "peak RSS [MB]", "columns", "uniform") for n in names
        )
        + " | identical |",
        "|---|" + "---|" * (5 * len(names) + 1),
    ]
    for row in rows:
        runs = [row["runs"][n] for n in names]
        cells = [f"{r['cpu_s']:.1f}" for r in runs] + [f"{r['wall_s']:.1f}" for r in runs]
        cells += [f"{r['peak_rss_mb']:.0f}" for r in runs] + [str(r["n_columns"]) for r in runs]
        cells += [f"{(r['fractions'] or {}).get('uniform', float('nan')):.3f}" for r in runs]
        same = row["identical"]
        lines.append(
            f"| {row['n']} dot(s) | " + " | ".join(cells) + f" | {'' if same is None else same['identical']} |"
        )
    lines += ["", "Per stage, CPU [s] (as in the first table of process.md):", ""]
    lines += stage_table({r["label"]: r for row in rows for r in (row["runs"][n] for n in names)})
    return lines


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def stage_table(runs: dict[str, dict]) -> list[str]:
    """Rows: the stages' own CPU, the rest, the whole process (CPU, wall, peak RSS); one column per run."""
    runs = dict(runs)
    lines = ["| stage | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for label in STAGES:
        lines.append(f"| {label} | " + " | ".join(_ms(r["stages"].get(label)) for r in runs.values()) + " |")
    other = [r["cpu_s"] - sum(v for v in r["stages"].values() if v) for r in runs.values()]
    lines += [
        "| start-up and the rest (interpreter, imports of the command's modules, file hash, batch bookkeeping) | "
        + " | ".join(_ms(x) for x in other)
        + " |",
        "| of which: before the first stage (interpreter, imports, arguments, configuration) | "
        + " | ".join(_ms(r["before_cpu_s"]) for r in runs.values())
        + " |",
        "| **whole process, CPU** | " + " | ".join(f"**{r['cpu_s']:.2f}**" for r in runs.values()) + " |",
        "| whole process, wall [s] | " + " | ".join(f"{r['wall_s']:.2f}" for r in runs.values()) + " |",
        "| peak RSS [MB] | " + " | ".join(f"{r['peak_rss_mb']:.0f}" for r in runs.values()) + " |",
    ]
    return lines


def process_table(res: dict, *, baseline: str | None) -> list[str]:
    runs, per_col = res["runs"], res["atomap_cpu_per_column_s"]
    names = [n for n in ("before", "after") if n in runs]
    lines = [
        "## One 1024² dot: `stem-pipeline analyze dot.tif --out OUT` as a fresh process, per stage",
        "",
        "CPU time (user + system, every thread) of each stage inside the process, the stage's own time "
        "(without the stages it calls; lazy imports count in the stage that triggers them), best of the runs; "
        "each source tree byte-compiled first, as an install does (this machine sets PYTHONDONTWRITEBYTECODE, "
        "so without it every process would compile the package again). "
        + (
            f"`before`: the source tree `{baseline}`, run alternately with `after` in the same run. "
            if baseline
            else ""
        ),
        "",
        *stage_table({f"{n} [s CPU]": runs[n] for n in names}),
        "",
        f"Against atomap in the same run: its 2-D Gaussian refinement of the {res['atomap_columns']} columns nearest "
        f"the centre took {per_col * 1e3:.1f} ms CPU per column ({1 / per_col:.0f} columns/s), extrapolated to the "
        "columns the process found (goal: the whole process >= 12x faster by CPU time, aim 20x):",
        "",
        "| version | columns | atomap Gaussian refinement alone [s CPU] | whole `analyze` process [s CPU] | ratio |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        r = runs[n]
        atomap = per_col * r["n_columns"]
        lines.append(f"| {n} | {r['n_columns']} | {atomap:.1f} | {r['cpu_s']:.2f} | **{atomap / r['cpu_s']:.1f}x** |")
    same = res["identical"]
    if same is not None:
        changed = "".join(
            f"; columns {which} (not compared): {', '.join(cols)}"
            for which, cols in (("added", same["added"]), ("removed", same["removed"]))
            if cols
        )
        lines += [
            "",
            "Per-image results of before and after identical (columns.csv cells of the columns both write, "
            f"fractions): {same['identical']}{changed}.",
        ]
    return lines


def scaling_table(rows: dict) -> list[str]:
    lines = [
        "## Scaling of the process with pixels and with dots",
        "",
        "The same fresh `analyze` process. Pixels: 1024² dot tiles side by side (benchmarks/memory.py's `field` "
        "inputs, .npy, `--pixel-size-nm 0.02`), 512² a crop of one. Dots: `make_field` 2048² fields at "
        "0.035 nm/px with 1, 4 and 12 dots of 7-9 nm. Per Mpx and per 1,000 columns: whole-process CPU.",
        "",
    ]
    for kind, title in (("pixels", "image"), ("dots", "field of 2048²")):
        lines += [
            f"| {title} | columns | CPU [s] | wall [s] | peak RSS [MB] | CPU per Mpx [s] | CPU per 1,000 columns [s] |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows[kind]:
            per_k = r["cpu_s"] / r["n_columns"] * 1e3 if r["n_columns"] else float("nan")
            lines.append(
                f"| {r['label']} | {r['n_columns']} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                f"{r['cpu_s'] / r['megapixels']:.2f} | {per_k:.2f} |"
            )
        lines.append("")
    lines += ["Per stage, CPU [s] (as in the first table):", ""]
    lines += stage_table({r["label"]: r for r in rows["pixels"] + rows["dots"]})
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 100 atomap columns, scaling to 2048² only")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="source tree to compare against, holding a stem_pipeline package "
        "(e.g. `git archive COMMIT stem_pipeline | tar -x -C DIR`)",
    )
    parser.add_argument("--repeat", type=int, help="process runs per version (default 3, quick 1)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling tables")
    parser.add_argument(
        "--dots-only", action="store_true", help="only the 1/4/12-dot fields, before/after, to process_dots.md"
    )
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    if args.dots_only:
        return _dots_only(args.baseline, repeat, quick=args.quick)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench_process_") as tmp:
        tmp = Path(tmp)
        res = process_benchmark(tmp, repeat=repeat, baseline=args.baseline, n_atomap=100 if args.quick else 300)
        load.append(os.getloadavg()[0])
        scaling = None
        if not args.no_scaling:
            sizes = [512, 1024, 2048] if args.quick else [512, 1024, 2048, 4096]
            scaling = scaling_benchmark(tmp, sizes, [1, 4, 12])
            load.append(os.getloadavg()[0])
    lines = [
        *_header(
            "The `analyze` process: per stage, against atomap, and its scaling",
            f"{' --quick' if args.quick else ''}{' --baseline ' + str(args.baseline) if args.baseline else ''}"
            f"{' --repeat ' + str(args.repeat) if args.repeat else ''}{' --no-scaling' if args.no_scaling else ''}",
            load,
            "start / after the process runs / after scaling",
        ),
        *process_table(res, baseline=str(args.baseline) if args.baseline else None),
        "",
        *(scaling_table(scaling) if scaling else []),
    ]
    return _emit(lines, None if args.quick else RESULTS, keep_earlier=True)


def _dots_only(baseline: Path | None, repeat: int, *, quick: bool) -> int:
    """``--dots-only``: the 1/4/12-dot fields side by side with ``baseline``; ``process_dots.md`` unless quick."""
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench_process_dots_") as tmp:
        rows = dots_side_by_side(Path(tmp), [1, 4, 12], repeat=repeat, baseline=baseline)
    load.append(os.getloadavg()[0])
    lines = [
        *_header(
            "The `analyze` process on fields of 1, 4 and 12 dots",
            f" --dots-only{' --baseline ' + str(baseline) if baseline else ''} --repeat {repeat}",
            load,
            "start / end",
        ),
        *dots_table(rows, baseline=str(baseline) if baseline else None, repeat=repeat),
    ]
    return _emit(lines, None if quick else DOTS_RESULTS)


def _header(title: str, options: str, load: list[float], when: str) -> list[str]:
    """A results page's title and its line of command, machine and load."""
    return [
        f"# {title}",
        "",
        f"`python benchmarks/process.py{options}` on a shared 2-core machine "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()}); 1-minute load average "
        f"{' / '.join(f'{x:.1f}' for x in load)} ({when}): other jobs were "
        "running, so absolute times vary by tens of per cent; the ratios come from one run.",
        "",
    ]


def _emit(lines: list[str], path: Path | None, *, keep_earlier: bool = False) -> int:
    """Print the markdown ``lines`` and write them to ``path`` (None: print only); ``keep_earlier``: the
    page's one-dot records of earlier runs follow, this run's predecessor first (:func:`_earlier_runs`)."""
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_earlier and path.exists():
            text += _earlier_runs(path.read_text())
        path.write_text(text)
    return 0


EARLIER_RUNS = "## Earlier runs"


def _earlier_runs(page: str) -> str:
    """The section of earlier runs for the next page: ``page``'s own run line and one-dot section (headings a
    level down; its scaling tables left out), then the earlier runs ``page`` kept."""
    current, _, kept = page.partition(f"\n{EARLIER_RUNS}\n")
    blocks = current.split("\n## ")
    run_line = next((b for b in blocks[0].splitlines() if b.startswith("`python benchmarks/process.py")), "")
    one_dot = next((b for b in blocks[1:] if b.startswith("One 1024")), "")
    parts = [f"### Run: {run_line}\n\n#### {one_dot.strip()}"] if one_dot else []
    parts += [kept.strip()] if kept.strip() else []
    return f"\n{EARLIER_RUNS}\n\n" + "\n\n".join(parts) + "\n" if parts else ""


if __name__ == "__main__":
    raise SystemExit(main())
