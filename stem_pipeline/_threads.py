"""How many threads one process's FFTs may use: the thread budget a batch gives each worker process."""

from __future__ import annotations

import os

#: FFT threads when no budget is set: the 2 cores of the target machine.
DEFAULT_FFT_WORKERS = 2


def fft_workers() -> int:
    """Threads for ``scipy.fft``: ``OMP_NUM_THREADS`` when set (a Dask worker gets 1), else 2.

    A local cluster of N single-threaded worker processes sets ``OMP_NUM_THREADS=1`` in each;
    FFTs with 2 threads there put 2N threads on N cores (benchmarks/batch.py). The result
    does not depend on the number of threads (each thread transforms whole lines).

    Examples
    --------
    >>> fft_workers() >= 1
    True
    """
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", DEFAULT_FFT_WORKERS)))
    except ValueError:  # a malformed budget: the default, as OpenMP itself ignores one
        return DEFAULT_FFT_WORKERS


#: Evaluated at import: a worker process gets its environment before it imports the stages.
FFT_WORKERS = fft_workers()
