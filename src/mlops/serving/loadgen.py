"""A load generator (locust, headless, in its own process) aimed at one prediction endpoint."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops.core.errors import ServiceError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class LoadResult:
    """What a load run measured: requests, failures, throughput and latency percentiles."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict."""
        return asdict(self)


def start(
    base_url: str,
    path: str,
    token: str | None,
    bodies: list[Any],
    users: int,
    seconds: float,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start locust in the background; collect the result with ``finish``.

    ``headers`` go with every request (the deployment checks mark their traffic with one).
    """
    bodies_file = workdir / "bodies.jsonl"
    bodies_file.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    locust = Path(sys.executable).with_name("locust")
    cmd = [
        str(locust if locust.exists() else "locust"),
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary", "--skip-log-setup",
        "--host", base_url,
        "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{max(1, round(seconds))}s", "--stop-timeout", "10",
        "--csv", str(workdir / "load"),
        "--loglevel", "ERROR",
    ]  # fmt: skip
    env = {"MLOPS_LOAD_PATH": path, "MLOPS_LOAD_TOKEN": token or "", "MLOPS_LOAD_BODIES": str(bodies_file)}
    env["MLOPS_LOAD_HEADERS"] = json.dumps(headers or {})
    return subprocess.Popen(
        cmd, cwd=workdir, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a background run early; locust still writes its statistics."""
    proc.send_signal(signal.SIGINT)


def finish(proc: subprocess.Popen[bytes], workdir: Path) -> LoadResult:
    """Wait for a run started with ``start`` and read locust's statistics.

    Raises ServiceError when locust wrote none.
    """
    out, _ = proc.communicate()
    stats = workdir / "load_stats.csv"
    if not stats.exists():
        raise ServiceError(f"load generator produced no statistics:\n{out.decode(errors='replace')[-2000:]}")
    with stats.open() as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    count = int(row["Request Count"])
    return LoadResult(
        requests=count,
        failures=int(row["Failure Count"]),
        rps=float(row["Requests/s"]),
        p50_ms=float(row["50%"]) if count else 0.0,
        p99_ms=float(row["99%"]) if count else 0.0,
        mean_ms=float(row["Average Response Time"]) if count else 0.0,
    )


def run(
    base_url: str,
    path: str,
    token: str | None,
    bodies: list[Any],
    users: int,
    seconds: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Send ``bodies`` (cycled) with ``users`` concurrent clients for ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        return finish(start(base_url, path, token, bodies, users, seconds, Path(tmp), headers), Path(tmp))
