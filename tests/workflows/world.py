"""The repository the workflow tier runs: this template with the tests' own contract, params and data.

``build_template`` makes "the example repository" as a user would clone it after a first
``make data repro``: the template's code, Makefile, workflows and serve configs from this checkout,
but the contract and params from tests/fixtures (never the repository's own), small example data
tracked by DVC, and the committed ``dvc.lock`` and ``models/package.json``. ``Developer`` is a person
working on a clone of it: edits, ``dvc repro``, commits, and pushes to the origin and the DVC remote.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support import FIXTURES, ROOT
from support.project import deep_merge, sh
from support.servers import write_env_configs

# Small and quick, yet a model that passes the fixtures' gates; deploy checks sized to match. The
# linear model fits in a fraction of a second (boosting's OpenMP threads crawl on a shared machine).
PARAMS = {
    "data": {"periods": 5, "rows_per_period": 500},
    "train": {"estimator": "linear"},
    "evaluate": {"permutation_repeats": 1, "max_curve_points": 50},
    "serve": {"workers": 1},
    "deploy": {
        "ready_timeout_s": 120,
        "smoke_rows": 5,
        "parity_rows": 50,
        "quality_rows": 0,
        "latency": {"duration_s": 3, "concurrency": 2, "max_p99_ms": 2000, "min_rps": 2},
    },
}
CODE = ("src", "serve", ".github", ".devcontainer")
FILES = (".gitignore", ".dvcignore", ".dvc/config", "Makefile", "dvc.yaml", "requirements.txt", "pyproject.toml",
         "package.json", "package-lock.json")  # fmt: skip


def build_template(dest: Path, params: dict[str, Any] | None = None) -> Path:
    """The example repository at its first trained commit on ``main`` (see the module's docstring)."""
    dest.mkdir(parents=True)
    for name in CODE:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    (dest / "README.md").write_text("# Loan default\n\nA model trained and deployed by the loop.\n")
    (dest / "data").mkdir()
    shutil.copy(FIXTURES / "contract.yaml", dest / "data" / "contract.yaml")
    merged = deep_merge(deep_merge(yaml.safe_load((FIXTURES / "params.yaml").read_text()), PARAMS), params or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    # never the committed default ports on this shared machine (the harness also gives each run's
    # ephemeral servers ports free at that moment)
    write_env_configs(dest, extra_allowed="file:///nowhere/.*")
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("mlops", "data", cwd=dest)
    sh("dvc", "add", "-q", "data/raw", cwd=dest)
    sh("dvc", "repro", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-q", "-m", "Train the first model", cwd=dest)
    return dest


class Developer:
    """A clone of the origin on someone's machine: branches, edits, ``dvc repro``, pushes."""

    def __init__(self, origin: Path, dest: Path, dvc_remote: Path | None):
        sh("git", "clone", "-q", str(origin), str(dest), cwd=origin.parent)
        self.root = dest
        if dvc_remote is not None:
            sh("dvc", "remote", "add", "--local", "-f", "-d", "team", str(dvc_remote), cwd=dest)
        self.sh("dvc", "pull", "-q", "--allow-missing")

    def sh(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*cmd, cwd=self.root, check=check)

    def branch(self, name: str, start: str = "origin/main") -> None:
        self.sh("git", "fetch", "-q", "origin")
        self.sh("git", "checkout", "-q", "-B", name, start)
        self.sh("dvc", "pull", "-q", "--allow-missing")  # the branch's data and outputs, from cache or remote

    def params(self, change: dict[str, Any]) -> None:
        path = self.root / "params.yaml"
        path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(path.read_text()), change), sort_keys=False))

    def commit(self, message: str, repro: bool = False, push_data: bool = False) -> str:
        """Commit everything (after ``dvc repro`` if asked); push DVC's outputs as a developer does."""
        if repro:
            self.sh("dvc", "repro", "-q")
        self.sh("git", "add", "-A")
        self.sh("git", "commit", "-q", "-m", message)
        if push_data:
            self.sh("dvc", "push", "-q", "--run-cache")
        return self.sh("git", "rev-parse", "HEAD").stdout.strip()

    def push(self, branch: str) -> None:
        self.sh("git", "push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch}")
