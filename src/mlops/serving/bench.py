"""Serving benchmark: load-generated requests against an environment, and the in-process ceiling."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from mlops.serving import loadgen
from mlops.serving.inference import Predictor, records
from mlops.serving.torchserve import Endpoint


def in_process(predictor: Predictor, rows: list[dict[str, Any]], seconds: float = 2.0) -> dict[str, float]:
    """The same pipeline called directly: single-row latency and 100-row throughput."""

    def rate(batch: list[dict[str, Any]]) -> float:
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            predictor.predict(batch)
            calls += 1
        return (time.perf_counter() - t0) / calls

    single = rate(rows[:1])
    hundred = rate(rows[:100])
    return {"single_row_ms": single * 1000, "rows_per_s_100": 100 / hundred}


def served(
    endpoint: Endpoint, name: str, rows: list[dict[str, Any]], seconds: float, progress: Any
) -> list[dict[str, Any]]:
    """Served throughput and latency at concurrency 1, 4 and 16 (1 row) and 4 (100 rows)."""
    path = f"/predictions/{name}"
    results = []
    for users in (1, 4, 16):
        r = loadgen.run(endpoint.inference_url, path, endpoint.inference_token, rows[:200], users, seconds)
        results.append({"rows_per_request": 1, "concurrency": users, **r.to_dict(), "rows_per_s": r.rps})
        progress(f"1-row requests, concurrency {users}: {r.rps:,.0f}/s, p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms")
    bodies = [rows[i : i + 100] for i in range(0, len(rows) - 99, 100)][:20]
    r = loadgen.run(endpoint.inference_url, path, endpoint.inference_token, bodies, 4, seconds)
    results.append({"rows_per_request": 100, "concurrency": 4, **r.to_dict(), "rows_per_s": r.rps * 100})
    progress(f"100-row requests, concurrency 4: {r.rps * 100:,.0f} rows/s, p50 {r.p50_ms:.0f} ms")
    return results


def table(report: dict[str, Any]) -> str:
    """The benchmark as a fixed-width text table."""
    lines = [
        f"{'rows/req':>8} {'conc':>5} {'req/s':>9} {'rows/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6}",
    ]
    for r in report["served"]:
        lines.append(
            f"{r['rows_per_request']:>8} {r['concurrency']:>5} {r['rps']:>9,.0f} {r['rows_per_s']:>10,.0f} "
            f"{r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} {r['failures']:>6}"
        )
    ip = report["in_process"]
    lines.append(
        f"in-process ceiling: single row {ip['single_row_ms']:.2f} ms, 100-row calls {ip['rows_per_s_100']:,.0f} rows/s"
    )
    return "\n".join(lines)


def sample_rows(holdout: pd.DataFrame, features: list[str], n: int = 2000) -> list[dict[str, Any]]:
    """Up to ``n`` holdout rows as request rows."""
    return records(holdout.head(n), features)
