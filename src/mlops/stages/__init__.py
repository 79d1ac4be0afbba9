"""Thin DVC stage adapters: parse arguments, load params, call the library, write outputs.

Each module has ``main(argv) -> int`` (callable from tests) and runs as
``python -m mlops.stages.<name>`` (through ``entry``: errors handled by ``mlops.core.errors.run``); the path defaults
come from ``mlops.core.paths`` and match dvc.yaml. Stages sit above the rooms, like the CLI:
``package`` wires the release room.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from mlops.core import paths
from mlops.core.errors import run

# A stage, like a command of the CLI, is a short process that imports scikit-learn, pandas and
# often MLflow: some 400,000 objects. Under the collector's default thresholds (700, 10, 10) it
# rescans them over and over while they load and run, and once more as the interpreter exits:
# about 1.3 s of a 5.8 s stage (perf: gc_collect_main was a fifth of its CPU time). So young
# objects are collected less often, and ``entry`` freezes what the imports built (collections
# skip it) and, at the end, everything (the exit skips it). The thresholds are set when this
# package is imported, before the stage module's own imports run; a process that imports it
# for other reasons (tests) gets them too. The serving handler never imports it.
GC_THRESHOLDS = (100_000, 50, 1_000)
gc.set_threshold(*GC_THRESHOLDS)


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"mlops {name}", description=(doc or "").strip().splitlines()[0])
    p.add_argument("--params", type=Path, default=paths.PARAMS, help="params file (default: %(default)s)")
    p.add_argument("--contract", type=Path, default=paths.CONTRACT, help="data contract (default: %(default)s)")
    return p


def frozen(call: Callable[[], int]) -> int:
    """``call()`` in a short process: what is loaded so far frozen out of collection before it, everything after it.

    The second freeze spares the interpreter's exit a last scan of what the call built (half a second with MLflow).
    """
    gc.freeze()
    code = call()
    gc.freeze()
    return code


def entry(main: Callable[[Sequence[str] | None], int]) -> NoReturn:
    """A stage as its process's ``__main__``, its imports done: ``main`` through ``run``, frozen; exit with its code."""
    raise SystemExit(frozen(lambda: run(main)))
