"""How many threads native code (OpenMP, BLAS) may use in a step: one, unless configured.

scikit-learn's histogram gradient boosting runs OpenMP loops whose threads spin while they wait.
On a small or busy machine they spin against each other and against other processes: fitting
the example model took 21 s with two threads and 1.1-1.5 s with one, and scoring 4,000 rows
676 ms against 36 ms. The fitted trees and every score are the same bits either way (the loops
split work per feature or per row, never a sum), so the steps run with one thread by default.
``MLOPS_NATIVE_THREADS=N`` allows N (``0``: no limit) on a machine with cores to spare.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from threadpoolctl import threadpool_limits

ENV = "MLOPS_NATIVE_THREADS"


def limit() -> int | None:
    """The configured number of native threads (None: no limit)."""
    value = os.environ.get(ENV, "1").strip()
    try:
        n = int(value)
    except ValueError:
        from mlops.core.errors import UserError

        raise UserError(f"{ENV}={value!r}: expected a whole number of threads (0: no limit)") from None
    return None if n <= 0 else n


def native_threads() -> AbstractContextManager[object]:
    """A context in which OpenMP and BLAS use at most ``limit()`` threads."""
    return threadpool_limits(limits=limit())
