"""End to end: one micrograph through every stage, the per-image output contract, the demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from stem_pipeline import io
from stem_pipeline.outputs import COLUMNS_CSV, OVERLAY, SUMMARY, analyze_file
from stem_pipeline.pipeline import PipelineConfig, analyze
from stem_pipeline.synthetic import make_carbon, make_dot

# Dots whose size, rotation, domain layout and seed were not used to choose the defaults.
HELD_OUT = dict(shape=(384, 384), pixel_size_nm=0.03, dot_size_nm=9.0, rotation_deg=-23.0, domain_size_nm=3.0)


@pytest.fixture(scope="module")
def held_out_dot():
    return make_dot(**HELD_OUT, uniform_fraction=0.5, dose=300, rng=987)


@pytest.fixture(scope="module")
def held_out_result(held_out_dot):
    return analyze(held_out_dot.micrograph())


def test_analyze_finds_the_columns(held_out_dot, held_out_result):
    from scipy.spatial import cKDTree

    r = held_out_result
    assert r.status == "ok"
    spacing = np.linalg.norm(held_out_dot.lattice_vectors_px[0])
    d, _ = cKDTree(r.columns.rc).query(held_out_dot.rc)
    recall = np.mean(d < 0.3 * spacing)
    d2, _ = cKDTree(held_out_dot.rc).query(r.columns.rc)
    precision = np.mean(d2 < 0.3 * spacing)
    assert recall >= 0.97, recall
    assert precision >= 0.97, precision


def test_analyze_fraction_matches_truth_within_interval_scale(held_out_dot, held_out_result):
    f = held_out_result.fractions
    truth = held_out_dot.uniform_fraction
    assert abs(f.uniform - truth) <= 0.05, (f.uniform, truth)
    assert f.ordered + f.uniform == pytest.approx(1.0)
    lo, hi = f.uniform_ci95
    assert lo <= f.uniform <= hi and hi - lo < 0.5


def test_analyze_carbon_is_no_crystal():
    result = analyze(make_carbon((256, 256), rng=5))
    assert result.status == "no_crystal" and result.columns is None and result.message


def test_config_hash_changes_with_config():
    default = PipelineConfig()
    assert default.config_hash() == PipelineConfig().config_hash()
    assert PipelineConfig(min_columns=5).config_hash() != default.config_hash()


def test_analyze_file_writes_the_output_contract_and_resumes(tmp_path, held_out_dot):
    src = io.save(held_out_dot.micrograph(), tmp_path / "dot.tif")
    before = src.read_bytes()
    folder = tmp_path / "out" / "dot"
    summary = analyze_file(src, folder)
    assert summary["status"] == "ok"
    on_disk = json.loads((folder / SUMMARY).read_text())
    for key in (
        "file",
        "status",
        "error",
        "pixel_size_nm",
        "n_columns",
        "fractions",
        "uniform_fraction_ci95",
        "config_hash",
        "versions",
        "timings_s",
    ):
        assert key in on_disk
    assert on_disk["pixel_size_nm"] == pytest.approx(held_out_dot.pixel_size_nm)
    assert set(on_disk["fractions"]) == {"ordered", "uniform"}
    # The column grid: the strongest lattice's fields, the others (none here) under "others".
    assert set(on_disk["lattice"]) == {"vectors_px", "spacing_px", "angle_deg", "strength", "foreign_peaks", "others"}
    assert on_disk["lattice"]["spacing_px"] * held_out_dot.pixel_size_nm == pytest.approx(0.3145, rel=0.03)
    assert on_disk["lattice"]["others"] == []
    df = pd.read_csv(folder / COLUMNS_CSV)
    assert len(df) == on_disk["n_columns"] > 0
    assert {"x_px", "y_px", "x_nm", "y_nm", "intensity", "label", "contrast"} <= set(df.columns)
    assert set(df["label"]) <= {"ordered", "uniform"} and set(df["contrast"]) <= {"bright", "dim", "uniform"}
    np.testing.assert_allclose(df["x_nm"], df["x_px"] * held_out_dot.pixel_size_nm, rtol=1e-5)  # %.6g in the CSV
    assert (folder / OVERLAY).stat().st_size > 10_000
    assert not list(folder.glob(".*tmp*"))
    assert src.read_bytes() == before
    again = analyze_file(src, folder)
    assert again.get("skipped") is True and again["fractions"] == summary["fractions"]
    redone = analyze_file(src, folder, PipelineConfig(min_columns=5))
    assert "skipped" not in redone and redone["config_hash"] != summary["config_hash"]
    recalibrated = analyze_file(src, folder, PipelineConfig(min_columns=5), pixel_size_nm=0.05)
    assert "skipped" not in recalibrated and recalibrated["pixel_size_nm"] == 0.05


def test_analyze_file_records_bad_input_without_raising(tmp_path):
    bad = tmp_path / "nan.npy"
    np.save(bad, np.full((100, 100), np.nan))
    summary = analyze_file(bad, tmp_path / "out" / "nan")
    assert summary["status"] == "error" and "nan.npy" in summary["error"] and "NaN" in summary["error"]
    assert json.loads((tmp_path / "out" / "nan" / SUMMARY).read_text())["status"] == "error"


def test_demo_reports_fractions_near_its_truth(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "stem_pipeline.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "uniform" in out.stdout and "report.html" in out.stdout
    from stem_pipeline.demo import demo_field, demo_field_truth, demo_image, demo_truth

    summary = json.loads((tmp_path / "demo" / demo_image().stem / "summary.json").read_text())
    assert abs(summary["fractions"]["uniform"] - demo_truth()["uniform_fraction"]) <= 0.05
    # The field: every dot found and analysed, each near its own truth (matched by position).
    field = json.loads((tmp_path / "demo" / demo_field().stem / "summary.json").read_text())
    truth = demo_field_truth()["dots"]
    assert field["n_dots"] == len(truth) == 3
    for t in truth:
        dot = min(
            field["dots"],
            key=lambda d: (d["y_px"] - t["center_rc_px"][0]) ** 2 + (d["x_px"] - t["center_rc_px"][1]) ** 2,
        )
        assert dot["status"] == "ok" and abs(dot["uniform_fraction"] - t["uniform_fraction"]) <= 0.05


def test_csv_writer_writes_pandas_bytes(tmp_path):
    """``columns.csv`` and ``dots.csv`` are written without pandas, byte for byte as pandas' ``to_csv``:
    floats (float32 too), ints, bools, strings needing quotes, and gaps in each kind of column."""
    import pandas as pd

    from stem_pipeline.outputs import write_csv

    rng = np.random.default_rng(4)
    k = 40
    gaps = rng.random(k) < 0.2
    records = [
        {
            "dot": i,
            "edge": None if gaps[i] else float(rng.normal(7, 2)),
            "n": None if gaps[i] else int(rng.integers(0, 2000)),
            "whole": int(rng.integers(0, 5)),
            "mixed": [1, 2.5, np.float64(1e20)][i % 3],
            "cut": bool(rng.random() < 0.5),
            "cut_or_none": None if gaps[i] else bool(rng.random() < 0.5),
            "message": None if gaps[i] else ["ok", 'a, "quoted" reason', "line\nbreak"][i % 3],
            "empty": None,
        }
        for i in range(k)
    ]
    arrays = {
        "x": rng.normal(size=k) * 10.0 ** rng.integers(-8, 9, size=k),
        "f32": rng.normal(size=k).astype(np.float32),
        "nan": np.where(gaps, np.nan, rng.normal(size=k)),
        "fit_ok": rng.random(k) < 0.5,
        "lattice": rng.integers(0, 3, size=k),
        "label": np.asarray(["ordered", "uniform"], dtype=object)[rng.integers(0, 2, size=k)],
        "phase": np.asarray(["CsPbI3 [001]", ""])[rng.integers(0, 2, size=k)],
    }
    for name, table, fmt in [
        ("dots", {c: [r.get(c) for r in records] for c in records[0]}, None),
        ("columns", arrays, "%.6g"),
        ("columns_plain", arrays, None),
        ("no_rows", {c: [] for c in records[0]}, None),
    ]:
        write_csv(tmp_path / f"{name}.csv", table, float_format=fmt)
        pd.DataFrame(table).to_csv(tmp_path / f"{name}_pandas.csv", index=False, float_format=fmt)
        assert (tmp_path / f"{name}.csv").read_bytes() == (tmp_path / f"{name}_pandas.csv").read_bytes(), name


def test_no_columns_on_grid_sites_past_a_rotated_dots_edge():
    """At 30 counts the detector keeps noise maxima on grid sites 0.6-1.1 spacing past a rotated dot's edge (its
    background there is the carbon's); their fitted heights are noise, and the pipeline drops them
    (:func:`stem_pipeline.columns.fitted_above_threshold`). This dot had 7 such columns, all labelled uniform,
    without that step."""
    from scipy import ndimage

    from stem_pipeline.synthetic import make_dot

    shape = dict(dot_size_nm=13.7, rotation_deg=62.6, domain_size_nm=5.9, uniform_fraction=0.68, thickness_gradient=0.4)
    dot = make_dot((608, 608), dose=30, rng=1, **shape)
    res = analyze(dot.micrograph())
    spacing = float(np.mean(np.linalg.norm(dot.lattice_vectors_px, axis=1)))
    outside = ndimage.distance_transform_edt(dot.region_map == 0)
    r, c = np.clip(np.rint(res.columns.rc).astype(int), 0, np.array(dot.image.shape) - 1).T
    assert len(res.columns) > 1000
    assert np.all(outside[r, c] <= 0.5 * spacing)
