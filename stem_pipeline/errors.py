"""Exceptions raised by stem_pipeline."""

from __future__ import annotations

import os


class InputError(ValueError):
    """An input image cannot be analysed.

    The message names the file, the problem and the fix.

    Parameters
    ----------
    source : str or PathLike or None
        The file the problem is with (None for in-memory arrays).
    problem : str
        What is wrong, e.g. ``"the image has 12 NaN pixels"``.
    fix : str, optional
        What the user can do about it.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str, fix: str = "") -> None:
        self.source = None if source is None else str(source)
        self.problem = problem
        self.fix = fix
        where = f"{self.source}: " if self.source else ""
        message = f"{where}{problem}"
        if fix:
            message += f". {fix}"
        super().__init__(message)

    def __reduce__(self):  # keep pickling (Dask workers) working
        return (type(self), (self.source, self.problem, self.fix))


class NoCrystalError(ValueError):
    """No crystal lattice was found in the image (e.g. amorphous carbon only)."""


class UsageError(ValueError):
    """Bad command-line usage (exit status 2)."""


class SeveralDotsWarning(UserWarning):
    """The image holds several dots, and a single-dot analysis read it as one crystal.

    :func:`stem_pipeline.field.analyze_field` (what ``stem-pipeline analyze`` runs) reports each dot.
    """
