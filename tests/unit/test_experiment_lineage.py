"""A DVC experiment's run: tagged with the experiment's name, kept in the repository's MLflow store."""

from __future__ import annotations

import pytest

from mlops.core import paths
from mlops.core.lineage import experiment_tags

pytestmark = pytest.mark.unit


def test_a_queued_experiment_logs_to_the_repositorys_store_not_its_temporary_copy(tmp_path, monkeypatch):
    repo, copy = tmp_path / "repo", tmp_path / "repo/.dvc/tmp/exps/tmpabc"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(repo))  # what DVC gives every stage it runs
    assert paths.mlflow_tracking_uri(copy) == f"sqlite:///{repo.resolve()}/mlflow.db"
    monkeypatch.delenv("DVC_ROOT")
    assert paths.mlflow_tracking_uri(copy) == f"sqlite:///{copy.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert paths.mlflow_tracking_uri(copy) == "http://127.0.0.1:5000"


def test_the_experiment_name_and_baseline_become_tags_only_inside_an_experiment():
    env = {"DVC_EXP_NAME": "fluky-bold", "DVC_EXP_BASELINE_REV": "a" * 40}
    assert experiment_tags(env) == {"dvc_exp_name": "fluky-bold", "dvc_exp_baseline_rev": "a" * 40}
    assert experiment_tags({}) == {}
