"""Per-step progress lines with timings, for long work."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    """Prints ``[stage] message`` lines and ``[stage] step ... done in 1.2s`` timings."""

    def __init__(self, stage: str):
        self.stage = stage
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{self.stage}] {message}", flush=True)

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self(f"{what} ...")
        yield
        self(f"{what}: done in {time.perf_counter() - t0:.1f}s")

    def done(self) -> None:
        self(f"finished in {time.perf_counter() - self.started:.1f}s")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
