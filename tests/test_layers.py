"""Imports point down: core <- stages <- workflows, read from the source with ``ast``.

Every module of the package belongs to one unit (a top-level module or subpackage) and every
unit to one layer. A unit may import units of a lower layer, and units listed before it in
its own layer (stages build on each other in the order of the data flow). Imports inside
functions count too: a lazy import that points up is still a dependency that points up.
HyperSpy, RosettaSciIO and atomap are imported by ``io`` only; abTEM by ``simulate`` only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stem_pipeline"

#: Layers, lowest first; within a layer, a unit may import the units before it.
LAYERS: dict[str, list[str]] = {
    "core": [
        "errors",
        "config",
        "optics",
        "provenance",
        "paths",
        "_logs",
        "_atomic",
        "_threads",
        "_tiles",
        "_stats",
        "spectrum",
        "_types",
        "__init__",
    ],
    "stages": [
        "io",
        "denoise",
        "lattice",
        "columns",
        "classify",
        "simulate",
        "phases",
        "compare",
        "synthetic",
        "synthetic_mosaic",
        "synthetic_series",
        "synthetic_field",
        "synthetic_phases",
        "dots",
        "report",
    ],
    "workflows": [
        "pipeline",
        "field",
        "comparison",
        "inputs",
        "series",
        "outputs",
        "_lock",
        "_worker_setup",
        "batch",
        "demo",
        "commands",
        "cli",
    ],
}
#: Third-party packages only one unit may import.
ONLY_IN = {"hyperspy": "io", "rsciio": "io", "atomap": "io", "abtem": "simulate"}

ORDER = {
    unit: (layer_i, position) for layer_i, units in enumerate(LAYERS.values()) for position, unit in enumerate(units)
}


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, relative imports resolved."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
            found += [(name, node.lineno) for name in names]
    return found


def _internal_unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "stem_pipeline":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in FILES}
    missing = sorted(units - set(ORDER))
    assert not missing, f"put these modules in a layer of tests/test_layers.py: {missing}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    unit = _unit(path)
    if unit not in ORDER:
        pytest.skip("unassigned (test_every_unit_has_a_layer fails)")
    upward = []
    for module, line in _imports(path):
        target = _internal_unit(module)
        if target is None:
            owner = ONLY_IN.get(module.split(".")[0])
            if owner is not None and owner != unit:
                upward.append(f"line {line}: {module} belongs in {owner}")
            continue
        if target == unit or target not in ORDER:
            continue
        if ORDER[target] >= ORDER[unit]:
            upward.append(f"line {line}: {module} ({target} is not below {unit})")
    assert not upward, f"{path.relative_to(PACKAGE)} imports upward:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The parser resolves relative and function-level imports (else the test above proves nothing)."""
    fake = PACKAGE / "_types.py"
    source = "def f():\n    from .pipeline import analyze\n    import hyperspy.api\n"
    monkeypatch.setattr(
        Path, "read_text", lambda self, *a, **k: source if self == fake else Path.read_bytes(self).decode()
    )
    with pytest.raises(AssertionError, match=r"pipeline.*not below _types[\s\S]*hyperspy.api belongs in io"):
        test_imports_point_down(fake)


def test_the_readme_module_table_lists_every_unit_in_its_layer():
    """README's "How it works" table names each unit once, in its layer here (it drifted from the folders)."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## How it works", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, str] = {}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or cells[1].strip() not in LAYERS:
            continue
        for name in re.findall(r"`([\w/.]+)`", cells[2]):
            unit = name.removesuffix("/").removesuffix(".py")
            assert unit not in listed, f"{unit} is listed twice"
            listed[unit] = cells[1].strip()
    expected = {unit: layer for layer, units in LAYERS.items() for unit in units if unit != "__init__"}
    assert listed == expected
