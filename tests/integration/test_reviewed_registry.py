"""The registry holds reviewed models only: an experiment logs a run but registers no version; a
deployment registers the run it deploys (training registers only on main in CI, or on request)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import sh
from mlops.core.config import load_params
from mlops.release import records
from mlops.release.environments import Site, find_mlflow_version, mirror_alias

pytestmark = pytest.mark.integration

MODEL = "loan-default"


def experiment_env() -> dict[str, str]:
    """The environment of a data scientist's `dvc exp run`: no CI, no request to register."""
    return {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_REF", "MLOPS_REGISTER")}


def runs_and_versions(client: MlflowClient) -> tuple[list[str], list[str]]:
    experiment = client.get_experiment_by_name(MODEL)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    versions = client.search_model_versions(f"name = '{MODEL}'")
    return [r.info.run_id for r in runs], [str(v.version) for v in versions]


@pytest.fixture(scope="module")
def experimented(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    """A copy of the trained project after one `dvc exp run` of training: (root, its run, versions before)."""
    import shutil

    root = tmp_path_factory.mktemp("registry") / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    client = MlflowClient()
    runs_before, versions_before = runs_and_versions(client)
    sh("dvc", "exp", "run", "train", "-S", "train.hist_gradient_boosting.learning_rate=0.2", cwd=root,
       env=experiment_env())  # fmt: skip
    runs_after, versions_after = runs_and_versions(client)
    new = [r for r in runs_after if r not in runs_before]
    assert len(new) == 1, f"{len(new)} new runs"
    assert versions_after == versions_before, "the experiment registered a model version"
    return root, new[0], versions_before


def test_dvc_exp_run_adds_a_run_but_no_model_version(experimented):
    _, run_id, versions_before = experimented
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["train.hist_gradient_boosting.learning_rate"] == "0.2"
    assert {"train_loss", "fit_seconds"} <= run.data.metrics.keys()
    assert client.search_model_versions(f"run_id = '{run_id}'") == []
    assert runs_and_versions(client)[1] == versions_before


def test_a_deployment_registers_the_run_it_deploys_and_moves_the_alias_there(experimented):
    root, run_id, versions_before = experimented
    client = MlflowClient()
    sha = client.get_run(run_id).data.tags["model_sha256"]
    site = Site(root, load_params(root / "params.yaml"), root / "serve", root / ".serve", progress=lambda _: None)
    entry = records.Deployment("staging", "deploy", "2.0.0", "a" * 64, sha, "c" * 40)
    find_mlflow_version(site, entry)  # what a switch does before it writes its records
    assert entry.mlflow_run == run_id
    assert entry.mlflow_version is not None
    assert entry.mlflow_version not in versions_before
    [version] = client.search_model_versions(f"run_id = '{run_id}'")
    assert str(version.version) == entry.mlflow_version
    mirror_alias(site, "staging", entry)
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == entry.mlflow_version
    find_mlflow_version(site, entry)  # a second deployment of the same model finds that version again
    assert [v.run_id for v in client.search_model_versions(f"run_id = '{run_id}'")] == [run_id]
