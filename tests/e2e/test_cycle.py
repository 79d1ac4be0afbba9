"""Continuous training end to end: production on early periods -> drifted periods arrive and are
served -> the monitor flags them -> retrain on a branch -> the PR report shows the candidate
beating production on recent data -> merge -> deploy -> production serves the new version.

Real git, DVC, MLflow and a TorchServe pair of this module's own; `mlops cycle` is what
`make cycle` runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import make_project, sh
from mlops.release.records import production_tags
from support.servers import write_env_configs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("cycle")
    repo = make_project(base / "repo", params={"data": {"periods": 8}})
    (base / "serve").mkdir()
    shutil.copytree(repo / "serve", base / "serve", dirs_exist_ok=True)
    write_env_configs(base, extra_allowed="file:///nowhere/.*")
    env = {"MLOPS_SERVE_DIR": str(base / "serve"), "MLOPS_RUNTIME_DIR": str(base / "runtime")}
    os.environ.update(env)
    sh("dvc", "repro", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "first model", cwd=repo)
    sh("mlops", "serve", "up", cwd=repo)
    sh("mlops", "deploy", "staging", cwd=repo)
    sh("mlops", "promote", "production", cwd=repo)
    yield repo
    subprocess.run(["mlops", "serve", "down"], cwd=repo, capture_output=True)
    for k in env:
        os.environ.pop(k, None)


def test_a_continuous_training_round(project):
    before = json.loads((project / "models/package.json").read_text())["version"]
    proc = sh("mlops", "cycle", "--periods", "3", "--drift", "1.5", cwd=project)
    result = json.loads(proc.stdout[proc.stdout.index("{") :])

    # the monitor saw the drifted traffic
    assert any(b.startswith("drift in") for b in result["monitor_breaches"]), result
    monitor = json.loads((project / "reports/monitor.json").read_text())
    assert monitor["rows"] == 3 * 600
    assert monitor["drift"]["credit_score"]["drifted"]

    # the retrained candidate beats production on the recent (drifted) holdout
    report = (project / "reports/pr/pr-report.md").read_text()
    assert report.startswith("## ✅ Gate passed")
    vs_production = report.split("This branch vs production")[1].split("###")[0]
    log_loss = re.search(r"\| log_loss \| ([\d.]+) \| ([\d.]+) \| ([-+][\d.]+) \|", vs_production)
    assert log_loss, vs_production
    assert float(log_loss.group(2)) < float(log_loss.group(1))  # candidate's log loss is lower

    # merged and deployed: production serves the new version, tagged
    assert result["gate_passed"] is True
    assert result["production_before"] == before
    assert result["production_after"] != before
    status = {r["environment"]: r for r in json.loads(sh("mlops", "status", "--json", cwd=project).stdout)}
    assert status["production"]["version"] == result["production_after"]
    assert status["staging"]["version"] == result["production_after"]
    promotions = production_tags(project)
    assert [t.record["version"] for t in promotions] == [before, result["production_after"]]
    assert sh("git", "rev-parse", "--abbrev-ref", "HEAD", cwd=project).stdout.strip() == "main"
    raw = sorted(p.name for p in (project / "data/raw").glob("*.csv"))
    assert raw[-3:] == ["2025-09.csv", "2025-10.csv", "2025-11.csv"]
    assert not list((project / "data/landing").glob("*.csv"))  # every landed batch was ingested
