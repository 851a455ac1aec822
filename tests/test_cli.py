"""The ``stem-pipeline`` command: help, version, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stem_pipeline import __version__, cli

SUBCOMMANDS = ("analyze", "denoise", "simulate", "compare", "demo")


def run(*args):
    return subprocess.run([sys.executable, "-m", "stem_pipeline.cli", *args], capture_output=True, text=True)


def test_help_lists_the_five_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_version():
    out = run("--version")
    assert out.returncode == 0 and __version__ in out.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0
    assert "usage: stem-pipeline " + name in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["analyze"],  # no input, no --out
        ["denoise", "in.tif"],  # no --out
        ["compare", "img.tif", "--out", "x"],  # no --models
        ["analyze", "a.tif", "--out", "o", "--workers", "2", "--scheduler", "tcp://h:1"],
        ["-q", "-v", "demo"],
    ],
)
def test_bad_usage_exits_2(argv, capsys):
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def exit_status(argv: list[str]) -> int:
    """``cli.main``'s exit status, whether argparse exits (SystemExit) or main returns it."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("stem-pipeline")
    assert exe is not None, "the stem-pipeline entry point is not on PATH: is the package installed?"
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).returncode == 0


def test_denoise_command_keeps_calibration_and_records_the_chain(tmp_path, small_dot):
    from stem_pipeline import io

    src = io.save(small_dot.micrograph(), tmp_path / "dot.tif")
    out = tmp_path / "dot_denoised.hspy"
    assert cli.main(["-q", "denoise", str(src), "--out", str(out)]) == 0
    back = io.load(out)
    assert back.pixel_size_nm == pytest.approx(small_dot.pixel_size_nm)
    assert back.shape == small_dot.image.shape
    # Smoother than the input, and closer to the noise-free image.
    import numpy as np

    err_in = np.abs(small_dot.image - small_dot.clean).mean()
    err_out = np.abs(back.data - small_dot.clean).mean()
    assert err_out < 0.7 * err_in  # a no-op or a blur that erases columns fails
    import json

    steps = json.loads(back.metadata["stem_pipeline"]["denoise_config"])["steps"]
    assert [s["name"] for s in steps] == ["gaussian", "wiener", "rl"]
    chosen = tmp_path / "chosen.npy"
    assert cli.main(["-q", "denoise", str(src), "--out", str(chosen), "--steps", "median,absf"]) == 0
    assert not np.allclose(np.load(chosen), back.data)


def test_print_config_round_trips_as_a_config_file(tmp_path, capsys):
    from stem_pipeline.pipeline import PipelineConfig

    assert cli.main(["analyze", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "denoise:" in text and "two_phase_model:" in text
    path = tmp_path / "full.yaml"
    path.write_text(text)
    assert PipelineConfig.from_yaml(path).config_hash() == PipelineConfig().config_hash()
    custom = tmp_path / "custom.yaml"
    custom.write_text("columns: {com_radius_fraction: 0.25}\n")
    assert cli.main(["analyze", "--print-config", "--config", str(custom)]) == 0
    assert "com_radius_fraction: 0.25" in capsys.readouterr().out


def test_denoise_command_errors(tmp_path, small_dot, capsys):
    from stem_pipeline import io

    src = io.save(small_dot.micrograph(), tmp_path / "dot.tif")
    assert exit_status(["denoise", str(src), "--out", str(tmp_path / "o.tif"), "--steps", "gaussian,sharpen"]) == 2
    assert "sharpen" in capsys.readouterr().err
    assert exit_status(["denoise", str(src), "--out", str(tmp_path / "o.png")]) == 2
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    assert cli.main(["denoise", str(bad), "--out", str(tmp_path / "o.tif")]) == 1
    assert "bad.tif" in capsys.readouterr().err


def test_print_config_shows_each_description_as_a_comment(capsys):
    """--print-config shows each field's description (see the test below) as a comment above it."""
    assert cli.main(["analyze", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "# Mean-field iterations.\n  mrf_iterations: 10" in out
    assert "    # FWHM of the Gaussian effective source [nm]" in out  # inside the rl step of the list
    assert "    # Gaussian smoothing of the image.\n  - name: gaussian\n" in out  # a step's own description


def test_every_config_reachable_from_the_top_level_is_documented_with_its_own_words():
    """Walk the fields of PipelineConfig and of every other config model (through lists and unions): every
    field has a description, and two fields share one only when they are the same option (same name and
    default) of two models: not a copied placeholder (each denoise step's ``name`` was "The step.") nor one
    text for two options."""
    import importlib
    import typing

    from pydantic import BaseModel

    from stem_pipeline.config import StrictModel
    from stem_pipeline.pipeline import PipelineConfig

    for module in ("stem_pipeline.series", "stem_pipeline.simulate", "stem_pipeline.compare", "stem_pipeline.field"):
        importlib.import_module(module)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    def nested(annotation):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield annotation
        for arg in typing.get_args(annotation):
            yield from nested(arg)

    seen: set[type] = set()
    todo = [PipelineConfig, *subclasses(StrictModel)]
    descriptions: dict[str, set[tuple[str, str]]] = {}
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            descriptions.setdefault(field.description, set()).add((name, repr(field.default)))
            todo += list(nested(field.annotation))
    assert len(seen) >= 25  # the stages' configs, the denoise steps, the simulation and series configs
    shared = {text: where for text, where in descriptions.items() if len(where) > 1}
    assert not shared
