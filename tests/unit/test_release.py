"""Deploy, promote, roll back, records and status against fake TorchServe environments.

The fake (tests/support/fake_torchserve.py) keeps TorchServe's version rules and predicts with the
real Predictor, so the checks run for real; the integration tests repeat the moves on real servers.
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.errors import MlopsError, UserError
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import build_pipeline
from mlops.release import deploy, records
from mlops.serving.inference import Predictor
from support import FIXTURES
from support.fake_torchserve import FakeContext, FakeServer, FakeSite
from support.project import sh

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})


@pytest.fixture(scope="module")
def contract():
    return load_contract(FIXTURES / "contract.yaml")


@pytest.fixture(scope="module")
def params():
    p = load_params(FIXTURES / "params.yaml")
    train = p.train.model_copy(update={"estimator": "linear"})
    gates = p.gates.model_copy(update={"minimum": {"roc_auc": 0.6}, "maximum": {}})
    # timing is the integration tests' business: the gate here only needs the burst to succeed
    latency = p.deploy.latency.model_copy(update={"max_p99_ms": 60_000.0, "min_rps": 0.0})
    deploy_params = p.deploy.model_copy(update={"parity_rows": 100, "smoke_rows": 5, "latency": latency})
    return p.model_copy(update={"train": train, "gates": gates, "deploy": deploy_params})


@pytest.fixture(scope="module")
def models(frame, contract, params) -> dict[str, Pipeline]:
    """Two good models (different C) and a broken one, fitted on the first 300 rows."""
    X, y = features_and_target(frame.head(300), contract)
    good = build_pipeline(contract, params.train).fit(X, y)
    other = build_pipeline(contract, params.train).set_params(model__C=0.05).fit(X, y)
    raising = Pipeline([*good.steps[:-1], ("boom", FunctionTransformer(np.linalg.inv)), good.steps[-1]])
    return {"good": good, "other": other, "raising": raising}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "commit", "-q", "--allow-empty", "-m", "first", cwd=root)
    return root


@pytest.fixture
def world(tmp_path, repo, frame, contract, params, models):
    """Fake staging and production that can fetch every model's archive; a release per model."""
    predictors = {name: Predictor(model, contract, name) for name, model in models.items()}
    # an archive whose model is not the offline one it claims to be (what the parity check is for)
    predictors["skewed"] = Predictor(models["other"], contract, "skewed")
    servers = {env: FakeServer(env, dict(predictors)) for env in ("staging", "production")}
    holdout = tmp_path / "holdout.parquet"
    frame.iloc[300:].to_parquet(holdout)
    said: list[str] = []

    def release(name: str) -> FakeContext:
        model_file = tmp_path / f"{name}.joblib"
        joblib.dump(models["good" if name == "skewed" else name], model_file)
        package = {"version": name, "sha256": f"sha-{name}", "model_sha256": f"model-{name}",
                   "git_commit": sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip(), "metrics": {}}  # fmt: skip
        return FakeContext(repo, params, tmp_path / "serve", tmp_path / "runtime", said.append, contract,
                           tmp_path / f"{name}.mar", package, model_file, holdout, servers=servers)  # fmt: skip

    site = FakeSite(repo, params, tmp_path / "serve", tmp_path / "runtime", said.append, servers=servers)
    return {"release": release, "servers": servers, "site": site, "said": said}


def test_a_deployment_checks_the_version_then_makes_it_the_default_and_records_it(world):
    entry = deploy.deploy_staging(world["release"]("good"))
    staging = world["servers"]["staging"]
    assert staging.default == "good"
    assert entry is not None
    assert entry.action == "deploy"
    assert {name for name, c in entry.checks.items() if isinstance(c, dict) and c["passed"]} == {
        "smoke", "contract", "parity", "quality", "latency"
    }  # fmt: skip
    assert entry.checks["parity"]["mismatched"] == 0
    ledger = world["site"].ledger("staging")
    assert [e.version for e in ledger.entries()] == ["good"]
    assert ledger.passed("sha-good")


def test_a_second_deployment_switches_only_after_its_checks_and_keeps_the_previous_version(world):
    deploy.deploy_staging(world["release"]("good"))
    deploy.deploy_staging(world["release"]("other"))
    staging = world["servers"]["staging"]
    assert staging.default == "other"
    assert set(staging.registered) == {"good", "other"}
    assert staging.calls.index("register loan-default-other.mar") < staging.calls.index("set-default other")


@pytest.mark.parametrize(("model", "failed"), [("skewed", "parity"), ("raising", "smoke")])
def test_a_broken_version_is_rejected_unregistered_and_the_old_default_keeps_serving(world, model, failed):
    deploy.deploy_staging(world["release"]("good"))
    with pytest.raises(deploy.DeployError, match=rf"rejected \(.*{failed}.*\); good keeps serving") as info:
        deploy.deploy_staging(world["release"](model))
    assert info.value.exit_code == 1
    staging = world["servers"]["staging"]
    assert staging.default == "good"
    assert model not in staging.registered
    assert world["site"].ledger("staging").entries()[-1].action == "rejected"
    assert not world["site"].ledger("staging").passed(f"sha-{model}")


def test_redeploying_what_an_environment_serves_changes_nothing(world):
    deploy.deploy_staging(world["release"]("good"))
    calls = list(world["servers"]["staging"].calls)
    assert deploy.deploy_staging(world["release"]("good")) is None
    assert world["servers"]["staging"].calls == calls


def test_promotion_needs_the_same_archive_to_have_passed_staging(world):
    with pytest.raises(UserError, match="has not passed staging"):
        deploy.promote_production(world["release"]("good"))
    assert world["servers"]["production"].default is None


def test_promotion_serves_in_production_and_adds_an_annotated_tag_with_the_record(world, repo):
    deploy.deploy_staging(world["release"]("good"))
    deploy.promote_production(world["release"]("good"))
    assert world["servers"]["production"].default == "good"
    [(n, tag, record)] = records.production_tags(repo)
    assert (n, tag) == (1, "model/production/1")
    assert record["version"] == "good"
    assert record["action"] == "promote"
    assert records.production_record(repo) == (tag, record)


def test_an_older_build_is_refused_unless_forced(world, repo):
    old = world["release"]("good")  # built from the first commit
    deploy.deploy_staging(old)
    sh("git", "commit", "-q", "--allow-empty", "-m", "second", cwd=repo)
    newer = world["release"]("other")
    deploy.deploy_staging(newer)
    deploy.promote_production(newer)
    sh("git", "checkout", "-q", "--detach", "HEAD~1", cwd=repo)
    with pytest.raises(UserError, match="does not descend"):
        deploy.promote_production(old)
    assert world["servers"]["production"].default == "other"
    deploy.promote_production(old, force=True)
    assert world["servers"]["production"].default == "good"


def test_rollback_restores_the_previous_version_and_tags_it(world, repo):
    for name in ("good", "other"):
        deploy.deploy_staging(world["release"](name))
        deploy.promote_production(world["release"](name))
    entry = deploy.rollback(world["site"], "production")
    assert world["servers"]["production"].default == "good"
    assert entry.action == "rollback"
    assert entry.checks["rolled_back_from"] == "other"
    assert [t[2]["action"] for t in records.production_tags(repo)] == ["promote", "promote", "rollback"]


def test_rollback_with_nothing_to_roll_back_to_is_a_clear_error(world):
    deploy.deploy_staging(world["release"]("good"))
    with pytest.raises(UserError, match="nothing to roll back to"):
        deploy.rollback(world["site"], "staging")


def test_status_shows_version_commit_and_metrics_per_environment(world):
    deploy.deploy_staging(world["release"]("good"))
    rows = {r["environment"]: r for r in deploy.status(world["site"])}
    assert rows["staging"]["version"] == "good"
    assert rows["staging"]["registered"] == ["good"]
    assert rows["production"]["version"] == "none"


def test_a_ledger_reads_what_it_wrote_and_knows_the_previous_version(tmp_path):
    ledger = records.Ledger(tmp_path / "deployments.jsonl")
    for version, action in (("a", "deploy"), ("b", "rejected"), ("c", "deploy")):
        ledger.append(records.Deployment("staging", action, version, f"sha-{version}", "m", "c"))
    assert [e.version for e in ledger.entries()] == ["a", "b", "c"]
    assert ledger.passed("sha-a")
    assert not ledger.passed("sha-b")
    assert ledger.previous("c", {"a", "b", "c"}) == "a"
    assert ledger.latest("b") is None


def test_tags_that_are_not_production_records_are_ignored(repo):
    sh("git", "tag", "-a", "model/production/x", "-m", "not a number", cwd=repo)
    sh("git", "tag", "-a", "model/production/7", "-m", "no json here", cwd=repo)
    assert records.production_tags(repo) == []
    name = records.add_production_tag(repo, "promote", {"version": "v"})
    assert name == "model/production/1"
    assert json.loads(sh("git", "tag", "-l", "--format=%(contents:body)", name, cwd=repo).stdout)["version"] == "v"


def test_service_failures_are_not_user_errors():
    assert issubclass(deploy.DeployError, MlopsError)
    assert not issubclass(deploy.DeployError, UserError)
