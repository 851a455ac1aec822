"""Phase-library fractions of fields of several dots, in the batch report, and on the field overlay."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stem_pipeline.field import DOT_COLUMNS, analyze_field, field_fractions
from stem_pipeline.phases import default_library
from stem_pipeline.synthetic_field import make_field
from stem_pipeline.synthetic_phases import make_phase_dot

PX = 0.035
BR, I3, UNIFORM = "CsPbBr3 [001]", "CsPbI3 [001]", "uniform 0.32 nm"


@pytest.fixture(scope="module")
def two_phase_field():
    """Two CsPbI3 + uniform dots of the paper's kind."""
    fld = make_field((512, 512), n_dots=2, dot_sizes_nm=(6.0, 7.0), dose=200, pixel_size_nm=PX, rng=3)
    return analyze_field(fld.micrograph())


@pytest.fixture(scope="module")
def mixed_field():
    """A CsPbI3 dot beside a CsPbBr3 dot (another halide, another spacing, rotated 20 deg)."""
    library = default_library()
    a = make_phase_dot([library[I3].grids()[0]], [I3], shape=(256, 256), dot_size_nm=6, dose=200, rng=1)
    b = make_phase_dot(
        [library[BR].grids()[-1]], [BR], shape=(256, 256), dot_size_nm=6, dose=200, rotations_deg=[20], rng=2
    )
    return analyze_field(np.hstack([a.image, b.image]), pixel_size_nm=PX)


def test_each_dot_row_holds_its_phase_fractions_after_the_dot_columns(two_phase_field):
    df = two_phase_field.to_dataframe()
    assert tuple(df.columns[: len(DOT_COLUMNS)]) == DOT_COLUMNS
    assert list(df.columns[len(DOT_COLUMNS) :]) == ["calibration_status"] + [
        f"{prefix}:{name}" for name in (I3, UNIFORM) for prefix in ("phase_fraction", "phase_ci95_lo", "phase_ci95_hi")
    ]
    for d, (_, row) in zip(two_phase_field.dots, df.iterrows()):
        assert d.status == "ok" and row.calibration_status == "ok"
        for name, share in d.result.phases["phase_fractions"].items():
            assert row[f"phase_fraction:{name}"] == pytest.approx(share["fraction"], abs=1e-6)
            assert (row[f"phase_ci95_lo:{name}"], row[f"phase_ci95_hi:{name}"]) == pytest.approx(
                share["ci95"], abs=1e-6
            )


def test_field_phase_fractions_pool_as_the_uniform_fraction_does(two_phase_field):
    pooled = two_phase_field.result.phases["phase_fractions"]
    uniform = field_fractions(two_phase_field.dots)
    dots = two_phase_field.dots
    areas = np.array([d.fractions.crystal_area_nm2 for d in dots])
    expected = np.sum(areas * [d.phase_fractions[UNIFORM]["fraction"] for d in dots]) / areas.sum()
    assert pooled[UNIFORM]["fraction"] == pytest.approx(expected)
    # The same pooling function, so the same interval as the field's uniform fraction (dots' intervals and spread).
    assert pooled[UNIFORM]["ci95"] == pytest.approx(list(uniform.uniform_ci95))
    assert pooled[I3]["fraction"] == pytest.approx(1 - expected)
    assert two_phase_field.result.phases["calibration"]["dots"] == {"1": "ok", "2": "ok"}


def test_cspbbr3_dot_beside_cspbi3_dot_is_analysed_and_pooled(mixed_field, tmp_path):
    from stem_pipeline.outputs import DOTS_CSV, SUMMARY, build_summary, field_summary, write_result

    by_phase = {next(iter(d.phase_fractions)): d for d in mixed_field.dots}
    assert set(by_phase) == {BR, I3}
    br = by_phase[BR]
    # No two-phase fractions for CsPbBr3, yet the dot is analysed: its phase fractions are its result.
    assert br.status == "ok" and br.fractions is None and br.phase_fractions[BR]["fraction"] == pytest.approx(1.0)
    pooled = mixed_field.result.phases["phase_fractions"]
    areas = {name: d.area_nm2() for name, d in by_phase.items()}  # footprints: the CsPbBr3 dot has no crystal area
    assert pooled[BR]["fraction"] == pytest.approx(areas[BR] / sum(areas.values()))
    assert pooled[BR]["ci95"][0] <= pooled[BR]["fraction"] <= pooled[BR]["ci95"][1]
    summary = build_summary("mixed.tif", status="ok", result=mixed_field.result, config_hash="x", input_hash="y")
    summary.update(field_summary(mixed_field))
    write_result(mixed_field.result, tmp_path, summary, field=mixed_field)
    on_disk = json.loads((tmp_path / SUMMARY).read_text())
    assert set(on_disk["phase_fractions"]) == {BR, I3}
    assert on_disk["phase_fractions"][I3]["fraction"] == pytest.approx(pooled[I3]["fraction"], abs=1e-6)
    dots = pd.read_csv(tmp_path / DOTS_CSV)
    assert tuple(dots.columns[: len(DOT_COLUMNS)]) == DOT_COLUMNS
    assert sorted(dots[f"phase_fraction:{BR}"].fillna(0)) == [0.0, 1.0]


def _row(file, phases, *, pixel=0.035, calibration="ok"):
    """An image summary with phase fractions ({phase: fraction}, intervals +-0.02)."""
    return {
        "file": file,
        "folder": file,
        "status": "ok",
        "pixel_size_nm": pixel,
        "fractions": None,
        "calibration": {"status": calibration},
        "phase_fractions": {
            n: {"fraction": f, "ci95": [max(0.0, f - 0.02), min(1.0, f + 0.02)]} for n, f in phases.items()
        },
    }


def test_batch_mean_of_phase_fractions_leaves_uncalibrated_images_out_unless_asked():
    from stem_pipeline.report.batch import batch_statistics

    rows = [
        _row("a.tif", {I3: 0.6, UNIFORM: 0.4}),
        _row("b.tif", {I3: 0.8, UNIFORM: 0.2}, calibration="warning"),
        _row("c.tif", {BR: 1.0}),
        _row("d.npy", {I3: 1.0}, pixel=None, calibration="uncalibrated_implied"),
    ]
    default = batch_statistics(rows)
    means = default["mean_phase_fractions"]
    assert default["n_phase_images"] == 3 and default["uncalibrated_left_out"] == ["d.npy"]
    assert means[I3]["mean"] == pytest.approx(1.4 / 3) and means[BR]["mean"] == pytest.approx(1 / 3)
    lo, hi = means[I3]["ci"]
    assert lo < 1.4 / 3 < hi
    assert "1 uncalibrated image(s) left out" in default["phase_method"]
    included = batch_statistics(rows, include_uncalibrated=True)
    assert included["n_phase_images"] == 4 and not included["uncalibrated_left_out"]
    assert included["mean_phase_fractions"][I3]["mean"] == pytest.approx(2.4 / 4)
    assert "included (--include-uncalibrated)" in included["phase_method"]


def test_batch_report_shows_each_images_phases_and_calibration(tmp_path):
    from stem_pipeline.report.batch import REPORT_CSV, REPORT_HTML, REPORT_JSON, write_reports

    rows = [
        _row("a.tif", {I3: 0.6, UNIFORM: 0.4}),
        _row("d.npy", {BR: 1.0}, pixel=None, calibration="uncalibrated_implied"),
    ]
    write_reports(rows, tmp_path)
    csv = pd.read_csv(tmp_path / REPORT_CSV)
    assert list(csv.calibration_status) == ["ok", "uncalibrated_implied"]
    assert list(csv[f"phase_fraction:{I3}"].fillna(-1)) == [0.6, -1] and csv[f"phase_ci95_hi:{BR}"][1] == 1.0
    stats = json.loads((tmp_path / REPORT_JSON).read_text())["statistics"]
    assert stats["uncalibrated_left_out"] == ["d.npy"] and BR not in stats["mean_phase_fractions"]
    html = (tmp_path / REPORT_HTML).read_text()
    assert "Left out of the means, uncalibrated (1)" in html and "uncalibrated_implied (left out of the means)" in html
    assert f"{BR} 1.000 [0.980 – 1.000]" in html
    write_reports(rows, tmp_path, include_uncalibrated=True)
    html = (tmp_path / REPORT_HTML).read_text()
    assert "Uncalibrated images are included in the means (--include-uncalibrated)" in html
    assert "Left out of the means" not in html


def test_analyze_include_uncalibrated_flag_reaches_the_batch_report(tmp_path, monkeypatch):
    """The flag end to end: a calibrated two-phase dot and an uncalibrated CsPbI3 dot (pixel size implied)."""
    import stem_pipeline.batch as batch
    from stem_pipeline import io
    from stem_pipeline._types import Micrograph
    from stem_pipeline.cli import main

    library = default_library()
    names = [I3, UNIFORM]
    grids = [library[n].grids()[0] for n in names]
    a = make_phase_dot(grids, names, shares=[0.7, 0.3], shape=(256, 256), dot_size_nm=7, dose=200, rng=1)
    b = make_phase_dot(grids[:1], names[:1], shape=(256, 256), dot_size_nm=7, dose=200, rng=1)
    (tmp_path / "in").mkdir()
    io.save(Micrograph(data=a.image, pixel_size_nm=PX, source="a"), tmp_path / "in" / "a.tif")
    np.save(tmp_path / "in" / "b.npy", b.image.astype(np.float32))
    seen = []
    real = batch.run_batch
    monkeypatch.setattr(batch, "run_batch", lambda *a, **k: seen.append(k["include_uncalibrated"]) or real(*a, **k))
    base = ["analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "1", "-q"]
    assert main(base) == 0
    stats = json.loads((tmp_path / "out" / "report.json").read_text())["statistics"]
    assert [Path(f).name for f in stats["uncalibrated_left_out"]] == ["b.npy"]
    calibrated = stats["mean_phase_fractions"][I3]["mean"]
    assert main([*base, "--include-uncalibrated"]) == 0  # the images are reused; the report is rewritten
    stats = json.loads((tmp_path / "out" / "report.json").read_text())["statistics"]
    assert seen == [False, True] and stats["include_uncalibrated"] and not stats["uncalibrated_left_out"]
    assert stats["mean_phase_fractions"][I3]["mean"] == pytest.approx((calibrated + 1.0) / 2)


def _dot_texts(field):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stem_pipeline.report.dots import draw_dots

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_dots(ax, field.labels, field.records())
    return [t.get_text() for t in ax.texts]


def test_field_overlay_labels_dots_with_their_phase_outside_the_papers_two_phase_case(mixed_field, two_phase_field):
    texts = _dot_texts(mixed_field)
    br = next(d.dot for d in mixed_field.dots if BR in d.phase_fractions)
    # The CsPbBr3 dot gets its phase; the CsPbI3 dot (a phase of the paper's case) its number only.
    assert sorted(texts) == sorted([str(d.dot) for d in mixed_field.dots] + [BR])
    assert texts[texts.index(BR) - 1] == str(br)
    # The paper's two-phase dots look as before: numbers only.
    assert sorted(_dot_texts(two_phase_field)) == ["1", "2"]


def test_dot_phase_label_lists_several_phases_with_their_fractions():
    from stem_pipeline.report.dots import dot_phase_label

    assert dot_phase_label({"dot": 1, f"phase_fraction:{BR}": 0.35, f"phase_fraction:{I3}": 0.65}) == (
        f"{I3} 65%\n{BR} 35%"
    )
    assert dot_phase_label({"dot": 1, f"phase_fraction:{I3}": 0.7, f"phase_fraction:{UNIFORM}": 0.3}) is None
    assert dot_phase_label({"dot": 1, "uniform_fraction": 0.3}) is None
