"""The monitor's collect, decide and render steps on a synthetic prediction log (no server)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring import monitor as mon
from support import FIXTURES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})


def reference(loans: pd.DataFrame, contract) -> pd.DataFrame:
    ref = loans[contract.features].copy()
    ref["score"] = np.linspace(0.05, 0.6, len(ref))
    return ref


def write_log(folder, loans, contract, scores, now, shift=0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "predictions-1.jsonl").open("w") as f:
        for i, (row, p) in enumerate(zip(loans.to_dict("records"), scores, strict=True)):
            inputs = {k: None if pd.isna(row[k]) else row[k] for k in contract.features}  # null, as served
            inputs["credit_score"] = inputs["credit_score"] - shift
            answer = {"prediction": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}}
            record = {"request_id": f"r{i}", "time": now - 60 + i * 0.01, "model_version": "v1", "id": row["loan_id"],
                      "inputs": inputs, "outputs": answer}  # fmt: skip
            f.write(json.dumps(record) + "\n")


def run(tmp_path, loans, contract, params, shift=0.0, labels=None):
    now = time.time()
    write_log(tmp_path / "log", loans, contract, np.linspace(0.05, 0.6, len(loans)), now, shift)
    sources = mon.Sources("production", tmp_path / "log", reference(loans, contract), {"roc_auc": 0.8},
                          labels_dir=labels)  # fmt: skip
    small = params.monitor.model_copy(update={"min_rows": 100})
    return mon.monitor(sources, contract, small, params.gates, now=now)


def test_an_unchanged_stream_breaches_nothing(tmp_path, loans, contract, params):
    m = run(tmp_path, loans, contract, params)
    assert m.rows == len(loans)
    assert m.breaches == []
    assert not any(d["drifted"] for d in m.drift.values())
    assert m.predictions["p50"] == pytest.approx(np.median(np.linspace(0.05, 0.6, len(loans))), abs=0.01)


def test_a_shifted_input_is_flagged_as_drift_naming_it(tmp_path, loans, contract, params):
    m = run(tmp_path, loans, contract, params, shift=120)
    assert m.drift["credit_score"]["drifted"]
    assert any(b.startswith("drift in 'credit_score'") for b in m.breaches)
    assert not m.drift["age"]["drifted"]


def test_late_labels_that_disagree_breach_the_metric_drop(tmp_path, loans, contract, params):
    labels = tmp_path / "labels"
    labels.mkdir()
    truth = loans[["loan_id", "defaulted"]].copy()
    truth["defaulted"] = (np.linspace(0.05, 0.6, len(loans)) < 0.3).astype(int)  # the opposite of the scores
    truth.to_csv(labels / "batch.csv", index=False)
    m = run(tmp_path, loans, contract, params, labels=labels)
    assert m.labels["rows"] == len(loans)
    assert m.labels["served"] < 0.2
    assert any(b.startswith("roc_auc on 400 labelled predictions") for b in m.breaches)


def test_decide_reads_each_threshold(params):
    m = mon.Monitoring("production", 0, service={"error_rate": 0.5, "latency_p99_ms": 9000.0, "requests": 10})
    m.missing = {"age": {"served": 0.5, "reference": 0.0, "limit": 0.05}}
    breaches = mon.decide(m, params.monitor)
    assert breaches[0].startswith("error rate 50.0%")
    assert any(b.startswith("p99 latency 9000 ms") for b in breaches)
    assert "no predictions logged in the lookback window" in breaches
    assert any(b.startswith("missing values in 'age'") for b in breaches)


def test_the_report_leads_with_the_verdict_and_draws_drift(tmp_path, loans, contract, params):
    m = run(tmp_path, loans, contract, params, shift=120)
    text = mon.render(m, tmp_path / "out", params.monitor.psi_threshold)
    assert text.splitlines()[2].startswith("## ❌")
    assert "| credit_score |" in text
    assert (tmp_path / "out" / "drift.png").stat().st_size > 1000
