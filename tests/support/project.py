"""Temporary projects like a fresh clone of the template, with the tests' own contract and params."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support import FIXTURES, ROOT

# Small but realistic: 6 monthly batches of 600 loans, the latest 2 held out.
SMALL_DATA = {"data": {"periods": 6, "rows_per_period": 600}}


def sh(*cmd: str, cwd: Path, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on unexpected failure show its output in the assertion."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def edit_yaml(path: Path, change: Any) -> None:
    """Load a YAML file, let ``change`` edit the mapping, write it back."""
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_project(
    dest: Path,
    params: dict[str, Any] | None = None,
    contract: Path | None = None,
    data_args: tuple[str, ...] = (),
) -> Path:
    """A fresh repository like a clone of the template, with small example data committed.

    The template's code (src, serve, dvc.yaml) comes from this checkout; the contract and params
    are the tests' own fixtures, never the repository's (a user replaces those).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "serve", dest / "serve", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "data").mkdir(exist_ok=True)
    shutil.copy(contract or FIXTURES / "contract.yaml", dest / "data" / "contract.yaml")
    merged = deep_merge(yaml.safe_load((FIXTURES / "params.yaml").read_text()), deep_merge(SMALL_DATA, params or {}))
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
