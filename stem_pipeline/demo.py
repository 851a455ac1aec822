"""The embedded examples, generated on first use: a synthetic Cs0.5FA0.5PbI3-like dot, and a field of three dots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .paths import cache_dir

#: Parameters of the demo dot (changing them changes the file name, so a stale cache is never used).
DEMO_PARAMS: dict[str, Any] = {
    "shape": [512, 512],
    "pixel_size_nm": 0.035,
    "dot_size_nm": 12.0,
    "rotation_deg": 7.0,
    "uniform_fraction": 0.5,
    "domain_size_nm": 4.0,
    "thickness_gradient": 0.15,
    "dose": 200.0,
    "rng": 2024,
}
_VERSION = 3  # 2: the truth is the area the columns cover; 3: the domain area inside the dot outline (issue 14)
#: Parameters of the demo field: three dots at different rotations and compositions (the case of issue 13).
DEMO_FIELD_PARAMS: dict[str, Any] = {
    "shape": [768, 768],
    "n_dots": 3,
    "dot_sizes_nm": [7.0, 9.0],
    "rotations_deg": [0.0, 27.0, 55.0],
    "uniform_fractions": [0.5, 0.5, 0.5],
    "dose": 200.0,
    "pixel_size_nm": 0.035,
    "rng": 2024,
}
_FIELD_VERSION = 2  # 2: per-dot truth is the domain area inside the dot outline (issue 14)


def demo_image() -> Path:
    """Path of the demo micrograph (a calibrated TIFF), generated into the cache folder on first use.

    The true uniform area fraction and the generator parameters are written
    beside it as ``<name>.truth.json``.
    """
    from . import io
    from .synthetic import make_dot

    folder = cache_dir("demo")
    path = folder / f"qd_cs50fa50_demo_v{_VERSION}.tif"
    truth = path.with_suffix(".truth.json")
    if path.is_file() and truth.is_file():
        return path
    params = dict(DEMO_PARAMS)
    rows, cols = params.pop("shape")
    dot = make_dot((rows, cols), **params)
    io.save(dot.micrograph(source="stem_pipeline demo dot"), path)
    info = {"uniform_fraction": dot.uniform_fraction, "n_columns": int(len(dot.rc)), "params": DEMO_PARAMS}
    truth.write_text(json.dumps(info, indent=2))
    return path


def demo_truth() -> dict:
    """The ground truth of the demo image (true uniform fraction, column count, parameters)."""
    return json.loads(demo_image().with_suffix(".truth.json").read_text())


def demo_field() -> Path:
    """Path of the demo field (three dots at 0, 27 and 55 deg; a calibrated TIFF), generated on first use.

    Each dot's true uniform fraction, edge and centre are written beside it as ``<name>.truth.json``.
    """
    from . import io
    from .synthetic_field import make_field

    path = cache_dir("demo") / f"field_three_dots_demo_v{_FIELD_VERSION}.tif"
    truth = path.with_suffix(".truth.json")
    if path.is_file() and truth.is_file():
        return path
    params = dict(DEMO_FIELD_PARAMS)
    rows, cols = params.pop("shape")
    for key in ("dot_sizes_nm", "rotations_deg", "uniform_fractions"):
        params[key] = tuple(params[key])
    field = make_field((rows, cols), **params)
    io.save(field.micrograph(source="stem_pipeline demo field"), path)
    dots = [
        {"uniform_fraction": d.uniform_fraction, "edge_nm": d.edge_nm, "center_rc_px": [float(v) for v in d.center_rc]}
        for d in field.dots
    ]
    truth.write_text(json.dumps({"dots": dots, "params": DEMO_FIELD_PARAMS}, indent=2))
    return path


def demo_field_truth() -> dict:
    """The ground truth of the demo field: one record per dot (uniform fraction, edge, centre)."""
    return json.loads(demo_field().with_suffix(".truth.json").read_text())
