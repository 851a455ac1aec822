"""The command's interface: flags anywhere, help for every option, results on stdout, the rest on stderr."""

from __future__ import annotations

import argparse
import ast
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from stem_pipeline import Comparison, Micrograph, cli, io

TINY_SIMULATION = """\
name: tiny
structure: {kind: cspbi3, zone_axis: [0, 0, 1]}
microscope: {haadf_mrad: [68, 100]}
potential: {sampling_nm: 0.008, slice_thickness_nm: 0.16}
scan: {sampling_nm: 0.08, field_cells: [1, 1], min_supercell_nm: 1.8}
phonons: {num_configs: 2, seed: 1}
fast: {engine: multislice}
thickness_nm: 0.629
"""


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "stem_pipeline.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


@pytest.mark.parametrize("argv", [["analyze", "--print-config", "-v"], ["analyze", "-q", "--print-config"]])
def test_global_flags_after_the_subcommand(argv, capsys):
    assert cli.main(argv) == 0
    assert "denoise:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["analyze", "-q", "-v", "--print-config"], ["-q", "analyze", "-v", "--print-config"]])
def test_quiet_and_verbose_exclude_each_other_wherever_they_are(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and "usage:" in capsys.readouterr().err


def test_the_console_script_ends_with_mains_status_and_a_normal_exit():
    """``stem-pipeline`` is cli.run: main's exit status, and the exit still flushes and runs atexit handlers."""
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["stem-pipeline"] == "stem_pipeline.cli:run"
    code = (
        "import atexit, sys; from stem_pipeline import cli; atexit.register(print, 'atexit ran'); "
        "sys.argv = ['stem-pipeline', 'analyze']; print('buffered', end=''); cli.run()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == cli.EXIT_USAGE, done.stderr
    assert "analyze needs at least one INPUT" in done.stderr
    assert done.stdout == "bufferedatexit ran\n"


def test_the_console_script_loads_the_commands_modules_frozen_and_collects_garbage_after():
    """cli.run's start-up: the command's modules imported with the GC paused and then frozen; GC on again."""
    code = (
        "import gc, sys; from stem_pipeline import cli; before = gc.get_freeze_count(); "
        "cli.load_frozen(cli.COMMAND_MODULES['analyze']); "
        "print(before == 0, gc.get_freeze_count() > 10000, gc.isenabled(), "
        "all('stem_pipeline.' + m in sys.modules for m in cli.COMMAND_MODULES['analyze']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True"] * 4


def _scipy_release() -> str:
    import scipy

    return ".".join(scipy.__version__.split(".")[:2])


@pytest.mark.skipif(_scipy_release() not in cli.LEAN_SCIPY_RELEASES, reason="lean_scipy leaves this SciPy as it is")
def test_scipys_capability_decorator_returns_the_function_itself_where_lean_scipy_replaces_it():
    """What cli.lean_scipy relies on in the releases it touches: ``xp_capabilities`` adds no wrapper or
    behaviour (it records a table for SciPy's tests and rewrites the docstring), so a pass-through changes
    no result."""
    from scipy._lib._array_api import xp_capabilities

    def f(x):
        """A function.

        Parameters
        ----------
        x : int
        """
        return x + 1

    assert xp_capabilities(np_only=True)(f) is f and f(1) == 2


@pytest.mark.skipif(_scipy_release() not in cli.LEAN_SCIPY_RELEASES, reason="lean_scipy leaves this SciPy as it is")
def test_the_console_script_loads_scipy_without_numpys_non_array_api_submodules_or_docstring_rewrites():
    """cli.lean_scipy: SciPy loads without numpy.f2py / numpy.testing and keeps its docstrings as written;
    numpy's namespace is as before (the submodules still load when asked for), SciPy's functions work."""
    code = (
        "import sys, numpy as np; from stem_pipeline import cli\n"
        "if sys.argv[1] == 'lean': cli.lean_scipy()\n"
        "from scipy import ndimage\n"
        "loaded = [m for m in ('numpy.f2py', 'numpy.testing') if m in sys.modules]\n"
        "notes = 'Array API Standard Support' in ndimage.gaussian_filter.__doc__\n"
        "listed = {'f2py', 'testing'} <= set(dir(np)) and 'f2py' in np.__all__\n"
        "blurred = ndimage.gaussian_filter(np.eye(5), 1.0).round(12).tolist()\n"
        "print(repr((loaded, notes, listed, np.testing.__name__, blurred)))"
    )
    seen = {
        how: ast.literal_eval(
            subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, check=True).stdout
        )
        for how in ("default", "lean")
    }
    assert seen["default"][:2] == (["numpy.f2py", "numpy.testing"], True)  # what lean_scipy avoids
    assert seen["lean"][:2] == ([], False)
    assert seen["lean"][2:] == seen["default"][2:] == (True, "numpy.testing", seen["default"][4])


def test_the_console_script_runs_blas_on_one_thread_unless_a_budget_is_set():
    """cli.single_threaded_blas: every OpenBLAS (NumPy's and SciPy's) on one thread, loaded so (numpy not yet
    loaded, as in the console script) or limited after (numpy loaded before); the environment as before after
    it; a budget set in the environment (a batch worker's, the user's) is left as it is."""
    code = (
        "import os, sys\n"
        "if sys.argv[1] == 'numpy first': import numpy\n"
        "from stem_pipeline import cli\n"
        "budget = os.environ.get('OPENBLAS_NUM_THREADS')\n"
        "with cli.single_threaded_blas(): cli.load_frozen(cli.COMMAND_MODULES['analyze'])\n"
        "same_env = os.environ.get('OPENBLAS_NUM_THREADS') == budget\n"
        "limited_after = 'threadpoolctl' in sys.modules\n"
        "import threadpoolctl\n"
        "threads = [i['num_threads'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas']\n"
        "print(repr((threads, same_env, limited_after)))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}

    def threads(how, **budget):
        done = subprocess.run(
            [sys.executable, "-c", code, how], capture_output=True, text=True, check=True, env={**env, **budget}
        )
        return ast.literal_eval(done.stdout)

    budgeted, same_env, _ = threads("", OPENBLAS_NUM_THREADS="2")
    if not budgeted:
        pytest.skip("no OpenBLAS loaded")
    assert budgeted == [2] * len(budgeted) and same_env  # the budget stays
    assert threads("") == ([1] * len(budgeted), True, False)  # loaded on one thread: no second one started
    assert threads("numpy first") == ([1] * len(budgeted), True, True)  # numpy's started: limited after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_console_script_keeps_freed_memory_for_reuse():
    """cli.keep_freed_memory: a freed 4 MB array's pages serve the next one (no page faults each time)."""
    code = (
        "import resource, sys, numpy as np; from stem_pipeline import cli\n"
        "if sys.argv[1] == 'keep': cli.keep_freed_memory()\n"
        "np.ones(1 << 19).sum()\n"
        "start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20): np.ones(1 << 19).sum()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)"
    )
    faults = {
        how: int(subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, check=True).stdout)
        for how in ("default", "keep")
    }
    # By default each new array faults pages in again (>= 1 per array even with transparent huge pages).
    assert faults["default"] >= 20 and faults["keep"] < 0.1 * faults["default"], faults


def test_flags_after_the_subcommand_set_the_log_level(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.random.default_rng(0).random((96, 96)).astype(np.float32))
    loud = run("denoise", path, "--out", tmp_path / "a.npy", "-v")
    quiet = run("denoise", path, "--out", tmp_path / "b.npy", "-q")
    assert loud.returncode == quiet.returncode == 0
    assert "INFO" in loud.stderr or "WARNING" in loud.stderr
    assert quiet.stderr == ""


def test_every_option_has_help():
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in _subparsers(cli.build_parser()).items()
        for action in parser._actions
        if not action.help
    ]
    assert not missing, f"options without help: {missing}"


def test_uncalibrated_denoise_logs_a_warning_naming_the_file_not_a_python_warning(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, np.random.default_rng(0).random((96, 96)).astype(np.float32))
    out = run("denoise", path, "--out", tmp_path / "d.npy")
    assert out.returncode == 0
    lines = out.stderr.splitlines()
    assert any(line.startswith("WARNING: ") and "plain.npy: no pixel size" in line for line in lines)
    assert any("plain.npy: skipping the 'rl'" in line for line in lines)  # the per-file message names the file
    assert "MissingCalibrationWarning" not in out.stderr and "warnings.warn" not in out.stderr
    assert out.stdout.startswith("denoised ")


def test_analyze_prints_results_on_stdout_and_progress_and_logs_on_stderr(tmp_path, small_dot):
    src = io.save(small_dot.micrograph(), tmp_path / "dot.tif")
    out = run("analyze", src, "--out", tmp_path / "out", "--workers", "1", "-v")
    assert out.returncode == 0, out.stderr
    stdout = out.stdout.splitlines()
    assert (
        len(stdout) == 2 and stdout[0].endswith("]") and "dot.tif: " in stdout[0] and stdout[1].startswith("report: ")
    )
    assert "INFO: " in out.stderr and "100%" in out.stderr  # logs and the progress bar


def test_simulate_progress_goes_to_stderr(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_SIMULATION)
    out = run("simulate", config, "--out", tmp_path / "tiny.tif", "--no-cache")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [line for line in out.stdout.splitlines() if line.startswith("simulated ")]
    assert len(out.stdout.splitlines()) == 1  # not dask's "[####] | 100% Completed" bar
    assert "100%" in out.stderr


def _comparison(**fit) -> Comparison:
    base = {
        "model": "m",
        "region": "all",
        "ncc": 0.9,
        "ssim": 0.8,
        "rmse": 0.1,
        "chi2": 1.0,
        "thickness_nm": 8.0,
        "thickness_nm_std": 0.5,
        "source_fwhm_nm": 0.09,
        "source_fwhm_nm_std": 0.02,
        "column_ratio_exp": None,
        "column_ratio_sim": None,
    }
    return Comparison(**{**base, **fit})


@pytest.mark.parametrize(
    ("fit", "flagged"),
    [
        ({}, None),
        ({"thickness_nm": 15.73}, "thickness 15.7 nm"),  # 16 nm rounded to whole cells
        ({"thickness_nm": 1.908}, "thickness 1.91 nm"),
        ({"source_fwhm_nm": 0.25}, "source FWHM 0.25 nm"),
        ({"source_fwhm_nm": 0.0}, None),  # no blur is a physical limit, not the end of a search
    ],
)
def test_a_fitted_parameter_at_its_range_limit_is_a_warning(fit, flagged):
    from stem_pipeline.compare import CompareConfig, range_limit_warnings

    messages = range_limit_warnings([_comparison(**fit)], CompareConfig())
    if flagged is None:
        assert messages == []
    else:
        (message,) = messages
        assert flagged in message and "m (all)" in message and "widen" in message


def test_rl_optics_come_from_the_file_else_a_warning_names_the_defaults(caplog):
    from stem_pipeline.denoise import DenoiseConfig
    from stem_pipeline.pipeline import denoise_config_for

    image = np.ones((64, 64), np.float32)
    from_file = Micrograph(image, pixel_size_nm=0.02, source="a.dm4", metadata={"energy_kev": 300.0})
    with caplog.at_level(logging.WARNING, logger="stem_pipeline"):
        config = denoise_config_for(from_file, DenoiseConfig())
    (rl,) = [s for s in config.steps if s.name == "rl"]
    assert rl.energy_kev == 300.0
    expected = (
        "a.dm4: the file gives no convergence_mrad; the 'rl' deconvolution uses the defaults "
        "convergence_mrad=25 (set them in the config's rl step)"
    )
    assert [r.getMessage() for r in caplog.records] == [expected]
    explicit = DenoiseConfig.model_validate({"steps": [{"name": "rl", "energy_kev": 200.0}]})
    assert denoise_config_for(from_file, explicit).steps[0].energy_kev == 200.0  # the config wins
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stem_pipeline"):
        config = denoise_config_for(Micrograph(image, source="b.tif"), DenoiseConfig())
    assert "rl" not in config.step_names
    assert "b.tif: skipping the 'rl'" in caplog.text


def test_a_missing_extra_is_named(monkeypatch, capsys, tmp_path):
    from stem_pipeline import commands

    def needs_abtem(args):
        raise ModuleNotFoundError("No module named 'abtem'", name="abtem")

    monkeypatch.setattr(commands, "run_simulate", needs_abtem)
    config = tmp_path / "c.yaml"
    config.write_text(TINY_SIMULATION)
    assert cli.main(["simulate", str(config), "--out", str(tmp_path / "s.tif")]) == 1
    assert "needs abtem, which is not installed: pip install 'stem-pipeline[simulate]'" in capsys.readouterr().err


def test_a_batch_without_dask_distributed_runs_in_process(tmp_path, small_dot, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as on the light install
    for name in ("a", "b"):
        io.save(small_dot.micrograph(), tmp_path / "in" / f"{name}.tif")
    assert cli.main(["analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "dask.distributed is not installed (pip install 'stem-pipeline[distributed]')" in captured.err
    assert captured.out.count("columns, ordered") == 2
