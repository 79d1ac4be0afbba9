"""Monitoring benchmarks (`make bench-monitoring`, after `make demo`): writes reports/bench-monitoring.json.

1. Telemetry cost: the same staging server and archive with telemetry off, then on (the
   handler's metrics and prediction log), under the same load: 1-row requests at
   concurrency 16 and 100-row requests; plus the in-process cost per row.
2. Monitor time on 1,000,000 logged predictions.
3. Drift detection on the example's drift knob: the smallest downturn flagged in a
   2,000-row window, and false alarms on 20 undrifted windows.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlops.core.artifacts import load_pipeline, read_json
from mlops.core.config import DataParams, load_params
from mlops.core.contract import load_contract
from mlops.example.data import generate_period
from mlops.monitoring.monitor import Sources, drift_table, monitor
from mlops.pipeline.datasets import read_table
from mlops.serving import loadgen
from mlops.serving.inference import Predictor, records
from mlops.serving.telemetry import Telemetry
from mlops.serving.torchserve import Client, install_archive, local_server

ROOT = Path(__file__).resolve().parents[1]


def served_cost(rows: list[dict], name: str, batch_delay_ms: int) -> dict[str, dict[str, float]]:
    package = read_json(ROOT / "models/package.json")
    server = local_server("staging", ROOT / "serve", ROOT / ".serve")
    out = {}
    for mode in ("off", "on"):
        server.down()
        os.environ["MLOPS_TELEMETRY"] = mode
        endpoint = server.up()
        client = Client(endpoint)
        url = install_archive(endpoint, ROOT / "models" / package["archive"], name, package["version"])
        client.register(url, name, package["version"], 90, batch_delay_ms)
        client.set_default(name, package["version"])
        client.wait_ready(name, package["version"], 90)
        path = f"/predictions/{name}"
        single = loadgen.run(endpoint.inference_url, path, endpoint.inference_token, rows[:200], 16, 10)
        bodies = [rows[i : i + 100] for i in range(0, 2000, 100)]
        hundred = loadgen.run(endpoint.inference_url, path, endpoint.inference_token, bodies, 4, 10)
        out[mode] = {
            "rps_1row_c16": single.rps,
            "p50_ms_1row_c16": single.p50_ms,
            "rows_per_s_100row": hundred.rps * 100,
        }
        print(f"telemetry {mode}: {single.rps:,.0f} req/s (1 row, c16), {hundred.rps * 100:,.0f} rows/s (100-row)")
    os.environ.pop("MLOPS_TELEMETRY")
    server.down()
    server.up()  # leave staging as `make demo` left it: up (the next deploy registers again)
    return out


def in_process_cost(predictor: Predictor, rows: list[dict], contract) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_PREDICTION_LOG_DIR"] = tmp
        telemetry = Telemetry("m", contract.features, predictor.task, "v")
        results = predictor.predict(rows[:100])
        t0 = time.perf_counter()
        for _ in range(200):
            telemetry.record(None, rows[:100], results, ["r"] * 100)
        per_row = (time.perf_counter() - t0) / 20_000
        os.environ.pop("MLOPS_PREDICTION_LOG_DIR")
    t0 = time.perf_counter()
    for _ in range(50):
        predictor.predict(rows[:100])
    predict_per_row = (time.perf_counter() - t0) / 5_000
    return {"telemetry_us_per_row": per_row * 1e6, "predict_us_per_row": predict_per_row * 1e6}


def monitor_1m(predictor: Predictor, rows: list[dict], contract, params, reference) -> dict[str, float]:
    results = predictor.predict(rows[:2000])
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        with (Path(tmp) / "predictions-1.jsonl").open("w") as f:
            for i in range(1_000_000):
                row, result = rows[i % 2000], results[i % 2000]
                entry = {"request_id": str(i), "time": now - 3600 + i * 0.0036, "model_version": "v"}
                entry |= {"id": result.get("id"), "inputs": row, "outputs": result}
                f.write(json.dumps(entry) + "\n")
        t0 = time.perf_counter()
        sources = Sources("bench", Path(tmp), reference, {})
        m = monitor(sources, contract, params.monitor, params.gates, now=now + 1)
        seconds = time.perf_counter() - t0
    print(f"monitor on {m.rows:,} logged predictions: {seconds:.1f}s")
    return {"rows": m.rows, "seconds": seconds}


def drift_sensitivity(pipeline, contract, params, reference) -> dict[str, object]:
    base = params.data.model_dump() | {"rows_per_period": 2000, "drift_start": 1}
    flagged_at = None
    by_shift = {}
    for shift in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5]:
        frame = generate_period(DataParams.model_validate(base | {"drift": shift}), 30)
        scores = pd.Series(pipeline.predict_proba(frame)[:, 1])
        table = drift_table(frame, scores, reference, contract, params.monitor)
        drifted = sorted(k for k, v in table.items() if v["drifted"])
        by_shift[shift] = drifted
        if drifted and flagged_at is None:
            flagged_at = shift
    false_alarms = 0
    for window in range(20):
        frame = generate_period(DataParams.model_validate(base | {"drift": 0.0}), 40 + window)
        scores = pd.Series(pipeline.predict_proba(frame)[:, 1])
        table = drift_table(frame, scores, reference, contract, params.monitor)
        false_alarms += any(v["drifted"] for v in table.values())
    print(f"smallest downturn flagged: {flagged_at} sd ({by_shift.get(flagged_at)}); false alarms: {false_alarms}/20")
    return {"smallest_flagged_shift": flagged_at, "flagged_inputs": by_shift, "false_alarms_of_20": false_alarms}


def main() -> int:
    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / "data/contract.yaml")
    pipeline = load_pipeline(ROOT / "models/pipeline.joblib")
    reference = read_table(ROOT / "models/reference.parquet")
    holdout = read_table(ROOT / "data/split/holdout.parquet")
    rows = records(holdout, [contract.id, *contract.features])
    predictor = Predictor(pipeline, contract, "bench")
    report = {
        "in_process": in_process_cost(predictor, rows, contract),
        "served": served_cost(rows, params.serve.model_name, params.serve.max_batch_delay_ms),
        "monitor_1m": monitor_1m(predictor, rows, contract, params, reference),
        "drift": drift_sensitivity(pipeline, contract, params, reference),
    }
    served = report["served"]
    report["served"]["cost_percent_1row_c16"] = 100 * (1 - served["on"]["rps_1row_c16"] / served["off"]["rps_1row_c16"])
    report["served"]["cost_percent_100row"] = 100 * (
        1 - served["on"]["rows_per_s_100row"] / served["off"]["rows_per_s_100row"]
    )
    out = ROOT / "reports" / "bench-monitoring.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    ip = report["in_process"]
    print(f"telemetry in-process: {ip['telemetry_us_per_row']:.1f} us/row", end="")
    print(f" vs predict {ip['predict_us_per_row']:.1f} us/row")
    print(f"served cost: {served['cost_percent_1row_c16']:+.1f}% (1 row, c16), ", end="")
    print(f"{served['cost_percent_100row']:+.1f}% (100-row)")
    print(f"-> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
