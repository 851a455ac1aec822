"""What a batch analyses: the image files among the inputs, and every entry passed over with its reason.

A user who points ``stem-pipeline analyze`` at a folder is told about everything in it that is
not analysed (hidden files, broken links, files of other types, the output folder itself), so
that nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .io import EXTENSIONS


@dataclass(frozen=True)
class Skipped:
    """An input entry that is not analysed.

    Attributes
    ----------
    path : str
        The file or folder.
    reason : str
        Why, e.g. ``"hidden file"`` or ``"broken symbolic link"``.
    """

    path: str
    reason: str


@dataclass(frozen=True)
class InputScan:
    """The result of :func:`scan_inputs`.

    Attributes
    ----------
    files : list of Path
        Image files to analyse, absolute, each once, in input order (folders sorted).
    skipped : list of Skipped
        Everything passed over, with its reason.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skipped_counts(self) -> dict[str, int]:
        """How many entries were skipped for each reason (the reason's text before any colon)."""
        counts: dict[str, int] = {}
        for s in self.skipped:
            key = s.reason.split(":")[0].split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real == f or f in real.parents for f in folders)


def scan_inputs(inputs: Iterable[str | os.PathLike], *, exclude: Iterable[str | os.PathLike] = ()) -> InputScan:
    """Expand files and folders (searched recursively) into image files, and list what was skipped.

    Inside folders, hidden entries (starting with ``.``), broken symbolic links, links to
    folders (not followed: they can loop), files of other types, and anything inside an
    ``exclude`` folder (the output folder) are skipped with a reason. A folder with no image file
    at all is listed as skipped too. Files given explicitly are kept whatever their extension
    or existence, so that an unknown or missing one becomes an error row that names it, unless
    they lie inside an ``exclude`` folder.

    Parameters
    ----------
    inputs : iterable of str or PathLike
        Files and folders.
    exclude : iterable of str or PathLike
        Folders never read (e.g. ``--out`` inside an input folder, whose overlays are not micrographs).

    Returns
    -------
    InputScan
        The image files and the skipped entries.

    Examples
    --------
    >>> scan = scan_inputs(["no_such_folder_xyz"])
    >>> [p.name for p in scan.files], scan.skipped
    (['no_such_folder_xyz'], [])
    """
    excluded = [Path(os.path.realpath(f)) for f in exclude]
    scan = InputScan()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        path = Path(os.path.abspath(path))
        if path not in seen:
            seen.add(path)
            scan.files.append(path)

    for item in inputs:
        p = Path(item)
        if _inside(p, excluded):
            scan.skipped.append(Skipped(str(p), "inside the output folder (--out)"))
        elif p.is_dir():
            before = len(scan.files)
            _walk(p, excluded, add, scan.skipped)
            if len(scan.files) == before:
                scan.skipped.append(Skipped(str(p), "a folder with no image files"))
        else:
            add(p)
    return scan


def _walk(folder: Path, excluded: Sequence[Path], add, skipped: list[Skipped]) -> None:
    """Add the image files below ``folder`` (sorted, recursively) and record what is passed over."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        skipped.append(Skipped(str(folder), f"cannot list the folder: {exc.strerror or exc}"))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            kind = "folder" if entry.is_dir() else "file"
            skipped.append(Skipped(str(path), f"hidden {kind}"))
        elif entry.is_symlink() and not path.exists():
            skipped.append(Skipped(str(path), "broken symbolic link"))
        elif _inside(path, excluded):
            skipped.append(Skipped(str(path), "the output folder (--out)"))
        elif entry.is_dir():
            if entry.is_symlink():
                skipped.append(Skipped(str(path), "symbolic link to a folder (not followed)"))
            else:
                _walk(path, excluded, add, skipped)
        elif path.suffix.lower() in EXTENSIONS:
            add(path)
        else:
            skipped.append(Skipped(str(path), f"not an image file ({path.suffix or 'no extension'})"))
