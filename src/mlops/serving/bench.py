"""Serving benchmark: in-process, TorchServe under load, and ``mlflow models serve`` of the same model.

Every figure sits beside its target. Load comes from another process: wrk when it is installed
(locust otherwise, which on a small machine measures itself more than the server; the report
says which). Besides requests per second and latency percentiles, each run reports the CPU time
per request of the TorchServe frontend, its workers and the load generator: on a shared machine
other work slows the clock but hardly the CPU a request costs.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import requests

from mlops.core.errors import ServiceError
from mlops.serving import loadgen
from mlops.serving.inference import Predictor, records
from mlops.serving.torchserve import Endpoint

# (rows per request, concurrent connections)
LEVELS = ((1, 1), (1, 4), (1, 16), (100, 4), (100, 16))
MLFLOW_WORKERS = (1, 2)
DOC_START, DOC_END = "<!-- bench:start -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Target:
    """One figure the benchmark reports against a bound."""

    name: str
    bound: float
    at_least: bool  # True: the figure must reach the bound; False: stay within it
    unit: str

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (None when it was not measured)."""
        if value is None:
            return None
        return value >= self.bound if self.at_least else value <= self.bound

    def text(self) -> str:
        """The target in words, e.g. ``<= 1.5 ms``."""
        return f"{'>=' if self.at_least else '<='} {self.bound:,g}{self.unit}"


TARGETS = {
    "in_process_1_row_ms": Target("in-process, JSON bytes to answer bytes, 1 row", 1.5, False, " ms"),
    "in_process_100_rows_ms": Target("in-process, JSON bytes to answer bytes, 100 rows", 3.0, False, " ms"),
    "served_1_row_c1_p50_ms": Target("TorchServe, 1 row, concurrency 1, p50", 4.0, False, " ms"),
    "served_1_row_c16_rps": Target("TorchServe, 1 row, concurrency 16", 2000.0, True, " req/s"),
    "served_100_rows_rows_per_s": Target("TorchServe, 100-row requests (best concurrency)", 40000.0, True, " rows/s"),
    "times_mlflow_c16": Target("TorchServe / `mlflow models serve`, 1 row, concurrency 16", 20.0, True, "x"),
}


# ---- in-process -------------------------------------------------------------------------------


def _p50(fn: Callable[[Any], Any], args: list[Any], seconds: float) -> dict[str, float]:
    """Median CPU and wall milliseconds per call of ``fn`` cycling over ``args`` for ``seconds``."""
    for a in args[:20]:
        fn(a)  # warm up
    cpu, wall = [], []
    gc.disable()
    try:
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline or i < 50:
            a = args[i % len(args)]
            c0, w0 = time.thread_time(), time.perf_counter()
            fn(a)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
            i += 1
    finally:
        gc.enable()
    cpu.sort()
    wall.sort()
    return {"cpu_p50_ms": cpu[len(cpu) // 2] * 1000, "wall_p50_ms": wall[len(wall) // 2] * 1000, "calls": len(cpu)}


def in_process(predictor: Predictor, rows: list[dict[str, Any]], seconds: float = 3.0) -> dict[str, Any]:
    """A request's JSON bytes to its answer's JSON bytes, called directly: 1 row and 100 rows.

    ``Predictor.answer`` is what the handler runs per request (parse, check, predict, answer),
    without TorchServe and telemetry. The CPU time is the figure (other processes hardly change
    it); the wall time is reported beside it.
    """
    ones = [json.dumps(r).encode() for r in rows[:200]]
    hundreds = [json.dumps(rows[i : i + 100]).encode() for i in range(0, max(len(rows) - 99, 1), 100)][:20]
    return {
        "1_row": _p50(predictor.answer, ones, seconds),
        "100_rows": _p50(predictor.answer, hundreds, seconds),
        "scoring": predictor.model.path_ if predictor.model is not None else "none",
    }


# ---- served -----------------------------------------------------------------------------------


def _processes(endpoint: Endpoint) -> dict[str, list[psutil.Process]]:
    """The local server's frontend and workers (empty for a remote server)."""
    pid = endpoint.local.pid() if endpoint.local is not None else None
    if pid is None:
        return {}
    frontend = psutil.Process(pid)
    return {"frontend": [frontend], "workers": frontend.children(recursive=True)}


def _bodies(rows: list[dict[str, Any]], per_request: int) -> list[Any]:
    if per_request == 1:
        return list(rows[:200])
    return [rows[i : i + per_request] for i in range(0, len(rows) - per_request + 1, per_request)][:20]


def _measure(
    url: str,
    path: str,
    token: str | None,
    bodies: list[Any],
    users: int,
    seconds: float,
    watch: dict[str, list[psutil.Process]],
) -> dict[str, Any]:
    if loadgen.wrk_path() is not None:
        m = loadgen.run_wrk(url, path, token, bodies, users, seconds, watch)
        return {**m.result.to_dict(), "cpu_ms_per_request": m.cpu_ms_per_request, "load_average": m.load_average}
    load_average = os.getloadavg()[0]
    r = loadgen.run(url, path, token, bodies, users, seconds)
    return {**r.to_dict(), "cpu_ms_per_request": {}, "load_average": load_average}


def served(
    endpoint: Endpoint,
    name: str,
    rows: list[dict[str, Any]],
    seconds: float,
    progress: Callable[[str], None],
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Each load level ``repeat`` times; the run with the most requests per second is kept.

    Other work on the machine only ever slows a run down, so the best run is the closest to
    what the server does; every run is kept under ``runs``.
    """
    path = f"/predictions/{name}"
    watch = _processes(endpoint)
    results = []
    for per_request, users in LEVELS:
        bodies = _bodies(rows, per_request)
        url, token = endpoint.inference_url, endpoint.inference_token
        runs = [_measure(url, path, token, bodies, users, seconds, watch) for _ in range(repeat)]
        best = max(runs, key=lambda r: r["rps"])
        entry = {"rows_per_request": per_request, "concurrency": users, **best, "rows_per_s": best["rps"] * per_request}
        entry["runs"] = [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "load_average")} for r in runs]
        results.append(entry)
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in best["cpu_ms_per_request"].items())
        progress(
            f"{per_request:>3} row(s)/request, concurrency {users:>2}: {best['rps']:>7,.0f} req/s "
            f"({entry['rows_per_s']:,.0f} rows/s), p50 {best['p50_ms']:.2f} ms, p99 {best['p99_ms']:.2f} ms, "
            f"{best['failures']} failed" + (f"; CPU ms/request: {cpu}" if cpu else "")
        )
    return results


# ---- mlflow models serve ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def mlflow_served(
    model_uri: str,
    tracking_uri: str,
    rows: list[dict[str, Any]],
    seconds: float,
    progress: Callable[[str], None],
    repeat: int = 1,
    workers: tuple[int, ...] = MLFLOW_WORKERS,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """``mlflow models serve`` of ``model_uri`` with 1 and 2 workers: 1-row requests at concurrency 16.

    The same registered model, the same rows and the same load generator as TorchServe; its best
    worker count is the comparison. Raises ServiceError when the server does not come up.
    """
    mlflow = Path(sys.executable).with_name("mlflow")
    bodies = [{"dataframe_records": [row]} for row in rows[:200]]
    out: dict[str, Any] = {"model_uri": model_uri, "by_workers": {}}
    for n in workers:
        port = _free_port()
        log = (log_dir / f"mlflow-serve-{n}.log" if log_dir else Path(os.devnull)).open("ab")
        cmd = [str(mlflow if mlflow.exists() else "mlflow"), "models", "serve", "-m", model_uri,
               "-h", "127.0.0.1", "-p", str(port), "-w", str(n), "--env-manager", "local"]  # fmt: skip
        env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise ServiceError(f"`mlflow models serve -m {model_uri}` exited ({proc.returncode})")
                try:
                    if requests.get(url + "/ping", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise ServiceError(f"`mlflow models serve -m {model_uri}` not answering after 180 s")
                time.sleep(0.5)
            status = requests.post(url + "/invocations", json=bodies[0], timeout=30).status_code
            if status != 200:
                raise ServiceError(f"`mlflow models serve` answered HTTP {status} to a holdout row")
            parent = psutil.Process(proc.pid)
            watch = {"server": [parent, *parent.children(recursive=True)]}
            runs = [_measure(url, "/invocations", None, bodies, 16, seconds, watch) for _ in range(repeat)]
        finally:
            _stop(proc)
            log.close()
        best = max(runs, key=lambda r: r["rps"])
        out["by_workers"][str(n)] = best
        progress(f"mlflow models serve, {n} worker(s), 1 row, concurrency 16: {best['rps']:,.0f} req/s, "
                 f"p50 {best['p50_ms']:.1f} ms")  # fmt: skip
    out["best"] = max(out["by_workers"].values(), key=lambda r: r["rps"])
    out["best_workers"] = int(max(out["by_workers"], key=lambda k: out["by_workers"][k]["rps"]))
    return out


# ---- the report -------------------------------------------------------------------------------


def _served_at(report: dict[str, Any], per_request: int, users: int | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in report.get("served", [])
        if r["rows_per_request"] == per_request and (users is None or r["concurrency"] == users)
    ]


def figures(report: dict[str, Any]) -> dict[str, float | None]:
    """The figure behind each target (None where the report lacks it)."""
    ip = report.get("in_process", {})
    c1, c16 = _served_at(report, 1, 1), _served_at(report, 1, 16)
    hundreds = _served_at(report, 100)
    mlflow = report.get("mlflow", {}).get("best")
    return {
        "in_process_1_row_ms": ip["1_row"]["cpu_p50_ms"] if ip else None,
        "in_process_100_rows_ms": ip["100_rows"]["cpu_p50_ms"] if ip else None,
        "served_1_row_c1_p50_ms": c1[0]["p50_ms"] if c1 else None,
        "served_1_row_c16_rps": c16[0]["rps"] if c16 else None,
        "served_100_rows_rows_per_s": max(r["rows_per_s"] for r in hundreds) if hundreds else None,
        "times_mlflow_c16": c16[0]["rps"] / mlflow["rps"] if c16 and mlflow and mlflow["rps"] else None,
    }


def summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target: what, the target, the figure, whether it is met, the mlflow figure."""
    values = figures(report)
    mlflow = report.get("mlflow", {}).get("best")
    rows = []
    for key, target in TARGETS.items():
        value = values[key]
        row = {"key": key, "what": target.name, "target": target.text(), "value": value, "met": target.met(value)}
        if key == "served_1_row_c16_rps" and mlflow:
            row["mlflow"] = mlflow["rps"]
        rows.append(row)
    return rows


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "not measured"
    if key.endswith("_ms"):
        return f"{value:.3g} ms"
    if key.startswith("times_"):
        return f"{value:,.0f}x"
    return f"{value:,.0f}" + (" rows/s" if key.endswith("rows_per_s") else " req/s")


def markdown(report: dict[str, Any]) -> str:
    """The benchmark as the docs show it: targets, every load level, CPU per request."""
    mlflow = report.get("mlflow", {})
    lines = [
        f"Run of {report.get('time', '?')} on {report.get('machine', '?')}; load generator: "
        f"{report.get('load_generator', '?')}; 1-minute load average {report.get('load_average', '?')} at the start.",
        "",
        "| figure | target | measured | met |",
        "|---|---|---:|:---:|",
    ]
    for row in summary(report):
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        lines.append(f"| {row['what']} | {row['target']} | {_fmt(row['key'], row['value'])} | {met} |")
    lines += [
        "",
        "| server | rows/request | concurrency | requests/s | rows/s | p50 ms | p99 ms | failed | CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report.get("served", []):
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.get("cpu_ms_per_request", {}).items()) or "-"
        lines.append(
            f"| TorchServe | {r['rows_per_request']} | {r['concurrency']} | {r['rps']:,.0f} | {r['rows_per_s']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['failures']} | {cpu} |"
        )
    for workers, r in mlflow.get("by_workers", {}).items():
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.get("cpu_ms_per_request", {}).items()) or "-"
        lines.append(
            f"| `mlflow models serve`, {workers} worker(s) | 1 | 16 | {r['rps']:,.0f} | {r['rps']:,.0f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['failures']} | {cpu} |"
        )
    ip = report.get("in_process")
    if ip:
        lines += [
            "",
            f"In-process (`Predictor.answer`, {ip['scoring']}): 1 row {ip['1_row']['cpu_p50_ms']:.3f} ms CPU "
            f"({ip['1_row']['wall_p50_ms']:.3f} ms wall), 100 rows {ip['100_rows']['cpu_p50_ms']:.3f} ms CPU "
            f"({ip['100_rows']['wall_p50_ms']:.3f} ms wall); medians.",
        ]
    return "\n".join(lines)


def write_doc(doc: Path, text: str) -> bool:
    """Replace the text between the benchmark markers of ``doc``; False when it has no markers."""
    if not doc.exists():
        return False
    content = doc.read_text()
    if DOC_START not in content or DOC_END not in content:
        return False
    head, rest = content.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    doc.write_text(f"{head}{DOC_START}\n{text}\n{DOC_END}{tail}")
    return True


def table(report: dict[str, Any]) -> str:
    """The targets as fixed-width text for the terminal."""
    lines = [f"{'figure':<62} {'target':>16} {'measured':>16}  met"]
    for row in summary(report):
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        lines.append(f"{row['what']:<62} {row['target']:>16} {_fmt(row['key'], row['value']):>16}  {met}")
    return "\n".join(lines)


def sample_rows(holdout: pd.DataFrame, features: list[str], n: int = 2000) -> list[dict[str, Any]]:
    """Up to ``n`` holdout rows as request rows."""
    return records(holdout.head(n), features)
