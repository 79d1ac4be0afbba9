"""The Makefile's CI steps on a fresh clone, as a runner sees them (real git, DVC and mlops; no servers).

The workflow tier runs these inside the real workflows; here each rule is checked on its own,
including the paths the story there does not take: a repository whose data is not the example,
a stale dvc.lock, an earlier run's monitoring report lying around.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, make_project, sh

pytestmark = pytest.mark.integration

VENV = Path(sys.executable).parents[1]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository (tests' params and contract, small example data) with the Makefile."""
    repo = make_project(tmp_path_factory.mktemp("ci-targets") / "origin")
    shutil.copy2(ROOT / "Makefile", repo / "Makefile")
    sh("git", "add", "Makefile", cwd=repo)
    sh("git", "commit", "-qm", "the command surface", cwd=repo)
    return repo


def fresh_clone(origin: Path, dest: Path) -> Path:
    sh("git", "clone", "-q", str(origin), str(dest), cwd=origin.parent)
    return dest


class Runner:
    """A job's environment: the step summary, output and env files GitHub gives each step."""

    def __init__(self, tmp: Path):
        self.files = {name: tmp / name.lower() for name in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ENV")}
        for f in self.files.values():
            f.touch()

    def make(self, target: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if k not in ("DVC_REMOTE_URL", "PREDICTION_LOG_URL", "LANDING")}
        return subprocess.run(
            ["make", "--no-print-directory", target, f"VENV={VENV}", "SKIP_SETUP=1"],
            cwd=cwd, capture_output=True, text=True, env={**clean, **{k: str(v) for k, v in self.files.items()}, **env},
        )  # fmt: skip

    def read(self, name: str) -> str:
        return self.files[name].read_text()


def test_without_a_remote_the_example_repository_regenerates_exactly_its_data(origin, tmp_path):
    clone = fresh_clone(origin, tmp_path / "clone")
    runner = Runner(tmp_path)
    proc = runner.make("ci-data", clone)
    assert proc.returncode == 0, proc.stderr
    assert "regenerated the example data, which is exactly what data/raw.dvc names" in runner.read(
        "GITHUB_STEP_SUMMARY"
    )
    assert runner.read("GITHUB_ENV").startswith("PR_NOTE=No DVC remote")  # the report's verdict says so
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""
    assert sorted(p.name for p in (clone / "data/raw").glob("*.csv")) == sorted(
        p.name for p in (origin / "data/raw").glob("*.csv")
    )


def test_without_a_remote_other_data_is_refused_with_what_to_set(origin, tmp_path):
    own = fresh_clone(origin, tmp_path / "own")
    sh("mlops", "data", "--rows", "120", cwd=own)  # not what the example generator makes from params.yaml
    sh("dvc", "add", "-q", "data/raw", cwd=own)
    sh("git", "commit", "-qam", "our own data", cwd=own)
    clone = fresh_clone(own, tmp_path / "clone")
    proc = Runner(tmp_path).make("ci-data", clone)
    assert proc.returncode != 0  # make says 2 for any failed recipe
    assert "error: no DVC remote: set the variable DVC_REMOTE_URL" in proc.stderr
    assert "data/raw.dvc is not the example data" in proc.stderr
    assert not (clone / "data/raw").exists()  # no example data left behind to be mistaken for the real thing
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""


def test_a_stale_committed_lock_fails_the_check_and_a_current_one_passes(origin, tmp_path):
    clone = fresh_clone(origin, tmp_path / "clone")
    lock = clone / "dvc.lock"
    lock.write_text("schema: '2.0'\nstages:\n  train:\n    outs:\n    - path: models/pipeline.joblib\n      md5: 1a\n")
    sh("git", "add", "dvc.lock", cwd=clone)
    sh("git", "commit", "-qm", "the lock", cwd=clone)
    runner = Runner(tmp_path)
    assert runner.make("ci-lock-check", clone).returncode == 0
    lock.write_text(lock.read_text().replace("md5: 1a", "md5: 2b"))  # what a repro of other inputs would leave
    proc = runner.make("ci-lock-check", clone)
    assert proc.returncode != 0
    assert "are not what this commit reproduces" in proc.stderr


def test_the_monitor_step_never_publishes_an_earlier_runs_report(origin, tmp_path):
    clone = fresh_clone(origin, tmp_path / "clone")
    (clone / "reports").mkdir(exist_ok=True)
    (clone / "reports/monitor.md").write_text("# An earlier run's breach report\n")
    runner = Runner(tmp_path)
    proc = runner.make("ci-monitor", clone, PREDICTION_LOG_URL=str(tmp_path / "no-log-shipped"))
    assert proc.returncode != 0, proc.stderr
    assert "cannot observe production" in proc.stderr
    assert "verdict=unobservable" in runner.read("GITHUB_OUTPUT")
    assert "earlier run" not in runner.read("GITHUB_STEP_SUMMARY")
    assert "could not be observed" in runner.read("GITHUB_STEP_SUMMARY")
    assert not (clone / "reports/monitor.md").exists()


def test_retraining_without_a_landing_location_stops_with_what_to_set(origin, tmp_path):
    clone = fresh_clone(origin, tmp_path / "clone")
    proc = Runner(tmp_path).make("ci-retrain", clone, DVC_REMOTE_URL=str(tmp_path / "remote"))
    assert proc.returncode != 0
    assert "set the variable LANDING_URL" in proc.stderr  # not `--landing ""`, the repository's root
    assert "mlops ingest" not in proc.stdout


@pytest.mark.parametrize(
    ("path", "code"),
    [("docs/index.md", "false"), ("params.yaml", "false"), ("src/mlops/cli.py", "true"), ("Makefile", "true"),
     (".github/workflows/pr.yml", "true"), ("tests/unit/test_x.py", "true")],
)  # fmt: skip
def test_the_changes_step_picks_the_test_tiers_by_what_a_change_touches(origin, tmp_path, path, code):
    clone = fresh_clone(origin, tmp_path / "clone")
    base = sh("git", "rev-parse", "HEAD", cwd=clone).stdout.strip()
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    with (clone / path).open("a") as f:
        f.write("\n# changed\n")
    sh("git", "add", "-A", cwd=clone)
    sh("git", "commit", "-qm", f"change {path}", cwd=clone)
    runner = Runner(tmp_path)
    proc = runner.make("ci-changes", clone, BASE=base)
    assert proc.returncode == 0, proc.stderr
    assert runner.read("GITHUB_OUTPUT") == f"code={code}\n"
