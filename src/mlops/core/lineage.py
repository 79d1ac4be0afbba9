"""Where a model came from: git commit, dirty flag and diff hash, DVC data hash; the one git helper."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlops.core import paths
from mlops.core.errors import ServiceError, UserError, quoted

# What `dvc repro` itself rewrites (the lock, reports, models, the split, the .gitignore files DVC
# keeps): a change there is the build's output, not a difference in what it was built from.
BUILD_OUTPUTS = (str(paths.DVC_LOCK), str(paths.REPORTS), str(paths.MODELS), str(paths.SPLIT))
_NOT_SOURCES = [f":(exclude){p}" for p in BUILD_OUTPUTS] + [":(exclude,glob)**/.gitignore"]
REGISTER_ENV = "MLOPS_REGISTER"
MAIN_REF = "refs/heads/main"


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git in ``root``; with ``check``, a failure is a ServiceError quoting git's message."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except OSError as e:
        raise ServiceError(f"git is not available: {e}") from None
    if check and proc.returncode != 0:
        raise ServiceError(f"git {' '.join(args)}: {proc.stderr.strip()[:500]}")
    return proc


def git_output(root: Path, *args: str) -> str | None:
    """git's stripped output, or None when git fails (not a repository, unknown revision)."""
    try:
        proc = git(root, *args, check=False)
    except ServiceError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(root: Path) -> str:
    return git_output(root, "rev-parse", "HEAD") or "unknown"


def git_dirty(root: Path) -> bool:
    """True when tracked files differ from HEAD (outputs DVC rewrites are ignored by git)."""
    return bool(git_output(root, "status", "--porcelain", "--untracked-files=no"))


@dataclass(frozen=True)
class Source:
    """What a build was made from: the commit, and whether tracked files differed from it (and how)."""

    commit: str
    dirty: bool
    diff_sha256: str | None  # sha256 of `git diff HEAD --binary` over the sources; None when clean


def source(root: Path) -> Source:
    """The commit of ``root`` and its uncommitted changes to tracked sources.

    Untracked files do not count (as with ``git describe --dirty``), nor do the outputs ``dvc repro`` writes.
    """
    commit = git_commit(root)
    diff = git(root, "diff", "HEAD", "--binary", "--", ".", *_NOT_SOURCES, check=False)
    if diff.returncode != 0 or not diff.stdout:
        return Source(commit, False, None)
    return Source(commit, True, hashlib.sha256(diff.stdout.encode()).hexdigest())


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


def registers_here(environ: Mapping[str, str] | None = None) -> bool:
    """Whether training here registers a model version, or only logs the run.

    The registry holds reviewed models only: what CI builds on main (``CI=true`` and
    ``GITHUB_REF=refs/heads/main``), or what ``MLOPS_REGISTER=1`` asks for (``0`` never registers).
    Experiments, branches and pull requests log runs; a deployment registers the run it deploys.
    """
    env = os.environ if environ is None else environ
    value = env.get(REGISTER_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    if value:
        raise UserError(f"{REGISTER_ENV} must be 1 or 0; got {quoted(value)}")
    return env.get("CI", "").lower() == "true" and env.get("GITHUB_REF") == MAIN_REF


def experiment_tags(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The DVC experiment a stage runs in (``dvc exp run`` sets ``DVC_EXP_NAME``), as run tags; {} outside one."""
    env = os.environ if environ is None else environ
    tags = {"dvc_exp_name": env.get("DVC_EXP_NAME", ""), "dvc_exp_baseline_rev": env.get("DVC_EXP_BASELINE_REV", "")}
    return {k: v for k, v in tags.items() if v}
