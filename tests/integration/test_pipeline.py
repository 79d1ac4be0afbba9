"""A real `dvc repro` in small temp projects: outputs, metrics, plots, MLflow, caching, failure."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import make_project, repro, sh, stages_run
from mlops.core.config import load_params
from mlops.pipeline.evaluation import gate_failures

pytestmark = pytest.mark.integration

STAGES = ["validate", "split", "train", "evaluate"]


def declared_outputs(project: Path) -> list[Path]:
    """Every output dvc.yaml declares, as DVC resolves it (templated paths included)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return [Path(out.fs_path) for stage in repo.index.stages for out in stage.outs]


def test_full_repro_produces_every_declared_output(trained_project):
    outputs = declared_outputs(trained_project)
    assert len(outputs) >= 7
    missing = [str(p) for p in outputs if not p.exists()]
    assert not missing
    for name in ("confusion", "roc", "prc", "importance"):
        assert (trained_project / "reports/evaluate" / f"{name}.csv").stat().st_size > 0
        assert (trained_project / "reports/evaluate" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (trained_project / "reports/train/loss.png").exists()


def test_metrics_have_every_key_and_dvc_reads_them(trained_project):
    metrics = json.loads((trained_project / "reports/metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "baseline", "rows"} <= metrics.keys()
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=trained_project).stdout)
    flat = json.dumps(shown)
    assert '"roc_auc"' in flat
    assert '"train_loss"' in flat


def test_model_beats_the_baseline_and_passes_the_gates_in_params(trained_project):
    metrics = json.loads((trained_project / "reports/metrics.json").read_text())
    gates = load_params(trained_project / "params.yaml").gates
    assert metrics["accuracy"] > metrics["baseline"]["accuracy"]
    assert metrics["log_loss"] < metrics["baseline"]["log_loss"]
    assert metrics["roc_auc"] > metrics["baseline"]["roc_auc"] + 0.2
    assert gate_failures(metrics, gates.minimum, gates.maximum) == []  # the gate the PR report and deploys apply
    stricter = gate_failures(metrics, {"roc_auc": metrics["roc_auc"] + 0.001}, {"log_loss": metrics["log_loss"] / 2})
    assert [f.split()[0] for f in stricter] == ["roc_auc", "log_loss"]  # the same gate fails when it should


def test_dvc_plots_render_every_plot(trained_project, tmp_path):
    out = tmp_path / "plots"
    sh("dvc", "plots", "show", "-o", str(out), cwd=trained_project)
    html = (out / "index.html").read_text()
    for title in ("Training loss", "Confusion matrix", "ROC curve", "Precision-recall curve", "Feature importance"):
        assert title in html, title
    assert len(list(out.rglob("*.png"))) >= 5


def test_train_logs_a_tracked_registered_model_with_lineage(trained_project):
    client = MlflowClient()
    experiment = client.get_experiment_by_name("loan-default")
    sha = sh("sha256sum", "models/pipeline.joblib", cwd=trained_project).stdout.split()[0]
    commit = sh("git", "rev-parse", "HEAD", cwd=trained_project).stdout.strip()
    # training is deterministic: another test's project may log the same model file from its own
    # commit into this session's store, so the run is the one with this file *and* this commit
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.model_sha256 = '{sha}' and tags.git_commit = '{commit}'"
    )
    assert len(runs) == 1, f"{len(runs)} runs logged {sha[:12]} from {commit[:12]}"
    [run] = runs
    tags = run.data.tags
    assert tags["task"] == "binary"
    assert (tags["git_dirty"], tags["git_diff_sha256"]) == ("false", "")  # built from a committed tree
    raw_md5 = yaml.safe_load((trained_project / "data/raw.dvc").read_text())["outs"][0]["md5"]
    assert tags["data_raw_md5"] == raw_md5
    assert len(tags["params_hash"]) == 16
    assert run.data.params["train.estimator"] == "hist_gradient_boosting"
    assert {"train_loss", "fit_seconds", "roc_auc", "baseline_accuracy"} <= run.data.metrics.keys()
    versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert versions
    assert versions[0].name == "loan-default"
    model_uri = f"models:/loan-default/{versions[0].version}"
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    assert info.signature is not None
    assert info.saved_input_example_info is not None
    loaded = mlflow.pyfunc.load_model(model_uri)
    holdout = pd.read_parquet(trained_project / "data/split/holdout.parquet").head(50)
    local = joblib.load(trained_project / "models/pipeline.joblib")
    np.testing.assert_array_equal(
        loaded.predict(holdout, params={"output": "probabilities"}).to_numpy(), local.predict_proba(holdout)
    )


def test_unchanged_repro_runs_nothing(project_copy):
    proc = repro(project_copy)
    assert stages_run(proc) == []
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=project_copy).stdout


def test_changing_a_train_param_reruns_only_train_and_what_follows_and_the_build_is_marked_dirty(project_copy):
    params_path = project_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["hist_gradient_boosting"]["learning_rate"] = 0.1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    before = (project_copy / "reports/metrics.json").read_text()
    proc = repro(project_copy)
    assert stages_run(proc) == ["train", "evaluate", "package"]
    assert (project_copy / "reports/metrics.json").read_text() != before
    # the edit is not committed: the training run says so, with the hash of the diff it was trained from
    sha = sh("sha256sum", "models/pipeline.joblib", cwd=project_copy).stdout.split()[0]
    [run] = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("loan-default").experiment_id],
        filter_string=f"tags.model_sha256 = '{sha}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    diff = sh("git", "diff", "HEAD", "--binary", "--", "params.yaml", cwd=project_copy).stdout.encode()
    assert (run.data.tags["git_dirty"], run.data.tags["git_diff_sha256"]) == ("true", hashlib.sha256(diff).hexdigest())


def test_changing_a_split_param_reruns_split_and_after(project_copy):
    params_path = project_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["split"]["holdout_periods"] = 1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(repro(project_copy)) == ["split", "train", "evaluate", "package"]


def test_invalid_data_stops_the_pipeline_and_keeps_earlier_outputs(project_copy):
    model_before = (project_copy / "models/pipeline.joblib").read_bytes()
    metrics_before = (project_copy / "reports/metrics.json").read_text()
    sh("mlops", "data", "--fault", "unknown_category", cwd=project_copy)
    proc = repro(project_copy, check=False)
    assert proc.returncode != 0
    assert stages_run(proc) == ["validate"]
    assert "FAILED 2025-06.csv: column 'purpose'" in proc.stderr + proc.stdout
    assert (project_copy / "models/pipeline.joblib").read_bytes() == model_before
    assert (project_copy / "reports/metrics.json").read_text() == metrics_before
    report = json.loads((project_copy / "reports/validation.json").read_text())
    assert report["success"] is False


def test_two_runs_give_identical_metrics_and_predictions(trained_project, tmp_path):
    again = make_project(tmp_path / "again")
    repro(again)
    for name in ("reports/metrics.json", "reports/train_metrics.json", "reports/evaluate/roc.csv"):
        assert (again / name).read_bytes() == (trained_project / name).read_bytes(), name
    holdout = pd.read_parquet(trained_project / "data/split/holdout.parquet")
    a = joblib.load(trained_project / "models/pipeline.joblib").predict_proba(holdout)
    b = joblib.load(again / "models/pipeline.joblib").predict_proba(holdout)
    assert (a == b).all()
    lock_a = yaml.safe_load((trained_project / "dvc.lock").read_text())["stages"]["train"]["outs"]
    lock_b = yaml.safe_load((again / "dvc.lock").read_text())["stages"]["train"]["outs"]
    assert lock_a == lock_b  # byte-identical model file


def test_dvc_push_and_pull_through_the_default_local_remote(project_copy):
    sh("dvc", "remote", "add", "-d", "local", "storage", cwd=project_copy)
    sh("dvc", "push", cwd=project_copy)
    model = project_copy / "models/pipeline.joblib"
    content = model.read_bytes()
    model.unlink()
    sh("rm", "-rf", ".dvc/cache", cwd=project_copy)
    sh("dvc", "pull", cwd=project_copy)
    assert model.read_bytes() == content


def test_bad_params_stop_a_stage_with_the_key_named(project_copy):
    params_path = project_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["random_forest"]["n_estimator"] = 10
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = sh("mlops", "train", cwd=project_copy, check=False)
    assert proc.returncode == 2
    assert "train.random_forest.n_estimator: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_renaming_the_model_is_one_edit_in_params(project_copy):
    params_path = project_copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["serve"]["model_name"] = "credit-risk"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    proc = repro(project_copy)
    assert stages_run(proc) == ["package"]
    package = json.loads((project_copy / "models/package.json").read_text())
    assert (package["name"], package["archive"]) == ("credit-risk", "credit-risk.mar")
    assert (project_copy / "models/credit-risk.mar").stat().st_size > 10_000
    assert sh("dvc", "status", cwd=project_copy).stdout.strip().endswith("up to date.")
