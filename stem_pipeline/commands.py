"""Implementations of the ``stem-pipeline`` subcommands (see :mod:`stem_pipeline.cli`).

Each ``run_<command>(args)`` takes the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import logging

from .errors import InputError, UsageError

logger = logging.getLogger("stem_pipeline")

EXIT_OK, EXIT_FAILED = 0, 1


def _frame(value: str | None) -> int | str | None:
    if value is None or value in ("sum", "mean"):
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--frame takes an index, 'sum' or 'mean', not {value!r}") from None


def run_denoise(args: argparse.Namespace) -> int:
    """``stem-pipeline denoise INPUT --out FILE [--config FILE] [--steps a,b,c]``."""
    from . import io
    from .denoise import DenoiseConfig, denoise

    if args.out.suffix.lower() not in io.WRITE_EXTENSIONS:
        raise UsageError(f"--out must end in one of {', '.join(sorted(io.WRITE_EXTENSIONS))}")
    try:
        if args.steps:
            config = DenoiseConfig.from_steps(args.steps)
        elif args.config:
            config = DenoiseConfig.from_yaml(args.config)
        else:
            config = DenoiseConfig()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        micrograph = io.load(args.input, pixel_size_nm=args.pixel_size_nm)
    except InputError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    data = denoise(micrograph.data, config, pixel_size_nm=micrograph.pixel_size_nm)
    metadata = {**micrograph.metadata, "denoise_config": config.model_dump(mode="json")}
    io.save(micrograph.replace(data=data, metadata=metadata), args.out)
    print(f"denoised {args.input} -> {args.out} (config {config.config_hash()})")
    return EXIT_OK
