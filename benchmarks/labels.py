"""Column labels at domain boundaries (issue 14): label mistakes and fraction errors, classification only.

The dots are ``benchmarks/unbiased.py``'s draw (``unbiased.draw``, the same generator arguments). Each dot
runs once through ``pipeline.analyze`` with its defaults; the inputs of its classification
(``classify.classify_lattice_regions``: the columns, regions and lattices) are kept in a cache, so the
classifier can be re-run on exactly the same columns. Per dot and dose the script reports the error of
the uniform fraction against the domain-area truth (``SyntheticDot.uniform_fraction``), the interval, and
the label mistakes: every found column is matched to the nearest true column (within 0.35 spacing), and
mistakes are counted among the true columns within 2.3 spacings of a true column of the other phase (the
boundary band), ordered called uniform and the reverse.

Usage::

    python benchmarks/labels.py SEED0 SEED1 [--doses 30 100 400] [--cache DIR] [--code TREE] [--out FILE.json]
        [--set boundary_rounds=10 boundary_beta=2.0 intensity=volume]

``--code`` re-classifies with the package at another source tree (e.g. a ``git archive`` of main), so two
versions of the classifier are scored on the same cached columns; the cache is filled on first use.
Results: ``benchmarks/results/labels.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).parent))

from unbiased import draw  # noqa: E402

_ORDERED = 0
_UNIFORM = 1


def analyze_capturing(micrograph) -> tuple:
    """``pipeline.analyze`` with its defaults, and the arguments of its classification call (empty when none)."""
    import stem_pipeline.pipeline as pipeline

    captured: dict = {}
    original = pipeline.classify_lattice_regions

    def capture(*args, **kwargs):
        captured.update(args=args, kwargs=kwargs)
        return original(*args, **kwargs)

    pipeline.classify_lattice_regions = capture
    try:
        return pipeline.analyze(micrograph), captured
    finally:
        pipeline.classify_lattice_regions = original


def cached_inputs(seed: int, dose: float, cache: Path) -> dict:
    """The classification inputs of one dot through the default run, and its truth (cached)."""
    path = cache / f"{seed}_{dose:g}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    dot, domain_nm = draw(seed, dose)
    res, captured = analyze_capturing(dot.micrograph())
    item = dict(
        seed=seed,
        dose=dose,
        domain_nm=domain_nm,
        truth=float(dot.uniform_fraction),
        true_rc=dot.rc,
        true_label=dot.label,
        spacing_px=float(np.mean(np.linalg.norm(dot.lattice_vectors_px, axis=1))),
        run_uniform=None if res.fractions is None else float(res.fractions.uniform),
        call=captured or None,
    )
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(item))
    return item


def score(item: dict, **changes) -> dict:
    """Fraction error, interval and boundary label mistakes of one cached dot with the imported classifier.

    The classifier runs with its own defaults (``ClassifyConfig()`` of the imported package, as
    ``pipeline.analyze`` would), with ``changes`` to its fields.
    """
    from stem_pipeline.classify import ClassifyConfig, classify_lattice_regions

    row = dict(seed=item["seed"], dose=item["dose"], truth=item["truth"], domain_nm=item["domain_nm"])
    if item["call"] is None:
        return {**row, "err": None}
    args = item["call"]["args"]
    kwargs = {**item["call"]["kwargs"], "config": ClassifyConfig(**changes)}
    labels, fractions, reasons = classify_lattice_regions(*args, **kwargs)
    if fractions is None or labels is None or reasons:
        return {**row, "err": None}
    rc = np.concatenate([c.rc for c in args[0] if len(c) >= kwargs["config"].min_columns])
    s = item["spacing_px"]
    true_rc, true_label = item["true_rc"], np.asarray(item["true_label"])
    dist, idx = cKDTree(true_rc).query(rc)
    matched = dist < 0.35 * s
    other = cKDTree(true_rc[true_label == _UNIFORM]), cKDTree(true_rc[true_label == _ORDERED])
    d_other = np.where(true_label == _ORDERED, other[0].query(true_rc)[0] if len(other[0].data) else np.inf, np.inf)
    d_other = np.where(true_label == _UNIFORM, other[1].query(true_rc)[0] if len(other[1].data) else np.inf, d_other)
    near = d_other[idx] <= 2.3 * s
    t, f = true_label[idx], labels.label
    lo, hi = fractions.uniform_ci95
    return {
        **row,
        "err": float(fractions.uniform - item["truth"]),
        "lo": float(lo),
        "hi": float(hi),
        "o_as_u": int(np.sum(matched & near & (t == _ORDERED) & (f == _UNIFORM))),
        "u_as_o": int(np.sum(matched & near & (t == _UNIFORM) & (f == _ORDERED))),
        "far_wrong": int(np.sum(matched & ~near & (t != f))),
        "band": int(np.sum(matched & near)),
    }


def _value(text: str) -> int | float | str:
    """A ``--set`` value: an int, a float, or else the text (e.g. ``intensity=volume``)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=int)
    parser.add_argument("last", type=int, help="last seed (inclusive)")
    parser.add_argument("--doses", type=float, nargs="+", default=[30.0, 100.0, 400.0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/labels_cache"))
    parser.add_argument("--code", type=Path, default=None, help="source tree whose classifier scores the dots")
    parser.add_argument("--out", type=Path, default=None, help="per-dot rows as JSON")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="ClassifyConfig fields changed")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("stem_pipeline").setLevel(logging.ERROR)
    items = [cached_inputs(seed, dose, args.cache) for dose in args.doses for seed in range(args.first, args.last + 1)]
    if args.code is not None:
        for name in [m for m in sys.modules if m == "stem_pipeline" or m.startswith("stem_pipeline.")]:
            del sys.modules[name]
        sys.path.insert(0, str(args.code))
    changes = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    rows = [score(item, **changes) for item in items]
    for dose in args.doses:
        rs = [r for r in rows if r["dose"] == dose and r["err"] is not None]
        err = np.array([r["err"] for r in rs])
        cover = np.mean([r["lo"] <= r["truth"] <= r["hi"] for r in rs])
        width = np.mean([r["hi"] - r["lo"] for r in rs])
        print(
            f"dose {dose:g}: {len(rs)} dots, mean {err.mean():+.4f} sd {err.std():.4f} largest {np.abs(err).max():.4f} "
            f"over 0.02: {np.sum(np.abs(err) > 0.02)} coverage {cover:.2f} width {width:.3f} | boundary band "
            f"{sum(r['band'] for r in rs)}: ordered->uniform {sum(r['o_as_u'] for r in rs)}, uniform->ordered "
            f"{sum(r['u_as_o'] for r in rs)}, wrong away from boundaries {sum(r['far_wrong'] for r in rs)}"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
