"""Implementations of the ``stem-pipeline`` subcommands (see :mod:`stem_pipeline.cli`).

Each ``run_<command>(args)`` takes the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import tempfile
from pathlib import Path

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


def _pixel_size_nm(value: float | None) -> float | None:
    """``--pixel-size-nm``, checked once for the whole run (it used to fail every file separately)."""
    if value is not None and not (0 < value < math.inf):
        raise UsageError(f"--pixel-size-nm must be a positive number of nm, not {value}")
    return value


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
        micrograph = io.load(args.input, pixel_size_nm=_pixel_size_nm(args.pixel_size_nm))
    except InputError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    from .pipeline import denoise_config_for

    config = denoise_config_for(micrograph, config)
    data = denoise(micrograph.data, config, pixel_size_nm=micrograph.pixel_size_nm)
    metadata = {**micrograph.metadata, "denoise_config": config.model_dump_json()}
    io.save(micrograph.replace(data=data, metadata=metadata), args.out)
    print(f"denoised {args.input} -> {args.out} (config {config.config_hash()})")
    return EXIT_OK


def _pipeline_config(path):
    from .pipeline import PipelineConfig

    try:
        return PipelineConfig.from_yaml(path) if path else PipelineConfig()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run_analyze(args: argparse.Namespace) -> int:
    """``stem-pipeline analyze INPUT... --out OUT [...]``: the batch analysis and its report."""
    from .batch import run_batch

    if args.print_config:
        from .config import commented_yaml

        print(commented_yaml(_pipeline_config(args.config)), end="")
        return EXIT_OK
    if not args.inputs or args.out is None:
        raise UsageError("analyze needs at least one INPUT and --out")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    missing = [str(p) for p in args.inputs if not p.exists()]
    if len(missing) == len(args.inputs):
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    config = _pipeline_config(args.config)
    phase_files = getattr(args, "phases", None)  # the demo reuses this command without the option
    if phase_files:
        extra = [*config.phases.extra_files, *map(str, phase_files)]
        config = config.model_copy(update={"phases": config.phases.model_copy(update={"extra_files": extra})})
    if config.phases.enabled:
        from .phases import select_phases

        try:
            select_phases(config.phases)  # a bad phase file or name is bad usage, named before any image is read
        except (ValueError, ImportError) as exc:
            raise UsageError(str(exc)) from None
    report = run_batch(
        args.inputs,
        args.out,
        config,
        workers=args.workers,
        scheduler=args.scheduler,
        pixel_size_nm=_pixel_size_nm(args.pixel_size_nm),
        frame=_frame(args.frame),
        overwrite=args.overwrite,
        progress=not args.quiet,
        include_uncalibrated=args.include_uncalibrated,
    )
    _print_report(report, args.out, include_uncalibrated=args.include_uncalibrated)
    return EXIT_FAILED if any(s["status"] == "error" for s in report) else EXIT_OK


def _print_report(summaries: list[dict], out, *, include_uncalibrated: bool = False) -> None:
    from .report.batch import batch_statistics

    for s in summaries:
        name = s["file"]
        phases = _phase_shares(s)
        if s["status"] == "ok" and s["fractions"] is None:
            print(f"{name}: {s['n_columns']} columns; {s.get('message')}{phases}")
        elif s["status"] == "ok":
            if s.get("pixel_size_nm") is None:
                logger.warning(
                    "%s: no pixel size: the fractions below are of pixel areas and the column spacing "
                    "was not checked against the two-phase model (pass --pixel-size-nm)",
                    name,
                )
            f, (lo, hi) = s["fractions"], s["uniform_fraction_ci95"]
            n_dots = s.get("n_dots") or 1
            dots = f"{n_dots} dots (field: area-weighted, interval over the dots), " if n_dots > 1 else ""
            print(
                f"{name}: {dots}{s['n_columns']} columns, ordered (CsPbI3-like) {f['ordered']:.3f}, "
                f"uniform (PbI2/FAPbI3-like) {f['uniform']:.3f} [95% CI {lo:.3f}-{hi:.3f}]{phases}"
            )
        elif s["status"] == "no_crystal":
            print(f"{name}: no crystal ({s.get('message') or 'no lattice'})")
        else:
            error = str(s["error"])
            print(f"{name}: ERROR {error.removeprefix(f'{name}: ')}")
    stats = batch_statistics(summaries, include_uncalibrated=include_uncalibrated)
    if stats["uncalibrated_left_out"] or stats["n_uncalibrated_left_out"]:
        n = max(len(stats["uncalibrated_left_out"]), stats["n_uncalibrated_left_out"])
        print(f"batch means: {n} uncalibrated image(s) left out (--include-uncalibrated lets them in)")
    elif include_uncalibrated:
        print("batch means: uncalibrated images included (--include-uncalibrated)")
    print(f"report: {out / 'report.html'}")


def _phase_shares(summary: dict) -> str:
    """``"; phases NAME f [lo-hi], ..."`` from a summary's ``phase_fractions``, or ``""``."""
    shares = summary.get("phase_fractions")
    if not shares:
        return ""
    return "; phases " + ", ".join(
        f"{p} {v['fraction']:.3f} [{v['ci95'][0]:.3f}-{v['ci95'][1]:.3f}]" for p, v in shares.items()
    )


def run_demo(args: argparse.Namespace) -> int:
    """``stem-pipeline demo``: analyse the embedded examples, a dot and a field of three dots."""
    from .demo import demo_field, demo_field_truth, demo_image, demo_truth

    path, field = demo_image(), demo_field()
    print(
        f"demo images: {path} (a synthetic Cs0.5FA0.5PbI3-like dot) and {field} (a field of three dots at "
        "0, 27 and 55 deg), made by stem_pipeline.synthetic"
    )
    args.inputs, args.config, args.pixel_size_nm, args.frame, args.print_config = [path, field], None, None, None, False
    args.workers, args.scheduler, args.overwrite, args.include_uncalibrated = 1, None, False, False
    status = run_analyze(args)
    print(f"ground truth of the demo dot: uniform fraction {demo_truth()['uniform_fraction']:.3f}")
    truths = ", ".join(f"{d['uniform_fraction']:.3f}" for d in demo_field_truth()["dots"])
    print(f"ground truth of the field's dots: uniform fractions {truths} (per dot: {field.stem}/dots.csv)")
    return status


def _check_writable(path: Path) -> None:
    """Raise a :class:`UsageError` naming ``path`` when its folder cannot be made or written, before a long run.

    A simulation can take hours; its image is written at the end (:func:`stem_pipeline.io.save`), so an
    output that cannot be written is found first, with a file made and removed where it will go.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot write there ({exc.strerror or exc})") from None


def run_simulate(args: argparse.Namespace) -> int:
    """``stem-pipeline simulate CONFIG.yaml --out FILE [...]``: a calibrated simulated image."""
    from . import io
    from .batch import _dask_client
    from .simulate import check_device, load_config, simulate

    if args.out.suffix.lower() not in io.WRITE_EXTENSIONS:
        raise UsageError(f"--out must end in one of {', '.join(sorted(io.WRITE_EXTENSIONS))}")
    _check_writable(args.out)
    if args.thickness_nm is not None and args.thickness_nm <= 0:
        raise UsageError("--thickness-nm must be positive")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    try:
        config = load_config(args.config)
        check_device(args.device)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if args.workers is not None:
        config = config.model_copy(update={"num_workers": args.workers})
    with contextlib.ExitStack() as stack:
        client = None if args.scheduler is None else stack.enter_context(_dask_client(None, args.scheduler))
        image = simulate(
            config,
            thickness_nm=args.thickness_nm,
            method=args.method or "fast",
            dose=args.dose,
            cache=not args.no_cache,
            progress=not args.quiet,
            device=args.device,
            scheduler=client,
        )
    io.save(image, args.out)
    print(
        f"simulated {args.config} -> {args.out} ({image.shape[0]}x{image.shape[1]} px, {image.pixel_size_nm:.4f} nm/px)"
    )
    return EXIT_OK


def run_compare(args: argparse.Namespace) -> int:
    """``stem-pipeline compare IMAGE --models CONFIG.yaml... --out DIR``: rank models against IMAGE."""
    from . import io
    from .compare import CompareConfig
    from .comparison import compare_models

    missing = [str(p) for p in args.models if not p.is_file()]
    if missing:
        raise UsageError(f"no such model config: {', '.join(missing)}")
    if args.thicknesses_nm and min(args.thicknesses_nm) <= 0:
        raise UsageError("--thicknesses-nm must be positive")
    options = CompareConfig(
        thicknesses_nm=sorted(args.thicknesses_nm) if args.thicknesses_nm else None,
        defocus_nm=sorted(args.defocus_nm) if args.defocus_nm else None,
    )
    config = _pipeline_config(args.config)
    try:
        micrograph = io.load(args.image, pixel_size_nm=_pixel_size_nm(args.pixel_size_nm))
    except InputError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    results = compare_models(
        micrograph,
        args.models,
        region=args.region,
        out=args.out,
        config=config,
        options=options,
        progress=not args.quiet,
    )
    for rank, r in enumerate(results, 1):
        defocus = "" if r.defocus_nm is None else f", defocus {r.defocus_nm:.3g} nm"
        thickness = "?" if r.thickness_nm is None else f"{r.thickness_nm:.3g}"
        print(f"{rank}. {r.model} ({r.region}): NCC {r.ncc:.3f}, SSIM {r.ssim:.3f}, thickness {thickness} nm{defocus}")
    print(f"ranking: {args.out / 'comparison.json'}")

    return EXIT_OK


def run_series(args: argparse.Namespace) -> int:
    """``stem-pipeline series STACK --out DIR [--dose-per-frame D] [--sum-frames K]``: beam damage in a series."""
    import warnings

    from .series import (
        NoDoseWarning,
        NotASeriesError,
        SeriesConfig,
        analyze_series,
        write_series,
    )

    if not args.stack.exists():
        raise UsageError(f"no such file or folder: {args.stack}")
    if args.sum_frames < 1:
        raise UsageError("--sum-frames must be at least 1")
    if args.dose_per_frame is not None and not args.dose_per_frame > 0:
        raise UsageError("--dose-per-frame must be positive [e/A^2]")
    config = _pipeline_config(args.config)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NoDoseWarning)
            result = analyze_series(
                args.stack,
                pixel_size_nm=args.pixel_size_nm,
                dose_per_frame_e_per_A2=args.dose_per_frame,
                config=SeriesConfig(sum_frames=args.sum_frames),
                pipeline_config=config,
            )
    except NotASeriesError as exc:
        raise UsageError(str(exc)) from None
    except InputError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    for w in caught:
        logger.warning("%s", w.message)
    paths = write_series(result, args.out)
    left_out = [f"{k} ({s})" for k, s in enumerate(result.status) if s != "ok"]
    print(
        f"{args.stack}: {sum(s == 'ok' for s in result.status)} of {len(result.status)} frames analysed"
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
    )
    fit = result.fit
    if fit is None:
        print("too few frames with phase fractions to fit the damage model")
        return EXIT_FAILED
    unit = "e/A^2" if result.dose_unit == "e/A^2" else "frames"
    print(
        f"zero-dose uniform fraction {fit.f0:.3f} [95% CI {fit.f0_ci95[0]:.3f}-{fit.f0_ci95[1]:.3f}], "
        f"critical dose {fit.critical_dose:.4g} {unit} [{fit.critical_dose_ci95[0]:.4g}-"
        f"{fit.critical_dose_ci95[1]:.4g}] ({fit.model} model)"
        + ("" if fit.critical_dose_constrained else "; the critical dose is not constrained by the data")
    )
    if result.n_reversals:
        print(f"{result.n_reversals} reversals uniform -> ordered (classification errors; see columns.csv)")
    print(f"results: {paths['series.json']}")
    return EXIT_OK
