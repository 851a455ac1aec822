"""``import stem_pipeline`` stays light: numpy only."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("hyperspy", "abtem", "atomap", "sklearn", "dask", "distributed", "matplotlib", "scipy", "pandas", "ase")


def test_import_loads_numpy_only():
    code = "import sys, json, stem_pipeline; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert "numpy" in loaded
    assert not loaded & set(HEAVY), f"heavy modules imported by `import stem_pipeline`: {loaded & set(HEAVY)}"


def test_cli_help_does_not_import_heavy_libraries():
    code = (
        "import sys, json\n"
        "from stem_pipeline import cli\n"
        "cli.build_parser()\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not set(json.loads(out)) & set(HEAVY)
