"""A repository with fake staging and production servers and a few fitted models, for release unit tests.

Real git (records are tags), real ledgers, real checks (the fake servers predict with the real
Predictor), real MLflow lookups (nothing logged under this registered model, so no alias moves);
only TorchServe is the in-memory fake of ``fake_torchserve``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops.core.config import Params, load_params
from mlops.core.contract import Contract, load_contract
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import build_pipeline
from mlops.release import deploy, records
from mlops.serving.inference import Predictor
from support import FIXTURES
from support.fake_torchserve import FakeContext, FakeServer, FakeSite
from support.project import sh

REGISTERED_MODEL = "release-unit-tests"  # no MLflow run logs it: aliases stay put, lookups stay cheap


def frame() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})


def contract() -> Contract:
    return load_contract(FIXTURES / "contract.yaml")


def params() -> Params:
    p = load_params(FIXTURES / "params.yaml")
    train = p.train.model_copy(update={"estimator": "linear"})
    gates = p.gates.model_copy(update={"minimum": {"roc_auc": 0.6}, "maximum": {}})
    # timing is the integration tests' business: the gate here only needs the burst to succeed
    latency = p.deploy.latency.model_copy(update={"max_p99_ms": 60_000.0, "min_rps": 0.0})
    deploy_params = p.deploy.model_copy(update={"parity_rows": 100, "smoke_rows": 5, "latency": latency})
    mlflow = p.mlflow.model_copy(update={"registered_model": REGISTERED_MODEL})
    return p.model_copy(update={"train": train, "gates": gates, "deploy": deploy_params, "mlflow": mlflow})


def models(data: pd.DataFrame, c: Contract, p: Params) -> dict[str, Pipeline]:
    """Three good models (different C) and a broken one, fitted on the first 300 rows."""
    X, y = features_and_target(data.head(300), c)
    good = build_pipeline(c, p.train).fit(X, y)
    other = build_pipeline(c, p.train).set_params(model__C=0.05).fit(X, y)
    third = build_pipeline(c, p.train).set_params(model__C=0.2).fit(X, y)
    raising = Pipeline([*good.steps[:-1], ("boom", FunctionTransformer(np.linalg.inv)), good.steps[-1]])
    return {"good": good, "other": other, "third": third, "raising": raising}


@dataclass
class World:
    """A git repository, fake staging and production that can fetch every model's archive, and releases."""

    root: Path
    tmp: Path
    params: Params
    contract: Contract
    models: dict[str, Pipeline]
    servers: dict[str, FakeServer]
    holdout: Path
    said: list[str] = field(default_factory=list)
    quick: bool = False  # only the smoke check (crash tests: many moves, the checks are not the point)

    @property
    def site(self) -> FakeSite:
        return FakeSite(self.root, self.params, self.tmp / "serve", self.tmp / "runtime", self.said.append,
                        servers=self.servers)  # fmt: skip

    def release(self, name: str) -> FakeContext:
        """The release of model ``name`` (version ``name``, sha256 ``sha-<name>``)."""
        model_file = self.tmp / f"{name}.joblib"
        if not model_file.exists():
            joblib.dump(self.models["good" if name == "skewed" else name], model_file)
        package = {"name": "loan-default", "version": name, "sha256": f"sha-{name}", "model_sha256": f"model-{name}",
                   "archive": f"{name}.mar", "metrics": {"roc_auc": 0.8}}  # fmt: skip
        ctx = FakeContext(self.root, self.params, self.tmp / "serve", self.tmp / "runtime", self.said.append,
                          self.contract, self.tmp / f"{name}.mar", package, model_file, self.holdout,
                          servers=self.servers)  # fmt: skip
        if self.quick:
            ctx.checks = (deploy.check_smoke,)
        return ctx

    def commit(self, message: str = "change") -> str:
        sh("git", "commit", "-q", "--allow-empty", "-m", message, cwd=self.root)
        return self.head()

    def commit_files(self, message: str) -> str:
        """Commit every change in the checkout."""
        sh("git", "add", "-A", cwd=self.root)
        return self.commit(message)

    def head(self) -> str:
        return sh("git", "rev-parse", "HEAD", cwd=self.root).stdout.strip()

    def ledger(self, env: str) -> records.Ledger:
        return self.site.ledger(env)

    def tag(self, env: str) -> records.Tag | None:
        return self.site.registry().current(env)

    def tag_names(self) -> list[str]:
        return sh("git", "tag", "-l", cwd=self.root).stdout.split()

    def clone(self, tmp: Path) -> World:
        """A copy in ``tmp``: repository, ledgers, model files and server state (predictors shared, read-only)."""
        shutil.copytree(self.tmp, tmp, dirs_exist_ok=True, symlinks=True)
        servers = {
            env: FakeServer(s.name, s.archives, dict(s.registered), s.default, set(s.store), s.up, list(s.calls))
            for env, s in self.servers.items()
        }
        return replace(self, root=tmp / "repo", tmp=tmp, servers=servers, holdout=tmp / self.holdout.name, said=[])


def make_world(tmp: Path, data: pd.DataFrame, c: Contract, p: Params, fitted: dict[str, Pipeline]) -> World:
    root = tmp / "repo"
    root.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "commit", "-q", "--allow-empty", "-m", "first", cwd=root)
    predictors = {name: Predictor(model, c, name) for name, model in fitted.items()}
    # an archive whose model is not the offline one it claims to be (what the parity check is for)
    predictors["skewed"] = Predictor(fitted["other"], c, "skewed")
    servers = {env: FakeServer(env, dict(predictors)) for env in ("staging", "production")}
    holdout = tmp / "holdout.parquet"
    data.iloc[300:].to_parquet(holdout)
    return World(root, tmp, p, c, fitted, servers, holdout)


def tag_record(root: Path, tag: str) -> dict[str, Any]:
    message = sh("git", "tag", "-l", "--format=%(contents)", tag, cwd=root).stdout
    return json.loads(message[message.index("{") :])
