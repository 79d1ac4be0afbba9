"""The commit hook `make setup` installs: notebook outputs never reach git, and pre-commit runs the
pinned tools (repo: local), downloading nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, sh

pytestmark = pytest.mark.integration

VENV = Path(sys.executable).parents[1]


def make_hooks(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`make hooks` as a person runs it (CI installs no hook: the suite may run there)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "hooks", f"VENV={VENV}"],
        cwd=repo, env={k: v for k, v in env.items() if k != "CI"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A checkout with the project's hook config and its environment (.venv, node_modules) in place."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    shutil.copy(ROOT / ".pre-commit-config.yaml", repo)
    (repo / ".venv").symlink_to(VENV)
    (repo / "node_modules").symlink_to(ROOT / "node_modules")
    (repo / ".gitignore").write_text(".venv\nnode_modules\n")
    (repo / "notebooks").mkdir()
    return repo


def executed_notebook(path: Path) -> None:
    """The repository's explore notebook as it is after a run: outputs and execution counts."""
    nb = json.loads((ROOT / "notebooks" / "01-explore-data.ipynb").read_text())
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["a private result\n"]}]
    path.write_text(json.dumps(nb, indent=1))


def test_the_hook_strips_notebook_outputs_before_they_are_committed(repo, tmp_path):
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    installed = make_hooks(repo, env)
    assert "hook installed" in installed.stdout, installed.stdout + installed.stderr
    notebook = repo / "notebooks" / "explore.ipynb"
    executed_notebook(notebook)
    sh("git", "add", "-A", cwd=repo)
    first = sh("git", "commit", "-qm", "explore", cwd=repo, env=env, check=False)
    assert first.returncode != 0  # the hook changed the notebook: the commit stops for a look
    assert "nbstripout" in first.stdout + first.stderr
    stripped = json.loads(notebook.read_text())
    assert all(c.get("outputs", []) == [] for c in stripped["cells"])
    assert "a private result" not in notebook.read_text()
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "explore", cwd=repo, env=env)
    committed = sh("git", "show", "HEAD:notebooks/explore.ipynb", cwd=repo).stdout
    assert "a private result" not in committed
    # local hooks only: pre-commit kept no hook repository or environment of its own
    home = tmp_path / "pre-commit-home"
    assert not home.exists() or not [p for p in home.iterdir() if p.is_dir()]


def test_a_linked_worktree_leaves_the_shared_hooks_alone(repo, tmp_path):
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "start", "--no-verify", cwd=repo)
    worktree = tmp_path / "wt"
    sh("git", "worktree", "add", "-q", str(worktree), "-b", "topic", cwd=repo)
    out = make_hooks(worktree, dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


def test_ci_installs_no_hook(repo):
    out = subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "hooks", f"VENV={VENV}"],
        cwd=repo, env={**os.environ, "CI": "true"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
