"""deploy.yml and rollback.yml under act: one build, verified everywhere, records pushed to the origin.

(d) the first merge with no servers configured, (f) two merges to servers that persist, (e) a
docs-only push, (g) a rollback. See conftest.py for the story these steps belong to.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from conftest import Step, World

pytestmark = pytest.mark.workflows


def job_lines(run, job: str) -> str:
    return "\n".join(line for line in run.log.splitlines() if line.startswith(f"[{job}]"))


def test_d_first_merge_deploys_one_build_to_ephemeral_staging_then_production(world: World, first_merge: Step):
    [run] = first_merge.runs
    assert run.returncode == 0, run.tail()
    assert [run.job(j) for j in ("build", "staging", "production")] == ["success"] * 3
    release = world.artifact(run, "release")
    [archive] = (release / "models").glob("*.mar")
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    package = json.loads((release / "models" / "package.json").read_text())
    assert package["sha256"] == sha256
    assert f"sha256={sha256}" in run.output("build")
    # staging and production each verified that very file, and neither built anything
    for job in ("staging", "production"):
        assert re.search(rf"models/{archive.name}: OK", run.output(job)), job
        assert "Running stage" not in job_lines(run, job), f"{job} rebuilt the pipeline"
    [entry] = world.ledger(run)
    assert (entry["environment"], entry["action"], entry["sha256"]) == ("staging", "deploy", sha256)
    assert "ephemeral TorchServe" in run.summary("staging")
    assert "ephemeral TorchServe" in run.summary("production")
    # the promotion's record reached the origin, on the merged commit, naming the same archive
    assert first_merge.extra["tags"], "no tag was pushed for the promotion"
    assert any(sha256 in message for message in first_merge.extra["tags"].values())
    assert run.leftovers == [], "a job left its ephemeral server running"


def test_f_two_merges_in_a_row_the_second_promotes_and_the_first_stays_registered(
    world: World, second_merge: Step, third_merge: Step
):
    for step in (second_merge, third_merge):
        [run] = step.runs
        assert run.returncode == 0, run.tail()
        assert [run.job(j) for j in ("build", "staging", "production")] == ["success"] * 3
        assert step.extra["tags"], "the promotion's record was not pushed"
        assert "ephemeral" not in run.summary("production")
    first, second = second_merge.extra["production"], third_merge.extra["production"]
    assert first
    assert second != first
    assert first in third_merge.extra["registered"], "the previous version must stay registered for rollback"
    assert any(second in message for message in third_merge.extra["tags"].values())


def test_e_a_docs_only_push_is_green_and_redeploys_nothing(third_merge: Step, docs_push: Step):
    [run] = docs_push.runs
    assert run.returncode == 0, run.tail()
    assert run.job("build") == "success"
    assert "deploy=false" in run.output("build")
    assert "already names this archive" in run.output("build")
    assert (run.job("staging"), run.job("production")) == ("skipped", "skipped")
    assert docs_push.extra["tags_after"] == docs_push.extra["tags_before"]
    assert docs_push.extra["production"] == third_merge.extra["production"]


def test_g_rollback_serves_the_previous_version_and_pushes_its_record(
    world: World, second_merge: Step, rolled_back: Step
):
    [run] = rolled_back.runs
    assert run.returncode == 0, run.tail()
    assert rolled_back.extra["production"] == second_merge.extra["production"]
    new = rolled_back.extra["new_tags"]
    assert new, "the rollback's record was not pushed"
    # a stage assignment in GTO's format, on the commit that registered the version it restores
    [(name, (commit, message))] = new.items()
    assert re.fullmatch(r"loan-default#production#\d+", name), name
    record = json.loads(message[message.index("{") :])
    assert (record["action"], record["version"]) == ("rollback", second_merge.extra["production"])
    assert commit in world.commits_of_main(), "the record points at a commit main does not have"
    assert "Rollback requested: the new model answers slowly" in run.summary("rollback")
