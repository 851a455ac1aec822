"""The colour-coded overlay figure."""

from __future__ import annotations

import numpy as np

from stem_pipeline import Columns
from stem_pipeline.classify import classify_columns
from stem_pipeline.report import plot_overlay, save_overlay
from stem_pipeline.synthetic import make_dot


def _classified():
    dot = make_dot((200, 200), dose=200, rng=4004, dot_size_nm=5.5, domain_size_nm=2.5)
    cols = Columns(rc=dot.rc, peak=dot.clean[np.round(dot.rc[:, 0]).astype(int), np.round(dot.rc[:, 1]).astype(int)],
                   pixel_size_nm=dot.pixel_size_nm)
    labels, fractions = classify_columns(cols, shape=dot.image.shape, crystal_mask=dot.region_map > 0)
    return dot, cols, labels, fractions


def test_save_overlay_writes_png_atomically(tmp_path):
    dot, cols, labels, fractions = _classified()
    image = dot.image.copy()
    path = save_overlay(tmp_path / "sub" / "overlay.png", image, cols, labels, fractions, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["overlay.png"]  # no temp file left
    assert np.array_equal(image, dot.image)


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


def test_overlay_without_labels(tmp_path):
    dot, cols, _, _ = _classified()
    path = save_overlay(tmp_path / "o.png", dot.image, None, None, None, pixel_size_nm=0.035)
    assert path.stat().st_size > 1000


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
