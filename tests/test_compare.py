"""Mean cells, registration, metrics, fits and ranking on synthetic images with known answers.

These tests need no simulation: the "models" are periodic cells of Gaussian
columns whose relative heights change with a "thickness", a stand-in for a
simulated thickness series (the simulation-based ranking is in
``test_compare_models.py``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stem_pipeline._types import CONTRASTS, Comparison
from stem_pipeline.compare import (
    CompareConfig,
    affine_match,
    blur_periodic,
    cell_origins,
    chi2,
    column_ratio,
    fit_cell,
    mean_cell,
    ncc,
    plot_comparison,
    profile_minimum,
    rank,
    region_select,
    register_cell,
    render,
    rmse,
    sample_periodic,
    ssim,
    write_comparison,
)
from stem_pipeline.synthetic import make_dot, render_gaussians

PX_MODEL = 0.02  # nm, sampling of the stand-in model cells
THICKNESSES = [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]


def model_cell(kind: str, t: float) -> tuple[np.ndarray, float]:
    """A periodic one-cell image of Gaussian columns; heights depend on the thickness ``t``.

    ``cs``: CsPbI3 [001]-like (bright corner, dimmer Cs centre and I edges);
    ``fa``: FAPbI3 [001]-like (near-empty centre, a = 0.636 nm);
    ``pbi2``: a centred cell of another period, uniform columns.
    """
    a = {"cs": 0.629, "fa": 0.636, "pbi2": 0.45}[kind]
    n = int(round(a / PX_MODEL))
    if kind == "cs":
        sites = [((0, 0), t**0.8), ((0.5, 0), 0.5 * t**0.9), ((0, 0.5), 0.5 * t**0.9), ((0.5, 0.5), 0.7 * t**0.7)]
    elif kind == "fa":
        sites = [((0, 0), t**0.8), ((0.5, 0), 0.5 * t**0.9), ((0, 0.5), 0.5 * t**0.9), ((0.5, 0.5), 0.05 * t)]
    else:
        sites = [((0, 0), t**0.8), ((0.5, 0.5), t**0.8)]
    rc = np.array([[(f1 + i) * n, (f2 + j) * n] for (f1, f2), _ in sites for i in (-1, 0, 1) for j in (-1, 0, 1)])
    amp = np.repeat([h for _, h in sites], 9)
    return render_gaussians((n, n), rc, amp, 0.02 / (a / n)) + 0.05 * t, a / n


def crystal_image(kind="cs", t=8.0, *, fwhm_nm=0.094, shape=(192, 192), px=0.035, angle_deg=12.0, dose=300, rng=0):
    """A noisy rotated crystal image rendered from a model cell, with its true lattice and columns."""
    rng = np.random.default_rng(rng)
    cell, pxa = model_cell(kind, t)
    cell = blur_periodic(cell, pxa, fwhm_nm)
    th = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])  # image -> model frame
    origin = np.array([0.13, 0.07])
    rr, cc = np.mgrid[: shape[0], : shape[1]] * px
    clean = sample_periodic(cell, pxa, np.stack([rr, cc], -1) @ rot + origin)
    clean *= dose / clean.max()
    a = cell.shape[0] * pxa
    # Column grid (a/2) in image pixels, and every grid column inside the image.
    v = np.array([[a / 2, 0.0], [0.0, a / 2]]) @ np.linalg.inv(rot) / px
    start = -origin @ np.linalg.inv(rot) / px
    i, j = np.meshgrid(np.arange(-60, 60), np.arange(-60, 60), indexing="ij")
    rc = start + i.ravel()[:, None] * v[0] + j.ravel()[:, None] * v[1]
    inside = np.all((rc >= 2) & (rc < np.array(shape) - 3), axis=1)
    return rng.poisson(clean).astype(np.float32), v, rc[inside]


# --------------------------------------------------------------------------- mean cell


def test_mean_cell_recovers_dim_ratio_and_picks_bright_origins():
    dot = make_dot((256, 256), dot_size_nm=8.0, uniform_fraction=0.0, dim_ratio=0.6, dose=400, rng=3)
    bright = dot.contrast == CONTRASTS.index("bright")
    intensity = dot.amplitude + np.random.default_rng(0).normal(0, 5, len(dot.amplitude))
    origins = cell_origins(dot.rc, dot.lattice_vectors_px, intensity=intensity, supercell=(2, 2))
    # Every origin is a bright column.
    d = np.min(np.linalg.norm(origins[:, None] - dot.rc[bright][None], axis=2), axis=1)
    assert np.all(d < 1e-6)
    image = dot.image.copy()
    cell = mean_cell(dot.micrograph(), dot.lattice_vectors_px, origins, supercell=(2, 2))
    np.testing.assert_array_equal(image, dot.image)  # input untouched
    assert cell.mean.dtype == np.float32 and cell.sem.dtype == np.float32
    assert cell.count > 100
    n1, n2 = cell.shape
    bg = 0.25 * 400  # dot body + carbon level, known from make_dot's defaults
    peak = cell.mean[0, 0] - bg
    for site in ((n1 // 2, 0), (0, n2 // 2), (n1 // 2, n2 // 2)):
        assert abs((cell.mean[site] - bg) / peak - 0.6) < 0.05
    # The standard error is the scatter of a Poisson mean: about sqrt(mean / count).
    ratio = cell.sem[0, 0] / np.sqrt(cell.mean[0, 0] / cell.count)
    assert 0.7 < ratio < 1.6
    np.testing.assert_allclose(cell.vectors_nm, 2 * dot.lattice_vectors_px * dot.pixel_size_nm)


def test_mean_cell_rejects_too_few_cells():
    img = np.zeros((20, 20), np.float32)
    with pytest.raises(ValueError, match="cells fit"):
        mean_cell(img, np.eye(2) * 9, np.array([[5.0, 5.0]]), supercell=(2, 2))


def test_region_select_by_phase_and_roi():
    region_map = np.zeros((10, 10), np.int8)
    region_map[:, :5] = 1
    region_map[:, 5:] = 2
    rc = np.array([[2.0, 2.0], [2.0, 7.0], [8.0, 8.0]])
    np.testing.assert_array_equal(region_select(rc, region="ordered", region_map=region_map), [True, False, False])
    np.testing.assert_array_equal(region_select(rc, region="uniform", region_map=region_map), [False, True, True])
    np.testing.assert_array_equal(region_select(rc, region="all", roi=(0, 5, 0, 10)), [True, True, False])
    with pytest.raises(ValueError, match="region must be"):
        region_select(rc, region="bright")


# --------------------------------------------------------------------------- metrics


def test_metrics_known_values():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    assert ncc(a, 2 * a + 3) == pytest.approx(1.0)
    assert ncc(a, -a) == pytest.approx(-1.0)
    matched, gain, offset = affine_match(2 * a + 3, a)
    assert gain == pytest.approx(0.5) and offset == pytest.approx(-1.5)
    np.testing.assert_allclose(matched, a, atol=1e-12)
    assert rmse(a, a + 0.1) == pytest.approx(0.1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.random((32, 32))) < 0.3
    # Poisson data against its expectation: reduced chi2 about 1.
    truth = np.full((200, 200), 50.0)
    data = rng.poisson(truth).astype(float)
    assert chi2(data, truth, truth) == pytest.approx(1.0, abs=0.03)


def test_column_ratio_of_a_known_cell():
    cell, _ = model_cell("cs", 8.0)
    sites = np.array([[0, 0], [0.5, 0], [0, 0.5], [0.5, 0.5]])
    ratio = column_ratio(cell - 0.05 * 8.0, sites)
    expected = 8**0.8 / np.mean([0.5 * 8**0.9, 0.5 * 8**0.9, 0.7 * 8**0.7])
    assert ratio == pytest.approx(expected, rel=0.03)
    uniform, _ = model_cell("pbi2", 8.0)
    assert column_ratio(uniform, np.array([[0, 0], [0.5, 0.5]])) == pytest.approx(1.0, abs=0.02)


def test_profile_minimum_parabola():
    x = np.linspace(0, 10, 11)
    n, x0, sigma = 400.0, 4.3, 0.7
    p = 2.0 * (1 + (x - x0) ** 2 / (n * sigma**2))
    best, std = profile_minimum(x, p, n_data=n)
    assert best == pytest.approx(x0, abs=1e-9)
    assert std == pytest.approx(sigma, rel=1e-6)
    best, std = profile_minimum(x, (x - 12) ** 2 + 1, n_data=n)  # minimum beyond the grid
    assert best == 10 and std == 1


# --------------------------------------------------------------------------- registration and fit


def _experimental_cell(kind="cs", t=8.0, **kw):
    image, v, rc = crystal_image(kind, t, **kw)
    intensity = image[tuple(np.round(rc).astype(int).T)]
    origins = cell_origins(rc, v, intensity=intensity, supercell=(2, 2))
    return mean_cell(image, v, origins, supercell=(2, 2), pixel_size_nm=0.035)


def test_register_recovers_rotation_and_shift():
    cell = _experimental_cell("cs", 8.0, angle_deg=12.0, fwhm_nm=0.094)
    model, px = model_cell("cs", 8.0)
    model = blur_periodic(model, px, 0.094)
    reg = register_cell(cell, model, px)
    assert reg.ncc > 0.99
    assert reg.scale == pytest.approx(1.0)
    # The rotation is the image rotation up to the square's symmetry (multiples of 90 deg, mirrors).
    assert min(abs((reg.rotation_deg - s * 12.0 + 45) % 90 - 45) for s in (1, -1)) < 1.0
    patch = render(model, px, reg, cell.positions_nm((2, 2)))
    assert ncc(cell.tile((2, 2))[0], patch) > 0.99


@pytest.fixture(scope="module")
def cs_cell():
    return _experimental_cell("cs", 8.0, fwhm_nm=0.094)


def _fit(cell, kind):
    series = [model_cell(kind, t)[0] for t in THICKNESSES]
    return fit_cell(cell, series, model_cell(kind, 1.0)[1], thicknesses_nm=THICKNESSES)


def test_fit_recovers_thickness_and_source_size(cs_cell):
    fit = _fit(cs_cell, "cs")
    assert abs(fit.thickness_nm - 8.0) <= 2.0  # within one step of the series
    assert fit.thickness_nm_std is not None and 0 < fit.thickness_nm_std < 2.0
    assert abs(fit.source_fwhm_nm - 0.094) < 0.035  # the FWHM it was blurred with, not a sigma
    assert fit.ncc > 0.99
    assert fit.column_ratio_sim == pytest.approx(fit.column_ratio_exp, rel=0.05)
    assert fit.chi2_grid.shape == (len(THICKNESSES), len(fit.source_fwhms_nm))


def test_right_model_has_lowest_chi2(cs_cell):
    fits = {k: _fit(cs_cell, k) for k in ("cs", "fa", "pbi2")}
    assert fits["cs"].chi2 < fits["fa"].chi2 and fits["cs"].chi2 < fits["pbi2"].chi2
    fa_cell = _experimental_cell("fa", 8.0, angle_deg=-20.0, rng=5)
    assert _fit(fa_cell, "fa").chi2 < min(_fit(fa_cell, k).chi2 for k in ("cs", "pbi2"))


def test_rank_and_write_comparison(tmp_path, cs_cell):
    def comp(model, region, c2, n):
        return Comparison(model, region, n, 0.9, 1.0, c2, 5.0, 1.0, 0.03, 0.01, 1.7, 1.6)

    results = [comp("b", "all", 5.0, 0.9), comp("a", "all", 2.0, 0.8), comp("c", "ordered", 1.0, 0.99)]
    assert [c.model for c in rank(results)] == ["a", "b", "c"]
    assert [c.model for c in rank(results, by="ncc")] == ["b", "a", "c"]
    fit = _fit(cs_cell, "cs")
    entries = [(c, fit) for c in rank(results)]
    json_path, png_path = write_comparison(tmp_path / "out", entries, info={"image": "x"})
    data = json.loads(json_path.read_text())
    assert [r["model"] for r in data["results"]] == ["a", "b", "c"]
    for key in (
        "model",
        "region",
        "ncc",
        "ssim",
        "chi2",
        "thickness_nm",
        "source_fwhm_nm",
        "column_ratio_exp",
        "column_ratio_sim",
    ):
        assert key in data["results"][0]
    assert png_path.stat().st_size > 1000
    assert not list((tmp_path / "out").glob(".*tmp"))  # no leftovers of the atomic write


def test_plot_comparison_is_a_pyplot_figure_that_plt_show_displays(cs_cell):
    import matplotlib.pyplot as plt

    comparison = Comparison("a", "all", 0.9, 0.9, 1.0, 2.0, 5.0, 1.0, 0.03, 0.01, 1.7, 1.6)
    fig = plot_comparison([(comparison, _fit(cs_cell, "cs"))])
    try:
        assert fig.canvas.manager is not None and plt.fignum_exists(fig.number)
        assert len(fig.axes) == 3
    finally:
        plt.close(fig)


def test_compare_config_thickness_series():
    assert CompareConfig().thickness_series()[0] == 2.0
    assert CompareConfig(thicknesses_nm=[5, 1]).thickness_series() == [1.0, 5.0]
    with pytest.raises(ValueError):
        CompareConfig(rank_by="bogus")


def test_model_period_is_the_column_grid_not_the_orthogonal_repeat():
    from pathlib import Path

    from stem_pipeline.compare import model_period_nm

    configs = Path(__file__).resolve().parents[1] / "sim_configs"
    period = model_period_nm(configs / "pbi2_1m11.yaml")  # 0.456 x 4.705 nm repeat of 18 alike columns
    lengths = np.sort(np.linalg.norm(period, axis=1))
    angle = np.degrees(np.arccos(abs(period[0] @ period[1]) / np.prod(lengths)))
    assert lengths == pytest.approx([0.347, 0.347], abs=0.005)
    assert angle == pytest.approx(82.0, abs=1.5)
    cs = model_period_nm(configs / "cspbi3_001.yaml")  # the Pb-I column repeats every a
    assert np.sort(np.abs(cs).ravel()) == pytest.approx([0, 0, 0.629, 0.629], abs=1e-3)


def test_each_region_of_a_two_lattice_dot_is_folded_on_its_own_grid(two_lattice_dot):
    from stem_pipeline.compare import experimental_cell, region_columns

    dot, result = two_lattice_dot
    spacing = {}
    for region in ("ordered", "uniform"):
        keep, lattice = region_columns(result, region)
        spacing[region] = lattice.spacing_px * dot.pixel_size_nm
        assert len(set(result.columns.lattice[keep])) == 1
        cell = experimental_cell(
            dot.micrograph(),
            result.columns.rc[keep],
            lattice.vectors_px,
            intensity=result.columns.intensity[keep],
        )
        assert cell.count >= 20
    assert spacing["ordered"] == pytest.approx(0.3145, rel=0.02)
    assert spacing["uniform"] == pytest.approx(0.347, rel=0.04)
