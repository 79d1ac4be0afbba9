"""A shared MLflow tracking server on PostgreSQL with artifacts in the object store, used for real.

The session's server (tests/support/team.py) is the team's: the pipeline, the deployments and
``mlops status`` reach it only through ``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``; nothing
is written to a local ``mlflow.db``. Two clones log runs to it at once, as two engineers do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from support import ROOT
from support.project import sh, stages_run
from support.servers import write_env_configs
from support.team import TrackingServer

pytestmark = pytest.mark.integration

MODEL = "loan-default"  # the fixtures' registered model and experiment


def team_env(server: TrackingServer) -> dict[str, str]:
    """A clone's environment: the tracking server's URL, and nothing of the object store (the server proxies it).

    It trains as CI on main does (``MLOPS_REGISTER=1``): each run registers a model version.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3_"))}
    return {**env, "MLFLOW_TRACKING_URI": server.url, "MLOPS_REGISTER": "1"}


@pytest.fixture(scope="module")
def team_project(
    trained_project: Path, tracking_server: TrackingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The trained project, its training and evaluation run again against the tracking server; local TorchServe."""
    root = tmp_path_factory.mktemp("team-tracking") / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["serve"]["workers"] = 1
    params["deploy"].update(parity_rows=100, quality_rows=300, smoke_rows=5, ready_timeout_s=90)
    params["deploy"]["latency"] = {"duration_s": 2, "concurrency": 2, "max_p99_ms": 5000, "min_rps": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_env_configs(root, extra_allowed="")
    sh("git", "commit", "-qam", "team environments", cwd=root)
    for stage in ("train", "evaluate"):  # what logs to MLflow; the rest is the shared project's
        proc = sh("dvc", "repro", "--single-item", "--force", stage, cwd=root, env=team_env(tracking_server))
        assert stages_run(proc) == [stage]
    yield root
    sh("mlops", "serve", "down", cwd=root, check=False)


def test_training_and_evaluation_log_to_the_server_with_artifacts_in_the_object_store(
    team_project: Path, tracking_server: TrackingServer
) -> None:
    client = MlflowClient(tracking_server.url)
    experiment = client.get_experiment_by_name(MODEL)
    assert experiment is not None
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    sha = json.loads((team_project / "models/package.json").read_text())["model_sha256"]
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.model_sha256 = '{sha}'")
    assert len(runs) == 1
    run = runs[0]
    assert "train_loss" in run.data.metrics  # training's
    assert "roc_auc" in run.data.metrics  # evaluation's, added to the same run
    versions = client.search_model_versions(f"name = '{MODEL}' and run_id = '{run.info.run_id}'")
    assert len(versions) == 1
    keys = [
        o["Key"]
        for page in tracking_server.store.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=tracking_server.bucket)
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert any("/evaluation/" in k for k in keys), keys[:20]
    assert not (team_project / "mlflow.db").exists()
    assert not (team_project / "mlartifacts").exists()


def test_deploy_and_promote_move_the_aliases_on_the_server_and_status_reads_them(
    team_project: Path, tracking_server: TrackingServer
) -> None:
    env = team_env(tracking_server)
    sh("mlops", "serve", "up", cwd=team_project, env=env)
    sh("mlops", "deploy", "staging", cwd=team_project, env=env)
    sh("mlops", "promote", "production", cwd=team_project, env=env)
    client = MlflowClient(tracking_server.url)
    sha = json.loads((team_project / "models/package.json").read_text())
    for alias in ("staging", "production"):
        version = client.get_model_version_by_alias(MODEL, alias)
        assert version.tags[f"{alias}.archive_version"] == sha["version"]
    rows = {r["environment"]: r for r in json.loads(sh("mlops", "status", "--json", cwd=team_project, env=env).stdout)}
    assert rows["production"]["alias"]["production.archive_version"] == sha["version"]
    assert rows["production"]["differences"] == []


def test_two_clones_log_twenty_runs_at_once_and_none_is_lost_nor_moves_an_alias(
    team_project: Path, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_server.url)
    before = {a: client.get_model_version_by_alias(MODEL, a).version for a in ("staging", "production")
              if _has_alias(client, a)}  # fmt: skip
    experiment = f"engineers-{time.time_ns()}"  # new: twenty runs race to create it
    env = {**team_env(tracking_server), "PYTHONPATH": str(ROOT / "tests")}
    started = time.perf_counter()
    engineers = []
    for who in ("ana", "bo"):
        clone = tmp_path / who
        sh("git", "clone", "-q", str(team_project), str(clone), cwd=tmp_path)
        engineers.append(subprocess.Popen(
            [sys.executable, "-m", "support.engineer", str(clone), str(team_project / "models/pipeline.joblib"),
             experiment, MODEL, who, "10", str(tmp_path / f"{who}.jsonl")],
            cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    said = [p.communicate(timeout=600) for p in engineers]
    seconds = time.perf_counter() - started
    results = [json.loads(line) for who in ("ana", "bo") if (tmp_path / f"{who}.jsonl").exists()
               for line in (tmp_path / f"{who}.jsonl").read_text().splitlines()]  # fmt: skip
    errors = [r for r in results if "error" in r]
    assert not errors, errors
    assert len(results) == 20, [err[-2000:] for _, err in said]
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)
    assert sorted((r.data.params["who"], int(r.data.params["i"])) for r in found) == sorted(
        (who, i) for who in ("ana", "bo") for i in range(10)
    )
    assert all(r.info.status == "FINISHED" for r in found)
    versions = {r["version"] for r in results}
    assert len(versions) == 20  # each run its own registry version
    after = {a: client.get_model_version_by_alias(MODEL, a).version for a in before}
    assert after == before  # training registers versions; only a deploy moves an alias
    print(f"20 concurrent runs from two clones in {seconds:.1f}s")


def _has_alias(client: MlflowClient, alias: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version_by_alias(MODEL, alias)
    except MlflowException:
        return False
    return True
