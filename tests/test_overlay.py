"""The colour-coded overlay figure."""

from __future__ import annotations

import numpy as np
import pytest

from stem_pipeline import Columns
from stem_pipeline.classify import classify_columns
from stem_pipeline.report import plot_overlay, save_overlay
from stem_pipeline.synthetic import make_dot


def _classified():
    dot = make_dot((200, 200), dose=200, rng=4004, dot_size_nm=5.5, domain_size_nm=2.5)
    cols = Columns(
        rc=dot.rc,
        peak=dot.clean[np.round(dot.rc[:, 0]).astype(int), np.round(dot.rc[:, 1]).astype(int)],
        pixel_size_nm=dot.pixel_size_nm,
    )
    labels, fractions = classify_columns(cols, shape=dot.image.shape, crystal_mask=dot.region_map > 0)
    return dot, cols, labels, fractions


def test_save_overlay_writes_png_atomically(tmp_path):
    dot, cols, labels, fractions = _classified()
    image = dot.image.copy()
    path = save_overlay(tmp_path / "sub" / "overlay.png", image, cols, labels, fractions, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]  # no temp file left
    assert np.array_equal(image, dot.image)


def test_png_bytes_read_back_as_written_by_other_readers():
    """raster.png_bytes (our encoder, Up-filtered rows): Pillow (which checks every chunk's CRC) and imageio read
    back the same grey and RGB pixels, including row-to-row differences that wrap around 256; bad shapes refused."""
    import io

    import imageio.v3 as iio
    from PIL import Image

    from stem_pipeline.report.raster import png_bytes

    rng = np.random.default_rng(3)
    for shape in [(1, 1), (7, 5), (7, 5, 3), (64, 33, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        pixels[1::2] = 255 - pixels[1::2] // 7  # large steps between rows, both signs
        data = png_bytes(pixels)
        Image.open(io.BytesIO(data)).verify()
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)
        np.testing.assert_array_equal(iio.imread(data, extension=".png"), pixels)
    for bad in [np.zeros((4, 4, 4), np.uint8), np.zeros((0, 3), np.uint8), np.zeros(5, np.uint8)]:
        with pytest.raises(ValueError, match="picture"):
            png_bytes(bad)


def _colour_blobs(png: np.ndarray, colour: str) -> np.ndarray:
    """Centroids (row, col) of the blobs of ``png`` in ``colour`` at the markers' opacity over grey."""
    from scipy import ndimage

    mask = _is(colour, png[..., :3] / 255.0)
    labelled, n = ndimage.label(mask)
    return np.array(ndimage.center_of_mass(mask, labelled, range(1, n + 1))).reshape(-1, 2)


def test_png_overlay_draws_every_column_in_its_colour_at_its_position(tmp_path):
    import imageio.v3 as iio

    from stem_pipeline.report.overlay import COLOURS

    dot, cols, labels, fractions = _classified()
    png = iio.imread(save_overlay(tmp_path / "o.png", dot.image, cols, labels, fractions, title="t"))
    names = labels.contrast_names
    found = {name: _colour_blobs(png, COLOURS[name]) for name in ("bright", "dim", "uniform")}
    # One separate disc per column (markers smaller than the spacing never merge), in its colour ...
    for name, blobs in found.items():
        assert abs(len(blobs) - (names == name).sum()) <= 0.05 * (names == name).sum(), name
    # ... where the column is: the discs are the columns scaled by one factor and shifted.
    rc = np.concatenate([cols.rc[names == n] for n in found])
    blobs = np.concatenate(list(found.values()))
    scale = np.ptp(blobs[:, 1]) / np.ptp(rc[:, 1])
    shift = np.median(blobs, axis=0) - scale * np.median(rc, axis=0)
    from scipy.spatial import cKDTree

    assert np.median(cKDTree(scale * rc + shift).query(blobs)[0]) < 1.0


def test_save_overlay_refuses_a_format_it_does_not_write(tmp_path):
    dot, cols, labels, fractions = _classified()
    with pytest.raises(ValueError, match=r"o\.svg: save_overlay writes PNG"):
        save_overlay(tmp_path / "o.svg", dot.image, cols, labels, fractions)
    assert not list(tmp_path.iterdir())


def _white_runs(png: np.ndarray) -> set[int]:
    """Lengths of the horizontal runs of pure white pixels bounded by other pixels on both sides, in the rows
    of the image (mostly not white; the title's and legend's rows are)."""
    white = np.all(png[..., :3] == 255, axis=-1)
    runs = set()
    for row in white[white.mean(axis=1) < 0.5]:
        edges = np.flatnonzero(np.diff(row.astype(np.int8)))  # a run of white spans a + 1 .. b
        runs |= {int(b - a) for a, b in zip(edges[:-1], edges[1:], strict=True) if row[a + 1]}
    return runs


def test_png_overlay_has_its_scale_bar_only_with_calibration(tmp_path):
    import imageio.v3 as iio

    from stem_pipeline.report.overlay import _nice_length_nm

    dot, cols, labels, fractions = _classified()
    calibrated = iio.imread(save_overlay(tmp_path / "a.png", dot.micrograph(), cols, labels, fractions))
    bar_px = (
        _nice_length_nm(200 * dot.pixel_size_nm) / dot.pixel_size_nm * 550 / 200 - 2
    )  # drawn 550 px wide, in a black edge
    assert any(abs(run - bar_px) <= 3 for run in _white_runs(calibrated))
    uncalibrated = iio.imread(save_overlay(tmp_path / "b.png", dot.image, cols.replace(pixel_size_nm=None), labels))
    assert not any(abs(run - bar_px) <= 3 for run in _white_runs(uncalibrated))


def test_plot_overlay_colours_legend_and_scale_bar():
    from matplotlib.colors import to_hex

    dot, cols, labels, fractions = _classified()
    fig = plot_overlay(dot.micrograph(), cols, labels, fractions)
    ax = fig.axes[0]
    colours = {to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert {"#e41a1c", "#8e44ad", "#2ca02c"} <= colours  # red bright, purple dim, green uniform
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert f"{fractions.uniform:.1%}" in legend and "[" in legend
    assert any(t.get_text().endswith(" nm") for t in ax.texts)  # scale bar label
    fig_uncal = plot_overlay(dot.image, cols.replace(pixel_size_nm=None), labels)
    assert not any(t.get_text().endswith(" nm") for t in fig_uncal.axes[0].texts)
    import matplotlib.pyplot as plt

    plt.close("all")


def _pixel_rgb(fig, ax, x, y):
    """The drawn colour (0-1 RGB) at data point (x, y)."""
    fig.canvas.draw()
    buf = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    px, py = ax.transData.transform((x, y))
    return buf[round(buf.shape[0] - py), round(px)]


def _is(colour, rgb):
    """True when ``rgb`` (0-1, last axis RGB) is ``colour`` at the markers' opacity over any grey."""
    from matplotlib.colors import to_rgb

    from stem_pipeline.report.overlay import MARKER_ALPHA

    target = np.asarray(to_rgb(colour))
    grey = (np.asarray(rgb) - MARKER_ALPHA * target) / (1 - MARKER_ALPHA)  # what lies underneath
    return (np.ptp(grey, axis=-1) < 0.2) & np.all((grey > -0.1) & (grey < 1.1), axis=-1)


def test_columns_are_drawn_in_their_colours_at_their_positions():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stem_pipeline.report.overlay import COLOURS

    dot, cols, labels, _ = _classified()
    fig = Figure(figsize=(8, 8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plot_overlay(dot.image, cols, labels, ax=ax)
    names = labels.contrast_names
    for name in ("bright", "dim", "uniform"):
        hits = [_is(COLOURS[name], _pixel_rgb(fig, ax, c, r)) for r, c in cols.rc[names == name][:10]]
        assert sum(hits) >= 8, name
    # Half-way between two columns the image shows through: markers are smaller than the spacing.
    (r0, c0), (r1, c1) = cols.rc[0], cols.rc[np.argsort(np.hypot(*(cols.rc - cols.rc[0]).T))[1]]
    between = _pixel_rgb(fig, ax, (c0 + c1) / 2, (r0 + r1) / 2)
    assert not any(_is(colour, between) for colour in COLOURS.values())


def test_refused_image_draws_its_columns_visibly(tmp_path):
    import imageio.v3 as iio

    from stem_pipeline._types import UNLABELLED_COLOUR

    dot, cols, _, _ = _classified()
    fig = plot_overlay(dot.image, cols, None)
    ax = fig.axes[0]
    hits = [_is(UNLABELLED_COLOUR, _pixel_rgb(fig, ax, c, r)) for r, c in cols.rc[:20]]
    assert sum(hits) >= 16
    png = iio.imread(save_overlay(tmp_path / "o.png", dot.image, cols, None, pixel_size_nm=0.035))[..., :3] / 255
    cyan = (png[..., 2] > 0.6) & (png[..., 0] < 0.4)  # the unlabelled colour over grey
    assert cyan.sum() > 5 * len(cols)


def test_overlay_without_columns_shows_the_image(tmp_path):
    import imageio.v3 as iio

    dot, _, _, _ = _classified()
    png = iio.imread(save_overlay(tmp_path / "o.png", dot.image, None, None, None, pixel_size_nm=0.035))[..., :3]
    grey = png.std(axis=-1) < 2
    assert grey.mean() > 0.9  # the image, in grey
    assert np.ptp(png[grey]) > 100  # with contrast, not a blank figure


def test_legend_is_outside_the_image_and_the_title_is_the_file_name():
    dot, cols, labels, fractions = _classified()
    fig = plot_overlay(dot.micrograph(source="/data/qd_017.dm4"), cols, labels, fractions)
    ax = fig.axes[0]
    assert ax.get_title() == "qd_017.dm4"
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    image = ax.get_images()[0].get_window_extent()
    assert legend.y1 <= image.y0 + 1  # below the image, not over it


@pytest.mark.parametrize(("shape", "width_px"), [((224, 1312), 1312), ((512, 512), 550), ((4000, 4000), 1760)])
def test_figure_follows_the_image_size_up_to_a_limit(tmp_path, shape, width_px):
    import imageio.v3 as iio

    image = np.random.default_rng(0).random(shape).astype(np.float32)
    png = iio.imread(save_overlay(tmp_path / "o.png", image, None, None))
    assert abs(png.shape[1] - width_px) <= 0.02 * width_px


def test_plot_overlay_is_a_pyplot_figure_that_plt_show_displays():
    import matplotlib.pyplot as plt

    dot, cols, labels, fractions = _classified()
    fig = plot_overlay(dot.micrograph(), cols, labels, fractions)
    try:
        assert fig.canvas.manager is not None and plt.fignum_exists(fig.number)
        assert plt.gcf() is fig
    finally:
        plt.close(fig)


def test_block_mean_by_strips_equals_the_reshaped_mean():
    from stem_pipeline.report.overlay import _block_mean

    image = np.random.default_rng(0).normal(size=(37, 50)).astype(np.float32)
    expected = image[:36, :48].reshape(12, 3, 16, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(_block_mean(image, 3), expected, rtol=1e-6)


def test_large_image_is_drawn_block_averaged_in_its_own_pixel_coordinates(monkeypatch):
    from stem_pipeline.report import overlay

    dot, cols, labels, fractions = _classified()
    monkeypatch.setattr(overlay, "MAX_DRAWN_PX", 64)  # 200 px: drawn at a quarter
    fig = plot_overlay(dot.image, cols, labels, fractions)
    ax = fig.axes[0]
    grey, region = ax.get_images()
    assert grey.get_array().shape == (50, 50) and region.get_array().shape == (50, 50)
    assert grey.get_extent() == [-0.5, 199.5, 199.5, -0.5]
    assert ax.get_xlim() == (-0.5, 199.5)
