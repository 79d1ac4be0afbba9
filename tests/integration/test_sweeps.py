"""A sweep with `dvc exp run --queue -S` and `dvc queue start -j 2`: each experiment is an MLflow run
tagged with its DVC name (and no registry version); `mlops exp best` picks one; `dvc exp branch`
makes it a branch for a pull request. The queue's workers are gone afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import sh
from support.notebooks import execute, images, text

pytestmark = pytest.mark.integration

LEARNING_RATES = ("0.03", "0.1")


def marked(marker: str) -> list[int]:
    """Processes of this user whose environment carries ``marker`` (started by this test's dvc calls)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return pids


@pytest.fixture(scope="module")
def sweep(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A committed copy of the trained project after a two-point sweep run by two queue workers."""
    root = tmp_path_factory.mktemp("sweep") / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "trained", cwd=root)
    marker = f"MLOPS_SWEEP_TEST={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_REF", "MLOPS_REGISTER")}
    env[marker.split("=")[0]] = marker.split("=")[1]
    versions_before = len(MlflowClient().search_model_versions("name = 'loan-default'"))
    started = time.perf_counter()
    try:
        sweep_values = f"train.hist_gradient_boosting.learning_rate={','.join(LEARNING_RATES)}"
        sh("dvc", "exp", "run", "--queue", "-S", sweep_values, "evaluate", cwd=root, env=env)
        # the queue's daemon keeps the stdout and stderr it was given while its workers live: a file,
        # not this process's pipes, or reading them would wait for the workers to exit
        with (root.parent / "queue-start.log").open("w") as log:
            started_queue = subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=root, env=env, stdout=log,
                                           stderr=subprocess.STDOUT, timeout=120)  # fmt: skip
        assert started_queue.returncode == 0, (root.parent / "queue-start.log").read_text()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = sh("dvc", "queue", "status", cwd=root, env=env).stdout
            if not any(word in status for word in ("Queued", "Running")):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"the sweep did not finish in 600s:\n{status}")
        wall = time.perf_counter() - started
    finally:
        sh("dvc", "queue", "stop", "--kill", cwd=root, env=env, check=False)
        stopping = time.monotonic() + 30  # a worker finishes its shutdown after `queue stop` returns
        while (leaked := marked(marker)) and time.monotonic() < stopping:
            time.sleep(1)
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
    print(f"sweep of {len(LEARNING_RATES)} experiments, 2 workers: {wall:.1f}s")
    return {"root": root, "status": status, "leaked": leaked, "env": env, "versions_before": versions_before}


def experiment_runs(root: Path) -> dict[str, object]:
    """The MLflow runs of this project's experiments (by the model's commit of origin), by DVC name."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name("loan-default")
    head = sh("git", "rev-parse", "HEAD", cwd=root).stdout.strip()
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.dvc_exp_baseline_rev = '{head}'")
    return {r.data.tags["dvc_exp_name"]: r for r in runs}


def test_every_experiment_of_the_sweep_is_an_mlflow_run_named_as_in_dvc(sweep):
    root = sweep["root"]
    status = sweep["status"]
    assert status.count("Success") == len(LEARNING_RATES), status
    names = sh("dvc", "exp", "ls", "--name-only", cwd=root, env=sweep["env"]).stdout.split()
    runs = experiment_runs(root)
    assert sorted(runs) == sorted(names)
    assert sorted(r.data.params["train.hist_gradient_boosting.learning_rate"] for r in runs.values()) == sorted(
        LEARNING_RATES
    )
    for run in runs.values():
        assert {"train_loss", "roc_auc", "log_loss"} <= run.data.metrics.keys()
    assert len(MlflowClient().search_model_versions("name = 'loan-default'")) == sweep["versions_before"]


def test_the_queue_leaves_no_worker_running(sweep):
    assert sweep["leaked"] == []


def test_the_best_experiment_becomes_a_branch_for_a_pull_request(sweep):
    root = sweep["root"]
    runs = experiment_runs(root)
    best = max(runs, key=lambda name: runs[name].data.metrics["roc_auc"])
    out = sh("mlops", "exp", "best", "--metric", "roc_auc", cwd=root, env=sweep["env"]).stdout
    assert out.split()[0] == best
    sh("dvc", "exp", "branch", best, f"exp/{best}", cwd=root, env=sweep["env"])
    params = yaml.safe_load(sh("git", "show", f"exp/{best}:params.yaml", cwd=root).stdout)
    chosen = runs[best].data.params["train.hist_gradient_boosting.learning_rate"]
    assert str(params["train"]["hist_gradient_boosting"]["learning_rate"]) == chosen
    metrics = yaml.safe_load(sh("git", "show", f"exp/{best}:reports/metrics.json", cwd=root).stdout)
    assert metrics["roc_auc"] == pytest.approx(runs[best].data.metrics["roc_auc"])


def test_the_compare_notebook_shows_each_experiment_beside_its_mlflow_run(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", "")  # execute() points it at this test's kernel spec
    nb, seconds = execute("02-compare-experiments.ipynb", sweep["root"], tmp_path / "jupyter")
    print(f"02-compare-experiments: {seconds:.1f}s")
    printed = text(nb)
    assert f"{len(LEARNING_RATES)} experiments, {len(LEARNING_RATES)} with their MLflow run" in printed
    for name in experiment_runs(sweep["root"]):
        assert name in printed
    assert images(nb) >= 4  # loss, ROC, precision-recall, confusion/importance
    assert seconds < 60
