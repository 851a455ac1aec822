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
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("stem-pipeline")
    assert exe is not None, "the stem-pipeline entry point is not on PATH: is the package installed?"
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).returncode == 0
