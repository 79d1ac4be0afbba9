"""`mlops monitor`'s exit codes: 0 healthy, 1 a breach, 2 production cannot be observed.

Only 1 may open the monitoring issue and start retraining (monitor.yml acts on it), so a server
that is down, a metrics API that does not answer or a prediction log that cannot be read must
never look like a breach, nor like health. The metrics API "down" is a loopback port nothing
listens on; no server is started.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.commands import monitor as command
from mlops.core.contract import load_contract
from support import FIXTURES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})


@pytest.fixture
def project(tmp_path: Path, loans: pd.DataFrame) -> Path:
    """A folder with a training reference, its offline metrics and a clean prediction log."""
    contract = load_contract(FIXTURES / "contract.yaml")
    reference = loans[contract.features].copy()
    reference["score"] = np.linspace(0.05, 0.6, len(reference))
    reference.to_parquet(tmp_path / "reference.parquet")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps({"roc_auc": 0.8}))  # offline, beside it
    write_log(tmp_path / "log", loans, contract.features, shift=0.0)
    return tmp_path


def write_log(folder: Path, loans: pd.DataFrame, features: list[str], shift: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    with (folder / "predictions-1.jsonl").open("w") as f:
        for i, (row, p) in enumerate(zip(loans.to_dict("records"), np.linspace(0.05, 0.6, len(loans)), strict=True)):
            inputs = {k: None if pd.isna(row[k]) else row[k] for k in features}
            inputs["credit_score"] = inputs["credit_score"] - shift
            answer = {"prediction": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}}
            record = {"request_id": f"r{i}", "time": now - 60 + i * 0.01, "model_version": "v1",
                      "id": row["loan_id"], "inputs": inputs, "outputs": answer}  # fmt: skip
            f.write(json.dumps(record) + "\n")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


def monitor(project: Path, *extra: str, log: str = "log") -> int:
    return command.main([
        "production", "--root", str(project), "--params", str(FIXTURES / "params.yaml"),
        "--contract", str(FIXTURES / "contract.yaml"), "--reference", str(project / "reference.parquet"),
        "--labels", str(project / "no-labels"), "--log-dir", str(project / log),
        "--out", str(project / "reports" / "monitor.md"), *extra,
    ])  # fmt: skip


def test_a_healthy_production_exits_0_with_a_report(project):
    assert monitor(project, "--metrics-url", "") == 0
    assert "No threshold breached" in (project / "reports/monitor.md").read_text()


def test_a_breach_exits_1_with_a_report_naming_it(project, loans, capsys):
    write_log(project / "log", loans, load_contract(FIXTURES / "contract.yaml").features, shift=120)
    assert monitor(project, "--metrics-url", "") == 1
    assert "BREACH drift in 'credit_score'" in capsys.readouterr().err
    assert "threshold(s) breached" in (project / "reports/monitor.md").read_text()


def test_a_metrics_api_that_is_down_exits_2_and_writes_no_report(project, capsys):
    url = f"http://127.0.0.1:{closed_port()}"
    assert monitor(project, "--metrics-url", url) == 2
    err = capsys.readouterr().err
    assert f"error: cannot observe production: cannot scrape {url}/metrics" in err
    assert "BREACH" not in err
    assert not (project / "reports/monitor.md").exists()


def test_a_prediction_log_that_does_not_exist_exits_2(project, capsys):
    assert monitor(project, "--metrics-url", "", log="nowhere") == 2
    assert "the prediction log" in capsys.readouterr().err
    assert not (project / "reports/monitor.md").exists()


def test_an_unreadable_prediction_log_exits_2_naming_it(project, capsys):
    (project / "log" / "predictions-2.jsonl").mkdir()  # a log file that cannot be opened as one
    assert monitor(project, "--metrics-url", "") == 2
    assert "cannot read the prediction log" in capsys.readouterr().err
    assert not (project / "reports/monitor.md").exists()


def test_a_torn_line_is_skipped_not_a_reason_to_give_up(project):
    with (project / "log" / "predictions-1.jsonl").open("a") as f:
        f.write("{not json\n")  # a worker killed mid-write
    assert monitor(project, "--metrics-url", "") == 0
    assert json.loads((project / "reports/monitor.json").read_text())["skipped"] == {"torn lines": 1}
