"""A model trained or deployed from uncommitted changes says so: `dirty` and the diff's hash in its
records, shown in status and the PR report, and production refuses to promote from such a checkout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlops.core import lineage
from mlops.core.errors import UserError
from mlops.release import deploy, environments, report
from mlops.release.environments import Options
from support import release_world as rw
from support.project import sh

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project: params, code, and the files a `dvc repro` rewrites."""
    root = tmp_path / "repo"
    for name, text in {
        "params.yaml": "train: {seed: 1}\n",
        "src/model.py": "X = 1\n",
        "dvc.lock": "stages: {}\n",
        "reports/metrics.json": "{}\n",
        "models/package.json": "{}\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-q", "-m", "first", cwd=root)
    return root


def test_a_committed_tree_is_clean_even_after_the_pipeline_rewrote_its_outputs(repo):
    for name in ("dvc.lock", "reports/metrics.json", "models/package.json"):
        (repo / name).write_text("rewritten by dvc repro\n")
    source = lineage.source(repo)
    assert source.commit == sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    assert (source.dirty, source.diff_sha256) == (False, None)


def test_an_uncommitted_change_makes_the_build_dirty_with_the_hash_of_its_diff(repo):
    (repo / "params.yaml").write_text("train: {seed: 2}\n")
    source = lineage.source(repo)
    assert source.dirty
    diff = sh("git", "diff", "HEAD", "--binary", "--", "params.yaml", cwd=repo).stdout.encode()
    assert source.diff_sha256 == hashlib.sha256(diff).hexdigest()
    (repo / "src/model.py").write_text("X = 2\n")
    assert lineage.source(repo).diff_sha256 != source.diff_sha256  # another diff, another hash


@pytest.fixture
def world(tmp_path):
    """Fake staging and production on a repository whose checkout has an uncommitted change."""
    frame, contract, params = rw.frame(), rw.contract(), rw.params()
    w = rw.make_world(tmp_path, frame, contract, params, rw.models(frame, contract, params))
    w.quick = True
    (w.root / "params.yaml").write_text("train: {seed: 1}\n")
    w.commit_files("params")
    (w.root / "params.yaml").write_text("train: {seed: 2}\n")
    return w


def test_staging_takes_a_dirty_checkout_and_records_it_but_production_refuses_it(world):
    entry = deploy.deploy_staging(world.release("good"))
    diff_sha256 = lineage.source(world.root).diff_sha256
    assert (entry.dirty, entry.diff_sha256) == (True, diff_sha256)
    assert world.ledger("staging").latest("good").dirty
    with pytest.raises(UserError, match=rf"uncommitted changes.*{str(diff_sha256)[:12]}"):
        deploy.promote_production(world.release("good"))
    assert world.servers["production"].default is None
    with pytest.raises(UserError, match="uncommitted changes"):  # --force is about age, never about provenance
        deploy.promote_production(world.release("good"), Options(force=True))
    sh("git", "checkout", "--", "params.yaml", cwd=world.root)  # the same archive from a clean checkout: promoted
    assert deploy.promote_production(world.release("good")).dirty is False


def test_status_shows_that_staging_serves_from_a_dirty_checkout(world):
    deploy.deploy_staging(world.release("good"))
    rows = {row["environment"]: row for row in environments.status(world.site)}
    assert rows["staging"]["dirty"] is True


def test_the_pr_report_warns_about_a_dirty_build(repo):
    facts = report.Facts(
        base="main", repro=None, validation={}, candidate={}, params=[], metrics=[], production=None,
        vs_production=[], data=report.DataDiff(), images={},
        build={"commit": "a" * 40, "dirty": True, "diff_sha256": "d1ff" * 16},
    )  # fmt: skip
    text = report.render(facts, [])
    assert "uncommitted changes" in text
    assert "d1ffd1ffd1ff" in text
    assert "production refuses" in text
