"""The batch report: statistics, thumbnails, CSV/JSON/HTML files."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from stem_pipeline._atomic import TEMPORARY
from stem_pipeline.report.batch import (
    CSV_COLUMNS,
    batch_statistics,
    save_thumbnail,
    write_reports,
)


class LinkParser(HTMLParser):
    """Collects image sources, link targets and the nesting of tags (to check the HTML is well formed)."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.stack: list[str] = []
        self.unbalanced: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.unbalanced.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _temporaries(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.<random>.stem-pipeline-tmp[.ext]``) left anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if TEMPORARY.fullmatch(p.name)]


def parse_html(path: Path) -> LinkParser:
    parser = LinkParser()
    parser.feed(path.read_text())
    parser.close()
    assert not parser.unbalanced and not parser.stack, (parser.unbalanced, parser.stack)
    return parser


def _row(i: int, uniform: float | None, *, status: str = "ok", area: float = 50.0, error: str | None = None) -> dict:
    return {
        "file": f"/data/img{i}.tif",
        "folder": f"img{i}",
        "status": status,
        "error": error,
        "message": None,
        "n_columns": 100 if status == "ok" else 0,
        "fractions": None if uniform is None else {"ordered": 1 - uniform, "uniform": uniform},
        "uniform_fraction_ci95": None if uniform is None else [max(0.0, uniform - 0.05), min(1.0, uniform + 0.05)],
        "crystal_area_nm2": area if status == "ok" else None,
        "timings_s": {"total": 1.0},
    }


def test_batch_mean_interval_matches_student_t():
    from scipy import stats

    values = [0.2, 0.35, 0.4, 0.6]
    rows = [_row(i, v) for i, v in enumerate(values)] + [_row(9, None, status="error", error="bad")]
    result = batch_statistics(rows)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert result["mean_uniform_fraction"] == pytest.approx(np.mean(values))
    assert result["mean_ci"] == pytest.approx([lo, hi])
    assert result["counts"] == {"ok": 4, "no_crystal": 0, "error": 1}
    assert "Student-t" in result["method"]


def test_batch_mean_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_mean, trials, covered = 0.4, 2000, 0
    for _ in range(trials):
        values = rng.normal(true_mean, 0.1, size=8)
        lo, hi = batch_statistics([_row(i, v) for i, v in enumerate(values)])["mean_ci"]
        covered += lo <= true_mean <= hi
    assert abs(covered / trials - 0.95) < 0.015  # binomial sd of the rate is 0.005


def test_pooled_fraction_weights_by_crystal_area():
    rows = [_row(0, 0.2, area=300.0), _row(1, 0.8, area=100.0)]
    assert batch_statistics(rows)["pooled_uniform_fraction"] == pytest.approx(0.35)


def test_one_image_has_no_interval_and_no_images_no_mean():
    assert batch_statistics([_row(0, 0.3)])["mean_ci"] is None
    empty = batch_statistics([_row(0, None, status="error", error="x")])
    assert empty["mean_uniform_fraction"] is None and empty["n_fractions"] == 0
    with pytest.raises(ValueError, match="confidence"):
        batch_statistics([], confidence=1.5)


def test_thumbnail_is_small_and_leaves_the_image_alone(tmp_path):
    import imageio.v3 as iio

    image = np.random.default_rng(1).random((300, 600)).astype(np.float32)
    image[0, 0] = np.nan
    copy = image.copy()
    path = save_thumbnail(tmp_path / "t.png", image, max_size_px=100)
    png = iio.imread(path)
    assert png.shape[:2] == (50, 100)
    np.testing.assert_array_equal(image, copy)
    small = save_thumbnail(tmp_path / "s.png", np.arange(64 * 80, dtype=np.uint16).reshape(64, 80))
    assert iio.imread(small).shape[:2] == (64, 80)
    with pytest.raises(ValueError, match="2-D"):
        save_thumbnail(tmp_path / "x.png", np.zeros((3, 64, 64)))


def test_write_reports_files_and_html(tmp_path):
    rows = [_row(i, v) for i, v in enumerate([0.1, 0.5, 0.7])]
    rows.append(_row(3, None, status="error", error="/data/img3.tif: <truncated> & unreadable"))
    rows.append(_row(4, None, status="no_crystal"))
    for row in rows:
        (tmp_path / row["folder"]).mkdir()
        if row["status"] == "ok":
            save_thumbnail(tmp_path / row["folder"] / "overlay.png", np.eye(64))
    written = write_reports(rows, tmp_path)
    assert set(written) == {"csv", "dots", "json", "html", "histogram"}
    with open(written["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["file"] for r in table] == [r["file"] for r in rows]
    assert tuple(table[0]) == CSV_COLUMNS
    assert table[3]["error"].endswith("unreadable") and table[3]["uniform_fraction"] == ""
    document = json.loads(written["json"].read_text())
    assert document["images"] == rows and document["statistics"]["n_fractions"] == 3
    parser = parse_html(written["html"])
    for row in rows[:3]:
        assert f"{row['folder']}/overlay.png" in parser.images
    assert written["histogram"].name in parser.images
    text = "".join(parser.text)
    assert "<truncated> & unreadable" in text  # escaped in the source, shown as written
    assert "<truncated>" not in written["html"].read_text()
    assert not _temporaries(tmp_path)


def test_html_report_shows_phases_calibration_skipped_inputs_and_config_escaped(tmp_path):
    """report.html (report.html.report_html): the phase means and each image's phases with their intervals, an
    uncalibrated image left out of the means, the skipped inputs, the configuration and the versions, every value
    escaped; a folder's files linked only where they exist."""
    from stem_pipeline.report.batch import render_html

    rows = [_row(i, v) for i, v in enumerate([0.2, 0.4, 0.6])]
    for row, u in zip(rows, [0.2, 0.4, 0.6]):
        row["phase_fractions"] = {
            "CsPbI3 [001]": {"fraction": 1 - u, "ci95": [0.01, 0.99]},
            "<u> & co": {"fraction": u, "ci95": [0.1, 0.9]},
        }
        row["calibration"] = {"status": "ok"}
    rows[2]["calibration"] = {"status": "uncalibrated_implied"}
    (tmp_path / "img1").mkdir()
    (tmp_path / "img1" / "columns.csv").write_text("x")
    html = render_html(
        rows,
        out=tmp_path,
        config={"name": "<cfg> & 'q'"},
        versions={"numpy": "2<3"},
        skipped_inputs=[{"path": "/in/notes.txt", "reason": "not an image file (.txt)"}],
    )
    path = tmp_path / "report.html"
    path.write_text(html)
    parser = parse_html(path)
    text = "".join(parser.text)
    assert "<u> & co 0.200 [0.100 – 0.900]" in text and "CsPbI3 [001] 0.800 [0.010 – 0.990]" in text
    assert "Left out of the means, uncalibrated (1):\n/data/img2.tif." in text
    assert "uncalibrated_implied (left out of the means)" in text
    assert "/in/notes.txt: not an image file (.txt)" in text
    assert "name: <cfg> & 'q'" in text and "numpy2<3" in text
    assert "Mean uniform fraction 0.400\n[95% CI 0.000 – 0.897]" in text
    assert parser.links.count("img1/columns.csv") == 1 and not parser.images  # no thumbnails, overlays written
    assert "<u>" not in html and "<cfg>" not in html


def test_incremental_reports_skip_the_html(tmp_path):
    written = write_reports([_row(0, 0.4)], tmp_path, html=False)
    assert set(written) == {"csv", "dots", "json"} and not (tmp_path / "report.html").exists()


def test_html_report_of_a_real_batch_references_every_overlay(tmp_path):
    from stem_pipeline import io
    from stem_pipeline.batch import run_batch
    from stem_pipeline.synthetic import make_dot

    for i in range(2):
        io.save(make_dot((256, 256), dot_size_nm=6.0, rng=20 + i).micrograph(), tmp_path / "in" / f"dot{i}.tif")
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    report = run_batch([tmp_path / "in"], tmp_path / "out", workers=1, progress=False)
    parser = parse_html(tmp_path / "out" / "report.html")
    ok = [r for r in report if r["status"] == "ok"]
    assert len(ok) == 2
    for row in ok:
        assert f"{row['folder']}/overlay.png" in parser.images
        assert f"{row['folder']}/thumbnail.png" in parser.images
    for src in parser.images:
        assert (tmp_path / "out" / src).is_file()
    text = " ".join(parser.text)
    assert "broken.tif" in text and "Failed files" in text
    assert "Mean uniform fraction" in text
