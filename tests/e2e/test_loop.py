"""The whole loop, offline: a git origin, PRs with reports and gates, merge, deploy, rollback.

Real git (a bare origin), DVC (a local directory as the remote), MLflow (sqlite) and
TorchServe (a staging/production pair of this module's own). What GitHub does (checkout,
the comment) is played by plain git clones; the commands are the make targets the
workflows run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, make_project, sh
from mlops.release.records import production_tags
from support.servers import write_env_configs

pytestmark = pytest.mark.e2e

VENV = Path(sys.executable).parents[1]
TOOLING = ("Makefile", "requirements.txt", "pyproject.toml", "package.json", "package-lock.json")


def make(
    *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["make", "--no-print-directory", *args, f"VENV={VENV}", "SKIP_SETUP=1"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"make {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def clone(origin: Path, dest: Path, branch: str = "main") -> Path:
    sh("git", "clone", "-q", "--branch", branch, str(origin), str(dest), cwd=origin.parent)
    return dest


def edit_params(repo: Path, change) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """origin (bare) + a developer's clone whose main is trained, pushed, in staging and production."""
    base = tmp_path_factory.mktemp("loop")
    dev = make_project(base / "dev")
    for name in TOOLING:
        shutil.copy2(ROOT / name, dev / name)
    (base / "serve").mkdir()
    shutil.copytree(dev / "serve", base / "serve", dirs_exist_ok=True)
    write_env_configs(base, extra_allowed="file:///nowhere/.*")
    env = {
        "DVC_REMOTE_URL": str(base / "dvc-remote"),
        "MLOPS_SERVE_DIR": str(base / "serve"),
        "MLOPS_RUNTIME_DIR": str(base / "runtime"),
    }
    os.environ.update(env)
    sh("git", "init", "-q", "--bare", "-b", "main", str(base / "origin.git"), cwd=base)
    sh("git", "remote", "add", "origin", str(base / "origin.git"), cwd=dev)
    sh("git", "add", "-A", cwd=dev)
    sh("git", "commit", "-qm", "template tooling", cwd=dev)
    make("ci-data", cwd=dev)  # adds the DVC remote (local config)
    sh("dvc", "repro", cwd=dev)
    sh("git", "add", "-A", cwd=dev)
    sh("git", "commit", "-qm", "train the first model", cwd=dev)
    make("ci-push", cwd=dev)
    sh("git", "push", "-q", "origin", "main", cwd=dev)
    make("ci-deploy-staging", cwd=dev)
    make("ci-promote-production", cwd=dev)
    sh("git", "push", "-q", "origin", "--tags", cwd=dev)  # the registry: GTO tags
    yield {"base": base, "dev": dev, "origin": base / "origin.git"}
    subprocess.run(["mlops", "serve", "down"], cwd=dev, capture_output=True)
    for k in env:
        os.environ.pop(k, None)


def report(repo: Path) -> str:
    return (repo / "reports/pr/pr-report.md").read_text()


def production_version(repo: Path) -> str:
    rows = json.loads(sh("mlops", "status", "--json", cwd=repo).stdout)
    return next(r["version"] for r in rows if r["environment"] == "production")


def test_the_whole_loop(loop):
    dev, origin, base = loop["dev"], loop["origin"], loop["base"]
    first = json.loads((dev / "models/package.json").read_text())["version"]
    assert production_version(dev) == first

    # 1. a pull request that changes one train param, run as the PR workflow runs it
    sh("git", "checkout", "-q", "-b", "faster", cwd=dev)
    edit_params(dev, lambda p: p["train"]["hist_gradient_boosting"].update(learning_rate=0.1))
    sh("git", "commit", "-qam", "learn faster", cwd=dev)
    sh("git", "push", "-q", "origin", "faster", cwd=dev)
    pr = clone(origin, base / "pr-faster", branch="faster")
    make("ci-data", cwd=pr)
    proc = make("pr", "BASE=origin/main", cwd=pr)
    make("ci-push", cwd=pr)
    text = report(pr)
    assert text.startswith("## ✅ Gate passed")
    assert "| `train.hist_gradient_boosting.learning_rate` | 0.0500 | 0.1000 |" in text
    assert "### Metrics vs `origin/main`" in text
    assert "| roc_auc |" in text
    [promoted] = production_tags(dev)
    assert f"Production serves `{first}` ({promoted.name})" in text
    assert "| roc_auc | " in text.split("This branch vs production")[1]
    assert "![this branch](confusion-branch.png)" in text
    assert (pr / "reports/pr/confusion-production.png").exists()
    assert "| train | ran |" in text
    assert "| validate | unchanged |" in text
    assert "gate passed" in proc.stdout

    # 2. a pull request that makes the model worse than the regression budget allows
    sh("git", "checkout", "-q", "-b", "worse", "main", cwd=dev)
    edit_params(dev, lambda p: p["train"]["hist_gradient_boosting"].update(max_iter=3))
    sh("git", "commit", "-qam", "stop early", cwd=dev)
    worse = make("pr", "BASE=main", cwd=dev, check=False)
    assert worse.returncode != 0
    assert "gate failed:" in worse.stderr
    assert "worse than production" in worse.stderr
    assert report(dev).startswith("## ❌ Gate failed:")

    # 3. a pull request with invalid data
    sh("git", "checkout", "-q", "-f", "main", cwd=dev)
    sh("dvc", "checkout", "-q", cwd=dev)
    sh("git", "checkout", "-q", "-b", "bad-data", cwd=dev)
    sh("mlops", "data", "--fault", "unknown_category", cwd=dev)
    sh("dvc", "add", "-q", "data/raw", cwd=dev)
    sh("git", "commit", "-qam", "new batch", cwd=dev)
    bad = make("pr", "BASE=main", cwd=dev, check=False)
    assert bad.returncode != 0
    assert "gate failed: data validation failed" in bad.stderr
    text = report(dev)
    assert "column 'purpose'" in text or "purpose: expected values in" in text
    assert "modified `2025-06.csv`" in text
    sh("git", "checkout", "-q", "-f", "main", cwd=dev)
    sh("dvc", "checkout", "-q", "-f", cwd=dev)

    # 4. merge the good PR (its dvc.lock, as the developer commits it after `make pr`) and deploy
    shutil.copy(pr / "dvc.lock", dev / "dvc.lock")
    shutil.copytree(pr / "reports", dev / "reports", dirs_exist_ok=True)
    shutil.copy(pr / "models/package.json", dev / "models/package.json")
    sh("git", "merge", "-q", "--no-ff", "faster", "-m", "Merge faster", cwd=dev)
    sh("git", "add", "dvc.lock", "reports", "models/package.json", cwd=dev)
    sh("git", "commit", "-qm", "results of learn faster", cwd=dev)
    sh("git", "push", "-q", "origin", "main", cwd=dev)
    runner = clone(origin, base / "deploy")
    artifact = make("ci-build", cwd=runner)
    assert "Running stage" not in artifact.stdout  # the PR's artifact, pulled, not rebuilt
    assert "deploy=true" in artifact.stdout
    make("ci-deploy-staging", cwd=runner)
    make("ci-promote-production", cwd=runner)
    sh("git", "push", "-q", "origin", "--tags", cwd=runner)
    second = json.loads((runner / "models/package.json").read_text())["version"]
    assert second != first
    assert production_version(runner) == second
    promotions = production_tags(runner)
    assert [t.record["version"] for t in promotions] == [first, second]
    tags = sh("git", "ls-remote", "--tags", str(origin), cwd=base).stdout
    assert f"refs/tags/{promotions[-1].name}" in tags

    # 5. roll back: one command, no retraining
    make("rollback-production", cwd=runner)
    assert production_version(runner) == first
    assert [t.record["action"] for t in production_tags(runner)] == ["promote", "promote", "rollback"]

    # the make targets ran against this environment without reinstalling it elsewhere
    where = sh(sys.executable, "-c", "import mlops; print(mlops.__file__)", cwd=base).stdout.strip()
    assert Path(where).is_relative_to(ROOT / "src")
