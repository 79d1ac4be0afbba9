"""A fresh clone's `make demo` rebuilds the very archive main records, and leaves `git status` clean.

Two builds of the same inputs on two checkouts (the trained project, then a clone built by
`make demo` in another directory, temp dir and umask) must give one sha256: otherwise staging
and production, each rebuilding on its own runner, see different archives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, sh
from support.servers import write_env_configs

pytestmark = pytest.mark.e2e

VENV = Path(sys.executable).parents[1]
TOOLING = ("Makefile", "requirements.txt", "pyproject.toml", "package.json", "package-lock.json")


def test_make_demo_on_a_fresh_clone_rebuilds_the_same_archive_and_changes_nothing_in_git(
    trained_project, tmp_path, short_tmp
):
    origin = tmp_path / "origin"
    shutil.copytree(trained_project, origin, symlinks=True)
    for name in TOOLING:
        shutil.copy2(ROOT / name, origin / name)
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "trained, as main holds it", cwd=origin)
    committed = json.loads((origin / "models/package.json").read_text())

    clone = tmp_path / "elsewhere" / "clone"
    sh("git", "clone", "-q", str(origin), str(clone), cwd=tmp_path)
    assert not (clone / "data/raw").exists()  # no data and no DVC cache: the demo regenerates both
    serve = tmp_path / "serve"  # free ports; the clone's own configs stay as committed
    shutil.copytree(clone / "serve", serve)
    write_env_configs(tmp_path, extra_allowed="file:///nowhere/.*")
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    env = {**os.environ, "MLOPS_SERVE_DIR": str(serve), "MLOPS_RUNTIME_DIR": str(short_tmp / "runtime"),
           "TMPDIR": str(other_tmp)}  # fmt: skip
    demo = subprocess.run(
        ["bash", "-c", f"umask 0027 && make --no-print-directory demo VENV={VENV} SKIP_SETUP=1"],
        cwd=clone, capture_output=True, text=True, env=env,
    )  # fmt: skip
    try:
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        rebuilt = json.loads((clone / "models/package.json").read_text())
        assert rebuilt["sha256"] == committed["sha256"]
        assert rebuilt == committed
        assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""
        status = subprocess.run(["mlops", "status", "--json"], cwd=clone, capture_output=True, text=True, env=env)
        rows = {r["environment"]: r for r in json.loads(status.stdout)}
        assert rows["production"]["version"] == committed["version"]
    finally:
        subprocess.run(["mlops", "serve", "down"], cwd=clone, capture_output=True, env=env)
