"""``import stem_pipeline`` stays light: no third-party library (numpy loads with the first name used)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("hyperspy", "abtem", "atomap", "sklearn", "dask", "distributed", "matplotlib", "scipy", "pandas", "ase")


def test_import_loads_no_numpy_until_a_name_is_used():
    """numpy stays unloaded (the console script sets OpenBLAS's threads before it loads); the public names
    still import on first use, ``from stem_pipeline import Columns`` too."""
    code = (
        "import sys, json, stem_pipeline\n"
        "first = sorted(m.split('.')[0] for m in sys.modules)\n"
        "from stem_pipeline import Columns\n"
        "print(json.dumps([first, Columns.__module__, stem_pipeline.PipelineResult.__name__, 'numpy' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, module, name, numpy_after = json.loads(out)
    loaded = set(first)
    assert "numpy" not in loaded
    assert not loaded & set(HEAVY), f"heavy modules imported by `import stem_pipeline`: {loaded & set(HEAVY)}"
    assert (module, name, numpy_after) == ("stem_pipeline._types", "PipelineResult", True)


def test_cli_help_does_not_import_heavy_libraries():
    code = (
        "import sys, json\n"
        "from stem_pipeline import cli\n"
        "cli.build_parser()\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not set(json.loads(out)) & set(HEAVY)


#: What the light default install (`pip install -e .`) leaves out; analysing an image must not need them.
EXTRAS_ONLY = ("abtem", "ase", "numba", "llvmlite", "distributed", "atomap", "sklearn", "bm3d")


def test_analyze_and_the_demo_do_not_import_the_extras(tmp_path):
    """The light install analyses a file: no abTEM, ASE, numba, dask.distributed, atomap or scikit-learn on that path."""
    code = (
        "import sys, json\n"
        "import stem_pipeline as sp\n"
        "from stem_pipeline import cli\n"
        "from stem_pipeline.synthetic import make_dot\n"
        "dot = make_dot((128, 128), dose=200, rng=0)\n"
        "result = sp.analyze(dot.image, pixel_size_nm=dot.pixel_size_nm)\n"
        "assert result.columns is not None\n"
        "sp.to_dataframe(result); sp.result_signal(result, 'denoised')\n"
        f"assert cli.main(['-q', 'demo', '--out', {str(tmp_path / 'demo')!r}]) == 0\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    env = {**os.environ, "STEM_PIPELINE_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert {"hyperspy", "matplotlib"} <= loaded  # the test did analyse, write and plot
    assert not loaded & set(EXTRAS_ONLY), f"analysis imported optional extras: {loaded & set(EXTRAS_ONLY)}"


def test_analyzing_a_tiff_imports_neither_hyperspy_nor_scipy_signal_or_stats(tmp_path):
    """The one-file command reads a plain TIFF without HyperSpy (or the zarr, scikit-learn and pandas it
    brings) and never needs scipy.signal or scipy.stats: ~1 s CPU of start-up (benchmarks/process.py); its
    report.html is written without jinja2 (~0.03 s)."""
    from stem_pipeline import io
    from stem_pipeline.synthetic import make_dot

    path = io.save(make_dot((192, 192), dose=200, rng=0).micrograph(), tmp_path / "dot.tif")
    code = (
        "import sys, json\n"
        "from stem_pipeline import cli\n"
        f"assert cli.main(['-q', 'analyze', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}]) == 0\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('hyperspy', 'scipy', 'zarr', 'jinja2'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert "scipy.ndimage" in loaded  # it did analyse
    assert (tmp_path / "out" / "dot" / "summary.json").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert not loaded & {"hyperspy", "zarr", "scipy.signal", "scipy.stats", "jinja2"}
