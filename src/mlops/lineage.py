"""Where a model came from: git commit, dirty flag, DVC data hash."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def git_commit(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD") or "unknown"


def git_dirty(root: Path) -> bool:
    """True when tracked files differ from HEAD (outputs DVC rewrites are ignored by git)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return bool(status)


def dvc_hash(dvc_file: Path) -> str:
    """The content hash DVC recorded for a tracked path (``data/raw.dvc``)."""
    try:
        outs = yaml.safe_load(dvc_file.read_text())["outs"]
        return str(outs[0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
