"""Peak memory of the per-image analysis against image size (1k, 2k, 4k, 8k), with per-stage timings.

Usage: ``python benchmarks/memory.py [--quick] [--sizes 1024 2048 ...] [--label NAME]``

For every size, two float32 ``.npy`` images are analysed by
:func:`stem_pipeline.outputs.analyze_file` (the unit a batch runs per image:
load, analysis, columns.csv, overlay, thumbnail, summary), each in a fresh
Python process:

- ``field``: (size / 1024)^2 synthetic 1024x1024 dots side by side (``make_dot``,
  14 nm at 0.02 nm/px, 400 counts, each its own seed and offset), ~2,000
  columns each;
- ``noise``: Poisson noise of the same mean (no lattice: ``no_crystal``).

The peak resident memory of that process (``ru_maxrss``) minus the peak of an
idle process that imported the same modules is the analysis's peak; the limit
is 8x the image's float32 size plus 400 MB (issue 17, item 12). The process's
RSS is also polled every 2 ms by a thread during each stage (a shorter spike
can be missed), which gives each stage's peak beside its time. Writes
``benchmarks/results/memory.md`` (``--quick``, or any ``--sizes``, prints only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "memory.md"
MB = 1024**2
#: The bound: 8 float32 copies of the image plus a fixed 400 MB.
LIMIT_COPIES, LIMIT_FIXED_MB = 8, 400
_PIXEL_NM = 0.02

# Run in the child: import what analyze_file needs (the baseline stops here), then analyse one file
# with every stage wrapped to record its time and its RSS peak above the stage's start.
_CHILD = r"""
import json, resource, sys, threading, time
import psutil
import stem_pipeline.outputs as outputs
import stem_pipeline.pipeline, stem_pipeline.io, stem_pipeline.report.overlay, stem_pipeline.report.batch
import stem_pipeline.denoise, stem_pipeline.lattice, stem_pipeline.columns, stem_pipeline.classify
import matplotlib.backends.backend_agg, skimage.transform
if sys.argv[1] == "baseline":
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    raise SystemExit
proc = psutil.Process()
state = {"peak": 0}
def poll():
    while True:
        state["peak"] = max(state["peak"], proc.memory_info().rss)
        time.sleep(0.002)
threading.Thread(target=poll, daemon=True).start()
stages = {}
def wrap(module, name, label):
    func = getattr(module, name)
    def wrapped(*args, **kwargs):
        start_rss = proc.memory_info().rss
        state["peak"] = start_rss
        t0 = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            rec = stages.setdefault(label, {"s": 0.0, "peak_mb": 0.0, "rss_mb": 0.0})
            rec["s"] += time.perf_counter() - t0
            peak = max(state["peak"], proc.memory_info().rss)
            rec["peak_mb"] = max(rec["peak_mb"], (peak - start_rss) / 2**20)
            rec["rss_mb"] = max(rec["rss_mb"], peak / 2**20)
    # the modules that imported the function by name (pipeline, field, ...) call it through their own binding
    for mod in [m for n, m in sys.modules.items() if n.startswith("stem_pipeline") and m is not None]:
        if getattr(mod, name, None) is func:
            setattr(mod, name, wrapped)
import stem_pipeline.columns.assign as assign
for module, name, label in [
    (stem_pipeline.io, "load", "load"),
    (stem_pipeline.denoise, "denoise", "denoise"),
    (stem_pipeline.lattice, "find_lattices", "lattice"),
    (stem_pipeline.lattice, "crystal_masks", "crystal_mask"),
    (stem_pipeline.columns, "find_columns", "find_columns"),
    (assign, "nearest_column_regions", "regions"),
    (stem_pipeline.columns, "refine_columns", "refine_columns"),
    (stem_pipeline.columns, "measure_intensities", "intensities"),
    (stem_pipeline.classify, "classify_columns", "classify"),
    (stem_pipeline.report.overlay, "save_overlay", "overlay"),
    (stem_pipeline.report.batch, "save_thumbnail", "thumbnail"),
]:
    wrap(module, name, label)
t0 = time.perf_counter()
summary = outputs.analyze_file(sys.argv[1], sys.argv[2], pixel_size_nm=float(sys.argv[3]), overwrite=True)
total = time.perf_counter() - t0
print(json.dumps({
    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "status": summary["status"], "n_columns": summary["n_columns"], "error": summary.get("error"),
    "uniform": (summary.get("fractions") or {}).get("uniform"),
    "total_s": total, "stages": stages,
}))
"""


def _child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_inputs(folder: Path, size: int) -> dict[str, Path]:
    """The ``field`` and ``noise`` images of ``size`` x ``size`` px as float32 ``.npy`` files.

    The field's 1024^2 tiles are separate dots (own seed, noise, domains and a random offset of up to
    2 nm): copies of one tile would make the field exactly periodic, its spectrum a comb of ~10^5
    peaks (find_lattice then spent minutes pairing them).
    """
    from stem_pipeline.synthetic import make_dot

    reps = -(-size // 1024)
    rng = np.random.default_rng(size)
    field = np.empty((reps * 1024, reps * 1024), np.float32)
    for i in range(reps):
        for j in range(reps):
            dot = make_dot(
                (1024, 1024),
                pixel_size_nm=_PIXEL_NM,
                dot_size_nm=14.0,
                uniform_fraction=0.5,
                dose=400,
                center_offset_nm=tuple(rng.uniform(-2, 2, 2)),
                rng=i * reps + j,
            )
            field[i * 1024 : (i + 1) * 1024, j * 1024 : (j + 1) * 1024] = dot.image
    paths = {"field": folder / f"field_{size}.npy", "noise": folder / f"noise_{size}.npy"}
    np.save(paths["field"], field[:size, :size])
    mean = float(field.mean())
    del field
    np.save(paths["noise"], rng.poisson(mean, (size, size)).astype(np.float32))
    return paths


def limit_mb(size: int) -> float:
    """The bound for a ``size`` x ``size`` image [MB]: 8x its float32 bytes plus 400 MB."""
    return LIMIT_COPIES * size * size * 4 / MB + LIMIT_FIXED_MB


def run(sizes: list[int]) -> list[dict]:
    """Measure every size and input kind; one fresh process per analysis."""
    baseline = _child("baseline")["maxrss_mb"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in sizes:
            paths = make_inputs(tmp, size)
            for kind, path in paths.items():
                res = _child(str(path), str(tmp / f"out_{kind}_{size}"), str(_PIXEL_NM))
                res.update(size=size, kind=kind, baseline_mb=baseline, peak_mb=res["maxrss_mb"] - baseline)
                res["limit_mb"] = limit_mb(size)
                print(json.dumps(res), flush=True)
                rows.append(res)
                path.unlink()
    return rows


#: Before the memory work (the code at f6ea6f1, measured with this script on the same inputs): peak above
#: idle [MB] and each stage's peak above idle [MB]. 8192^2 was not re-measured (~9 GB on a shared machine):
#: issue 17 reports 8.5 GB resident for an 8192^2 image and 9.1 GB for noise.
BEFORE = {
    (1024, "field"): (
        215,
        {
            "load": 6,
            "denoise": 130,
            "lattice": 79,
            "crystal_mask": 51,
            "find_columns": 51,
            "regions": 37,
            "refine_columns": 196,
            "intensities": 121,
            "classify": 122,
            "overlay": 215,
            "thumbnail": 151,
        },
    ),
    (1024, "noise"): (140, {"load": 10, "denoise": 131, "lattice": 80, "overlay": 140, "thumbnail": 79}),
    (2048, "field"): (
        746,
        {
            "load": 31,
            "denoise": 531,
            "lattice": 291,
            "crystal_mask": 291,
            "find_columns": 184,
            "regions": 136,
            "refine_columns": 746,
            "intensities": 746,
            "classify": 239,
            "overlay": 607,
            "thumbnail": 224,
        },
    ),
    (2048, "noise"): (
        565,
        {"load": 27, "denoise": 531, "lattice": 565, "crystal_mask": 205, "overlay": 435, "thumbnail": 180},
    ),
    (4096, "field"): (
        2218,
        {
            "load": 128,
            "denoise": 2067,
            "lattice": 1171,
            "crystal_mask": 733,
            "find_columns": 724,
            "regions": 516,
            "refine_columns": 1169,
            "intensities": 903,
            "classify": 962,
            "overlay": 2218,
            "thumbnail": 683,
        },
    ),
    (4096, "noise"): (
        2213,
        {
            "load": 123,
            "denoise": 2067,
            "lattice": 2213,
            "crystal_mask": 852,
            "find_columns": 766,
            "regions": 526,
            "refine_columns": 527,
            "intensities": 527,
            "overlay": 1625,
            "thumbnail": 602,
        },
    ),
}
BEFORE_8K = {"field": "8.5 GB (issue)", "noise": "9.1 GB (issue)"}

_STAGES = (
    "load",
    "denoise",
    "lattice",
    "crystal_mask",
    "find_columns",
    "regions",
    "refine_columns",
    "intensities",
    "classify",
    "overlay",
    "thumbnail",
)


def table(rows: list[dict]) -> str:
    """Markdown: peak against the limit, then per-stage peaks and times."""
    lines = [
        "| image | input | status, columns | before [MB] | peak above idle [MB] | x image | limit [MB] | met | total [s] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        image_mb = r["size"] ** 2 * 4 / MB
        lines.append(
            f"| {r['size']}² ({image_mb:.0f} MB) | {r['kind']} | {r['status']}, {r['n_columns']} | "
            f"{BEFORE[(r['size'], r['kind'])][0] if (r['size'], r['kind']) in BEFORE else BEFORE_8K.get(r['kind'], '')} | "
            f"{r['peak_mb']:.0f} | {r['peak_mb'] / image_mb:.1f} | {r['limit_mb']:.0f} | "
            f"{'yes' if r['peak_mb'] <= r['limit_mb'] else 'no'} | {r['total_s']:.1f} |"
        )
    lines += [
        "",
        (
            "Per stage: the process's peak RSS during the stage, above idle [MB] / the stage's time [s] (blank: "
            "the stage did not run; `before` rows: the peak only). The largest is the analysis's peak."
        ),
        "",
    ]
    lines.append("| image | input | " + " | ".join(_STAGES) + " |")
    lines.append("|---|---|" + "---|" * len(_STAGES))
    for (size, kind), (_, before) in BEFORE.items():
        cells = [f"{before[name]}" if name in before else "" for name in _STAGES]
        lines.append(f"| {size}² before | {kind} | " + " | ".join(cells) + " |")
    for r in rows:
        cells = []
        for name in _STAGES:
            s = r["stages"].get(name)
            cells.append(f"{s['rss_mb'] - r['baseline_mb']:.0f} / {s['s']:.2f}" if s else "")
        lines.append(f"| {r['size']}² | {r['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 and 1024 px only; print, do not record")
    parser.add_argument("--sizes", type=int, nargs="+", help="sizes to measure; print, do not record")
    args = parser.parse_args()
    sizes = args.sizes or ([512, 1024] if args.quick else [1024, 2048, 4096, 8192])
    rows = run(sizes)
    print(table(rows))
    if args.quick or args.sizes:
        return
    write_results(rows)


def write_results(rows: list[dict]) -> None:
    """Write the tables of ``rows`` (from :func:`run`) to ``benchmarks/results/memory.md``."""
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        "Peak resident memory of `outputs.analyze_file` (load, analysis, columns.csv, overlay, thumbnail, "
        "summary) for one float32 image, each in a fresh process, above an idle process with the same imports "
        f"({rows[0]['baseline_mb']:.0f} MB). `field`: 1024² synthetic dots (14 nm at {_PIXEL_NM} nm/px, 400 "
        "counts, each its own seed and offset) side by side; `noise`: Poisson noise of the same mean. Limit: 8x "
        "the image's float32 size + 400 MB (issue 17). `before`: the code before the memory work (f6ea6f1) on the "
        "same inputs; 8192² from the issue. A field is split into its dots and each dot analysed on its own crop "
        "(issue 13): the per-stage columns below are the dots' stages, summed; the segmentation, the field's "
        "assembly and its outputs fall between them. The 8192² field (64 dots) peaked at 2.8 GB, above its limit, "
        "outside those stages: the field's support mask was a whole-image distance transform (float64 distances "
        "and an int32 feature map, ~1 GB), and each dot's lattice rotation was read through an image-sized float "
        "mask; the mask is now grown by row blocks (`_tiles.within_distance`) and the rotations read on the "
        "segmentation's coarse map (the same numbers). Times were taken on a 2-core machine shared with other "
        "jobs: read them as rough.\n\n" + table(rows) + "\n"
    )


if __name__ == "__main__":
    main()
