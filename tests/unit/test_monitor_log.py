"""What the monitor reads from a prediction log: torn lines, deployment-check rows and other models'
rows are left out and counted, never crash it and never count as production traffic."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.core.config import load_params
from mlops.monitoring import monitor as mon
from support import FIXTURES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def params():
    p = load_params(FIXTURES / "params.yaml")
    return p.model_copy(update={"monitor": p.monitor.model_copy(update={"min_rows": 100})})


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})


def entries(loans: pd.DataFrame, contract, now: float, shift: float = 0.0, **extra: Any) -> list[dict[str, Any]]:
    """One logged row per loan, as the handler writes them (scores spread like the reference's)."""
    out = []
    scores = np.linspace(0.05, 0.6, len(loans))
    for i, (row, p) in enumerate(zip(loans.to_dict("records"), scores, strict=True)):
        inputs = {k: None if pd.isna(row[k]) else row[k] for k in contract.features}
        inputs["credit_score"] -= shift
        answer = {"prediction": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}}
        entry = {"request_id": f"r{i}", "time": now - 60 + i * 0.01, "model": "loan-default", "model_version": "v1"}
        out.append(entry | {"id": row["loan_id"], "inputs": inputs, "outputs": answer} | extra)
    return out


def write(folder: Path, name: str, lines: list[Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("a") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def sources(folder: Path, loans, contract, **kw: Any) -> mon.Sources:
    ref = loans[contract.features].copy()
    ref["score"] = np.linspace(0.05, 0.6, len(ref))
    return mon.Sources("production", folder, ref, {"roc_auc": 0.8}, **kw)


def test_torn_lines_are_skipped_and_counted(tmp_path, loans, contract, params):
    now = time.time()
    good = entries(loans, contract, now)
    whole = json.dumps(good[-1])
    write(tmp_path / "log", "predictions-1.jsonl", [*good[:-1], '{"request_id": "r9", "ti', "[1, 2]"])
    (tmp_path / "log" / "predictions-1.jsonl").open("a").write(whole[: len(whole) // 2])  # killed mid-write
    m = mon.monitor(sources(tmp_path / "log", loans, contract), contract, params.monitor, params.gates, now=now)
    assert m.rows == len(good) - 1
    assert m.skipped == {"torn lines": 3}
    assert "3 torn lines" in mon.render(m, tmp_path / "out", params.monitor.psi_threshold)


def test_deployment_check_rows_are_not_production_traffic(tmp_path, loans, contract, params):
    now = time.time()
    # the checks replay a holdout that looks nothing like production traffic: on its own a drift alarm
    checks = entries(loans, contract, now, shift=150, traffic="deploy-check")
    write(tmp_path / "log", "predictions-1.jsonl", entries(loans, contract, now) + checks)
    m = mon.monitor(sources(tmp_path / "log", loans, contract), contract, params.monitor, params.gates, now=now)
    assert m.rows == len(loans)
    assert m.skipped == {"deployment-check rows": len(loans)}
    assert m.breaches == []


def test_a_log_holding_another_models_rows_is_filtered_by_name_and_version(tmp_path, loans, contract, params):
    now = time.time()
    theirs = [dict(e, model="house-prices", outputs={"prediction": 250_000.0}) for e in entries(loans, contract, now)]
    older = entries(loans.head(50), contract, now, model_version="v0")
    write(tmp_path / "log", "predictions-1.jsonl", theirs + older + entries(loans, contract, now))
    where = sources(tmp_path / "log", loans, contract, model="loan-default", version="v1")
    m = mon.monitor(where, contract, params.monitor, params.gates, now=now)
    assert m.rows == len(loans)
    assert m.skipped == {"rows of other models": len(loans), "rows of other versions": 50}
    assert m.breaches == []


def test_answers_the_task_cannot_read_never_crash_the_monitor(tmp_path, loans, contract, params):
    # a log written before rows named their model: a regression model's answers have no probabilities
    now = time.time()
    theirs = [dict(e, outputs={"prediction": 250_000.0}) for e in entries(loans.head(40), contract, now)]
    for e in theirs:
        e.pop("model")
    write(tmp_path / "log", "predictions-1.jsonl", theirs + entries(loans, contract, now))
    m = mon.monitor(sources(tmp_path / "log", loans, contract), contract, params.monitor, params.gates, now=now)
    assert m.rows == len(loans)
    assert m.skipped == {"answers this task cannot read": 40}
