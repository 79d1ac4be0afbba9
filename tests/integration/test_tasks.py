"""Each task type runs end to end, chosen by the contract alone (plus its gates in params)."""

import json
from pathlib import Path

import pytest

from conftest import FIXTURES, make_project, repro, sh
from mlops.core.config import load_params
from mlops.pipeline.evaluation import gate_failures
from support.project import edit_yaml

pytestmark = pytest.mark.integration

CASES = {
    "multiclass": (
        "contract-multiclass.yaml",
        {"minimum": {"accuracy": 0.5}, "maximum": {"log_loss": 1.2}, "regression_budget": {"accuracy": 0.01}},
        ["confusion", "importance"],
    ),
    "regression": (
        "contract-regression.yaml",
        {"minimum": {"r2": 0.5}, "maximum": {"rmse": 3.0}, "regression_budget": {"rmse": 0.1}},
        ["predictions", "importance"],
    ),
}


@pytest.mark.parametrize("task", list(CASES))
def test_task_runs_end_to_end_from_the_contract(task, tmp_path):
    contract, gates, plots = CASES[task]
    project = make_project(tmp_path / task, params={"data": {"task": task}}, contract=FIXTURES / contract)
    edit_yaml(project / "params.yaml", lambda p: p.update(gates=gates))  # the task's own gates, not merged
    repro(project)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    params = load_params(project / "params.yaml")
    assert gate_failures(metrics, params.gates.minimum, params.gates.maximum) == []
    [name] = gates["minimum"]
    assert gate_failures(metrics, {name: metrics[name] + 0.001}, {}) == [
        f"{name} {metrics[name]:.4f} < minimum {metrics[name] + 0.001}"
    ]
    if task == "regression":
        assert metrics["rmse"] < metrics["baseline"]["rmse"]
    else:
        assert metrics["accuracy"] > metrics["baseline"]["accuracy"]
        assert set(metrics["per_class"]) == {"A", "B", "C", "D"}
    produced = sorted(p.stem for p in (project / "reports/evaluate").glob("*.csv"))
    assert produced == sorted(plots)
    html = Path(tmp_path / "plots")
    sh("dvc", "plots", "show", "-o", str(html), cwd=project)
    assert (html / "index.html").exists()
