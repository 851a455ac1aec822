"""abTEM cell mosaic: assembly from periodic cells, ground truth, one real tiny abTEM cell.

Assembly tests use small hand-made periodic cell images (Gaussian columns at
known sites), so what they check is the tiling, the domain map, the truth and
the noise, not the physics. One test goes through a real tiny abTEM cell
(coarse settings, static lattice) and checks that the simulated cell's
column maxima sit on the columns the truth reports.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stem_pipeline._types import (
    CONTRASTS,
    LABELS,
    REGION_ORDERED,
    REGION_OUTSIDE,
    REGION_UNIFORM,
)
from stem_pipeline.simulate.cells import CellImage, cell_columns
from stem_pipeline.synthetic import domain_map, render_gaussians
from stem_pipeline.synthetic_mosaic import mosaic_dot

PIXEL_NM = 0.035


def gaussian_cell(sites_nm, heights, extent_nm, *, pixel_nm=0.02, sigma_nm=0.045, name="cell"):
    """A periodic cell image with Gaussian columns (3x3 periodic images summed)."""
    n = np.round(np.asarray(extent_nm) / pixel_nm).astype(int)
    px = np.asarray(extent_nm) / n
    sites = np.asarray(sites_nm, float)
    shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]) * np.asarray(extent_nm)
    rc = ((sites[None] + shifts[:, None]).reshape(-1, 2)) / px
    amp = np.tile(np.asarray(heights, float), len(shifts))
    image = render_gaussians(tuple(n), rc, amp, sigma_nm / px.mean())
    return CellImage(image, pixel_size_nm=tuple(px), sites_nm=sites, bright=np.asarray(heights) >= 1.0, name=name)


A = 0.629  # CsPbI3 cell [nm]


@pytest.fixture(scope="module")
def cells():
    ordered = gaussian_cell(
        [(0, 0), (0, A / 2), (A / 2, 0), (A / 2, A / 2)], [1.0, 0.5, 0.5, 0.4], (A, A), name="ordered"
    )
    s = 0.32
    uniform = gaussian_cell([(0, 0), (0, s), (s, 0), (s, s)], [0.8] * 4, (2 * s, 2 * s), name="uniform")
    return ordered, uniform


def test_region_map_is_the_synthetic_domain_map(cells):
    kwargs = {
        "pixel_size_nm": PIXEL_NM,
        "dot_size_nm": 6.0,
        "rotation_deg": 17.0,
        "uniform_fraction": 0.5,
        "domain_size_nm": 2.0,
    }
    dot = mosaic_dot(*cells, (200, 200), rng=3, dose=None, **kwargs)
    expected = domain_map((200, 200), rng=3, **kwargs)
    np.testing.assert_array_equal(dot.region_map, expected)
    inside = expected != REGION_OUTSIDE
    assert dot.uniform_fraction == pytest.approx(np.mean(expected[inside] == REGION_UNIFORM))
    assert 0.0 < dot.uniform_fraction < 1.0
    assert dot.models == ("ordered", "uniform")


@pytest.mark.parametrize("rotation_deg", [0.0, 23.0])
def test_pixels_show_their_phase_cell_at_true_columns(cells, rotation_deg):
    ordered, uniform = cells
    dot = mosaic_dot(
        ordered,
        uniform,
        (240, 240),
        pixel_size_nm=PIXEL_NM,
        dot_size_nm=7.0,
        rotation_deg=rotation_deg,
        domain_size_nm=2.5,
        carbon_contrast=0.0,
        carbon_level=0.1,
        dose=None,
        rng=5,
    )
    contrast = np.asarray(CONTRASTS)[dot.contrast]
    # carbon is flat at 0.1 here; a true column sits on a peak of its own phase's cell
    r, c = np.round(dot.rc).astype(int).T
    phase = dot.region_map[r, c]
    assert np.all(phase[dot.label == LABELS.index("ordered")] == REGION_ORDERED)
    assert np.all(phase[dot.label == LABELS.index("uniform")] == REGION_UNIFORM)
    # heights (bright 1, dim 0.4-0.5, uniform 0.8) plus carbon 0.1, within the ~0.5 px rounding of the truth
    amp = dot.amplitude
    assert np.all(np.abs(amp[contrast == "bright"] - 1.1) < 0.08)
    assert np.all((amp[contrast == "dim"] > 0.43) & (amp[contrast == "dim"] < 0.62))
    assert np.all(np.abs(amp[contrast == "uniform"] - 0.9) < 0.08)
    # truth columns are local maxima of the clean image (interior, away from domain edges)
    far = dot.boundary_distance_nm() > 0.4
    edge = ndimage.distance_transform_edt(dot.region_map != REGION_OUTSIDE)[r, c] * PIXEL_NM > 0.4
    peaks = ndimage.maximum_filter(dot.clean, 3) == dot.clean
    sel = far & edge
    assert sel.sum() > 100
    assert peaks[r[sel], c[sel]].mean() > 0.9
    # the ordered grid vectors are the a/2 column steps, rotated with the dot
    lengths = np.hypot(*dot.lattice_vectors_px.T) * PIXEL_NM
    np.testing.assert_allclose(lengths, A / 2, rtol=1e-6)
    angle = np.degrees(np.arctan2(dot.lattice_vectors_px[:, 1], dot.lattice_vectors_px[:, 0])) % 90
    assert np.min(np.abs(angle - (90 - rotation_deg) % 90)) < 1e-6 or np.min(np.abs(angle - rotation_deg)) < 1e-6


def test_dose_scales_and_noise_is_poisson(cells):
    kwargs = {"pixel_size_nm": PIXEL_NM, "dot_size_nm": 6.0, "rng": 2}
    quiet = mosaic_dot(*cells, (180, 180), dose=None, **kwargs)
    noisy = mosaic_dot(*cells, (180, 180), dose=50.0, **kwargs)
    assert noisy.image.dtype == np.float32 and noisy.clean.dtype == np.float32
    np.testing.assert_allclose(noisy.clean, quiet.clean * 50.0, rtol=1e-5)
    assert np.all(noisy.image == np.round(noisy.image)) and noisy.image.min() >= 0
    resid = (noisy.image - noisy.clean) / np.sqrt(np.maximum(noisy.clean, 1e-9))
    assert abs(resid.mean()) < 0.05 and abs(resid.std() - 1.0) < 0.05
    assert noisy.micrograph().metadata["models"] == ["ordered", "uniform"]


def test_inputs_unchanged_and_bad_dose(cells):
    ordered, uniform = cells
    before = ordered.image.copy()
    mosaic_dot(ordered, uniform, (120, 120), dot_size_nm=3.0, rng=0)
    np.testing.assert_array_equal(ordered.image, before)
    with pytest.raises(ValueError, match="dose"):
        mosaic_dot(ordered, uniform, (120, 120), dot_size_nm=3.0, dose=-1.0)


def test_pure_dots(cells):
    for fraction in (0.0, 1.0):
        dot = mosaic_dot(*cells, (150, 150), dot_size_nm=4.0, uniform_fraction=fraction, rng=1)
        assert dot.uniform_fraction == fraction
        assert np.all(dot.label == LABELS.index("uniform" if fraction else "ordered"))


def test_pipeline_recovers_the_fraction_of_a_mosaic(cells):
    """The mosaic is a usable pipeline input: fraction within 0.06 of the truth (hand-made cells)."""
    from stem_pipeline.pipeline import analyze

    dot = mosaic_dot(*cells, (256, 256), dot_size_nm=7.0, domain_size_nm=3.0, rotation_deg=8.0, dose=200, rng=4)
    assert 0.2 < dot.uniform_fraction < 0.8
    result = analyze(dot.micrograph())
    assert result.status == "ok"
    assert abs(result.fractions.uniform - dot.uniform_fraction) < 0.06


def test_cell_columns_merges_projected_atoms():
    ase = pytest.importorskip("ase")
    from stem_pipeline.simulate import cspbi3

    atoms = cspbi3()
    sites, bright = cell_columns(atoms)
    a = atoms.cell[0, 0] / 10
    np.testing.assert_allclose(sites, [(0, 0), (0, a / 2), (a / 2, 0), (a / 2, a / 2)], atol=1e-9)
    np.testing.assert_array_equal(bright, [True, False, False, False])
    assert isinstance(atoms, ase.Atoms)


def test_real_tiny_abtem_cell_and_mosaic(tmp_path):
    """A real (tiny, static, coarse) abTEM CsPbI3 [001] cell: its maxima are the reported columns."""
    pytest.importorskip("abtem")
    from stem_pipeline.simulate import SimulationConfig
    from stem_pipeline.simulate.cells import simulate_cell

    config = SimulationConfig.model_validate(
        {
            "name": "cspbi3_001",
            "structure": {"kind": "cspbi3", "zone_axis": [0, 0, 1]},
            "potential": {"sampling_nm": 0.01, "slice_thickness_nm": 0.32},
            "scan": {"sampling_nm": 0.05, "field_cells": [3, 3], "min_supercell_nm": 1.2},
            "phonons": {"num_configs": 0},
            "microscope": {"haadf_mrad": [50, 80]},
            "thickness_nm": 1.3,
        }
    )
    cell = simulate_cell(config)
    assert cell.name == "cspbi3_001" and cell.thickness_nm == pytest.approx(1.258)
    assert cell.image.shape == (13, 13)
    np.testing.assert_allclose(cell.pixel_size_nm, 0.629 / 13)
    assert len(cell.sites_nm) == 4 and cell.bright.sum() == 1
    peaks = np.argwhere(ndimage.maximum_filter(cell.image, 3, mode="wrap") == cell.image) * np.asarray(
        cell.pixel_size_nm
    )
    # every column has a maximum within one pixel (periodic distance)
    ext = cell.extent_nm
    d = (peaks[:, None, :] - cell.sites_nm[None] + ext / 2) % ext - ext / 2
    assert np.all(np.hypot(d[..., 0], d[..., 1]).min(axis=0) < 0.05)
    again = simulate_cell(config)  # cache hit: same image
    np.testing.assert_array_equal(again.image, cell.image)
    dot = mosaic_dot(cell, cell, (128, 128), dot_size_nm=3.0, dose=100, rng=0)
    assert dot.image.shape == (128, 128) and dot.thickness_nm == (cell.thickness_nm, cell.thickness_nm)
    assert dot.clean.max() == pytest.approx(100 * (1 + 0.15), rel=0.3)


def test_primitive_and_grid_vectors(cells):
    ordered, uniform = cells
    # CsPbI3-like: columns on a/2, but the bright column repeats only every a
    np.testing.assert_allclose(np.sort(np.abs(ordered.grid_vectors_nm()).max(axis=1)), [A / 2, A / 2])
    np.testing.assert_allclose(np.sort(np.abs(ordered.primitive_vectors_nm()).max(axis=1)), [A, A])
    # four alike columns in a 2s x 2s repeat: the period is s
    np.testing.assert_allclose(np.sort(np.abs(uniform.primitive_vectors_nm()).max(axis=1)), [0.32, 0.32])
    # an oblique lattice in an orthogonal repeat (like PbI2 <1 -1 1>): centred rectangular cell
    oblique = gaussian_cell([(0, 0), (0.26, 0.23)], [1.0, 1.0], (0.52, 0.46))
    p = oblique.primitive_vectors_nm()
    np.testing.assert_allclose(np.hypot(*p.T), [np.hypot(0.26, 0.23)] * 2, rtol=1e-9)
