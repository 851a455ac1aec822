"""The phase-library stage in the pipeline and its outputs: real and synthetic images with known answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial import cKDTree
from test_phases import perovskite_yaml

from stem_pipeline._types import CONTRASTS, Micrograph
from stem_pipeline.io import save
from stem_pipeline.outputs import analyze_file
from stem_pipeline.phases import default_library
from stem_pipeline.pipeline import PipelineConfig, analyze
from stem_pipeline.synthetic import make_dot
from stem_pipeline.synthetic_phases import make_phase_dot

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CSPBBR3 = REALDATA / "statstem_cspbbr3_100.tif"
CSPBBR3_REF = REALDATA / "reference" / "statstem_cspbbr3_100_ref_columns.csv"
NSMO = REALDATA / "kemstem_nsmo110.tif"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not CSPBBR3.is_file(), reason="shared real-data set not present (../shared/realdata)")
def test_real_cspbbr3_is_cspbbr3_with_statstem_sites_and_a_calibration_warning(tmp_path):
    summary = analyze_file(CSPBBR3, tmp_path / "out")
    assert summary["status"] == "ok"
    fractions = summary["phase_fractions"]
    assert list(fractions) == ["CsPbBr3 [001]"] and fractions["CsPbBr3 [001]"]["fraction"] == 1.0
    # Columns against StatSTEM's fitted Pb/Cs columns (x = col, y = row, 0-based), matched within 3 px.
    df = pd.read_csv(tmp_path / "out" / "columns.csv")
    ref = pd.read_csv(CSPBBR3_REF)
    dist, idx = cKDTree(ref[["x_px", "y_px"]].to_numpy()).query(df[["x_px", "y_px"]].to_numpy())
    matched = dist < 3.0
    assert matched.sum() > 0.9 * len(ref)
    agree = (df["site"].to_numpy()[matched] == "Pb-Br") == (ref["type"].to_numpy()[idx[matched]] == "Pb")
    assert agree.mean() >= 0.95
    assert set(df["phase"]) == {"CsPbBr3 [001]"}
    # The file's calibration is ~11 % small: the warning names the pixel size CsPbBr3 implies.
    calibration = summary["calibration"]
    assert calibration["status"] == "warning"
    implied = calibration["implied_pixel_size_nm"]
    assert 0.0311 * 1.05 < implied < 0.0311 * 1.15
    assert f"{implied:.5g} nm" in calibration["message"] and f"{implied:.5g} nm" in summary["message"]


@pytest.mark.skipif(not NSMO.is_file(), reason="shared real-data set not present (../shared/realdata)")
def test_uncalibrated_nsmo_gets_no_fractions(tmp_path):
    summary = analyze_file(NSMO, tmp_path / "out")
    assert summary["status"] == "ok" and summary["pixel_size_nm"] is None
    assert summary["phase_fractions"] is None and summary["fractions"] is None
    assert summary["calibration"]["status"] == "uncalibrated_ambiguous"
    assert "no phase fractions" in summary["message"]


@pytest.mark.parametrize("seed", [21, 22])
def test_cspbbr3_beside_cspbi3_fractions_within_0p03_at_100_counts(seed):
    library = default_library()
    names = ["CsPbBr3 [001]", "CsPbI3 [001]"]
    dot = make_phase_dot([library[n].grids()[0] for n in names], names, shares=[0.35, 0.65], dose=100, rng=seed)
    result = analyze(dot.image, pixel_size_nm=dot.pixel_size_nm)
    fractions = result.phases["phase_fractions"]
    assert set(fractions) == set(names)
    for name in names:
        assert fractions[name]["fraction"] == pytest.approx(dot.fractions[name], abs=0.03)
        lo, hi = fractions[name]["ci95"]
        assert lo <= fractions[name]["fraction"] <= hi
    dist, idx = cKDTree(dot.rc).query(result.columns.rc)
    matched = dist < 2.0
    assert np.mean(result.phases["site"][matched] == dot.site[idx[matched]]) > 0.95
    assert np.mean(result.phases["phase"][matched] == np.asarray(dot.names)[dot.part[idx[matched]]]) > 0.95


def test_the_papers_two_phase_analysis_is_one_library_configuration():
    dot = make_dot((384, 384), pixel_size_nm=0.035, dot_size_nm=10, uniform_fraction=0.5, dose=100, rng=31)
    paper = PipelineConfig(phases={"phases": ["CsPbI3 [001]", "uniform 0.32 nm"]})
    without = PipelineConfig(phases={"enabled": False})
    result, reference = analyze(dot.micrograph(), paper), analyze(dot.micrograph(), without)
    # The two-phase labels, contrasts and fractions are those of the classifier alone ...
    assert np.array_equal(result.labels.label, reference.labels.label)
    assert np.array_equal(result.labels.contrast, reference.labels.contrast)
    assert result.fractions.uniform == reference.fractions.uniform and reference.phases == {}
    # ... and the library names them: ordered = CsPbI3 [001], uniform = the uniform grid, same intervals.
    fractions = result.phases["phase_fractions"]
    assert fractions["uniform 0.32 nm"]["fraction"] == pytest.approx(result.fractions.uniform)
    assert fractions["uniform 0.32 nm"]["ci95"] == pytest.approx(list(result.fractions.uniform_ci95))
    assert fractions["CsPbI3 [001]"]["fraction"] == pytest.approx(result.fractions.ordered)
    contrast = np.asarray(CONTRASTS)[result.labels.contrast]
    site = result.phases["site"]
    assert np.mean(site[contrast == "bright"] == "Pb-I") > 0.95
    assert np.mean(np.isin(site[contrast == "dim"], ["Cs", "I"])) > 0.95


def test_a_user_phase_file_on_the_command_line_names_the_phase(tmp_path):
    (tmp_path / "phases").mkdir()
    (tmp_path / "phases" / "cspbcl3.yaml").write_text(yaml.safe_dump(perovskite_yaml("CsPbCl3 [001]", "Cl", 5.605)))
    assert "CsPbCl3 [001]" not in default_library()
    from stem_pipeline.phases import load_library

    grid = load_library([tmp_path / "phases"])["CsPbCl3 [001]"].grids()[-1]  # Pb-Cl / Cs checkerboard
    dot = make_phase_dot([grid], ["CsPbCl3 [001]"], dose=200, rng=41)
    save(Micrograph(dot.image, pixel_size_nm=dot.pixel_size_nm), tmp_path / "cl.tif")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "stem_pipeline.cli", "analyze", str(tmp_path / "cl.tif"), "--workers", "1"]
    runs = {}
    for name, extra in (("shipped", []), ("user", ["--phases", str(tmp_path / "phases")])):
        done = subprocess.run([*base, "--out", str(tmp_path / name), *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads((tmp_path / name / "cl" / "summary.json").read_text())
    assert "CsPbCl3 [001]" not in (runs["shipped"]["phase_fractions"] or {})
    assert runs["user"]["phase_fractions"]["CsPbCl3 [001]"]["fraction"] == 1.0
    assert "; phases CsPbCl3 [001] 1.000" in done.stdout
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--phases", str(tmp_path / "nope.yaml")], env=env)
    assert bad.returncode == 2


@pytest.mark.skipif(not CSPBBR3.is_file(), reason="shared real-data set not present (../shared/realdata)")
def test_an_uncalibrated_image_matching_one_phase_gets_fractions_at_the_implied_pixel_size():
    from stem_pipeline.io import load

    micrograph = load(CSPBBR3).replace(pixel_size_nm=None)
    result = analyze(micrograph)
    calibration = result.phases["calibration"]
    assert calibration["status"] == "uncalibrated_implied"
    implied = calibration["implied_pixel_size_nm"]
    assert 0.0311 * 1.05 < implied < 0.0311 * 1.15  # CsPbBr3's a/sqrt2 over the measured spacing
    assert result.columns.pixel_size_nm == implied  # used for the columns' nm coordinates
    assert result.phases["phase_fractions"]["CsPbBr3 [001]"]["fraction"] == 1.0
    assert f"{implied:.5g} nm" in result.message


def test_uncalibrated_images_stay_out_of_the_batch_mean_unless_asked():
    from stem_pipeline.report.batch import batch_statistics

    def row(uniform, pixel):
        return {"status": "ok", "fractions": {"ordered": 1 - uniform, "uniform": uniform}, "pixel_size_nm": pixel}

    rows = [row(0.2, 0.035), row(0.4, 0.035), row(1.0, None)]
    default = batch_statistics(rows)
    assert default["mean_uniform_fraction"] == pytest.approx(0.3) and default["n_uncalibrated_left_out"] == 1
    assert "1 uncalibrated image(s) left out" in default["method"]
    assert batch_statistics(rows, include_uncalibrated=True)["mean_uniform_fraction"] == pytest.approx(1.6 / 3)


def test_overlay_colours_columns_by_phase_and_site_when_the_two_phase_labels_do_not_apply():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stem_pipeline.report.overlay import SITE_COLOURS, plot_overlay

    grid = default_library()["CsPbBr3 [001]"].grids()[-1]
    dot = make_phase_dot([grid], ["CsPbBr3 [001]"], shape=(200, 200), dot_size_nm=5, dose=200, rng=51)
    result = analyze(dot.image, pixel_size_nm=dot.pixel_size_nm)
    assert result.labels is None and result.phases["phase_fractions"]
    fig = Figure()
    FigureCanvasAgg(fig)
    plot_overlay(result.denoised, result.columns, None, ax=fig.add_subplot(), phases=result.phases)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("CsPbBr3 [001]: Pb-Br (100.0%") for t in legend)
    assert any(t.startswith("CsPbBr3 [001]: Cs") for t in legend)
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in fig.axes[0].collections}
    assert len(colours) == 2 and all(
        tuple(np.round(np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)]) / 255, 3)) in colours
        for h in SITE_COLOURS[:2]
    )
