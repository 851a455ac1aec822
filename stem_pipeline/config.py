"""Validated, named configuration: the base model, YAML loading and hashing.

Each stage defines its own model (``DenoiseConfig``, ``ColumnsConfig``, ...)
by subclassing :class:`StrictModel`; unknown keys are errors and every model is
immutable, so a config hash identifies the results it produced.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound="StrictModel")

#: PyYAML's libyaml-backed safe loader where PyYAML was built with it (the same documents; the shipped
#: phase files, read by every ``analyze`` process, took 0.018 s CPU with the pure-Python one, 0.010 s with it).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictModel(BaseModel):
    """Base for every configuration model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def config_hash(self) -> str:
        """Return a short, stable hash of the full configuration (defaults included)."""
        return config_hash(self)

    @classmethod
    def from_yaml(cls: type[M], path: str | os.PathLike) -> M:
        """Load and validate a YAML file; errors name the file and the bad key."""
        return load_yaml(cls, path)


def config_hash(model: BaseModel) -> str:
    """Return the first 16 hex digits of the SHA-256 of the model's canonical JSON."""
    text = json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_yaml(model: type[M], path: str | os.PathLike) -> M:
    """Read ``path`` as YAML and validate it as ``model``.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed, or does not validate; the
        message names the file and every offending key.
    """
    path = Path(path)
    try:
        raw: Any = yaml.load(path.read_text(), Loader=SAFE_LOADER) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the configuration: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the configuration must be a mapping of keys to values")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"{path}: invalid configuration: {problems}") from exc


def commented_yaml(model: BaseModel, *, width: int = 100) -> str:
    """The full configuration as YAML, each key preceded by its description as a comment.

    What ``--print-config`` prints: a file to edit, which :func:`load_yaml` reads back to the
    same model (comments are ignored).

    Parameters
    ----------
    model : BaseModel
        A configuration (nested models and lists of models are written out too).
    width : int
        Wrap the comments at this many characters.

    Returns
    -------
    str
    """
    lines: list[str] = []
    _commented(model, "", lines, width)
    return "\n".join(lines) + "\n"


def _commented(model: BaseModel, pad: str, lines: list[str], width: int) -> None:
    dumped = model.model_dump(mode="json")
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            lines += [f"{pad}# {text}" for text in textwrap.wrap(field.description, max(40, width - len(pad) - 2))]
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            _commented(value, pad + "  ", lines, width)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, BaseModel) for v in value):
            lines.append(f"{pad}{name}:")
            for item in value:
                sub: list[str] = []
                _commented(item, "", sub, width - len(pad) - 2)
                first = next(i for i, line in enumerate(sub) if not line.startswith("#"))
                lines += [f"{pad}{'- ' if i == first else '  '}{line}" for i, line in enumerate(sub)]
        else:
            text = yaml.safe_dump(dumped[name], default_flow_style=True, width=10_000)
            lines.append(f"{pad}{name}: {text.removesuffix('...' + chr(10)).strip()}")
