"""The ``stem-pipeline`` command: a thin layer over the library.

Exit status: 0 when every input was processed (``ok`` or ``no_crystal``),
1 when any input failed (the others are still processed), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from . import __version__
from .errors import UsageError

logger = logging.getLogger("stem_pipeline")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

#: Optional libraries and the extra (pyproject.toml) that installs them.
_EXTRAS = {"abtem": "simulate", "ase": "simulate", "distributed": "distributed", "atomap": "notebooks", "bm3d": "bm3d"}


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML configuration file (see README: Configuration)")


def _add_verbosity(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """-v/-q on the command and, with ``prefix="sub_"``, again on each subcommand (so either place works)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", dest=f"{prefix}verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    group.add_argument(
        "-q", "--quiet", dest=f"{prefix}quiet", action="store_true", help="only errors; no progress bars"
    )


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it takes -v/-q too, so that they work after the subcommand as well as before."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _add_verbosity(self, prefix="sub_")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``stem-pipeline`` command."""
    parser = argparse.ArgumentParser(
        prog="stem-pipeline",
        description=(
            "Atom columns, phase maps and phase fractions from HAADF-STEM micrographs of "
            "halide-perovskite quantum dots, and quantitative comparison with abTEM simulations."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser)

    _add_analyze(sub)
    _add_denoise(sub)
    _add_simulate(sub)
    _add_compare(sub)
    _add_series(sub)
    _add_demo(sub)
    return parser


def _add_analyze(sub) -> None:
    """The ``analyze`` subcommand (images and folders to the output contract)."""
    p = sub.add_parser(
        "analyze",
        help="find columns, classify phases and report fractions for images and folders",
        description="Analyse micrographs (files, or folders searched recursively) and write the output "
        "contract to OUT: OUT/<image stem>/{summary.json, columns.csv, overlay.png} and "
        "OUT/report.{csv,json,html}. Images already done with the same config are skipped.",
    )
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT", help="image files or folders")
    p.add_argument("--out", type=Path, metavar="OUT", help="output folder (required unless --print-config)")
    _add_config(p)
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the full configuration (defaults and --config) as YAML and exit",
    )
    p.add_argument("--pixel-size-nm", type=float, help="pixel size [nm] for every input (overrides files)")
    p.add_argument("--frame", help="for stacks: frame index, 'sum' or 'mean'")
    workers = p.add_mutually_exclusive_group()
    workers.add_argument("--workers", type=int, help="local worker processes (default: number of cores)")
    workers.add_argument("--scheduler", help="address of a dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--overwrite", action="store_true", help="redo images that are already done")
    p.add_argument(
        "--include-uncalibrated",
        action="store_true",
        help="let images without a pixel size (or with one implied by a library phase) into the report's "
        "batch means; by default they are left out and listed",
    )
    p.add_argument(
        "--phases",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a phase YAML file, or a folder of them, added to the phase library (repeatable)",
    )


def _add_denoise(sub) -> None:
    """The ``denoise`` subcommand (one image, calibration kept)."""
    p = sub.add_parser(
        "denoise",
        help="denoise one image (spatial filter, FFT filter, deconvolution) keeping its calibration",
        description="Denoise INPUT and write it to FILE (.tif, .hspy or .npy) with its calibration.",
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="image file (any format `analyze` reads)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="denoised image to write: .tif, .hspy or .npy"
    )
    _add_config(p)
    p.add_argument("--steps", help="comma-separated chain, e.g. gaussian,wiener,rl (overrides --config)")
    p.add_argument("--pixel-size-nm", type=float, help="pixel size [nm] (overrides the file)")


def _add_simulate(sub) -> None:
    """The ``simulate`` subcommand (abTEM)."""
    p = sub.add_parser(
        "simulate",
        help="simulate a calibrated HAADF image of a model structure with abTEM",
        description="Simulate CONFIG.yaml (see sim_configs/) and write a calibrated image to FILE.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG.yaml", help="simulation config (see sim_configs/)")
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="simulated image to write: .tif, .hspy or .npy"
    )
    p.add_argument("--thickness-nm", type=float, help="override the config's thickness [nm]")
    method = p.add_mutually_exclusive_group()
    method.add_argument("--fast", dest="method", action="store_const", const="fast", help="PRISM/tiled fast path")
    method.add_argument("--exact", dest="method", action="store_const", const="exact", help="plain multislice")
    p.add_argument("--dose", type=float, help="add Poisson noise at this dose [electrons/A^2]")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the simulation cache")
    workers = p.add_mutually_exclusive_group()
    workers.add_argument(
        "--workers",
        type=int,
        help="local threads over frozen-phonon configurations and scan chunks (overrides the config's num_workers)",
    )
    workers.add_argument("--scheduler", help="address of a dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="where abTEM computes: gpu needs CuPy and a CUDA device (default: cpu)",
    )


def _add_compare(sub) -> None:
    """The ``compare`` subcommand (simulated models ranked against an image)."""
    p = sub.add_parser(
        "compare",
        help="rank simulated models against an experimental image",
        description="Find columns and phases in IMAGE, simulate each model (through the cache) and rank "
        "them by their match to the experimental mean cell; writes comparison.json and comparison.png.",
    )
    p.add_argument("image", type=Path, metavar="IMAGE", help="experimental image file")
    p.add_argument(
        "--models",
        type=Path,
        nargs="+",
        required=True,
        metavar="CONFIG.yaml",
        help="simulation configs of the candidate models (see sim_configs/)",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder for comparison.json and comparison.png"
    )
    p.add_argument(
        "--region",
        choices=("ordered", "uniform", "all"),
        default="all",
        help="compare the models with the ordered (CsPbI3-like) or uniform region, or with both (default: all)",
    )
    p.add_argument(
        "--thicknesses-nm",
        type=float,
        nargs="+",
        metavar="T",
        help="thickness series to fit [nm] (default: the comparison's range, 2-16 nm)",
    )
    p.add_argument(
        "--defocus-nm",
        type=float,
        nargs="+",
        metavar="DF",
        help="defocus series to fit [nm], one simulation per value (default: each config's defocus, not fitted)",
    )
    _add_config(p)
    p.add_argument("--pixel-size-nm", type=float, help="pixel size [nm] (overrides the file)")


def _add_demo(sub) -> None:
    """The ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="analyse the embedded example dot and say where the report is",
        description="Run `analyze` on a small synthetic mixed-phase dot made by the package.",
    )
    p.add_argument("--out", type=Path, default=Path("stem_pipeline_demo"), help="output folder")


def _add_series(sub) -> None:
    """The ``series`` subcommand (frame series and beam damage)."""
    p = sub.add_parser(
        "series",
        help="frame series of one dot: drift, per-frame phases, fraction vs dose, zero-dose fraction",
        description="Register a frame series (a 3-D stack or a folder of frames), analyse every frame, follow "
        "the columns, fit the uniform fraction against cumulative dose and extrapolate it to zero dose. Writes "
        "DIR/{series.csv, series.json, columns.csv, conversion_map.png, fraction_vs_dose.png}.",
    )
    p.add_argument("stack", type=Path, metavar="STACK", help="3-D stack file or folder of frames")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder (series.csv, series.json, figures)"
    )
    p.add_argument(
        "--dose-per-frame",
        type=float,
        metavar="D",
        help="dose of one frame [e/A^2] (default: from the metadata, else frame number with a warning)",
    )
    p.add_argument("--sum-frames", type=int, default=1, metavar="K", help="analyse running sums of K frames")
    _add_config(p)
    p.add_argument("--pixel-size-nm", type=float, help="pixel size [nm] (overrides the file)")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command: the warning's message through the logger."""
    logger.warning("%s", message)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    return _run_command(parser, _parse(parser, argv))


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, -v/-q merged from both places (usage errors exit here, as argparse's do)."""
    args = parser.parse_args(argv)
    args.verbose += args.sub_verbose
    args.quiet = args.quiet or args.sub_quiet
    if args.verbose and args.quiet:
        parser.error("-q/--quiet and -v/--verbose exclude each other")
    return args


def _run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status."""
    saved = logger.handlers[:], logger.level, logger.propagate
    _setup_logging(args.verbose, args.quiet)
    from . import commands

    handler = getattr(commands, f"run_{args.command}")
    try:
        with warnings.catch_warnings():
            # A library warning (e.g. a file without calibration) is a log line naming the file, not a traceback line.
            warnings.showwarning = _log_warning
            return handler(args)
    except UsageError as exc:  # one line, no traceback, no usage dump
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        logger.error(
            "`stem-pipeline %s` needs %s, which is not installed: pip install 'stem-pipeline[%s]'",
            args.command,
            exc.name,
            extra,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        logger.error("interrupted; a re-run resumes where this one stopped")
        return 130
    finally:  # leave the caller's logging as it was (main() may run inside a notebook or a test)
        logger.handlers[:], logger.level, logger.propagate = saved


def exit_process(status: int) -> NoReturn:
    """End the ``stem-pipeline`` process with ``status``, without the interpreter's teardown of its modules.

    ``gc.freeze()`` first: the objects still alive (every imported module's) move to the permanent
    generation, so no collection traverses them again (~0.15 s CPU of a 1024^2 ``analyze`` process,
    benchmarks/process.py, when the interpreter's final collections still ran). Then, where no other
    Python thread is left to wait for, the atexit handlers run, the standard streams are flushed and the
    process ends (``os._exit``) without tearing down every module and freeing its objects one by one, which
    the end of the process does at once (~0.02 s CPU of the same process). With threads still running,
    ``sys.exit`` as usual. Only for a process that ends: frozen objects are never collected as cycles, so
    :func:`main` itself (run in a notebook or a test) does neither.
    """
    import atexit
    import threading

    gc.freeze()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # none, closed, or a broken pipe
            stream.flush()
    os._exit(status)


#: The package's modules that a command imports in any case (the analysis and its outputs), which the
#: console script imports before the command runs, frozen (:func:`load_frozen`).
COMMAND_MODULES = {
    name: ("batch", "inputs", "outputs", "pipeline", "field", "report.batch") for name in ("analyze", "demo")
}


def load_frozen(modules: tuple[str, ...]) -> None:
    """Import the package's ``modules`` with the cyclic garbage collector paused, then freeze what is alive.

    Loading numpy, SciPy, pydantic and the package makes ~10^5 objects that live until the process
    ends; the collections the interpreter runs while they load traverse them again and again and free
    nothing: ~0.1 s CPU of a 1024^2 ``analyze`` process (benchmarks/process.py). Frozen (moved to the
    permanent generation), later collections skip them; the command's own garbage is still collected.
    Only for a process that ends, as :func:`exit_process`: frozen objects are never collected as cycles.
    """
    from importlib import import_module

    enabled = gc.isenabled()
    gc.disable()
    try:
        if modules:
            lean_scipy()
        for name in modules:
            import_module(f".{name}", __package__)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


#: NumPy's lazily loaded submodules outside the array API standard, which :func:`lean_scipy` keeps SciPy's
#: copy of the NumPy namespace from loading (``f2py`` alone pulls in its Fortran parser and charset_normalizer).
NOT_ARRAY_API = frozenset({"f2py", "testing", "polynomial", "ctypeslib", "char", "rec", "strings"})

#: SciPy releases (major.minor) whose ``xp_capabilities`` was read and found to only record the capabilities
#: (for SciPy's own tests) and rewrite the docstring, returning the function itself: only there does
#: :func:`lean_scipy` touch SciPy (tests/test_cli_interface.py checks the installed one).
LEAN_SCIPY_RELEASES = frozenset({"1.17"})


def lean_scipy() -> None:
    """Load SciPy's array-API layer without two import-time costs that the console script never uses.

    Importing ``scipy.ndimage`` (or ``scipy.spatial``, ``scipy.fft``) first loads
    ``scipy._lib._array_api``, whose copy of the NumPy namespace (array_api_compat's ``clone_module``)
    touches every name ``dir(numpy)`` lists and so loads NumPy's lazy submodules: ``numpy.f2py`` (with
    its Fortran parser and charset_normalizer), ``numpy.testing`` (with unittest), ``numpy.polynomial`` and
    more. Then every SciPy function that states its array-API capabilities (``xp_capabilities``, a few
    hundred in ndimage, special, spatial, fft and linalg) has its docstring parsed and rewritten with a
    capability table. Together ~0.15 s CPU of the ~0.5 s start-up of a 1024^2 ``analyze`` process
    (benchmarks/process.py, results identical). Here :data:`NOT_ARRAY_API` submodules not yet loaded are
    hidden from ``dir(numpy)`` and ``numpy.__all__`` while that layer loads (restored at once; they
    still load when used), and the capability decorator leaves docstrings as they are.

    What changes in this process: SciPy's internal NumPy namespace lacks those submodules (SciPy uses
    them only in its test helpers for CuPy and PyTorch), and SciPy docstrings lack the capability table.
    Only for the console script's process, as :func:`load_frozen`; a no-op where the layer is already
    loaded, for a SciPy release outside :data:`LEAN_SCIPY_RELEASES`, or where SciPy's private names
    differ (then SciPy loads as usual).
    """
    if "scipy._lib._array_api" in sys.modules:
        return
    import numpy as np
    import scipy

    if ".".join(scipy.__version__.split(".")[:2]) not in LEAN_SCIPY_RELEASES:
        return

    hidden = {
        name
        for name in NOT_ARRAY_API & set(getattr(np, "__numpy_submodules__", ()))
        if f"numpy.{name}" not in sys.modules
    }
    namespace = vars(np)  # numpy's module globals: its __all__ and its module-level __dir__ (PEP 562)
    listed, names = namespace["__all__"], namespace["__dir__"]
    namespace["__all__"] = [name for name in listed if name not in hidden]
    namespace["__dir__"] = lambda: [name for name in names() if name not in hidden]
    try:
        from scipy._lib import _array_api
    except ImportError:  # a SciPy without that layer
        return
    finally:
        namespace.update(__all__=listed, __dir__=names)
    if hasattr(_array_api, "xp_capabilities"):
        _array_api.xp_capabilities = _no_capability_notes


def _no_capability_notes(**_capabilities):
    """SciPy's ``xp_capabilities`` decorator in :func:`lean_scipy`: the function unchanged."""
    return lambda func: func


#: glibc's ``mallopt`` parameters (malloc.h) and the values :func:`keep_freed_memory` sets [bytes].
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD_BYTES, MMAP_THRESHOLD_BYTES = 32 << 20, 16 << 20


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for the next allocation instead of returning it to the OS at once.

    The analysis allocates and frees image-sized numpy temporaries by the thousand. By default glibc
    maps every block above its mmap threshold (128 KB at first) afresh and trims the free top of the
    heap above 128 KB, so each new temporary faults its pages in again: ~10^5 page faults, ~0.2 s CPU
    (most of it system time) of a 1024^2 ``analyze`` process (benchmarks/process.py). Here blocks up
    to :data:`MMAP_THRESHOLD_BYTES` come from the heap and up to :data:`TRIM_THRESHOLD_BYTES` of free
    heap is kept: the peak RSS stays that of the default (1024^2 to 4096^2 images; 32 and 128 MB
    took +10 % for 2048^2 and 4096^2 images, for no less CPU). glibc only (elsewhere nothing
    changes), and only for the console script's process, as :func:`load_frozen`.
    """
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):  # not glibc
        return
    import ctypes

    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


#: The variable OpenBLAS reads, as it loads, for the number of threads it starts.
_OPENBLAS_THREADS = "OPENBLAS_NUM_THREADS"


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Load the BLAS libraries that the enclosed block imports (NumPy's and SciPy's OpenBLAS) on one thread.

    Each OpenBLAS starts a thread per core as it loads. The command's BLAS calls are small (per-column
    normal equations, 2x2 lattice matrices), so the second thread mostly busy-waits, as it starts and
    after each call, before it sleeps. Here ``OPENBLAS_NUM_THREADS=1`` is set while the block runs, so
    that no thread starts (the environment is restored after it: a batch's Dask workers, started later,
    get their own budget): ~0.07 s CPU and ~0.1 s wall of a 1024^2 ``analyze`` process less than limiting
    the started threads afterwards (benchmarks/process.py, results identical), which is still done,
    through threadpoolctl, where numpy was loaded before the block. Nothing changes where
    ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` sets a budget (a batch's worker processes, or the
    user); only for the console script's process, as :func:`load_frozen`, and only for the commands of
    :data:`COMMAND_MODULES` (``simulate``'s PRISM multiplies large matrices, where a second thread works).
    ``import stem_pipeline`` leaves numpy unloaded for this.
    """
    if any(name in os.environ for name in (_OPENBLAS_THREADS, "OMP_NUM_THREADS")):
        yield
        return
    loaded = "numpy" in sys.modules
    os.environ[_OPENBLAS_THREADS] = "1"
    try:
        yield
    finally:
        del os.environ[_OPENBLAS_THREADS]
    if loaded:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")


def run() -> NoReturn:
    """The ``stem-pipeline`` console script: :func:`main` with ``sys.argv``, its memory kept for reuse
    (:func:`keep_freed_memory`), the command's modules loaded first (:func:`load_frozen`), for the analysis
    with BLAS on one thread (:func:`single_threaded_blas`), then :func:`exit_process`."""
    keep_freed_memory()
    parser = build_parser()
    args = _parse(parser, sys.argv[1:])
    modules = COMMAND_MODULES.get(args.command, ())
    # BLAS on one thread for the analysis's small calls; simulate's PRISM multiplies large matrices.
    with single_threaded_blas() if modules else contextlib.nullcontext():
        load_frozen(modules)
    exit_process(_run_command(parser, args))


if __name__ == "__main__":  # pragma: no cover
    run()
