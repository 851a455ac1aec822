"""Dask worker preload of the local cluster: a worker process leaves Ctrl-C to the command.

A terminal's Ctrl-C reaches every process of the foreground group. Worker processes that took
it each printed a traceback (72 lines for two workers); ignoring it there lets the command
close the cluster in order and print one line.
"""

from __future__ import annotations

import signal


def dask_setup(worker) -> None:  # noqa: ARG001  (the preload protocol passes the worker)
    """Ignore SIGINT in this worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
