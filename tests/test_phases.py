"""The phase library: phases as YAML data, their projected column sites, and matching columns to them."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from stem_pipeline._types import Columns, Lattice, PhaseLabels
from stem_pipeline.phases import default_library, load_library, load_phase, project
from stem_pipeline.phases.assign import assign_phases
from stem_pipeline.phases.config import PhasesConfig
from stem_pipeline.phases.match import explain_columns, index_columns
from stem_pipeline.phases.sites import ATOMIC_NUMBER

PEROVSKITE = [["Pb", 0, 0, 0], ["X", 0.5, 0, 0], ["X", 0, 0.5, 0], ["X", 0, 0, 0.5], ["Cs", 0.5, 0.5, 0.5]]


def perovskite_yaml(name: str, halide: str, a: float) -> dict:
    atoms = [[halide if s == "X" else s, *xyz] for s, *xyz in PEROVSKITE]
    cell = [[a, 0, 0], [0, a, 0], [0, 0, a]]
    return {"name": name, "zone_axis": [0, 0, 1], "structure": {"cell_angstrom": cell, "atoms": atoms}}


def test_cspbi3_001_sites_spacing_and_projected_z():
    a = 6.29
    p = project(np.eye(3) * a, ["Pb", "I", "I", "I", "Cs"], [s[1:] for s in PEROVSKITE], (0, 0, 1))
    assert sorted(p.names) == ["Cs", "I", "I", "Pb-I"]
    z = {s: ATOMIC_NUMBER[s] ** 1.7 for s in ("Pb", "I", "Cs")}
    by_name = dict(zip(p.names, p.intensity * a / 10))  # back to sum(Z^1.7) per repeat
    assert by_name["Pb-I"] == pytest.approx(z["Pb"] + z["I"])
    assert by_name["Cs"] == pytest.approx(z["Cs"])
    (grid,) = default_library()["CsPbI3 [001]"].grids()
    assert grid.spacing_nm == pytest.approx(a / 20)
    assert len(grid.site_steps) == 4 and abs(round(np.linalg.det(grid.cell))) == 4  # one bright column in four
    assert grid.relative_intensity[list(grid.names).index("Pb-I")] == 1.0


def test_cspbbr3_has_a_visible_checkerboard_grid():
    grids = default_library()["CsPbBr3 [001]"].grids()
    spacings = sorted(g.spacing_nm for g in grids)
    assert spacings == pytest.approx([0.5874 / 2, 0.5874 / np.sqrt(2)], rel=1e-3)
    checker = max(grids, key=lambda g: g.spacing_nm)
    assert sorted(checker.names) == ["Cs", "Pb-Br"]


def test_default_library_holds_the_issue_phases():
    names = set(default_library())
    for want in ("CsPbI3 [001]", "uniform 0.32 nm", "PbI2 <1-1 1>", "FAPbI3 [001]", "CsPbBr3 [001]", "CsPbI3 [110]"):
        assert want in names
    (pbi2,) = default_library()["PbI2 <1-1 1>"].grids()
    assert pbi2.spacing_nm == pytest.approx(0.347, abs=0.002)  # the near-square grid of sim_configs/pbi2_1m11.yaml


def test_a_user_adds_a_phase_with_one_yaml_file(tmp_path):
    (tmp_path / "cspbcl3.yaml").write_text(yaml.safe_dump(perovskite_yaml("CsPbCl3 [001]", "Cl", 5.605)))
    library = load_library([tmp_path])
    assert "CsPbCl3 [001]" in library and "CsPbI3 [001]" in library
    assert library["CsPbCl3 [001]"].grids()[0].spacing_nm == pytest.approx(0.28025)


def test_bad_phase_files_name_the_file(tmp_path):
    bad = perovskite_yaml("X", "I", 6.29) | {"zone_axes": [0, 0, 1]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="bad.yaml.*zone_axes"):
        load_phase(tmp_path / "bad.yaml")
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump(perovskite_yaml("CsPbI3 [001]", "I", 6.29)))
    with pytest.raises(ValueError, match="dup.yaml.*already used"):
        load_library([tmp_path / "dup.yaml"])
    light = perovskite_yaml("light", "I", 6.29)
    light["structure"]["atoms"] = [["C", 0, 0, 0]]
    (tmp_path / "light.yaml").write_text(yaml.safe_dump(light))
    with pytest.raises(ValueError, match="light.yaml.*no atoms heavier"):
        load_phase(tmp_path / "light.yaml")
    with pytest.raises(ValueError, match="nowhere.yaml"):
        load_library([tmp_path / "nowhere.yaml"])


def _template_columns(grid, *, spacing_px: float, rotation_deg: float, n: int, noise: float, rng):
    """Columns of ``grid`` on an n x n patch: positions [px] and intensities with noise, and their sites."""
    t = np.radians(rotation_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    vectors = grid.vectors_nm @ rot.T * spacing_px / grid.spacing_nm
    steps = np.array([(i, j) for i in range(n) for j in range(n)])
    site = grid.site_index(steps)
    rc = steps @ vectors + 100.0 + rng.normal(0, 0.2, (len(steps), 2))
    y = 50 + 200 * grid.relative_intensity[site] + rng.normal(0, noise, len(steps))
    return rc, y, vectors, grid.names[site]


@pytest.mark.parametrize("name", ["CsPbBr3 [001]", "CsPbI3 [001]", "uniform 0.32 nm", "CsPbI3 [110]"])
def test_columns_of_a_phase_are_explained_by_it(name):
    rng = np.random.default_rng(7)
    library = default_library()
    grid = library[name].grids()[-1]
    rc, y, vectors, truth = _template_columns(grid, spacing_px=10.0, rotation_deg=17, n=16, noise=8.0, rng=rng)
    pixel = grid.spacing_nm / 10.0 * 1.03  # a 3 % calibration error
    fits = explain_columns(rc, y, vectors, library, pixel_size_nm=pixel, config=PhasesConfig())
    best = fits[0]
    assert best.phase == name and best.explains and best.probability > 0.8  # uniform: CsPbI3 is 1.7 % away
    assert best.spacing_error == pytest.approx(0.03, abs=1e-3)
    assert np.mean(best.site == truth) > 0.95


def test_a_pattern_no_phase_holds_is_unexplained():
    rng = np.random.default_rng(3)
    grid = default_library()["uniform 0.32 nm"].grids()[0]
    rc, y, vectors, _ = _template_columns(grid, spacing_px=10.0, rotation_deg=0, n=16, noise=5.0, rng=rng)
    steps, _ = index_columns(rc, vectors)
    y = y + 150 * ((steps[:, 0] % 2) == 0)  # bright rows: a stripe pattern no library phase has
    fits = explain_columns(rc, y, vectors, default_library(), pixel_size_nm=0.032, config=PhasesConfig())
    assert fits and not any(f.explains for f in fits)


def test_abtem_site_intensities_of_cspbi3_name_its_columns(tmp_path, monkeypatch):
    pytest.importorskip("abtem")
    from stem_pipeline.phases.simulated import simulated_site_intensities
    from stem_pipeline.simulate import SimulationConfig

    monkeypatch.setenv("STEM_PIPELINE_CACHE", str(tmp_path))
    # One thin cell, coarse sampling (HAADF 68-100 mrad, as tests/test_simulate.py's tiny runs), static lattice.
    config = SimulationConfig.model_validate(
        {
            "name": "tiny",
            "structure": {"kind": "cspbi3", "zone_axis": [0, 0, 1]},
            "microscope": {"haadf_mrad": [68, 100]},
            "potential": {"sampling_nm": 0.008, "slice_thickness_nm": 0.16},
            "scan": {"sampling_nm": 0.08, "field_cells": [1, 1], "min_supercell_nm": 1.8},
            "phonons": {"num_configs": 0},
            "fast": {"engine": "multislice"},
            "thickness_nm": 0.629,
        }
    )
    sim = simulated_site_intensities(config)
    assert set(sim) == set(default_library()["CsPbI3 [001]"].grids()[0].names)  # the names the library uses
    assert sim["Pb-I"]["peak"] == 1.0 and max(sim["I"]["peak"], sim["Cs"]["peak"]) < 0.7


def test_given_site_intensities_replace_the_projected_z_estimate():
    rng = np.random.default_rng(11)
    library = default_library()
    grid = library["CsPbI3 [001]"].grids()[0]
    rc, y, vectors, _ = _template_columns(grid, spacing_px=10.0, rotation_deg=5, n=16, noise=5.0, rng=rng)
    kwargs = {"pixel_size_nm": 0.03145, "config": PhasesConfig()}
    assert explain_columns(rc, y, vectors, library, **kwargs)[0].phase == "CsPbI3 [001]"
    reversed_sites = {"CsPbI3 [001]": {"Pb-I": 0.2, "I": 1.0, "Cs": 1.0}}  # a simulation saying Pb-I is faint
    fits = explain_columns(rc, y, vectors, library, site_intensities=reversed_sites, **kwargs)
    assert not next(f for f in fits if f.phase == "CsPbI3 [001]").explains


def test_index_columns_gives_each_patch_its_grid_steps_from_its_first_column():
    """Two separate, shuffled, jittered grids: two patches, each column at its own whole steps from its patch's
    first column (the breadth-first walk of the links), and a column too far from any neighbour alone."""
    rng = np.random.default_rng(4)
    vectors = np.array([[9.0, 1.0], [-1.5, 8.0]])
    ij = np.stack(np.meshgrid(np.arange(-3, 5), np.arange(-2, 6), indexing="ij"), -1).reshape(-1, 2)
    rc = np.concatenate([ij @ vectors + [30, 40], ij @ vectors + [300, 40], [[600.0, 600.0]]])
    rc += rng.normal(0, 0.3, rc.shape)
    truth = np.concatenate([ij, ij, [[0, 0]]])
    group = np.repeat([0, 1, 2], [len(ij), len(ij), 1])
    shuffle = rng.permutation(len(rc))
    rc, truth, group = rc[shuffle], truth[shuffle], group[shuffle]
    steps, patch = index_columns(rc, vectors)
    assert len(np.unique(patch)) == 3
    for g in range(3):
        mine = group == g
        assert len(np.unique(patch[mine])) == 1
        first = np.flatnonzero(mine)[0]
        np.testing.assert_array_equal(steps[mine], truth[mine] - truth[first])


def _two_halide_columns(rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 20 x 20 CsPbBr3 [001] patch (8.4 px) beside a 20 x 20 CsPbI3 [001] patch (9.0 px): positions,
    intensities and each column's true phase."""
    library = default_library()
    rcs, ys, names = [], [], []
    offset = 0.0
    for name, spacing in (("CsPbBr3 [001]", 8.4), ("CsPbI3 [001]", 9.0)):
        grid = library[name].grids()[0]
        steps = np.array([(i, j) for i in range(20) for j in range(20)])
        rc = steps @ (grid.vectors_nm * spacing / grid.spacing_nm)
        rc = rc - rc.min(axis=0) + [20.0, 20.0 + offset]
        offset = rc[:, 1].max() - 20.0 + spacing
        rcs.append(rc + rng.normal(0, 0.2, rc.shape))
        ys.append(50 + 200 * grid.relative_intensity[grid.site_index(steps)] + rng.normal(0, 5, len(steps)))
        names += [name] * len(steps)
    return np.concatenate(rcs), np.concatenate(ys), np.array(names)


@pytest.mark.parametrize("seed", [0, 1])
def test_two_halides_are_told_apart_when_the_classifier_scatters_columns_to_the_other_label(seed):
    """One lattice holds both halides (7 % apart); the two-phase classifier gave 20 % of the columns,
    scattered, to ``uniform``. Each halide is still found: the columns' local spacings are measured among
    all the columns, so the holes the scattered ones leave in the ``ordered`` group do not blur its two
    spacings into one (measured within the group itself, both seeds read one phase only)."""
    rng = np.random.default_rng(seed)
    rc, y, truth = _two_halide_columns(rng)
    label = (rng.random(len(rc)) < 0.2).astype(np.int8)
    region = np.zeros((400, 400), bool)
    region[15:370, 15:370] = True
    labels = PhaseLabels(
        label=label,
        contrast=np.zeros(len(rc), np.int8),
        order_parameter=np.zeros(len(rc)),
        region_map=region.astype(np.int8),
    )
    lattice = Lattice(vectors_px=np.diag([8.7, 8.7]), spacing_px=8.7, angle_deg=90.0, strength=100.0, foreign_peaks=0)
    out = assign_phases(
        [Columns(rc=rc, peak=y)],
        [region],
        [lattice],
        labels,
        pixel_size_nm=0.035,
        library=default_library(),
        config=PhasesConfig(),
    )
    fractions = out["phase_fractions"]
    assert fractions["CsPbBr3 [001]"]["fraction"] > 0.3 and fractions["CsPbI3 [001]"]["fraction"] > 0.3
    ordered = label == 0
    assert np.mean(out["phase"][ordered] == truth[ordered]) > 0.9
