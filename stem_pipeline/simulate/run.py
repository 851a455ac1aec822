"""abTEM HAADF/BF simulation: exact multislice and the tiled one-cell fast path.

``import abtem`` happens inside the functions (it costs seconds); abTEM is
called with keyword arguments only. Lengths are nm outside, Angstrom inside.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from stem_pipeline._types import Micrograph
from stem_pipeline.optics import profile_fwhm, source_blur

from . import cache as _cache
from .config import DEBYE_WALLER_B, SimulationConfig, sigma_from_b
from .structures import as_generator, subcell_factors, unit_cell, zone_axis_cell

logger = logging.getLogger("stem_pipeline")

METHODS = ("fast", "exact")
DETECTORS = ("haadf", "bf")
#: Where abTEM computes: NumPy on the CPU, or CuPy on a CUDA GPU.
DEVICES = ("cpu", "gpu")


def build_structure(config: SimulationConfig, *, thickness_nm: float | None = None):
    """Build the atoms described by ``config``.

    Parameters
    ----------
    config : SimulationConfig
        The simulation configuration.
    thickness_nm : float, optional
        Overrides ``config.thickness_nm`` (crystals only; a dot's thickness is its edge).

    Returns
    -------
    atoms : ase.Atoms
        Crystals: the orthogonal repeat cell along the zone axis (abTEM
        ``orthogonalize_cell``), repeated along z to the thickness (whole
        cells, at least one); ``info["n_cells_z"]``, ``info["thickness_nm"]``.
        Dots: the whole dot model (see :func:`stem_pipeline.simulate.models.alloy_dot`).
    """
    s = config.structure
    rng = as_generator(s.seed)
    if s.kind == "dot":
        from .models import alloy_dot

        d = config.dot
        if d is None:  # the config validator requires a dot block for kind "dot"
            raise ValueError(f"{config.name}: structure.kind 'dot' needs a 'dot' block")
        atoms = alloy_dot(
            edge_nm=d.edge_nm,
            fa_fraction=d.fa_fraction,
            unit_cells=d.unit_cells,
            decomposed=d.decomposed,
            pbi2_zone_axis=d.pbi2_zone_axis,
            carbon_nm=d.carbon_nm,
            margin_nm=d.margin_nm,
            fa_orientation=s.fa_orientation,
            rng=rng,
        )
        atoms.info["thickness_nm"] = float(atoms.cell[2, 2] / 10)
        atoms.info["n_cells_z"] = 1
        return atoms
    cell = zone_axis_cell(
        unit_cell(s.kind, a_angstrom=None if s.a_nm is None else s.a_nm * 10, fa_orientation=s.fa_orientation, rng=rng),
        s.zone_axis,
    )
    t = config.thickness_nm if thickness_nm is None else thickness_nm
    nz = max(1, round(t * 10 / cell.cell[2, 2]))
    atoms = cell * (1, 1, nz)
    atoms.info.update(cell.info)
    atoms.info["subcell"] = _subcell_factors(cell)
    atoms.info["n_cells_z"] = nz
    atoms.info["repeat_angstrom"] = tuple(float(x) for x in np.diag(cell.cell))
    atoms.info["thickness_nm"] = float(nz * cell.cell[2, 2] / 10)
    return atoms


#: :func:`subcell_factors` of the repeat cells seen in this process (PbI2 [-4 4 1] takes seconds).
_SUBCELL_FACTORS: dict[tuple, tuple[int, int]] = {}


def _subcell_factors(cell) -> tuple[int, int]:
    """:func:`subcell_factors` of a repeat cell, remembered by its content."""
    key = (
        tuple(cell.get_chemical_symbols()),
        np.round(cell.get_positions(), 4).tobytes(),
        np.diag(cell.cell).tobytes(),
    )
    if key not in _SUBCELL_FACTORS:
        _SUBCELL_FACTORS[key] = subcell_factors(cell)
    return _SUBCELL_FACTORS[key]


def _sigmas(config: SimulationConfig, symbols: set[str]) -> dict[str, float]:
    if config.phonons.sigmas_angstrom is not None:
        missing = symbols - set(config.phonons.sigmas_angstrom)
        if missing:
            raise ValueError(f"phonons.sigmas_angstrom: no value for {sorted(missing)}")
        return dict(config.phonons.sigmas_angstrom)
    table: dict[str, float] = {}
    for kind in ("carbon", "pbi2", "fapbi3", "cspbi3"):  # later kinds win
        table.update(DEBYE_WALLER_B[kind])
    if config.structure.kind != "dot":
        table.update(DEBYE_WALLER_B[config.structure.kind])
    return {el: sigma_from_b(table[el]) for el in symbols}


def check_device(device: str) -> None:
    """Raise a ``ValueError`` saying why abTEM cannot compute on ``device`` here.

    ``"gpu"`` needs CuPy and at least one CUDA device that CuPy can open.
    """
    if device not in DEVICES:
        raise ValueError(f"device={device!r}: use one of {DEVICES}")
    if device == "cpu":
        return
    try:
        import cupy
    except ImportError as exc:
        raise ValueError(
            f"device 'gpu' needs CuPy and a CUDA GPU, and CuPy cannot be imported ({exc}); "
            "install the CuPy build for your CUDA version (e.g. pip install cupy-cuda12x) or use device 'cpu'"
        ) from None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError and friends: no driver, no device
        raise ValueError(
            f"device 'gpu': CuPy is installed but finds no usable CUDA device ({exc}); use device 'cpu'"
        ) from None
    if count < 1:
        raise ValueError("device 'gpu': CuPy is installed but finds no CUDA device; use device 'cpu'")


@contextlib.contextmanager
def _abtem_settings(num_workers: int, *, device: str = "cpu", scheduler: Any = None):
    """abTEM's device and Dask's scheduler for one run.

    ``scheduler`` None: Dask's local threads, ``num_workers`` of them (abTEM's
    frozen-phonon configurations and scan chunks are the tasks); otherwise a
    Dask scheduler, e.g. a ``distributed.Client``.
    """
    import abtem
    import dask

    settings: dict[str, Any] = (
        {"scheduler": "threads", "num_workers": num_workers} if scheduler is None else {"scheduler": scheduler}
    )
    with abtem.config.set({"device": device, "fftw.threads": 1}), dask.config.set(settings):
        yield


def probe_fwhm_nm(config: SimulationConfig, *, sampling_nm: float = 0.002) -> dict[str, float]:
    """Intrinsic (coherent) and effective (with source size) probe FWHM [nm].

    The intrinsic FWHM is measured on abTEM's probe intensity; the effective
    one adds the Gaussian source FWHM in quadrature.
    """
    import abtem

    m = config.microscope
    with _abtem_settings(1):
        probe = abtem.Probe(
            energy=m.energy_kev * 1e3,
            semiangle_cutoff=m.convergence_mrad,
            extent=20.0,
            sampling=sampling_nm * 10,
            aberrations={"defocus": m.defocus_nm * 10, "Cs": m.cs_um * 1e4},
        )
        intensity: Any = probe.build().intensity().compute(progress_bar=False)
        intensity = intensity.array
    intensity = np.asarray(intensity)
    peak = np.unravel_index(np.argmax(intensity), intensity.shape)
    profile = np.roll(intensity[:, peak[1]], intensity.shape[0] // 2 - peak[0])  # peak at the centre
    intrinsic = profile_fwhm(profile, sampling_nm)
    return {"intrinsic": intrinsic, "effective": math.hypot(intrinsic, m.source_fwhm_nm)}


@dataclass(frozen=True)
class RunPlan:
    """How abTEM runs one simulation. Lengths in Angstrom (abTEM's unit).

    Attributes
    ----------
    engine : {"multislice", "prism"}
        Plain multislice with a probe, or PRISM with an S-matrix.
    interpolation : int or (int, int)
        PRISM interpolation factor (1 for multislice).
    slice_thickness_angstrom : float
        Potential slice thickness.
    potential_gpts : (int, int)
        Grid points of the potential (x, y).
    extent_angstrom : (float, float)
        Scanned area (x, y) from the origin.
    scan_gpts : (int, int)
        Probe positions (x, y) over ``extent_angstrom``.
    tiles : (int, int) or None
        Crystals: repeat cells in the simulated supercell (x, y); None for dots.
    slices_per_cell : int
        Crystals: slices per repeat cell along the beam (exit planes every cell).
    subcell : (int, int)
        Fast path: the scanned part is the repeat cell divided by these (x, y)
        (:func:`~stem_pipeline.simulate.structures.subcell_factors`); its image is tiled.
    """

    engine: Literal["multislice", "prism"]
    interpolation: int | tuple[int, int]
    slice_thickness_angstrom: float
    potential_gpts: tuple[int, int]
    extent_angstrom: tuple[float, float]
    scan_gpts: tuple[int, int]
    tiles: tuple[int, int] | None = None
    slices_per_cell: int = 1
    subcell: tuple[int, int] = (1, 1)


def _scans_subcell(config: SimulationConfig, method: str) -> bool:
    """Whether a ``method`` run of ``config`` scans a sub-cell of the repeat cell (``scan.subcell``)."""
    crystal = config.structure.kind != "dot"
    return method == "fast" and crystal and config.scan.subcell and config.fast.engine != "prism"


def _crystal_plan(config: SimulationConfig, atoms, method: str) -> RunPlan:
    """Tiling, scan grid and engine for a crystal: ``atoms`` is one repeat cell."""
    lx, ly, lz = atoms.info["repeat_angstrom"]
    rows, cols = config.scan.field_cells
    min_ext = config.scan.min_supercell_nm * 10
    tiles_min = (math.ceil(min_ext / lx), math.ceil(min_ext / ly))
    sub = (1, 1)
    if method == "exact":
        tiles = (max(cols, tiles_min[0]), max(rows, tiles_min[1]))
        scan_cells = (cols, rows)
    else:
        tiles = tiles_min
        scan_cells = (1, 1)
        if _scans_subcell(config, method):
            sub = atoms.info["subcell"]
    step = config.scan.sampling_nm * 10
    n_cell = (max(1, math.ceil(lx / sub[0] / step)), max(1, math.ceil(ly / sub[1] / step)))
    engine: Literal["multislice", "prism"] = "multislice"
    interpolation: int | tuple[int, int] = 1
    if method == "fast" and config.fast.engine == "prism":
        # PRISM (opt-in): the S-matrix plane waves are spaced by 1 / cell, so the
        # probe window is one repeat cell (see sim_configs/README.md, "PRISM").
        engine = "prism"
        interpolation = (int(tiles[0]), int(tiles[1]))
    slices_per_cell = max(1, round(lz / (config.potential.slice_thickness_nm * 10)))
    # The same whole number of potential grid points in every repeat cell (so the supercell's
    # gpts are also divisible by a PRISM interpolation = repeats).
    p_step = config.potential.sampling_nm * 10
    return RunPlan(
        engine=engine,
        interpolation=interpolation,
        slice_thickness_angstrom=lz / slices_per_cell,
        potential_gpts=(tiles[0] * _points(lx, p_step, config), tiles[1] * _points(ly, p_step, config)),
        extent_angstrom=(scan_cells[0] * lx / sub[0], scan_cells[1] * ly / sub[1]),
        scan_gpts=(scan_cells[0] * n_cell[0], scan_cells[1] * n_cell[1]),
        tiles=(int(tiles[0]), int(tiles[1])),
        slices_per_cell=slices_per_cell,
        subcell=(int(sub[0]), int(sub[1])),
    )


def _points(length: float, step: float, config: SimulationConfig) -> int:
    """Potential grid points over ``length`` at ``step`` or finer (with ``potential.fast_fft`` an FFT-fast count)."""
    n = math.ceil(length / step)
    if config.potential.fast_fft:
        from scipy.fft import next_fast_len

        n = next_fast_len(n)
    return int(n)


def _dot_plan(config: SimulationConfig, atoms, method: str) -> RunPlan:
    """Grids and engine for a whole dot (its cell is the simulated area)."""
    lx, ly, _ = np.diag(atoms.cell)
    step = config.scan.sampling_nm * 10
    q = max(1, int(min(lx, ly) // (config.fast.prism_window_nm * 10))) if method == "fast" else 1
    p_step = config.potential.sampling_nm * 10  # PRISM needs gpts divisible by the interpolation factor
    return RunPlan(
        engine="prism" if method == "fast" else "multislice",
        interpolation=q,
        slice_thickness_angstrom=config.potential.slice_thickness_nm * 10,
        potential_gpts=(_points(lx / q, p_step, config) * q, _points(ly / q, p_step, config) * q),
        extent_angstrom=(float(lx), float(ly)),
        scan_gpts=(math.ceil(lx / step), math.ceil(ly / step)),
    )


def _run_abtem(
    config: SimulationConfig, atoms, *, plan: RunPlan, exit_every: int | None, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """Run abTEM once; return {detector: array (T?, nx, ny)} and the effective detector angles."""
    import abtem

    m = config.microscope
    energy = m.energy_kev * 1e3
    symbols = set(atoms.get_chemical_symbols())
    if config.phonons.num_configs > 0:
        specimen = abtem.FrozenPhonons(
            atoms=atoms,
            num_configs=config.phonons.num_configs,
            sigmas=_sigmas(config, symbols),
            seed=config.phonons.seed,
        )
    else:
        specimen = atoms
    potential = abtem.Potential(
        atoms=specimen,
        gpts=plan.potential_gpts,
        slice_thickness=plan.slice_thickness_angstrom,
        parametrization=config.potential.parametrization,
        exit_planes=exit_every,
    )
    scan = abtem.GridScan(
        start=(0.0, 0.0),
        end=plan.extent_angstrom,
        gpts=plan.scan_gpts,
        endpoint=False,
    )
    aberrations = {"defocus": m.defocus_nm * 10, "Cs": m.cs_um * 1e4}
    detector = abtem.FlexibleAnnularDetector()
    lazy: Any
    if plan.engine == "prism":
        s_matrix = abtem.SMatrix(
            potential=potential,
            energy=energy,
            semiangle_cutoff=m.convergence_mrad,
            interpolation=plan.interpolation,
        )
        ctf = abtem.CTF(semiangle_cutoff=m.convergence_mrad, energy=energy, aberration_coefficients=aberrations)
        lazy = s_matrix.scan(scan=scan, detectors=detector, ctf=ctf)
    else:
        probe = abtem.Probe(energy=energy, semiangle_cutoff=m.convergence_mrad, aberrations=aberrations)
        lazy = probe.scan(potential=potential, scan=scan, detectors=detector)
    try:
        # abTEM's progress_bar=True is dask's ProgressBar, which writes to stdout; "tqdm" writes to stderr.
        measurement: Any = lazy.compute(progress_bar="tqdm" if progress else False)
    except ValueError as exc:
        if plan.engine != "prism":
            raise
        raise ValueError(
            f"abTEM PRISM (SMatrix, interpolation={plan.interpolation}) failed for "
            f"{config.name!r}: {exc}. This is a known abTEM failure for some cells (e.g. PbI2 [-4 4 1]); "
            "use fast.engine: multislice"
        ) from exc
    if measurement.device != "cpu":  # CuPy arrays: NumPy from here on
        measurement = measurement.to_cpu()
    outer_max = float(measurement.outer_angle)
    out, angles = {}, {}
    for name, (inner, outer) in (("haadf", m.haadf_mrad), ("bf", m.bf_mrad)):
        eff_outer = min(outer, outer_max)
        if eff_outer < outer:
            logger.warning(
                "%s outer angle %.0f mrad exceeds the simulated maximum %.0f mrad (potential sampling "
                "%.4f nm); integrating to %.0f mrad",
                name,
                outer,
                outer_max,
                config.potential.sampling_nm,
                eff_outer,
            )
        if eff_outer <= inner:
            raise ValueError(
                f"microscope.{name}_mrad={[inner, outer]}: the potential sampling "
                f"{config.potential.sampling_nm} nm only reaches {outer_max:.0f} mrad; use a finer potential.sampling_nm"
            )
        out[name] = np.asarray(measurement.integrate_radial(inner=inner, outer=eff_outer).array, dtype=np.float32)
        angles[name] = (float(inner), eff_outer)
    return out, angles


def _fourier_resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample a periodic image to ``shape`` by zero-padding/cropping its spectrum."""
    if image.shape == tuple(shape):
        return image
    f = np.fft.fftshift(np.fft.fft2(image))
    out = np.zeros(shape, dtype=complex)
    src, dst = [], []
    for n0, n1 in zip(image.shape, shape):
        r = min(n0, n1)
        # keep the zero frequency at index n // 2 in both spectra
        src.append(slice(n0 // 2 - r // 2, n0 // 2 - r // 2 + r))
        dst.append(slice(n1 // 2 - r // 2, n1 // 2 - r // 2 + r))
    out[tuple(dst)] = f[tuple(src)]
    m0, n0 = image.shape
    m1, n1 = shape
    res = np.fft.ifft2(np.fft.ifftshift(out)).real * (m1 * n1) / (m0 * n0)
    return res.astype(np.float32)


def _postprocess(
    image: np.ndarray, *, pixel_nm: tuple[float, float], config: SimulationConfig, periodic: bool
) -> tuple[np.ndarray, tuple[float, float]]:
    """Source-size blur, then optional resampling; image is (rows, cols), ``pixel_nm`` (row, col)."""
    image = source_blur(image, pixel_nm, config.microscope.source_fwhm_nm, periodic=periodic)
    if config.scan.pixel_size_nm is not None:
        shape = tuple(max(1, round(s * p / config.scan.pixel_size_nm)) for s, p in zip(image.shape, pixel_nm))
        pixel_nm = tuple(s * p / n for s, p, n in zip(image.shape, pixel_nm, shape))
        image = _fourier_resample(image, shape) if periodic else _zoom(image, shape)
    return np.asarray(image, dtype=np.float32), pixel_nm


def _zoom(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from scipy import ndimage

    return ndimage.zoom(image, (shape[0] / image.shape[0], shape[1] / image.shape[1]), order=3)


def _simulate_raw(
    config: SimulationConfig,
    *,
    thicknesses_nm: Sequence[float] | None,
    method: str,
    progress: bool,
    device: str = "cpu",
    scheduler: Any = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Simulate; arrays are (T, rows, cols) per detector, before blur/tiling for the fast path."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use 'fast' or 'exact'")
    tmax = max(thicknesses_nm) if thicknesses_nm else None
    atoms = build_structure(config, thickness_nm=tmax)
    meta: dict = {"n_atoms": len(atoms), "zone_axis": list(config.structure.zone_axis)}
    t0 = time.perf_counter()
    with _abtem_settings(config.num_workers, device=device, scheduler=scheduler):
        if config.structure.kind == "dot":
            plan = _dot_plan(config, atoms, method)
            raw, angles = _run_abtem(config, atoms, plan=plan, exit_every=None, progress=progress)
            raw = {k: v[None] for k, v in raw.items()}
            thick_cells = [1]
            meta["thickness_nm"] = [atoms.info["thickness_nm"]]
        else:
            plan = _crystal_plan(config, atoms, method)
            tiles = plan.tiles or (1, 1)
            lz = atoms.info["repeat_angstrom"][2]
            nz = atoms.info["n_cells_z"]
            supercell = atoms * (tiles[0], tiles[1], 1)
            series = thicknesses_nm is not None and len(thicknesses_nm) > 1
            thick_cells = (
                sorted({max(1, min(nz, round(t * 10 / lz))) for t in thicknesses_nm}) if thicknesses_nm else [nz]
            )
            raw, angles = _run_abtem(
                config, supercell, plan=plan, exit_every=plan.slices_per_cell if series else None, progress=progress
            )
            if series:  # exit planes: (T, nx, ny); index 0 is after the first exit plane
                # abTEM drops the exit-plane axis when there is a single plane (one cell thick)
                raw = {k: v if v.ndim == 3 else v[None] for k, v in raw.items()}
                n_planes = next(iter(raw.values())).shape[0]
                first = n_planes - nz  # abTEM may include the entrance plane
                raw = {k: np.stack([v[first + c - 1] for c in thick_cells]) for k, v in raw.items()}
            else:
                raw = {k: v[None] for k, v in raw.items()}
            meta["thickness_nm"] = [c * lz / 10 for c in thick_cells]
            meta["tiles"] = list(tiles)
            meta["subcell"] = [plan.subcell[1], plan.subcell[0]]  # (rows, cols)
    meta.update(
        engine=plan.engine,
        interpolation=plan.interpolation,
        slice_thickness_nm=plan.slice_thickness_angstrom / 10,
        extent_nm=[plan.extent_angstrom[1] / 10, plan.extent_angstrom[0] / 10],  # scanned (rows, cols) before tiling
        detector_mrad=angles,
        runtime_s=time.perf_counter() - t0,
    )
    # abTEM arrays are (x, y): transpose to (rows=y, cols=x)
    return {k: np.ascontiguousarray(np.swapaxes(v, -1, -2)) for k, v in raw.items()}, meta


def _finish(
    stack: np.ndarray, *, config: SimulationConfig, meta: dict, method: str, square: bool = True
) -> tuple[np.ndarray, tuple[float, float]]:
    """Blur, resample and (fast path) tile each image of a (T, rows, cols) stack.

    With ``square`` the (tiled) images are resampled along the rows to the
    columns' pixel size when the two differ (e.g. the 0.629 x 0.890 nm cell of
    CsPbI3 [110] scanned with a whole number of positions per cell), so that
    one pixel size describes them; within half a pixel over the field.
    Returns the images and their pixel size (row, col) [nm].
    """
    # a crystal field is a whole number of repeat cells, so its image is periodic
    periodic = config.structure.kind != "dot"
    reps = (1, 1)
    if method == "fast" and config.structure.kind != "dot":
        sub = meta.get("subcell", (1, 1))  # the scanned part of the repeat cell, tiled first
        reps = (config.scan.field_cells[0] * sub[0], config.scan.field_cells[1] * sub[1])
    scanned = tuple(e / n for e, n in zip(meta["extent_nm"], stack.shape[1:]))
    out, pixel = [], scanned
    for img in stack:
        im, pixel = _postprocess(img, pixel_nm=scanned, config=config, periodic=periodic)
        out.append(np.tile(im, reps))
    images = np.stack(out).astype(np.float32)
    if square and abs(pixel[0] / pixel[1] - 1) > 1e-3:
        rows = max(1, round(images.shape[1] * pixel[0] / pixel[1]))
        shape = (rows, images.shape[2])
        images = np.stack([_fourier_resample(im, shape) if periodic else _zoom(im, shape) for im in images])
        pixel = (pixel[1], pixel[1])
    return images.astype(np.float32), pixel


def run_key_parts(config: SimulationConfig, *, method: str) -> dict:
    """The parts of ``config`` that change the multislice result of a ``method`` run.

    Post-processing applied to the cached run is left out, so runs that differ
    only in it share a cache entry: ``microscope.source_fwhm_nm`` (blur),
    ``scan.pixel_size_nm`` (resampling), ``scan.field_cells`` for the fast path
    on crystals (tiling), and ``name`` / ``num_workers``. The ``fast`` block only
    matters for fast runs.
    """
    parts = config.model_dump(mode="json")
    for key in ("name", "num_workers"):
        parts.pop(key)
    parts["microscope"].pop("source_fwhm_nm")
    parts["scan"].pop("pixel_size_nm")
    if not config.potential.fast_fft:  # the grid of runs made before the option existed: their keys stay
        parts["potential"].pop("fast_fft")
    crystal = config.structure.kind != "dot"
    if crystal:
        parts.pop("dot")
    if method == "fast" and crystal:
        parts["scan"].pop("field_cells")
        parts["fast"].pop("prism_window_nm")  # crystals: the window is one repeat cell
    # where it applies, the sub-cell factor it gives goes into the key instead (see _cached_raw)
    parts["scan"].pop("subcell")
    if method != "fast":
        parts.pop("fast")
    return parts


def _cached_raw(config, *, thicknesses_nm, method, cache, progress, device="cpu", scheduler=None):
    # A sub-cell scan changes the run only where the repeat cell has a sub-cell (factor > 1): runs of
    # other cells keep the key they had before ``scan.subcell`` existed.
    sub = build_structure(config, thickness_nm=0.01).info["subcell"] if _scans_subcell(config, method) else (1, 1)
    key = _cache.cache_key(
        "run",
        run=run_key_parts(config, method=method),
        method=method,
        thicknesses=None if thicknesses_nm is None else [round(t, 4) for t in thicknesses_nm],
        **({"subcell": list(sub)} if sub != (1, 1) else {}),
    )
    if cache:
        hit = _cache.load(key)
        if hit is not None:
            arrays, meta = hit
            meta["cache"] = "hit"
            return arrays, meta
    arrays, meta = _simulate_raw(
        config, thicknesses_nm=thicknesses_nm, method=method, progress=progress, device=device, scheduler=scheduler
    )
    meta["cache"] = "miss" if cache else "disabled"
    if cache:
        _cache.save(key, arrays, meta)
    return arrays, meta


def _add_noise(image: np.ndarray, dose: float, rng) -> np.ndarray:
    if dose <= 0:
        raise ValueError(f"dose={dose}: must be positive (counts at the brightest pixel)")
    peak = float(image.max())
    scaled = np.clip(image, 0, None) * (dose / peak) if peak > 0 else np.zeros_like(image)
    return as_generator(rng).poisson(scaled).astype(np.float32)


def simulate_detectors(
    config: SimulationConfig,
    *,
    thickness_nm: float | None = None,
    method: str = "fast",
    dose: float | None = None,
    cache: bool = True,
    progress: bool = True,
    rng: np.random.Generator | int | None = None,
    device: str = "cpu",
    scheduler: Any = None,
) -> dict[str, Micrograph]:
    """HAADF and BF images from one abTEM run (a ``FlexibleAnnularDetector``).

    Parameters
    ----------
    config : SimulationConfig
        The simulation (see :func:`load_config`).
    thickness_nm : float, optional
        Overrides ``config.thickness_nm`` [nm] (rounded to whole repeat cells).
    method : {"fast", "exact"}
        ``"exact"``: multislice scan of the whole field of view.
        ``"fast"`` (crystals): one repeat cell is scanned by multislice inside
        a supercell of at least ``scan.min_supercell_nm`` (or, with
        ``fast.engine: prism``, by PRISM ``SMatrix`` with interpolation = the
        repeats of the cell in the supercell) and the cell image is tiled over
        the field. For dots, ``"fast"`` is PRISM.
    dose : float, optional
        Poisson noise: expected counts at the brightest pixel (the images are
        then in counts). None = noiseless.
    cache : bool
        Read and write the cache, keyed by what changes the multislice run
        (:func:`run_key_parts`), the method and the thickness; the source blur,
        resampling and (fast path) tiling are applied after it.
    progress : bool
        Show abTEM's progress bar.
    rng : Generator, int or None
        Random source for the noise.
    device : {"cpu", "gpu"}
        Where abTEM computes; ``"gpu"`` needs CuPy and a CUDA device
        (:func:`check_device` says why not). The result is cached alike.
    scheduler : optional
        A Dask scheduler for abTEM's tasks (frozen-phonon configurations and
        scan chunks), e.g. a ``distributed.Client``; None runs them on
        ``config.num_workers`` local threads.

    Returns
    -------
    images : dict of {"haadf", "bf"} to Micrograph
        float32 images, ``pixel_size_nm`` from the scan step (or
        ``scan.pixel_size_nm``), metadata with the optics, detector angles,
        thickness, method, engine and config hash.
    """
    t = config.thickness_nm if thickness_nm is None else float(thickness_nm)
    if t <= 0:
        raise ValueError(f"thickness_nm={thickness_nm}: must be positive")
    check_device(device)
    raw, meta = _cached_raw(
        config, thicknesses_nm=[t], method=method, cache=cache, progress=progress, device=device, scheduler=scheduler
    )
    rng = as_generator(rng)
    result = {}
    for name in DETECTORS:
        stack, pixel = _finish(raw[name], config=config, meta=meta, method=method)
        image = stack[0]
        if dose is not None:
            image = _add_noise(image, dose, rng)
        m = config.microscope
        metadata = {
            "simulated": True,
            "config_name": config.name,
            "config_hash": config.config_hash(),
            "structure": config.structure.kind,
            "zone_axis": list(config.structure.zone_axis),
            "energy_kev": m.energy_kev,
            "convergence_mrad": m.convergence_mrad,
            "detector": name.upper(),
            "detector_mrad": list(meta["detector_mrad"][name]),
            "source_fwhm_nm": m.source_fwhm_nm,
            "defocus_nm": m.defocus_nm,
            "cs_um": m.cs_um,
            "thickness_nm": meta["thickness_nm"][0],
            "method": method,
            "engine": meta["engine"],
            "frozen_phonons": config.phonons.num_configs,
            "dose": dose,
            "cache": meta.get("cache"),
            "runtime_s": meta.get("runtime_s"),
            "subcell": meta.get("subcell", [1, 1]),
        }
        result[name] = Micrograph(
            data=image, pixel_size_nm=float(pixel[1]), source=f"simulate:{config.name}", metadata=metadata
        )
    return result


def simulate(
    config: SimulationConfig,
    *,
    thickness_nm: float | None = None,
    method: str = "fast",
    dose: float | None = None,
    cache: bool = True,
    progress: bool = True,
    rng: np.random.Generator | int | None = None,
    detector: str = "haadf",
    device: str = "cpu",
    scheduler: Any = None,
) -> Micrograph:
    """Simulate one calibrated image (HAADF by default) of ``config``.

    Parameters are those of :func:`simulate_detectors` (``device`` and
    ``scheduler`` included), plus ``detector`` in {"haadf", "bf"}. Both
    detectors come from the same (cached) run.

    Returns
    -------
    image : Micrograph
        float32 (M, N) image with ``pixel_size_nm`` and simulation metadata.

    Examples
    --------
    >>> from stem_pipeline.simulate import load_config, simulate
    >>> img = simulate(load_config("sim_configs/cspbi3_001.yaml"), thickness_nm=6.29)  # doctest: +SKIP
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector={detector!r}: use one of {DETECTORS}")
    return simulate_detectors(
        config,
        thickness_nm=thickness_nm,
        method=method,
        dose=dose,
        cache=cache,
        progress=progress,
        rng=rng,
        device=device,
        scheduler=scheduler,
    )[detector]


def simulate_thickness_series(
    config: SimulationConfig,
    thicknesses_nm: Sequence[float],
    *,
    method: str = "fast",
    detector: str = "haadf",
    cache: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Images at several thicknesses from one multislice run (exit planes every cell).

    Parameters
    ----------
    config : SimulationConfig
        A crystal configuration (not a dot).
    thicknesses_nm : sequence of float
        Requested thicknesses [nm]; each is rounded to whole repeat cells.
    method : {"fast", "exact"}
    detector : {"haadf", "bf"}
    cache, progress : bool

    Returns
    -------
    images : (T, M, N) ndarray of float32
        One image per distinct rounded thickness, thinnest first.
    thicknesses_nm : (T,) ndarray
        The actual thicknesses [nm].
    pixel_size_nm : (2,) tuple of float
        Pixel size (row, col) [nm] of the images (they differ for non-square
        repeat cells, e.g. CsPbI3 [110]).
    """
    if config.structure.kind == "dot":
        raise ValueError("simulate_thickness_series: a dot has a single thickness (its edge)")
    if detector not in DETECTORS:
        raise ValueError(f"detector={detector!r}: use one of {DETECTORS}")
    ts = [float(t) for t in thicknesses_nm]
    if not ts or min(ts) <= 0:
        raise ValueError(f"thicknesses_nm={thicknesses_nm}: need positive values")
    if len(ts) == 1:
        ts = ts * 2  # force the exit-plane path so the series and a single run share code
    raw, meta = _cached_raw(config, thicknesses_nm=ts, method=method, cache=cache, progress=progress)
    stack, pixel = _finish(raw[detector], config=config, meta=meta, method=method, square=False)
    thick = np.asarray(meta["thickness_nm"], dtype=float)
    return stack, thick, (float(pixel[0]), float(pixel[1]))


def run_config(path, **options) -> Micrograph:
    """Load a YAML config and simulate its HAADF image (what the CLI does before writing).

    ``options`` are the keyword options of :func:`simulate` (``thickness_nm``,
    ``method``, ``dose``, ``cache``, ``progress``, ``rng``, ``detector``).
    """
    from .config import load_config

    return simulate(load_config(path), **options)
