"""Tests of stem_pipeline.simulate: structures, configs, projections and tiny abTEM runs.

Tiny configurations (one cell, coarse sampling, thin) keep each abTEM test to a
few seconds; the HAADF outer angle is reduced to what the coarse potential
sampling simulates (documented per test). Full configurations run in
benchmarks/simulate.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stem_pipeline.simulate import (
    SimulationConfig,
    alloy_dot,
    build_structure,
    cspbi3,
    fapbi3,
    four_to_three_index,
    load_config,
    pbi2,
    probe_fwhm_nm,
    run_config,
    simulate,
    simulate_detectors,
    simulate_thickness_series,
    three_to_four_index,
    zone_axis_cell,
)
from stem_pipeline.simulate.projection import dominant_spacings, zone_axis_search

CONFIGS = Path(__file__).resolve().parents[1] / "sim_configs"


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STEM_PIPELINE_CACHE", str(tmp_path / "cache"))


def tiny(**overrides) -> dict:
    """One CsPbI3 [001] cell, 0.008 nm potential sampling (simulates up to ~104 mrad,
    so HAADF is 68-100 mrad), 0.08 nm scan step, one cell thick, two phonon configs."""
    cfg = {
        "name": "tiny",
        "structure": {"kind": "cspbi3", "zone_axis": [0, 0, 1]},
        "microscope": {"haadf_mrad": [68, 100]},
        "potential": {"sampling_nm": 0.008, "slice_thickness_nm": 0.16},
        "scan": {"sampling_nm": 0.08, "field_cells": [1, 1], "min_supercell_nm": 1.8},
        "phonons": {"num_configs": 2, "seed": 1},
        "fast": {"engine": "multislice"},
        "thickness_nm": 0.629,
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    return cfg


def as_config(d: dict) -> SimulationConfig:
    return SimulationConfig.model_validate(d)


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_validates(path):
    config = load_config(path)
    assert config.microscope.energy_kev == 200
    assert config.microscope.convergence_mrad == 25
    inner, outer = config.microscope.haadf_mrad
    assert inner == 68
    # the paper's 280 mrad, or in a cheaper *_quick config clipped to what its coarser potential simulates
    assert outer == 280 or (path.stem.endswith("_quick") and outer == 200 and config.potential.sampling_nm == 0.004)
    assert tuple(config.microscope.bf_mrad) == (0, 17)


def test_required_configs_exist():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"cspbi3_001.yaml", "cspbi3_110.yaml", "fapbi3_001.yaml", "pbi2_441.yaml", "cs50fa50_qd.yaml"} <= names
    assert load_config(CONFIGS / "pbi2_441.yaml").structure.zone_axis == (-4, 4, 1)


def test_unknown_key_names_file_and_key(tmp_path):
    bad = tiny()
    bad["microscope"]["convergence_mard"] = 25
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=r"bad\.yaml.*microscope\.convergence_mard"):
        load_config(path)


def test_dot_kind_needs_dot_block():
    with pytest.raises(ValueError, match="dot"):
        as_config(tiny(structure={"kind": "dot"}))


# ---------------------------------------------------------------- structures


def test_cspbi3_columns_in_001_projection():
    atoms = cspbi3()
    assert sorted(atoms.get_chemical_symbols()) == ["Cs", "I", "I", "I", "Pb"]
    xy = {}
    for sym, p in zip(atoms.get_chemical_symbols(), atoms.get_scaled_positions()):
        xy.setdefault(tuple(np.round(p[:2], 3)), []).append(sym)
    assert sorted(xy[(0.0, 0.0)]) == ["I", "Pb"]  # Pb-I column
    assert xy[(0.5, 0.5)] == ["Cs"]
    assert xy[(0.5, 0.0)] == ["I"] and xy[(0.0, 0.5)] == ["I"]


def test_fapbi3_has_a_real_fa_molecule():
    atoms = fapbi3()
    syms = atoms.get_chemical_symbols()
    assert (syms.count("C"), syms.count("N"), syms.count("H"), syms.count("Pb"), syms.count("I")) == (1, 2, 5, 1, 3)
    c = atoms.positions[syms.index("C")]
    n = atoms.positions[[i for i, s in enumerate(syms) if s == "N"]]
    np.testing.assert_allclose(np.linalg.norm(n - c, axis=1), 1.31, atol=0.01)
    np.testing.assert_allclose(c, [3.18, 3.18, 3.18], atol=1e-9)
    r1 = fapbi3(orientation="random", rng=1).positions
    r2 = fapbi3(orientation="random", rng=1).positions
    np.testing.assert_array_equal(r1, r2)
    assert not np.allclose(r1, atoms.positions)


def test_pbi2_cell():
    atoms = pbi2()
    np.testing.assert_allclose(atoms.cell.lengths(), [4.557, 4.557, 6.979])
    np.testing.assert_allclose(atoms.cell.angles()[2], 120.0)


def test_index_conversion_roundtrip():
    assert three_to_four_index((-4, 4, 1)) == (-4, 4, 0, 1)
    assert four_to_three_index((-4, 4, 0, 1)) == (-4, 4, 1)
    assert four_to_three_index(three_to_four_index((2, 1, 0))) == (2, 1, 0)


@pytest.mark.parametrize(("kind", "axis"), [("cspbi3", (1, 1, 0)), ("pbi2", (-4, 4, 1)), ("pbi2", (1, -1, 1))])
def test_zone_axis_cell_is_orthogonal_with_axis_along_z(kind, axis):
    base = {"cspbi3": cspbi3, "pbi2": pbi2}[kind]()
    cell = zone_axis_cell(base, axis)
    np.testing.assert_allclose(cell.cell.array - np.diag(np.diag(cell.cell.array)), 0, atol=1e-8)
    d = np.asarray(axis) @ base.cell.array
    # abTEM strains non-commensurate cells (PbI2: c/a irrational) slightly
    assert cell.cell[2, 2] == pytest.approx(np.linalg.norm(d), rel=5e-3)
    # density is preserved (orthogonalisation only repeats, strain is tiny)
    assert len(cell) / cell.get_volume() == pytest.approx(len(base) / base.get_volume(), rel=5e-3)


# ---------------------------------------------------------------- PbI2 zone axis physics (geometric)


def test_pbi2_paper_axis_gives_228pm_fringes_not_a_32nm_grid():
    cell = zone_axis_cell(pbi2(), (-4, 4, 1))
    peaks = dominant_spacings(cell, n=3)
    assert peaks[0]["d_angstrom"] == pytest.approx(2.28, abs=0.02)
    # the second reflection is >10x weaker: 1-D fringes, no 3.2 A 2-D grid
    assert peaks[1]["amplitude"] < 0.1 * peaks[0]["amplitude"]
    assert all(abs(p["d_angstrom"] - 3.2) > 0.3 for p in peaks)


def test_zone_axis_search_finds_a_near_square_grid():
    rows = zone_axis_search("pbi2", max_index=2)
    best = rows[0]
    assert best["match"]
    assert set(map(abs, best["zone_axis"])) <= {1, 2}
    assert 3.0 < best["d1"] < 3.6 and 3.0 < best["d2"] < 3.6
    assert 75 < best["angle_deg"] <= 90
    assert not next(r for r in rows if r["zone_axis"] == (2, -2, 1))["match"]


def test_cspbi3_projection_is_a_half_cell_square_grid():
    peaks = dominant_spacings(zone_axis_cell(cspbi3(), (0, 0, 1)), n=2)
    assert [round(p["d_angstrom"], 3) for p in peaks] == [3.145, 3.145]


# ---------------------------------------------------------------- dot models


def test_alloy_dot_assembly():
    atoms = alloy_dot(edge_nm=2.5, fa_fraction=0.5, unit_cells=1, rng=0)
    units = atoms.info["unit_is_fa"]
    assert units.shape == (4, 4, 4)
    assert atoms.info["fa_fraction_actual"] == pytest.approx(0.5)
    syms = np.array(atoms.get_chemical_symbols())
    assert (syms == "Cs").sum() == (~units).sum()
    assert (syms == "C").sum() == units.sum()  # one FA carbon per FA cell
    assert (syms == "Pb").sum() == units.size
    other = alloy_dot(edge_nm=2.5, fa_fraction=0.5, unit_cells=1, rng=1)
    assert not np.array_equal(other.info["unit_is_fa"], units)


def test_decomposed_dot_replaces_fa_units_by_pbi2_and_carbon_support():
    atoms = alloy_dot(edge_nm=2.5, fa_fraction=0.5, unit_cells=2, decomposed=True, carbon_nm=0.5, rng=0)
    syms = np.array(atoms.get_chemical_symbols())
    assert not (syms == "N").any()  # no FA left
    assert (syms == "Cs").any() and (syms == "C").sum() > 100  # carbon support
    assert atoms.cell[2, 2] == pytest.approx(4 * atoms.info["a_angstrom"] + 5.0)
    # I:Pb inside FA units is PbI2-like (2), in Cs units perovskite-like (3)
    ratio = (syms == "I").sum() / (syms == "Pb").sum()
    assert 2.0 < ratio < 3.0


# ---------------------------------------------------------------- abTEM runs (tiny)


def test_probe_is_about_0p1_nm():
    fwhm = probe_fwhm_nm(as_config(tiny()))
    assert 0.04 < fwhm["intrinsic"] < 0.06  # ~0.51 lambda / alpha for an aberration-free probe
    assert fwhm["effective"] == pytest.approx(0.10, abs=0.01)


def test_cspbi3_pbi_columns_brighter_than_cs_and_i():
    img = simulate(as_config(tiny()), progress=False)
    data = img.data
    n = data.shape[0] // 2
    pbi, cs, i_col = data[0, 0], data[n, n], 0.5 * (data[0, n] + data[n, 0])
    ratios = {"PbI/Cs": pbi / cs, "PbI/I": pbi / i_col}
    print("column ratios", ratios)  # reported with -s
    assert ratios["PbI/Cs"] > 1.5 and ratios["PbI/I"] > 1.5
    assert data.dtype == np.float32
    assert img.metadata["detector"] == "HAADF" and img.metadata["method"] == "fast"


def test_fast_matches_exact_within_2_percent():
    # static lattice so the comparison is deterministic (tiling is then exact in
    # principle; this checks orientation, blur, resampling and tiling code).
    cfg = as_config(tiny(scan={"field_cells": [2, 2]}, phonons={"num_configs": 0}))
    fast = simulate_detectors(cfg, method="fast", cache=False, progress=False)
    exact = simulate_detectors(cfg, method="exact", cache=False, progress=False)
    for name in ("haadf", "bf"):
        f, e = fast[name].data, exact[name].data
        assert f.shape == e.shape == (16, 16)
        assert np.abs(f - e).max() <= 0.02 * e.max(), name
    assert fast["haadf"].pixel_size_nm == pytest.approx(exact["haadf"].pixel_size_nm)


def test_thickness_series_matches_separate_runs():
    cfg = as_config(tiny(phonons={"num_configs": 0}))
    stack, thick, pixel = simulate_thickness_series(cfg, [0.629, 1.258], cache=False, progress=False)
    assert stack.shape == (2, 8, 8) and stack.dtype == np.float32
    np.testing.assert_allclose(thick, [0.629, 1.258], atol=1e-3)
    np.testing.assert_allclose(pixel, (0.629 / 8, 0.629 / 8))
    single = simulate(cfg, thickness_nm=1.258, cache=False, progress=False).data
    np.testing.assert_allclose(stack[1], single, rtol=0, atol=1e-3 * single.max())
    assert not np.allclose(stack[0], stack[1], rtol=0.05)


def test_run_config_thickness_calibration_cache_and_noise(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(phonons={"num_configs": 0})))
    img = run_config(path, thickness_nm=1.2, progress=False)
    assert img.metadata["thickness_nm"] == pytest.approx(1.258)  # two whole cells
    assert img.pixel_size_nm == pytest.approx(0.629 / 8)  # cell / ceil(cell / scan step)
    assert img.metadata["cache"] == "miss"
    again = run_config(path, thickness_nm=1.2, progress=False)
    assert again.metadata["cache"] == "hit"
    np.testing.assert_array_equal(again.data, img.data)
    thin = run_config(path, progress=False)
    assert thin.metadata["thickness_nm"] == pytest.approx(0.629)
    noisy = run_config(path, thickness_nm=1.2, dose=500, rng=0, progress=False)
    assert noisy.data.dtype == np.float32
    assert noisy.data.max() == pytest.approx(500, rel=0.2)
    np.testing.assert_array_equal(noisy.data, np.round(noisy.data))


def test_build_structure_rounds_thickness_to_cells():
    atoms = build_structure(as_config(tiny()), thickness_nm=2.0)
    assert atoms.info["n_cells_z"] == 3 and len(atoms) == 15


def test_import_is_light():
    code = "import sys, stem_pipeline.simulate; print('abtem' in sys.modules, 'ase' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_series_pixel_size_is_row_col_for_non_square_cells():
    # CsPbI3 [110]: 0.629 nm (x, columns) x 0.890 nm (y, rows) repeat cell, tiled 1 x 2
    cfg = as_config(tiny(structure={"zone_axis": [1, 1, 0]}, scan={"field_cells": [1, 2]}, phonons={"num_configs": 0}))
    stack, _, pixel = simulate_thickness_series(cfg, [0.89], cache=False, progress=False)
    ly, lx = 0.629 * np.sqrt(2), 0.629  # rows along y, cols along x
    assert stack.shape[1:] == (int(np.ceil(ly / 0.08)), 2 * 8)
    np.testing.assert_allclose(pixel, (ly / stack.shape[1], 2 * lx / stack.shape[2]), rtol=1e-6)


def test_image_of_a_non_square_cell_has_one_true_pixel_size():
    # 0.629 x 0.890 nm cell at 8 x 12 scan positions: 0.0786 vs 0.0741 nm; the image is resampled along
    # the rows so that the single pixel size of the Micrograph is right on both axes.
    cfg = as_config(tiny(structure={"zone_axis": [1, 1, 0]}, scan={"field_cells": [2, 3]}, phonons={"num_configs": 0}))
    stack, _, (p_row, p_col) = simulate_thickness_series(cfg, [0.89], cache=False, progress=False)
    assert abs(p_row / p_col - 1) > 0.05  # the scan itself is not square
    image = simulate(cfg, progress=False)
    p = image.pixel_size_nm
    assert p == pytest.approx(p_col)
    rows, cols = image.shape
    assert cols == stack.shape[2]
    assert abs(rows * p - stack.shape[1] * p_row) <= p / 2  # the field's true height, within half a pixel
    assert abs(rows - stack.shape[1]) >= 1


def test_run_key_leaves_out_post_processing_and_keeps_the_multislice():
    """The cache key (a pure function of the config): blur, tiling, resampling, name and workers
    are applied after the cached run; optics, potential and the exact field are part of it."""
    from stem_pipeline.simulate.run import run_key_parts

    base = as_config(tiny(phonons={"num_configs": 0}))
    post = as_config(
        tiny(
            name="renamed",
            phonons={"num_configs": 0},
            microscope={"source_fwhm_nm": 0.05},
            scan={"field_cells": [2, 3], "pixel_size_nm": 0.07},
            num_workers=2,
        )
    )
    assert run_key_parts(post, method="fast") == run_key_parts(base, method="fast")
    changed = as_config(tiny(phonons={"num_configs": 0}, microscope={"convergence_mrad": 20}))
    assert run_key_parts(changed, method="fast") != run_key_parts(base, method="fast")
    assert run_key_parts(post, method="exact") != run_key_parts(base, method="exact")  # the exact field is scanned


def test_cache_is_reused_across_post_processing():
    first = simulate(as_config(tiny(phonons={"num_configs": 0})), progress=False)
    assert first.metadata["cache"] == "miss"
    post = as_config(
        tiny(phonons={"num_configs": 0}, microscope={"source_fwhm_nm": 0.05}, scan={"field_cells": [2, 3]})
    )
    again = simulate(post, progress=False)
    assert again.metadata["cache"] == "hit"
    assert again.shape == (16, 24)
    assert not np.allclose(again.data[:8, :8], first.data)  # a different blur was applied


def test_prism_is_opt_in():
    from stem_pipeline.simulate.run import _crystal_plan

    cfg = as_config(tiny(fast={"engine": "auto"}))
    atoms = build_structure(cfg)
    assert _crystal_plan(cfg, atoms, "fast").engine == "multislice"
    prism = as_config(tiny(fast={"engine": "prism"}))
    plan = _crystal_plan(prism, atoms, "fast")
    assert plan.engine == "prism" and plan.interpolation == plan.tiles == (3, 3)
    assert plan.potential_gpts[0] % 3 == 0 and plan.potential_gpts[1] % 3 == 0  # PRISM needs whole cells


def test_simulate_command_writes_a_calibrated_image(tmp_path):
    from stem_pipeline import cli, io

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(phonons={"num_configs": 0}, scan={"field_cells": [8, 8]})))
    out = tmp_path / "cell.tif"
    assert cli.main(["-q", "simulate", str(path), "--out", str(out), "--thickness-nm", "1.2", "--fast"]) == 0
    image = io.load(out)
    assert image.pixel_size_nm == pytest.approx(0.629 / 8, rel=1e-4)
    assert image.shape == (64, 64)  # 8x8 cells of 8 px, tiled
    cell = image.data[:8, :8]
    np.testing.assert_allclose(image.data[8:16, 16:24], cell, rtol=1e-5)  # periodic tiling
    assert cell.max() > 2 * cell.min()  # columns, not a flat image
    # bad usage: an extension the command cannot write
    assert cli.main(["-q", "simulate", str(path), "--out", str(tmp_path / "x.png")]) == 2


def test_simulate_command_refuses_an_output_it_cannot_write_before_simulating(tmp_path, monkeypatch, capsys):
    from stem_pipeline import cli, simulate

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(phonons={"num_configs": 0})))
    (tmp_path / "a_file").write_text("")  # a file where the output's folder would be: mkdir fails, even for root

    def must_not_run(*args, **kwargs):
        raise AssertionError("simulated before the output was checked")

    monkeypatch.setattr(simulate, "simulate", must_not_run)
    out = tmp_path / "a_file" / "cell.tif"
    assert cli.main(["-q", "simulate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot write there" in err
    assert sorted(tmp_path.iterdir()) == sorted([path, tmp_path / "a_file"])  # nothing left behind
