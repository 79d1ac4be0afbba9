"""Shared fixtures: small temp projects with real git, DVC and MLflow (sqlite in a temp dir)."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mlops.stages  # noqa: F401  # its import sets the collector's thresholds, as in the project's processes
from mlops.core.config import Params, load_params
from mlops.core.contract import Contract, load_contract
from support import FIXTURES, ROOT
from support.project import deep_merge, make_project, repro, sh, stages_run

__all__ = ["FIXTURES", "ROOT", "deep_merge", "make_project", "repro", "sh", "stages_run"]

# the team stack (object store, PostgreSQL, MLflow server): session fixtures, started only when asked for
pytest_plugins = ["support.team"]

BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """MLflow in a temp sqlite file, no analytics, deterministic git identity.

    Git reads no user or system config, and never makes up an identity from the host name: a
    hosted runner (and CI) has none, so a step that commits or tags without one fails here too.
    """
    store = tmp_path_factory.mktemp("mlflow")
    gitconfig = tmp_path_factory.mktemp("git") / "config"
    gitconfig.write_text("[user]\n\tuseConfigOnly = true\n")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True)
def _outside_the_repository(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts in an empty folder: a default path (params.yaml, data/contract.yaml, data/raw)
    then never reaches the repository's own files, which are the user's, not the tests'."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session", autouse=True)
def _one_native_thread() -> Iterator[None]:
    """Native code (OpenMP, BLAS) on one thread, as the pipeline runs it: on 2 shared cores, OpenMP
    threads spinning against the servers and each other cost seconds; results are the same."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def contract() -> Contract:
    """The example's contract, from the fixtures (never the repository's own)."""
    return load_contract(FIXTURES / "contract.yaml")


@pytest.fixture(scope="module")
def params() -> Params:
    """The example's params, from the fixtures."""
    return load_params(FIXTURES / "params.yaml")


@pytest.fixture(scope="module")
def parts() -> tuple[Any, ...]:
    """The release tests' world parts (tests/support/release_world.py): frame, contract, params and
    the fitted models, built once per module."""
    from support import release_world as rw

    frame, contract, params = rw.frame(), rw.contract(), rw.params()
    return frame, contract, params, rw.models(frame, contract, params)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """An empty temp dir with a short path, for a TorchServe runtime: its workers' sockets live there,
    and AF_UNIX paths end at 107 bytes, which pytest's temp paths (deeper under xdist) can pass."""
    path = Path(tempfile.mkdtemp(prefix="mlops-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small project through a full `dvc repro`, shared by the pipeline tests (read-only).

    Trained as CI on main trains (``MLOPS_REGISTER=1``): its run has a registered model version.
    """
    project = make_project(tmp_path_factory.mktemp("trained") / "repo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_REGISTER", "1")
        repro(project)
    return project


@pytest.fixture
def project_copy(trained_project: Path, tmp_path: Path) -> Path:
    """A private copy of the trained project (git, DVC cache and outputs) to change."""
    dest = tmp_path / "repo"
    shutil.copytree(trained_project, dest, symlinks=True)
    return dest


# ---- running the slow tiers on two workers (pytest-xdist, `--dist loadgroup`) ----------------------

# A group of tests runs on one worker, so the fixtures its tests share are built once. Each module is
# a group (its module fixtures); these modules share a session fixture, so they are one group: the
# workflow tier's story (one GitHub world, its steps as session fixtures), and the MLflow tracking
# server on PostgreSQL.
SHARED_GROUPS = {
    "tests/workflows/test_deploy_workflows.py": "workflows",
    "tests/workflows/test_devcontainer_workflow.py": "workflows",
    "tests/workflows/test_monitor_retrain_workflows.py": "workflows",
    "tests/workflows/test_pr_workflows.py": "workflows",
    "tests/integration/test_team_tracking.py": "tracking-server",
    "tests/integration/test_mlflow_ui.py": "tracking-server",
}
# The longest groups start first, so the last one to finish is a short one (measured).
LONGEST_FIRST = [
    "workflows",
    "tests/e2e/test_loop.py",
    "tests/e2e/test_cycle.py",
    "tests/integration/test_serving.py",
    "tests/e2e/test_fresh_clone.py",
    "tests/integration/test_release_serving.py",
    "tests/integration/test_team_serving.py",
]


def group_of(nodeid: str) -> str:
    """The group of a test: its module's, or the one its module shares a session fixture with."""
    module = nodeid.split("::", 1)[0]
    return SHARED_GROUPS.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest groups first; within a group, and among the rest, the collection order stays."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` by ``test_group``: each group goes whole to one worker, in collection order.

    xdist's own loadgroup reads ``xdist_group`` marks through a node id suffix that pytest 9 no
    longer lets it set (every test then becomes a group of its own); its loadscope scheduler, given
    our grouping, does what loadgroup means.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collection imported (scikit-learn, pandas, MLflow, DVC): the collector skips it from here on.

    The same policy as the project's own processes (mlops.stages); the tests' objects are collected as usual.
    """
    gc.freeze()
