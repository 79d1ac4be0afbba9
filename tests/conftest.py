"""Shared fixtures: small temp projects with real git, DVC and MLflow (sqlite in a temp dir)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).parent / "fixtures"

# Small but realistic: 6 monthly batches of 600 loans, the latest 2 held out.
SMALL_DATA = {"data": {"periods": 6, "rows_per_period": 600}}


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """MLflow in a temp sqlite file, no analytics, deterministic git identity."""
    store = tmp_path_factory.mktemp("mlflow")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "False",
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


def sh(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on unexpected failure show its output in the assertion."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_project(
    dest: Path,
    params: dict[str, Any] | None = None,
    contract: Path | None = None,
    data_args: tuple[str, ...] = (),
) -> Path:
    """A fresh repository like a clone of this one, with small example data committed."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "serve", dest / "serve", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "data").mkdir(exist_ok=True)
    shutil.copy(contract or ROOT / "data" / "contract.yaml", dest / "data" / "contract.yaml")
    merged = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), deep_merge(SMALL_DATA, params or {}))
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("dvc", "init", "-q", cwd=dest)
    sh("dvc", "config", "core.analytics", "false", cwd=dest)
    sh("mlops", "data", *data_args, cwd=dest)
    sh("dvc", "add", "-q", "data/raw", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "-m", "project", cwd=dest)
    return dest


def repro(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("dvc", "repro", *args, cwd=project, check=check)


def stages_run(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The stages a `dvc repro` actually executed (not restored, not skipped)."""
    return [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small project through a full `dvc repro`, shared by the pipeline tests (read-only)."""
    project = make_project(tmp_path_factory.mktemp("trained") / "repo")
    repro(project)
    return project


@pytest.fixture
def project_copy(trained_project: Path, tmp_path: Path) -> Path:
    """A private copy of the trained project (git, DVC cache and outputs) to change."""
    dest = tmp_path / "repo"
    shutil.copytree(trained_project, dest, symlinks=True)
    return dest
