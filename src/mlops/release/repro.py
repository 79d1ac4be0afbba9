"""``dvc repro`` with what each stage did: ran, restored from the run-cache or unchanged, and its time.

Kept apart from the report (a light import): ``mlops pr`` starts the pipeline first and loads
the report's libraries while it runs.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

# `dvc repro` prints one of these per stage; the outcome is what the report shows.
_REPRO_EVENTS = (
    (re.compile(r"^Running stage '([^']+)'"), "ran"),
    (re.compile(r"^Stage '([^']+)' is cached"), "run-cache"),
    (re.compile(r"^Stage '([^']+)' didn't change"), "unchanged"),
)


@dataclass
class StageRun:
    """One stage of a ``dvc repro``: ran, restored from the run-cache, or unchanged."""

    name: str
    outcome: str
    seconds: float = 0.0


@dataclass
class Repro:
    """What a ``dvc repro`` did: its exit code, each stage's outcome and time, its output."""

    returncode: int
    stages: list[StageRun] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""


def stage_event(line: str) -> StageRun | None:
    """The stage event a line of ``dvc repro`` output announces, if any."""
    for pattern, outcome in _REPRO_EVENTS:
        m = pattern.match(line)
        if m:
            return StageRun(m.group(1), outcome)
    return None


def run(root: Path, echo: bool = True, args: tuple[str, ...] = ()) -> Repro:
    """Run ``dvc repro``, echoing its output, and time each stage from one event to the next."""
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "repro", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    result = Repro(returncode=0)
    lines = []
    started = t_start
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            print(line, end="", flush=True)
        event = stage_event(line)
        if event:
            now = time.perf_counter()
            if result.stages:
                result.stages[-1].seconds = round(now - started, 1)
            result.stages.append(event)
            started = now
    result.returncode = proc.wait()
    if result.stages:
        result.stages[-1].seconds = round(time.perf_counter() - started, 1)
    result.seconds = round(time.perf_counter() - t_start, 1)
    result.log = "".join(lines)
    return result
