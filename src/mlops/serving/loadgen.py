"""Load generators aimed at one prediction endpoint, each in its own process.

locust (headless) drives the deployment checks' latency burst: a few dozen requests a second.
For the serving benchmark it is too heavy: on a 2-core machine its own CPU per request (about
0.3 ms) is what limits throughput, so a server that answers 3,000 requests a second measures
1,700. ``wrk`` (C, about 0.02 ms per request) measures the server instead; ``run_wrk`` uses it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

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


# wrk's Lua hooks: POST the prepared bodies in turn (each thread from its own offset) and print
# one JSON line of results at the end. Arguments: bodies file (one body a line), path, token.
WRK_SCRIPT = r"""
local bodies, path, headers, i = {}, "/", {}, 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  path = args[2]
  headers["Content-Type"] = "application/json"
  if args[3] ~= nil and args[3] ~= "" then headers["Authorization"] = "Bearer " .. args[3] end
  for name, value in string.gmatch(args[4] or "", "([^=;]+)=([^;]*)") do headers[name] = value end
  i = math.random(#bodies)
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", path, headers, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "failures": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_path() -> str | None:
    """The ``wrk`` executable, or None when it is not installed (``make setup`` installs it as root)."""
    return shutil.which("wrk")


@dataclass(frozen=True)
class MeasuredLoad:
    """A load run plus the CPU each watched process spent per request (ms), by name."""

    result: LoadResult
    cpu_ms_per_request: dict[str, float]
    load_average: float  # the machine's 1-minute load average when the run started


def _cpu_seconds(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out = {}
    for name, group in procs.items():
        total = 0.0
        for p in group:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                continue
        out[name] = total
    return out


def run_wrk(
    base_url: str,
    path: str,
    token: str | None,
    bodies: list[Any],
    connections: int,
    seconds: float,
    watch: dict[str, list[psutil.Process]] | None = None,
    headers: dict[str, str] | None = None,
) -> MeasuredLoad:
    """``connections`` keep-alive connections POSTing ``bodies`` (cycled) for ``seconds``, with wrk.

    One wrk thread (it drives thousands of requests a second and leaves the cores to the server).
    ``watch`` names groups of processes (the server, its workers) whose CPU time per request is
    reported, with wrk's own as ``load generator``. Raises ServiceError when wrk fails.
    """
    wrk = wrk_path()
    if wrk is None:
        raise ServiceError("wrk is not installed: `make setup` installs it as root on Debian (`apt-get install wrk`)")
    with tempfile.TemporaryDirectory() as tmp:
        body_file, script = Path(tmp) / "bodies.txt", Path(tmp) / "post.lua"
        body_file.write_text("".join(json.dumps(b, separators=(",", ":")) + "\n" for b in bodies))
        script.write_text(WRK_SCRIPT)
        extra = ";".join(f"{k}={v}" for k, v in (headers or {}).items())
        url = base_url.rstrip("/") + path
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script),
               url, "--", str(body_file), path, token or "", extra]  # fmt: skip
        load_average = os.getloadavg()[0]
        before = _cpu_seconds(watch or {})
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out = proc.stdout.read() if proc.stdout else ""
            _, status, usage = os.wait4(proc.pid, 0)  # wrk's own CPU time, exactly
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        after = _cpu_seconds(watch or {})
    line = next((x for x in reversed(out.splitlines()) if x.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise ServiceError(f"wrk failed (exit {proc.returncode}):\n{out[-2000:]}")
    r = json.loads(line)
    n = int(r["requests"])
    result = LoadResult(
        requests=n,
        failures=int(r["failures"]),
        rps=n / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        mean_ms=r["mean_us"] / 1000,
    )
    cpu = {name: (after[name] - before[name]) * 1000 / max(n, 1) for name in after}
    cpu["load generator"] = (usage.ru_utime + usage.ru_stime) * 1000 / max(n, 1)
    return MeasuredLoad(result, cpu, load_average)
