"""Fields of many dots: segmentation, per-dot size and analysis, field fractions, the per-dot output contract.

Ground truth from :mod:`stem_pipeline.synthetic_field` (the project's ``make_dot`` composed into fields).
The larger statistics (>= 50 dots, touching-pair split rate, interval coverage) are in ``benchmarks/fields.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stem_pipeline.dots import (
    dot_shapes,
    min_area_rectangle,
    segment_field,
    segment_overview,
)
from stem_pipeline.field import DOT_COLUMNS, DotResult, analyze_field, field_fractions
from stem_pipeline.pipeline import analyze
from stem_pipeline.synthetic_field import make_field, make_overview_field, make_stacked_pair, match_labels

PX = 0.035


@pytest.fixture(scope="module")
def field():
    """Four 7.5-9 nm dots at random rotations and fractions, one touching pair, one cut by the frame."""
    return make_field(
        (768, 768), n_dots=4, n_touching_pairs=1, n_cut=1, dot_sizes_nm=(7.5, 9.0), dose=200, pixel_size_nm=PX, rng=2
    )


@pytest.fixture(scope="module")
def field_result(field):
    return analyze_field(field.micrograph())


def test_make_field_truth_is_consistent(field):
    assert len(field.dots) == 4 and int(field.labels.max()) == 4
    assert sum(d.touches_border for d in field.dots) >= 1
    ((a, b),) = field.touching
    grown = np.zeros_like(field.labels, bool)
    grown[1:, :] |= field.labels[:-1, :] == a + 1
    grown[:-1, :] |= field.labels[1:, :] == a + 1
    grown[:, 1:] |= field.labels[:, :-1] == a + 1
    grown[:, :-1] |= field.labels[:, 1:] == a + 1
    assert (grown & (field.labels == b + 1)).sum() > 10  # the pair shares a border
    for k, d in enumerate(field.dots):
        assert d.area_px == (field.labels == k + 1).sum()
        assert 0 <= d.uniform_fraction <= 1 and d.n_columns > 100


def test_a_dot_alone_keeps_its_pixels_and_only_it(field):
    """``SyntheticField.alone``: the touching pair's first dot with its own counts, its partner replaced by carbon."""
    ((a, b),) = field.touching
    alone = field.alone(a, margin_nm=2.0)
    rows, cols = np.nonzero(field.labels == a + 1)
    m = int(np.ceil(2.0 / PX))
    r0, c0 = max(rows.min() - m, 0), max(cols.min() - m, 0)
    window = (slice(r0, r0 + alone.shape[0]), slice(c0, c0 + alone.shape[1]))
    own = field.labels[window] == a + 1
    assert alone.pixel_size_nm == PX and own.sum() == field.dots[a].area_px
    np.testing.assert_array_equal(alone.data[own], field.image[window][own])
    partner = field.labels[window] == b + 1
    assert partner.sum() > 100 and (alone.data[partner] != field.image[window][partner]).mean() > 0.5
    labels, _, _ = segment_field(alone.data, pixel_size_nm=PX)
    assert int(labels.max()) == 1


def test_segmentation_finds_every_dot_splits_the_touching_pair_and_nothing_on_carbon(field):
    labels, _, _ = segment_field(field.image, pixel_size_nm=PX)
    matches = match_labels(labels, field.labels)
    for k in field.inside:
        assert matches[k][1] > 0.85, f"dot {k}: IoU {matches[k][1]:.2f}"
    ((a, b),) = field.touching
    assert matches[a][0] != matches[b][0]
    for v in range(1, int(labels.max()) + 1):  # every found dot lies on a true dot, none on bare carbon
        assert (field.labels[labels == v] > 0).mean() > 0.8


def test_segmentation_of_carbon_alone_finds_no_dot():
    from stem_pipeline.synthetic import make_carbon

    carbon = make_carbon((512, 512), pixel_size_nm=PX, dose=200, rng=5)
    labels, _, _ = segment_field(carbon.data, pixel_size_nm=PX)
    assert labels.max() == 0
    result = analyze_field(carbon)
    assert result.status == "no_crystal" and result.dots == [] and result.result.message


def test_edge_length_within_0_3_nm(field):
    labels, _, _ = segment_field(field.image, pixel_size_nm=PX)
    found = {s.label: s for s in dot_shapes(labels)}
    truth = dot_shapes(field.labels)  # the edge of the area the dot's columns cover
    for k, (v, _) in enumerate(match_labels(labels, field.labels)):
        if k in field.inside:
            assert abs(found[v].edge_px - truth[k].edge_px) * PX <= 0.3
            assert abs(found[v].edge_px * PX - field.dots[k].edge_nm) <= 0.45  # the generator's nominal edge
            assert found[v].aspect < 1.15


def _touching_pair(shape, rotations_deg, **kwargs):
    """A field of two touching dots of the given rotations (``make_field`` options in ``kwargs``)."""
    kwargs.setdefault("pixel_size_nm", PX)
    return make_field(shape, n_dots=2, n_touching_pairs=1, rotations_deg=rotations_deg, **kwargs)


def test_touching_dots_1_4_deg_apart_are_split_on_their_common_edge():
    """Two touching dots 1.4 deg apart (below the rotation split) at 0.02 nm/px, 30 counts (a tuning layout of
    the split along the squares' edges): both edges within 0.3 nm (the watershed's neck alone: -0.46 / +0.46 nm)."""
    px = 0.02
    fld = _touching_pair((1300, 1300), (27.51, 28.91), dot_sizes_nm=(7.0, 10.0), dose=30, pixel_size_nm=px, rng=8036)
    labels, _, _ = segment_field(fld.image, pixel_size_nm=px)
    found = {s.label: s for s in dot_shapes(labels)}
    truth = dot_shapes(fld.labels)
    match = match_labels(labels, fld.labels)
    assert match[0][0] != match[1][0] and min(match[0][1], match[1][1]) > 0.9
    for k in (0, 1):
        assert abs(found[match[k][0]].edge_px - truth[k].edge_px) * px <= 0.3


@pytest.mark.parametrize(
    ("rotations", "dose", "seed"),
    [((62.34, 63.11), 400, 46208), ((39.25, 40.47), 100, 46109)],
    ids=["cut-in-three", "one-seed"],
)
def test_touching_dots_placed_flush_are_split_in_two(rotations, dose, seed):
    """Two touching dots ~1 deg apart placed flush along their common edge (tuning layouts): their outline is
    nearly a rectangle, whose distance transform has one ridge. Its maxima gave the watershed three seeds
    (the pair cut in three, one dot into a sliver and the rest: IoU 0.61) or one (the pair merged into one
    dot: IoU 0.45 / 0.53). The sliver now joins the piece it makes one projected cube with; a region of one
    seed is cut in two halves when they are two cubes; the boundary then goes onto the squares' common edge."""
    fld = _touching_pair((640, 640), rotations, dot_sizes_nm=(8.0, 10.0), dose=dose, rng=seed)
    labels, _, _ = segment_field(fld.image, pixel_size_nm=PX)
    assert labels.max() == 2
    match = match_labels(labels, fld.labels)
    assert match[0][0] != match[1][0] and min(match[0][1], match[1][1]) > 0.9


def test_a_convex_region_is_cut_in_halves_only_when_they_are_two_cubes():
    """``halves``: a 2:1 rectangle (rotated 30 deg) is cut across its long axis into two squares; a 3:1 one
    (three dots, or a dot cut by the frame) is not cut."""
    from skimage.transform import rotate

    from stem_pipeline.dots import halves

    for long, cut in ((120, True), (180, False)):
        rect = np.zeros((300, 300))
        rect[120:180, 150 - long // 2 : 150 + long // 2] = 1
        region = rotate(rect, 30, order=0) > 0.5
        parts = halves(region, np.zeros(region.shape, bool))
        assert (parts is not None) == cut
        if cut:
            assert abs(int((parts == 1).sum()) - int((parts == 2).sum())) <= 1
            assert ((parts > 0) == region).all()
            assert max(s.aspect for s in dot_shapes(parts)) < 1.1


def test_a_watershed_sliver_joins_the_piece_it_makes_one_cube_with():
    """``merge_fragments`` on three pieces of a 2:1 rectangle cut across at 1/2 and 3/4: the quarter-sliver joins
    the quarter beside it (a square), not the half (a 3:2 rectangle); a sliver between two squares, with which
    it makes no cube, stays; three squares stay apart."""
    from stem_pipeline.dots import merge_fragments

    parts = np.zeros((60, 120), np.int32)
    parts[10:50, 10:50], parts[10:50, 50:70], parts[10:50, 70:90] = 1, 2, 3
    frame = np.zeros(parts.shape, bool)
    merged = merge_fragments(parts, frame)
    assert set(np.unique(merged)) == {0, 1, 2} and (merged[10:50, 50:90] == 2).all()
    parts[10:50, 90:110] = 3  # the sliver between two squares
    np.testing.assert_array_equal(merge_fragments(parts, frame), parts)
    squares = np.zeros((40, 120), np.int32)
    squares[:, :40], squares[:, 40:80], squares[:, 80:] = 1, 2, 3
    np.testing.assert_array_equal(merge_fragments(squares, np.zeros(squares.shape, bool)), squares)


def test_min_area_rectangle_of_a_rotated_square():
    theta = np.deg2rad(30.0)
    u, w = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    corners = np.array([a * u + b * w for a in (-5, 5) for b in (-5, 5)]) + 50
    a, b, angle = min_area_rectangle(corners)
    assert a == pytest.approx(10) and b == pytest.approx(10) and angle == pytest.approx(30.0)


def test_every_dot_is_reported_with_its_numbers_or_its_reason(field, field_result):
    assert field_result.status == "ok"
    assert len(field_result.dots) == 4
    by_truth = {}
    for d in field_result.dots:
        by_truth[int(np.bincount(field.labels[field_result.labels == d.dot]).argmax()) - 1] = d
    for k, truth in enumerate(field.dots):
        d = by_truth[k]
        if truth.touches_border:
            assert d.status == "refused" and d.message == "cut by the frame edge" and d.fractions is None
            continue
        assert d.status == "ok", d.message
        # Per-dot fractions: single-dot accuracy (benchmarks/fields.py states the error distribution).
        assert abs(d.fractions.uniform - truth.uniform_fraction) <= 0.05
        lo, hi = d.fractions.uniform_ci95
        assert lo - 0.02 <= truth.uniform_fraction <= hi + 0.02
        # Its columns, in field coordinates, are its own: on its true footprint, about as many as it has.
        r, c = np.round(d.columns.rc).astype(int).T
        assert (field.labels[r, c] == k + 1).mean() > 0.98
        assert abs(len(d.columns) - truth.n_columns) <= 0.02 * truth.n_columns
        assert (
            d.lattice_orientation_deg == pytest.approx(truth.rotation_deg, abs=1.0)
            or abs(d.lattice_orientation_deg - truth.rotation_deg) > 89.0
        )
    assert "1 refused (cut by the frame edge: 1)" in field_result.result.message


@pytest.mark.parametrize(("dose", "limit", "seed"), [(100, 0.03, 1341), (30, 0.06, 1342)])
def test_per_dot_fractions_are_the_dot_alone_and_within_the_single_dot_limits(dose, limit, seed):
    """A touching pair of mixed 8-10 nm dots (held-out seeds): each dot's fraction in the field is within the
    single-dot limit of its dose (issue 13), and is what the single-dot chain gives on the same dot alone
    (segmentation, crop and blanking of the neighbour add no error beyond the chain's sensitivity to
    its crop: 0.015 is the largest difference over 96 dots of tuning fields, seeds 20100-20107, where a
    different crop margin alone moves a dot's fraction by up to ~0.008; benchmarks/fields.py states the
    held-out distribution)."""
    fld = make_field(
        (704, 704),
        n_dots=2,
        n_touching_pairs=1,
        dot_sizes_nm=(8.0, 10.0),
        uniform_fractions=(0.5, 0.5),
        dose=dose,
        pixel_size_nm=PX,
        rng=seed,
    )
    result = analyze_field(fld.micrograph())
    assert [d.status for d in result.dots] == ["ok", "ok"]
    for d in result.dots:
        k = int(np.bincount(fld.labels[result.labels == d.dot]).argmax()) - 1
        truth = fld.dots[k].uniform_fraction
        assert abs(d.fractions.uniform - truth) <= limit
        assert d.fractions.uniform == pytest.approx(analyze(fld.alone(k)).fractions.uniform, abs=0.015)


def test_field_fractions_are_area_weighted_over_the_analysed_dots(field_result):
    ok = [d for d in field_result.dots if d.status == "ok"]
    areas = np.array([d.fractions.crystal_area_nm2 for d in ok])
    expected = float(np.sum(areas * [d.fractions.uniform for d in ok]) / areas.sum())
    f = field_result.fractions
    assert f.uniform == pytest.approx(expected) and f.ordered == pytest.approx(1 - expected)
    lo, hi = f.uniform_ci95
    assert lo <= expected <= hi
    assert "DerSimonian-Laird" in f.method
    df = field_result.to_dataframe()
    assert tuple(df.columns[: len(DOT_COLUMNS)]) == DOT_COLUMNS and len(df) == 4
    assert df.loc[df.status == "refused", "uniform_fraction"].isna().all()


def test_field_interval_combines_measurement_and_between_dot_spread(field_result):
    from stem_pipeline._types import AreaFractions

    shape = field_result.dots[0].shape

    def dot(u: float, half: float) -> DotResult:
        result = field_result.dots[1].result
        import dataclasses

        fr = AreaFractions(ordered=1 - u, uniform=u, uniform_ci95=(u - half, u + half), crystal_area_nm2=50.0)
        return DotResult(dot=1, shape=shape, status="ok", result=dataclasses.replace(result, fractions=fr))

    alike = field_fractions([dot(0.5, 0.05), dot(0.5, 0.05), dot(0.5, 0.05), dot(0.5, 0.05)])
    spread = field_fractions([dot(0.2, 0.05), dot(0.8, 0.05), dot(0.3, 0.05), dot(0.7, 0.05)])
    t3 = 3.182446  # Student t, 97.5 %, 3 degrees of freedom
    z = 1.959964  # normal, 97.5 %: each dot's sd is its 95 % half-width / z
    # Equal dots: tau^2 = 0, the interval of a mean of 4 independent measurements (sd / 2).
    assert alike.uniform_ci95[1] - alike.uniform_ci95[0] == pytest.approx(2 * t3 * (0.05 / z) / 2, rel=1e-5)
    # Spread-out dots: the between-dot sd (~0.27) dominates: half-width ~ t3 * 0.27 / 2.
    assert spread.uniform == pytest.approx(0.5)
    assert t3 * 0.25 / 2 < (spread.uniform_ci95[1] - spread.uniform_ci95[0]) / 2 < t3 * 0.3 / 2
    single = field_fractions([dot(0.4, 0.03)])
    assert single.uniform_ci95 == pytest.approx((0.37, 0.43))
    assert field_fractions([]) is None


def _bragg_peak_over_median(image: np.ndarray, rotation_deg: float, spacing_px: float) -> float:
    """Largest power at a square grid's four fundamental reflections over the median of their annulus."""
    img = image - image.mean()
    power = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
    m, n = img.shape
    radius = np.hypot(((np.arange(m) - m // 2) / m)[:, None], ((np.arange(n) - n // 2) / n)[None, :])
    median = float(np.median(power[np.abs(radius - 1 / spacing_px) < 0.01]))
    best = 0.0
    for k in range(4):
        t = np.deg2rad(rotation_deg + 90 * k)
        i = round(np.cos(t) / spacing_px * m) + m // 2
        j = round(np.sin(t) / spacing_px * n) + n // 2
        best = max(best, float(power[i - 2 : i + 3, j - 2 : j + 3].max()))
    return best / median


def test_no_dot_carries_another_dots_reflections(field_result):
    """Each dot's denoised crop has its own Bragg peaks and not those of the other (rotated) dots."""
    ok = [d for d in field_result.dots if d.status == "ok"]
    assert len(ok) >= 2
    spacing_px = 0.3145 / PX
    for d in ok:
        assert _bragg_peak_over_median(d.result.denoised, d.lattice_orientation_deg, spacing_px) > 1000
        for other in ok:
            if abs(((other.lattice_orientation_deg - d.lattice_orientation_deg) + 45) % 90 - 45) > 5:
                # The carbon alone reaches ~30 over the annulus median (issue 13); another dot's lattice ~10^3-10^4.
                assert _bragg_peak_over_median(d.result.denoised, other.lattice_orientation_deg, spacing_px) < 50


@pytest.fixture(scope="module")
def one_dot():
    """An 8 nm dot rotated 12 deg, 200 counts: the dot, ``analyze`` and ``analyze_field`` of it."""
    from stem_pipeline.synthetic import make_dot

    dot = make_dot((320, 320), dot_size_nm=8.0, rotation_deg=12.0, dose=200, rng=4)
    return dot, analyze(dot.micrograph()), analyze_field(dot.micrograph())


def test_one_dot_image_gives_the_same_numbers_as_analyze(one_dot):
    _, before, after = one_dot
    assert len(after.dots) == 1 and after.dots[0].status == "ok"
    assert after.fractions.uniform == before.fractions.uniform
    assert after.fractions.uniform_ci95 == before.fractions.uniform_ci95
    np.testing.assert_array_equal(after.result.columns.rc, before.columns.rc)
    assert after.dots[0].to_record()["n_columns"] == len(before.columns)
    assert abs(after.dots[0].shape.edge_px * PX - 8.0) < 0.45


def test_a_small_lone_dot_is_analysed_on_its_crop_in_the_fields_frame():
    """One 7 nm dot on a 640^2 field (its crop ~20 % of the frame, under ``LONE_CROP_SHARE``): analysed on its
    crop as a field's dots are (issue 20: the cost follows the dot, not the frame), with its columns, region
    map and record in the field's frame; the numbers are the whole-image analysis's within the chain's
    sensitivity to its crop (0.015, as for the dots of a field), and its 95 % interval holds the truth. (A
    single-dot accuracy bound is the benchmarks' to measure, over many held-out dots: this 7 nm dot errs by
    -0.031 with the column heights and -0.009 with the volumes, its crystal-edge part -0.018 either way.)"""
    from scipy.spatial import cKDTree

    from stem_pipeline.field import LONE_CROP_SHARE

    fld = make_field((640, 640), n_dots=1, dot_sizes_nm=(7.0, 7.0), uniform_fractions=(0.5,), dose=200, rng=21)
    result = analyze_field(fld.micrograph())
    (d,) = result.dots
    assert d.status == "ok" and d.message is None
    crop = d.analysis.micrograph.shape
    assert d.offset_rc != (0, 0) and crop[0] * crop[1] < LONE_CROP_SHARE * 640 * 640
    whole = analyze(fld.micrograph())
    assert d.fractions.uniform == pytest.approx(whole.fractions.uniform, abs=0.015)
    lo, hi = d.fractions.uniform_ci95
    assert lo <= fld.dots[0].uniform_fraction <= hi
    # The columns where the whole-image analysis puts them, in the field's frame.
    found = result.result.columns.rc
    dist, _ = cKDTree(whole.columns.rc).query(found)
    assert abs(len(found) - len(whole.columns)) <= 0.02 * len(whole.columns)
    assert np.median(dist) < 0.05 and np.mean(dist < 1.0) > 0.98
    region = result.result.labels.region_map
    assert region.shape == (640, 640)
    # Its crystal lies in the dot: the outline (the truth of the fractions; the crystal edge is placed at the
    # diffuse intensity step, issue 14), which reaches past the footprint its columns cover (``fld.labels``).
    assert np.mean(fld.region_map[region > 0] != 0) > 0.97
    # Its lattice is the image's (summary.json's ``lattice``), as the whole-image analysis reports it.
    assert result.result.lattices[0].spacing_px == pytest.approx(whole.lattices[0].spacing_px, rel=0.01)
    record = result.records()[0]
    assert abs(record["x_px"] - fld.dots[0].center_rc[1]) < 3 and abs(record["y_px"] - fld.dots[0].center_rc[0]) < 3


def test_a_small_lone_dot_cut_by_the_frame_is_analysed_on_its_crop_not_refused():
    """A lone dot the frame cuts is analysed (a zoomed-in dot, as before fields existed), also on its crop; in a
    field of several dots it would be refused."""
    fld = make_field((640, 640), n_dots=1, n_cut=1, dot_sizes_nm=(7.0, 7.0), uniform_fractions=(0.5,), rng=22)
    (d,) = analyze_field(fld.micrograph()).dots
    assert d.shape.touches_border and d.status == "ok" and d.fractions is not None
    assert d.message == "touches the frame edge: fractions are of its visible part"
    assert d.analysis.micrograph.shape[0] * d.analysis.micrograph.shape[1] < 0.5 * 640 * 640


def test_analyze_result_holds_its_dot_with_a_dataframe_view(one_dot):
    """``sp.analyze`` of a one-dot image: ``result.dots`` is that dot's dots.csv record, as the field's."""
    import stem_pipeline as sp

    dot, _, field_result = one_dot
    result = sp.analyze(dot.micrograph())
    (record,) = result.dots
    assert record["status"] == "ok" and record["message"] is None
    assert record["n_columns"] == len(result.columns)
    assert record["uniform_fraction"] == round(result.fractions.uniform, 6)
    assert (record["uniform_ci95_lo"], record["uniform_ci95_hi"]) == tuple(
        round(v, 6) for v in result.fractions.uniform_ci95
    )
    assert abs(record["edge_nm"] - 8.0) < 0.45 and not record["touches_border"]
    assert min(abs(record["lattice_orientation_deg"] - 12.0), 90 - abs(record["lattice_orientation_deg"] - 12.0)) < 1.0
    df = result.dots_dataframe()
    assert (
        tuple(df.columns[: len(DOT_COLUMNS)]) == DOT_COLUMNS
        and len(df) == 1
        and df.uniform_fraction[0] == record["uniform_fraction"]
    )
    # The field's result holds every dot's record, the same numbers for this one dot.
    (field_record,) = field_result.result.dots
    assert field_record == field_result.records()[0]
    for key in ("n_columns", "uniform_fraction", "uniform_ci95_lo", "uniform_ci95_hi", "status"):
        assert field_record[key] == record[key]
    assert tuple(field_result.result.dots_dataframe().columns[: len(DOT_COLUMNS)]) == DOT_COLUMNS
    # The records survive the result's .npz round trip.
    assert sp.PipelineResult.from_dict(result.to_dict()).dots == result.dots


def test_overview_field_gives_sizes_only():
    ov = make_overview_field((384, 384), n_dots=8, n_touching_pairs=1, pixel_size_nm=0.2, rng=1)
    labels = segment_overview(ov.image, pixel_size_nm=0.2)
    matches = match_labels(labels, ov.labels)
    assert all(iou > 0.8 for _, iou in matches)
    assert len({v for v, _ in matches}) == len(ov.dots)  # the touching pair is split
    found = {s.label: s for s in dot_shapes(labels)}
    truth = dot_shapes(ov.labels)
    for k, (v, _) in enumerate(matches):
        assert abs(found[v].edge_px - truth[k].edge_px) <= 1.0
    result = analyze_field(ov.micrograph())
    assert result.status == "ok" and result.fractions is None
    assert {d.status for d in result.dots} == {"overview"} and len(result.dots) == len(ov.dots)


def test_analyze_file_writes_the_per_dot_contract(tmp_path, field):
    from stem_pipeline import io
    from stem_pipeline.outputs import (
        COLUMNS_CSV,
        DOTS_CSV,
        SUMMARY,
        analyze_file,
        is_done,
        run_options,
    )
    from stem_pipeline.pipeline import PipelineConfig
    from stem_pipeline.provenance import file_hash
    from stem_pipeline.report.batch import write_reports

    src = io.save(field.micrograph(), tmp_path / "field.tif")
    folder = tmp_path / "out" / "field"
    summary = analyze_file(src, folder)
    on_disk = json.loads((folder / SUMMARY).read_text())
    assert on_disk["n_dots"] == 4 and len(on_disk["dots"]) == 4 and DOTS_CSV in on_disk["outputs"]
    dots = pd.read_csv(folder / DOTS_CSV)
    assert tuple(dots.columns[: len(DOT_COLUMNS)]) == DOT_COLUMNS  # then the phase columns
    assert set(dots.status) == {"ok", "refused"}
    assert dots.loc[dots.status == "refused", "message"].str.contains("cut by the frame").all()
    cols = pd.read_csv(folder / COLUMNS_CSV)
    assert "dot" in cols.columns and len(cols) == on_disk["n_columns"] == dots.n_columns.sum()
    assert set(cols["dot"]) == set(dots["dot"][dots.n_columns > 0])
    assert on_disk["fractions"]["uniform"] == pytest.approx(summary["fractions"]["uniform"])
    (folder / DOTS_CSV).unlink()  # a missing dots.csv means the image is redone
    assert not is_done(
        folder, config_hash=PipelineConfig().config_hash(), input_hash=file_hash(src), options=run_options()
    )
    written = write_reports([{**summary, "folder": "field"}], tmp_path / "out")
    assert written["dot_histogram"].name in written["html"].read_text()
    run_dots = pd.read_csv(tmp_path / "out" / DOTS_CSV)
    assert run_dots.columns[0] == "file" and len(run_dots) == 4 and (run_dots.file == str(src)).all()
    stats = json.loads((tmp_path / "out" / "report.json").read_text())["dot_statistics"]
    assert stats == on_disk["dot_statistics"] and stats["n_dots"] == 4 and stats["counts"]["refused"] >= 1
    inside = dots[~dots.touches_border]
    assert stats["edge_nm_mean"] == pytest.approx(inside.edge_nm.mean(), abs=1e-3)


def test_refusal_reasons_name_the_cause(field):
    from stem_pipeline._types import PipelineResult
    from stem_pipeline.dots.shape import refusal_reason

    m = field.micrograph()
    off_axis = (
        "columns found; phase fractions not reported, the two-phase model does not apply: the column grid "
        "is not square: its axes meet at 70.0 deg"
    )
    cases = {
        ("no_crystal", "no lattice found"): "lattice not resolved",
        ("no_crystal", "only 12 columns found (fewer than 20)"): "too few columns",
        ("ok", off_axis): "off the zone axis",
    }
    for (status, message), reason in cases.items():
        assert refusal_reason(PipelineResult(micrograph=m, status=status, message=message)).startswith(reason)


def test_a_dot_without_a_resolved_lattice_is_listed_not_dropped():
    """A bright square without columns (off the zone axis or amorphous) beside a crystalline dot."""
    from scipy import ndimage

    from stem_pipeline._types import Micrograph
    from stem_pipeline.synthetic import make_dot

    dot = make_dot((448, 640), dot_size_nm=7.0, rotation_deg=20.0, dose=None, center_offset_nm=(0.0, -4.5), rng=8)
    square = np.zeros(dot.clean.shape)
    square[150:300, 440:590] = 0.19  # the mean level of a dot's columns and body, no lattice
    clean = dot.clean + ndimage.gaussian_filter(square, 2.0)
    image = np.random.default_rng(8).poisson(clean * 200).astype(np.float32)
    micrograph = Micrograph(image, pixel_size_nm=PX)
    result = analyze_field(micrograph)
    statuses = sorted((d.status, (d.message or "")[:20]) for d in result.dots)
    assert statuses == [("ok", ""), ("refused", "lattice not resolved")]
    blob = next(d for d in result.dots if d.status == "refused")
    assert abs(blob.shape.x_px - 515) < 5 and abs(blob.shape.y_px - 225) < 5
    assert abs(blob.shape.edge_px - 150) < 8
    # The crystalline dot keeps the numbers of the single-dot chain.
    assert result.fractions.uniform == analyze(micrograph).fractions.uniform
    assert "lattice not resolved: 1" in result.result.message


def test_overlapping_dots_are_refused_with_that_reason():
    """Two dots stacked at 5 and 35 deg: both lattices where their outlines overlap; neither is analysed."""
    stacked = make_stacked_pair(rotations_deg=(5.0, 35.0), overlap_nm=2.5, rng=7)
    result = analyze_field(stacked.micrograph())
    assert len(result.dots) == 2  # the overlap, segmented as a piece of its own (its mean rotation), joined a dot
    assert {v for v, _ in match_labels(result.labels, stacked.labels)} == {1, 2}
    for d in result.dots:
        assert d.status == "refused" and d.message.startswith("overlapping another dot") and d.fractions is None
    assert result.fractions is None and "2 refused (overlapping another dot: 2)" in result.result.message


@pytest.mark.parametrize(
    ("rotations", "overlap_nm", "expected"), [((0.0, 45.0), 1.0, {1: {2}, 2: {1}}), ((0.0, 45.0), 0.0, {})]
)
def test_an_overlap_of_1_nm_is_found_and_flush_dots_do_not_overlap(rotations, overlap_nm, expected):
    from stem_pipeline.dots import overlapping_dots
    from stem_pipeline.field import _rotations

    pair = make_stacked_pair(rotations_deg=rotations, overlap_nm=overlap_nm, rng=3)
    labels, lattice, _ = segment_field(pair.image, pixel_size_nm=PX)
    assert labels.max() == 2
    joined, overlaps = overlapping_dots(
        pair.image, labels, _rotations(labels, dot_shapes(labels), lattice), pixel_size_nm=PX
    )
    assert joined is labels and overlaps == expected


def test_a_dot_3_px_inside_the_frame_is_not_cut_and_one_the_frame_cuts_is():
    """An 8 nm dot at 1.6 deg whose edge is 3 px (0.1 nm) from the frame: the 0.3 nm smoothing of the lattice
    strength carried its outline onto the frame, and a field refused it as 'cut by the frame edge'."""
    one = make_field((512, 512), n_dots=1, dot_sizes_nm=(8.0, 8.0), dose=100, pixel_size_nm=PX, rng=7513)
    last = int(np.nonzero(one.labels.any(axis=1))[0].max())  # the dot's last row
    for end, cut in ((last + 4, False), (last - 19, True)):
        labels, _, _ = segment_field(one.image[:end], pixel_size_nm=PX)
        ((v, iou),) = match_labels(labels, one.labels[:end])
        assert iou > 0.9
        assert dot_shapes(labels)[v - 1].touches_border == cut


def test_touching_dots_26_deg_apart_are_not_overlapping_at_30_counts():
    """Two touching dots 26.6 deg apart, 30 counts: each dot's own superlattice (2,1) reflection (0.281 nm, at
    atan(1/2) from its axes) lies at the other's rotation; read in the whole band of spacings it gave 0.018 of
    the dot's peak there (above OVERLAP_POWER_RATIO), and the pair was refused as overlapping."""
    from stem_pipeline.dots import overlapping_dots
    from stem_pipeline.field import _rotations

    pair = _touching_pair(
        (768, 768), (21.0, 47.57), dot_sizes_nm=(8.0, 10.0), uniform_fractions=(0.3, 0.3), dose=30, rng=7306
    )
    labels, lattice, _ = segment_field(pair.image, pixel_size_nm=PX)
    assert sorted(v for v, iou in match_labels(labels, pair.labels) if iou > 0.8) == [1, 2]
    joined, overlaps = overlapping_dots(
        pair.image, labels, _rotations(labels, dot_shapes(labels), lattice), pixel_size_nm=PX
    )
    assert joined is labels and overlaps == {}


def test_the_field_of_issue_13_three_rotated_dots():
    """Three 9 nm dots at 0, 27 and 55 deg, dim ratio 0.3, 200 counts (analyze ignored one and reported 0.474)."""
    fld = make_field(
        (1024, 1024),
        n_dots=3,
        dot_sizes_nm=(9.0, 9.0),
        rotations_deg=(0.0, 27.0, 55.0),
        uniform_fractions=(0.2, 0.8, 0.15),
        dim_ratio=0.3,
        dose=200,
        pixel_size_nm=PX,
        rng=13,
    )
    result = analyze_field(fld.micrograph())
    assert [d.status for d in result.dots] == ["ok"] * 3
    areas, truths = [], []
    for d in result.dots:
        k = int(np.bincount(fld.labels[result.labels == d.dot]).argmax()) - 1
        truth = fld.dots[k]
        assert abs(d.fractions.uniform - truth.uniform_fraction) <= 0.03
        assert abs(len(d.columns) - truth.n_columns) <= 0.02 * truth.n_columns
        areas.append(truth.area_px)
        truths.append(truth.uniform_fraction)
    assert abs(result.fractions.uniform - np.dot(areas, truths) / np.sum(areas)) <= 0.03


def test_lattice_field_by_strips_matches_the_whole_image(field, monkeypatch):
    """The filter bank over strips of rows (with a halo) gives the maps of the whole-image filtering."""
    from stem_pipeline.dots import strength

    whole = strength.lattice_field(field.image, pixel_size_nm=PX)
    monkeypatch.setattr(strength, "STRIP_PIXELS", 300 * 1000)  # strips of ~100 rows plus their halo
    strips = strength.lattice_field(field.image, pixel_size_nm=PX)
    scale = float(whole.strength.max())
    np.testing.assert_allclose(strips.strength, whole.strength, atol=1e-3 * scale)
    np.testing.assert_allclose(np.abs(strips.orientation - whole.orientation), 0, atol=1e-3 * scale)


def test_band_energies_on_the_kept_pixels_are_those_of_the_whole_strip(field):
    """The filter bank's second pass and sums on the strip less its padding only: the same numbers, bit for bit."""
    from stem_pipeline.dots import strength

    strip = np.pad(field.image[100:300, 50:420].astype(np.float32), ((40, 40), (40, 40)))
    f_lo, f_hi = (PX / s for s in strength.SPACING_BAND_NM[::-1])
    whole = strength._band_energies(strip, f_lo, f_hi, keep=(slice(0, strip.shape[0]), slice(0, strip.shape[1])))
    keep = (slice(40, 240), slice(40, 410))
    kept = strength._band_energies(strip, f_lo, f_hi, keep=keep)
    for a, b in zip(kept, whole):
        assert a.shape == (200, 370)
        np.testing.assert_array_equal(a, b[keep])


def test_a_large_image_is_segmented_on_a_coarser_grid_into_the_same_dots(field, monkeypatch):
    """Above MAX_MAP_SIDE_PX the maps are block means: the same dots, outlines within a block."""
    from stem_pipeline.dots import strength

    full, _, _ = segment_field(field.image, pixel_size_nm=PX)
    monkeypatch.setattr(strength, "MAX_MAP_SIDE_PX", 256)  # 768 px: blocks of 3 x 3
    coarse, lattice, _ = segment_field(field.image, pixel_size_nm=PX)
    assert lattice.factor == 3 and lattice.strength.shape == (256, 256) and coarse.shape == field.image.shape
    assert coarse.max() == full.max()
    assert all(iou > 0.9 for _, iou in match_labels(coarse, full))


def test_rotation_peak_finder_matches_scipy_find_peaks():
    """The histogram peak finder that spares the scipy.signal import finds exactly scipy's peaks,
    flat tops and equal heights included."""
    from scipy import ndimage
    from scipy.signal import find_peaks as scipy_find_peaks

    from stem_pipeline.dots.segment import find_peaks

    rng = np.random.default_rng(5)
    n_peaks = 0
    for _ in range(300):
        hist = rng.exponential(size=180) * (rng.random(180) < rng.random())
        hist = ndimage.gaussian_filter1d(hist, rng.uniform(0.5, 3), mode="wrap")
        hist = np.round(hist, 1) if rng.random() < 0.3 else hist  # plateaus and ties
        x = np.concatenate([hist, hist, hist])
        top = x.max() or 1.0
        kw = {"height": 0.15 * top, "prominence": 0.1 * top, "distance": int(rng.integers(1, 20))}
        expected = scipy_find_peaks(x, **kw)[0]
        np.testing.assert_array_equal(find_peaks(x, **kw), expected)
        n_peaks += len(expected)
    assert n_peaks > 300  # the cases had peaks to find


def test_fft_gaussian_matches_ndimage_gaussian_filter():
    """The FFT smoothing of the lattice-strength maps equals ndimage's reflect-mode filter to float rounding,
    at widths near, below and above the FFT path's limits (a kernel wider than the image falls back)."""
    from scipy import ndimage

    from stem_pipeline.dots.strength import gaussian_smooth

    rng = np.random.default_rng(3)
    for shape, sigma in [((96, 131), 4.3), ((64, 40), 0.2), ((50, 70), 15.0), ((128, 128), 9.0)]:
        # float32: the cast rounds the float64 FFT's error away (1-2 ulp); float64: FFT rounding of the largest value.
        for dtype, rtol, atol in ((np.float32, 2 * np.finfo(np.float32).eps, 0.0), (np.float64, 0.0, 1e-12 * 600)):
            image = (rng.random(shape) ** 4 * 600).astype(dtype)
            expected = ndimage.gaussian_filter(image, sigma, mode="reflect")
            got = gaussian_smooth(image, sigma)
            assert got.dtype == expected.dtype
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("factor", [2, 3])
def test_block_mean_equals_the_blockwise_sums_to_the_bit(factor):
    """The lattice maps' block means (strided pairs for 2 x 2 blocks) equal reduceat's block sums over the counts,
    for partial blocks at odd edges too, and for a strided view as the strips pass it."""
    from stem_pipeline.dots.strength import block_mean

    rng = np.random.default_rng(5)
    for shape in [(64, 64), (63, 41), (5, 3), (1, 7), (1, 1)]:
        for dtype in (np.float32, np.float64):
            image = (rng.random((shape[0] + 4, shape[1] + 6)) * 1e3).astype(dtype)[2:-2, 3:-3]
            starts = [np.arange(0, n, factor) for n in shape]
            sums = np.add.reduceat(np.add.reduceat(image, starts[0], axis=0), starts[1], axis=1)
            counts = np.outer(*(np.diff(np.append(s, n)) for s, n in zip(starts, shape)))
            expected = (sums / counts).astype(np.float32)
            got = block_mean(image, factor)
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


def test_label_medians_equal_ndimage_median_to_the_bit():
    """Each region's median as ndimage's (middle value, or the mean of the two middle ones), with ties, both dtypes."""
    from scipy import ndimage

    from stem_pipeline.dots.segment import label_medians

    rng = np.random.default_rng(8)
    for _ in range(40):
        shape = tuple(rng.integers(1, 60, 2))
        labels, n = ndimage.label(rng.random(shape) < rng.uniform(0.2, 0.8))
        if n == 0:
            continue
        for dtype in (np.float64, np.float32):
            values = (rng.random(shape) * 100).astype(dtype)
            values = np.round(values) if rng.random() < 0.3 else values
            expected = np.asarray(ndimage.median(values, labels, np.arange(1, n + 1)))
            got = label_medians(values, labels, n)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def test_edge_pixels_are_the_mask_less_its_erosion():
    """A dot's outline pixels (its rectangle's corners): ndimage's cross erosion with the array edge outside,
    on random masks of every density and on masks one pixel thin."""
    from scipy import ndimage

    from stem_pipeline.dots.shape import edge_pixels

    rng = np.random.default_rng(5)
    for _ in range(200):
        m, n = rng.integers(1, 30, 2)
        mask = rng.random((m, n)) < rng.uniform(0.0, 1.0)
        np.testing.assert_array_equal(edge_pixels(mask), mask & ~ndimage.binary_erosion(mask))
    assert edge_pixels(np.ones((5, 6), bool)).sum() == 5 * 6 - 3 * 4  # the interior 3 x 4 is not edge


def test_dot_shapes_centroid_area_and_border_are_those_of_the_pixels():
    """dot_shapes' centroid (from the counts per row and column) is the mean of each dot's pixel coordinates to
    the bit, its area their count, and a dot touches the border when one of its pixels is on the frame."""
    from scipy import ndimage

    from stem_pipeline.dots import dot_shapes

    rng = np.random.default_rng(8)
    for _ in range(30):
        m, n = rng.integers(2, 70, 2)
        labels = ndimage.label(rng.random((m, n)) < rng.uniform(0.2, 0.9))[0].astype(np.int32)
        for s in dot_shapes(labels):
            rr, cc = np.nonzero(labels == s.label)
            assert (s.y_px, s.x_px, s.area_px) == (float(rr.mean()), float(cc.mean()), len(rr))
            on_frame = rr.min() == 0 or cc.min() == 0 or rr.max() == m - 1 or cc.max() == n - 1
            assert s.touches_border == on_frame
