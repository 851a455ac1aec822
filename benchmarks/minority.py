"""Detection of small minority domains (issue 13): single dots with one ordered (or uniform) domain of 10-60 columns.

Each dot is a synthetic 8-11 nm dot (``stem_pipeline.synthetic.make_dot``, 0.035 nm/px, random rotation) of
one phase holding exactly one connected domain of the other phase, whose size in true columns is drawn over
10-60; beside them, wholly uniform and wholly ordered dots (false positives). Each dot runs once through
``pipeline.analyze``; its classification inputs are cached, so the classifier can be re-run on the same columns.
Per dose and minority size: the share of dots whose minority is detected (some columns labelled with the
minority phase), the recall of the minority's true columns, the fraction error; on pure dots, the share with
any column of the other phase.

Usage: ``python benchmarks/minority.py SEED0 N [--doses 30 100 400] [--set field=value ...]``. Results (seeds
51000-51079, before and after the small-domain change of ``classify._core._ordered_posterior``):
``benchmarks/results/fields.md``, paragraph (i).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from stem_pipeline._types import REGION_ORDERED, REGION_UNIFORM
from stem_pipeline.synthetic import domain_map, make_dot

sys.path.insert(0, str(Path(__file__).parent))

from labels import _value, analyze_capturing  # noqa: E402

_ORDERED, _UNIFORM = 0, 1
KINDS = ("ordered", "uniform", "pure_uniform", "pure_ordered")


def draw(seed: int, dose: float, kind: str):
    """One dot: ``kind`` 'ordered' (one ordered domain in a uniform dot), 'uniform' (the reverse), or pure."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(8, 11)
    rotation = rng.uniform(0, 90)
    side = int(np.ceil((size * np.sqrt(2) + 1.5) / 0.035 / 16)) * 16
    kw = dict(dot_size_nm=size, rotation_deg=rotation, pixel_size_nm=0.035)
    if kind.startswith("pure"):
        p = 1.0 if kind == "pure_uniform" else 0.0
        return make_dot((side, side), uniform_fraction=p, domain_size_nm=3.0, dose=dose, rng=rng, **kw), 0
    target = rng.uniform(10, 60)
    cell = 0.3145**2 if kind == "ordered" else 0.32**2
    minor = REGION_ORDERED if kind == "ordered" else REGION_UNIFORM
    domain_nm = float(np.sqrt(target * cell))
    # One domain in ~(size / domain)^2 of the other phase; layouts drawn until one has exactly one such domain.
    n_seeds = (size / domain_nm) ** 2
    p = 1.0 - 1.0 / n_seeds if kind == "ordered" else 1.0 / n_seeds
    for _ in range(2000):
        sub = int(rng.integers(2**31))
        region = domain_map((side, side), uniform_fraction=p, domain_size_nm=domain_nm, rng=sub, **kw)
        mask = region == minor
        n_comp = ndimage.label(mask)[1]
        cols = mask.sum() * 0.035**2 / cell
        if n_comp == 1 and abs(cols - target) <= 0.25 * target + 3:
            dot = make_dot((side, side), uniform_fraction=p, domain_size_nm=domain_nm, dose=dose, rng=sub, **kw)
            return dot, int(np.sum(dot.label == (_ORDERED if kind == "ordered" else _UNIFORM)))
    raise RuntimeError(f"seed {seed}: no layout with one minority domain of ~{target:.0f} columns")


def cached(seed: int, dose: float, kind: str, cache: Path) -> dict:
    """The classification inputs of one dot through the default run, and its truth (cached)."""
    path = cache / f"{kind}_{seed}_{dose:g}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    dot, n_minor = draw(seed, dose, kind)
    captured = analyze_capturing(dot.micrograph())[1]
    item = dict(
        seed=seed,
        dose=dose,
        kind=kind,
        n_minor=n_minor,
        truth=float(dot.uniform_fraction),
        true_rc=dot.rc,
        true_label=np.asarray(dot.label),
        spacing_px=float(np.mean(np.linalg.norm(dot.lattice_vectors_px, axis=1))),
        call=captured or None,
    )
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(item))
    return item


def score(item: dict, **changes) -> dict:
    """Reported fraction, whether the minority (or, on a pure dot, a false one) is called, recall of its columns."""
    from stem_pipeline.classify import ClassifyConfig, classify_lattice_regions

    row = {k: item[k] for k in ("seed", "dose", "kind", "n_minor", "truth")}
    if item["call"] is None:
        return {**row, "err": None}
    args = item["call"]["args"]
    kwargs = {**item["call"]["kwargs"], "config": ClassifyConfig(**changes)}
    labels, fractions, reasons = classify_lattice_regions(*args, **kwargs)
    if fractions is None or labels is None:
        return {**row, "err": None}
    rc = np.concatenate([c.rc for c in args[0] if len(c) >= kwargs["config"].min_columns])
    minor = _ORDERED if item["kind"] in ("ordered", "pure_uniform") else _UNIFORM
    dist, idx = cKDTree(item["true_rc"]).query(rc)
    matched = dist < 0.35 * item["spacing_px"]
    true_minor = matched & (item["true_label"][idx] == minor)
    lo, hi = fractions.uniform_ci95
    return {
        **row,
        "err": float(fractions.uniform - item["truth"]),
        "called": int(np.sum(labels.label == minor)),
        "recall": float(np.sum(true_minor & (labels.label == minor)) / max(true_minor.sum(), 1)),
        "covered": bool(lo <= item["truth"] <= hi),
    }


def report(rows: list[dict], doses) -> list[str]:
    """Markdown table: detection and recall per dose and size bin, false positives on pure dots."""
    out = [
        "| dose | minority | columns | dots | detected | recall of its columns | mean abs error | max abs error | coverage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dose in doses:
        for kind in KINDS:
            rs = [r for r in rows if r["dose"] == dose and r["kind"] == kind and r["err"] is not None]
            bins = [(0, 0)] if kind.startswith("pure") else [(5, 20), (20, 30), (30, 40), (40, 50), (50, 70)]
            for lo, hi in bins:
                b = [r for r in rs if (lo <= r["n_minor"] < hi) or kind.startswith("pure")]
                if not b:
                    continue
                err = np.abs([r["err"] for r in b])
                det = np.mean([r["called"] > 0 for r in b])
                out.append(
                    f"| {dose:g} | {kind} | {'-' if kind.startswith('pure') else f'{lo}-{hi - 1}'} | {len(b)} | "
                    f"{det:.2f} | {np.mean([r['recall'] for r in b]):.2f} | {err.mean():.3f} | {err.max():.3f} | "
                    f"{np.mean([r['covered'] for r in b]):.2f} |"
                )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=int, help="first seed")
    parser.add_argument("n", type=int, help="dots per kind and dose")
    parser.add_argument("--doses", type=float, nargs="+", default=[30.0, 100.0, 400.0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/minority_cache"))
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ClassifyConfig fields changed")
    parser.add_argument("--rows", action="store_true", help="print every dot")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("stem_pipeline").setLevel(logging.ERROR)
    changes = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    rows = []
    for dose in args.doses:
        for kind in args.kinds:
            for seed in range(args.first, args.first + args.n):
                rows.append(score(cached(seed, dose, kind, args.cache), **changes))
                if args.rows:
                    print(rows[-1], flush=True)
    print("\n".join(report(rows, args.doses)))


if __name__ == "__main__":
    main()
