"""A model built from uncommitted changes says so: `dirty` and the diff's hash in its records, shown in
status and the PR report, and production refuses it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import joblib
import pandas as pd
import pytest

from mlops.core import lineage
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.errors import UserError
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import build_pipeline
from mlops.release import deploy, report
from mlops.serving.inference import Predictor
from support import FIXTURES
from support.fake_torchserve import FakeContext, FakeServer, FakeSite
from support.project import sh

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project: params, code, and the files a `dvc repro` rewrites."""
    root = tmp_path / "repo"
    for name, text in {
        "params.yaml": "train: {seed: 1}\n",
        "src/model.py": "X = 1\n",
        "dvc.lock": "stages: {}\n",
        "reports/metrics.json": "{}\n",
        "models/package.json": "{}\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "first", cwd=root)
    return root


def test_a_committed_tree_is_clean_even_after_the_pipeline_rewrote_its_outputs(repo):
    for name in ("dvc.lock", "reports/metrics.json", "models/package.json"):
        (repo / name).write_text("rewritten by dvc repro\n")
    source = lineage.source(repo)
    assert source.commit == sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    assert (source.dirty, source.diff_sha256) == (False, None)


def test_an_uncommitted_change_makes_the_build_dirty_with_the_hash_of_its_diff(repo):
    (repo / "params.yaml").write_text("train: {seed: 2}\n")
    source = lineage.source(repo)
    assert source.dirty
    diff = sh("git", "diff", "HEAD", "--binary", "--", "params.yaml", cwd=repo).stdout.encode()
    assert source.diff_sha256 == hashlib.sha256(diff).hexdigest()
    (repo / "src/model.py").write_text("X = 2\n")
    assert lineage.source(repo).diff_sha256 != source.diff_sha256  # another diff, another hash


@pytest.fixture
def world(tmp_path, repo):
    """Fake staging and production, and a release whose record says how it was built."""
    frame = pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})
    contract = load_contract(FIXTURES / "contract.yaml")
    p = load_params(FIXTURES / "params.yaml")
    latency = p.deploy.latency.model_copy(update={"duration_s": 0.2, "max_p99_ms": 60_000.0, "min_rps": 0.0})
    params = p.model_copy(
        update={
            "train": p.train.model_copy(update={"estimator": "linear"}),
            "gates": p.gates.model_copy(update={"minimum": {"roc_auc": 0.6}, "maximum": {}}),
            "deploy": p.deploy.model_copy(update={"parity_rows": 50, "smoke_rows": 3, "latency": latency}),
        }
    )
    model = build_pipeline(contract, params.train).fit(*features_and_target(frame.head(300), contract))
    joblib.dump(model, tmp_path / "model.joblib")
    frame.iloc[300:].to_parquet(tmp_path / "holdout.parquet")
    servers = {env: FakeServer(env, {"v1": Predictor(model, contract, "v1")}) for env in ("staging", "production")}
    commit = sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    package = {"version": "v1", "sha256": "sha-v1", "model_sha256": "model-v1", "git_commit": commit, "metrics": {},
               "dirty": True, "diff_sha256": "d1ff" * 16}  # fmt: skip
    dirs = (tmp_path / "serve", tmp_path / "runtime")
    ctx = FakeContext(repo, params, *dirs, lambda _: None, contract, tmp_path / "v1.mar", package,
                      tmp_path / "model.joblib", tmp_path / "holdout.parquet", servers=servers)  # fmt: skip
    return {"ctx": ctx, "servers": servers, "site": FakeSite(repo, params, *dirs, lambda _: None, servers=servers)}


def test_staging_takes_a_dirty_build_and_records_it_but_production_refuses_it(world):
    entry = deploy.deploy_staging(world["ctx"])
    assert entry is not None
    assert entry.dirty
    with pytest.raises(UserError, match=r"uncommitted changes.*d1ffd1ffd1ff"):
        deploy.promote_production(world["ctx"])
    assert world["servers"]["production"].default is None
    with pytest.raises(UserError, match="uncommitted changes"):
        deploy.promote_production(world["ctx"], force=True)  # --force is about age, never about provenance


def test_status_shows_that_staging_serves_a_dirty_build(world):
    deploy.deploy_staging(world["ctx"])
    rows = {row["environment"]: row for row in deploy.status(world["site"])}
    assert rows["staging"]["dirty"] is True


def test_the_pr_report_warns_about_a_dirty_build(repo):
    facts = report.Facts(
        base="main", repro=None, validation={}, candidate={}, params=[], metrics=[], production=None,
        vs_production=[], data=report.DataDiff(), images={},
        build={"git_commit": "a" * 40, "dirty": True, "diff_sha256": "d1ff" * 16},
    )  # fmt: skip
    text = report.render(facts, [])
    assert "uncommitted changes" in text
    assert "d1ffd1ffd1ff" in text
    assert "production refuses" in text
