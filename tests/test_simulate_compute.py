"""Tests of how simulations are computed: the sub-cell scan, local threads, a Dask scheduler, the device."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml
from test_simulate import tiny

from stem_pipeline.simulate import (
    SimulationConfig,
    build_structure,
    check_device,
    simulate,
    simulate_thickness_series,
)
from stem_pipeline.simulate.run import _crystal_plan


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STEM_PIPELINE_CACHE", str(tmp_path / "cache"))


def _cfg(**overrides) -> SimulationConfig:
    return SimulationConfig.model_validate(tiny(**overrides))


@pytest.mark.parametrize(
    ("kind", "axis", "factors"),
    [("cspbi3", (0, 0, 1), (1, 1)), ("cspbi3", (1, 1, 0), (1, 2)), ("pbi2", (1, -1, 1), (1, 9))],
)
def test_subcell_factors_of_the_repeat_cells(kind, axis, factors):
    # PbI2 [1 -1 1]: the 0.456 x 4.705 nm repeat holds 9 centred 0.456 x 0.523 nm cells (18 columns);
    # CsPbI3 [110]: (1 0 0) is half the 0.890 nm in-plane repeat plus half the repeat along the beam
    atoms = build_structure(_cfg(structure={"kind": kind, "zone_axis": list(axis)}), thickness_nm=0.1)
    assert atoms.info["subcell"] == factors


def test_subcell_scan_is_part_of_the_cell_tiled():
    whole = _cfg(structure={"zone_axis": [1, 1, 0]}, phonons={"num_configs": 0}, scan={"subcell": False})
    sub = whole.model_copy(update={"scan": whole.scan.model_copy(update={"subcell": True})})
    atoms = build_structure(whole)
    plan_whole, plan_sub = _crystal_plan(whole, atoms, "fast"), _crystal_plan(sub, atoms, "fast")
    assert plan_sub.subcell == (1, 2)
    assert plan_sub.scan_gpts[1] * 2 == plan_whole.scan_gpts[1]  # half the probe positions
    assert plan_sub.potential_gpts == plan_whole.potential_gpts  # the same specimen
    a, _, pixel_a = simulate_thickness_series(whole, [0.89], progress=False)  # images before squaring pixels
    b, _, pixel_b = simulate_thickness_series(sub, [0.89], progress=False)
    a, b = a[0], b[0]
    assert a.shape == b.shape and pixel_b == pytest.approx(pixel_a)
    half = b.shape[0] // 2
    np.testing.assert_allclose(b[:half], b[half:], rtol=1e-5)  # tiled half cells
    assert not np.allclose(a[:half], a[half:], rtol=1e-3)  # the whole scan is not
    # one repeat thick, the sub-cell's columns start at another depth: close, not equal (README: its error)
    assert np.abs(a - b).max() < 0.15 * a.max()


def test_subcell_keeps_the_cache_of_cells_without_one():
    cfg = _cfg(phonons={"num_configs": 0}, scan={"subcell": False})
    assert simulate(cfg, progress=False).metadata["cache"] == "miss"
    on = cfg.model_copy(update={"scan": cfg.scan.model_copy(update={"subcell": True})})
    assert simulate(on, progress=False).metadata["cache"] == "hit"  # CsPbI3 [001] has no sub-cell


def test_gpu_without_cupy_is_a_clear_error(monkeypatch, tmp_path, capsys):
    from stem_pipeline import cli

    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    with pytest.raises(ValueError, match="CuPy"):
        check_device("gpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        check_device("tpu")
    check_device("cpu")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(phonons={"num_configs": 0})))
    out = tmp_path / "x.tif"
    assert cli.main(["-q", "simulate", str(path), "--out", str(out), "--device", "gpu"]) == 2
    assert "CuPy" in capsys.readouterr().err
    assert not out.exists()


def test_simulate_command_on_a_dask_scheduler_and_local_threads(tmp_path):
    """The same image from a real dask.distributed cluster (its scheduler runs the tasks) and from 2 threads."""
    from distributed import LocalCluster

    from stem_pipeline import cli, io

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(scan={"field_cells": [8, 8]})))  # 64x64 px; two phonon configurations
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    base = ["-q", "simulate", str(path), "--no-cache"]
    assert cli.main([*base, "--out", str(local), "--workers", "2"]) == 0
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # not port 8787, which another job may hold
    ) as cluster:
        before = cluster.scheduler.transition_counter
        assert cli.main([*base, "--out", str(remote), "--scheduler", cluster.scheduler_address]) == 0
        assert cluster.scheduler.transition_counter > before  # the cluster ran the simulation's tasks
    np.testing.assert_allclose(io.load(remote).data, io.load(local).data, rtol=1e-5)
    assert cli.main([*base, "--out", str(local), "--workers", "0"]) == 2


def test_fast_fft_grid_is_a_little_finer_and_keeps_old_cache_keys():
    from scipy.fft import next_fast_len

    from stem_pipeline.simulate.run import run_key_parts

    plain = SimulationConfig.model_validate(tiny(potential={"sampling_nm": 0.0029}, scan={"min_supercell_nm": 1.2}))
    fast = plain.model_copy(update={"potential": plain.potential.model_copy(update={"fast_fft": True})})
    atoms = build_structure(plain)
    g_plain, g_fast = (
        _crystal_plan(plain, atoms, "fast").potential_gpts,
        _crystal_plan(fast, atoms, "fast").potential_gpts,
    )
    assert g_plain == (434, 434)  # 2 cells of 217 = 7 x 31 points
    assert g_fast == (440, 440)  # 2 cells of 220 = 2^2 x 5 x 11: finer, and an FFT-fast size
    assert all(next_fast_len(n) == n for n in g_fast)
    assert "fast_fft" not in run_key_parts(plain, method="fast")["potential"]  # the runs cached before it exist
    assert run_key_parts(fast, method="fast") != run_key_parts(plain, method="fast")
