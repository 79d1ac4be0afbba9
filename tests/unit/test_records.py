"""The records: a ledger that survives a crash mid-write, and GTO tags that `gto show` reads as we do."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import gto.api
import pytest

from mlops.core.errors import UserError
from mlops.release import deploy, records
from mlops.release.records import Deployment, Ledger
from support import release_world as rw
from support.project import sh

pytestmark = pytest.mark.unit


@pytest.fixture
def world(tmp_path, parts) -> rw.World:
    w = rw.make_world(tmp_path, *parts)
    w.quick = True
    return w


def entry(version: str, action: str = "deploy", phase: str = "done") -> Deployment:
    return Deployment("staging", action, version, f"sha-{version}", "m", "c", phase=phase)


def test_a_ledger_reads_what_it_wrote(tmp_path):
    ledger = Ledger(tmp_path / "deployments.jsonl")
    for version, action in (("a", "deploy"), ("b", "rejected"), ("c", "deploy")):
        ledger.append(entry(version, action))
    assert [e.version for e in ledger.entries()] == ["a", "b", "c"]
    assert ledger.passed("sha-a")
    assert not ledger.passed("sha-b")
    assert ledger.latest("b") is None
    assert ledger.serving().version == "c"
    assert ledger.problems == []


def test_two_models_on_one_server_each_read_their_own_moves_from_the_shared_ledger(tmp_path):
    # one TorchServe may serve several models, each released from its own repository
    path = tmp_path / "staging" / "deployments.jsonl"
    Ledger(path).append(entry("legacy"))  # a line written before entries named their model
    for model, version in (("loans", "l1"), ("churn", "c1"), ("loans", "l2")):
        Ledger(path, model).append(replace(entry(version), model=model))
    assert [e.version for e in Ledger(path, "loans").entries()] == ["legacy", "l1", "l2"]
    assert Ledger(path, "churn").serving().version == "c1"
    assert Ledger(path, "loans").serving().version == "l2"
    assert not Ledger(path, "churn").passed("sha-l1")
    assert len(Ledger(path).entries()) == 4  # unnamed: the whole history


def test_every_ledger_line_is_synced_to_disk_as_it_is_written(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    ledger = Ledger(tmp_path / "env" / "deployments.jsonl")
    ledger.append(entry("a", phase="intent"))
    first = len(synced)
    ledger.append(entry("a"))
    assert first == 2  # the line, and the directory that now holds the new file
    assert len(synced) == 3


def test_a_torn_last_line_is_skipped_reported_and_the_next_entry_starts_on_its_own_line(tmp_path):
    path = tmp_path / "deployments.jsonl"
    ledger = Ledger(path)
    ledger.append(entry("a"))
    with path.open("a") as f:
        f.write(json.dumps(entry("b").to_dict())[:40])  # a crash in the middle of a write
    assert [e.version for e in ledger.entries()] == ["a"]
    [problem] = ledger.problems
    assert "skipped a torn last line (line 2, 40 bytes)" in problem
    ledger.append(entry("c"))
    assert [e.version for e in ledger.entries()] == ["a", "c"]
    assert "an unreadable line (line 2" in ledger.problems[0]


def test_ledger_lines_of_the_earlier_format_still_read(tmp_path):
    path = tmp_path / "deployments.jsonl"
    old = {"environment": "production", "action": "promote", "version": "v1", "sha256": "s", "model_sha256": "m",
           "git_commit": "c", "metrics": {}, "checks": {}, "mlflow_run": None, "mlflow_version": None,
           "time": "2025-01-01T00:00:00+00:00"}  # fmt: skip
    path.write_text(json.dumps(old) + "\n")
    [read] = Ledger(path).entries()
    assert (read.version, read.phase, read.previous) == ("v1", "done", None)


@pytest.mark.parametrize("command", ["status", "deploy", "promote", "rollback"])
def test_a_torn_ledger_line_breaks_no_command(world, command):
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    world.commit("retrain")
    deploy.deploy_staging(world.release("other"))
    for env in ("staging", "production"):
        with world.ledger(env).path.open("a") as f:
            f.write('{"environment": "' + env + '", "action": "dep')
    if command == "status":
        rows = {r["environment"]: r for r in deploy.status(world.site)}
        assert "torn last line" in rows["production"]["problems"][0]
        assert rows["production"]["version"] == "good"
    elif command == "deploy":
        assert deploy.deploy_staging(world.release("other")).action == "unchanged"
    elif command == "promote":
        assert deploy.promote_production(world.release("other")).action == "promote"
    else:
        assert deploy.rollback(world.site, "staging").version == "good"
    assert any("torn last line" in line for line in world.said) or command == "status"


def test_gto_reads_the_registry_as_production_record_does(world, monkeypatch):
    monkeypatch.setenv("GTO_NO_ANALYTICS", "1")
    world.quick = True
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    world.commit("retrain")
    deploy.deploy_staging(world.release("other"))
    deploy.promote_production(world.release("other"))
    deploy.rollback(world.site, "production")  # within a second or two of the promotion
    shown = gto.api.show(str(world.root))["loan-default"]
    assert shown["version"] == "v0.0.2"  # the newest registered
    assert shown["stage"] == {"staging": "v0.0.2", "production": "v0.0.1"}
    tag, record = records.production_record(world.root)
    assert (record["version"], record["registry_version"], record["action"]) == ("good", "v0.0.1", "rollback")
    events = gto.api.history(str(world.root), "loan-default")
    assert {e["ref"] for e in events} >= {tag, "loan-default@v0.0.1", "loan-default@v0.0.2"}
    rollback = next(e for e in events if e["ref"] == tag)
    assert json.loads(rollback["message"][rollback["message"].index("{") :])["previous"] == "other"


def test_the_old_production_tags_are_still_read_for_history(world):
    old = {"environment": "production", "action": "promote", "version": "ancient", "sha256": "sha-ancient",
           "model_sha256": "m", "git_commit": world.head(), "time": "2025-01-01T00:00:00+00:00"}  # fmt: skip
    sh("git", "tag", "-a", "model/production/1", "-m", f"promote\n\n{json.dumps(old)}", cwd=world.root)
    sh("git", "tag", "-a", "model/production/x", "-m", "not a number", cwd=world.root)
    sh("git", "tag", "-a", "model/production/7", "-m", "no json here", cwd=world.root)
    assert records.production_record(world.root) == ("model/production/1", old)
    world.commit("retrain")
    deploy.deploy_staging(world.release("good"))
    deploy.promote_production(world.release("good"))
    history = records.production_tags(world.root, "loan-default")
    assert [(t.name, t.record["version"]) for t in history] == [
        ("model/production/1", "ancient"), ("loan-default#production#2", "good")
    ]  # fmt: skip
    assert records.production_record(world.root)[1]["version"] == "good"


def test_a_model_name_git_cannot_tag_is_refused_with_the_param_named(tmp_path):
    with pytest.raises(UserError, match=r"serve.model_name 'loan\.default' cannot name a model in git tags"):
        records.Registry(tmp_path, "loan.default")


def test_production_will_not_register_an_archive_its_commit_does_not_record(world):
    (world.root / "models").mkdir()
    (world.root / "models/package.json").write_text(json.dumps({"version": "good"}))
    sh("git", "add", "models/package.json", cwd=world.root)
    world.commit("results of training good")
    deploy.deploy_staging(world.release("other"))  # uncommitted work: staging serves it, without a tag
    assert world.servers["staging"].default == "other"
    assert world.tag("staging") is None
    assert any("not recorded in a tag" in line for line in world.said)
    with pytest.raises(UserError, match=r"records archive good \(models/package.json\), not other"):
        deploy.promote_production(world.release("other"))
    assert world.servers["production"].default is None
    assert world.ledger("production").entries() == []
