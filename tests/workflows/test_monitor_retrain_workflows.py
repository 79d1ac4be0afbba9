"""monitor.yml and retrain.yml under act: a breach opens one issue and starts retraining once;
an unobservable production opens nothing; retraining opens an unmerged PR on its own branch."""

from __future__ import annotations

import pytest

from conftest import BOT, DEAD_METRICS, RETRAIN_BOT, Step

pytestmark = pytest.mark.workflows


def monitoring_issues(github: dict) -> list[dict]:
    return [i for i in github["issues"].values() if any(lab["name"] == "monitoring" for lab in i["labels"])]


def issue_comments(github: dict, number: int) -> list[dict]:
    return [c for c in github["comments"].values() if c["issue"] == number]


def test_h_a_breach_opens_one_issue_and_one_retraining_run(monitored: Step):
    breach, again, _ = monitored.runs
    assert breach.returncode != 0  # the breach is a red run, after the alert
    assert "Run Main On a breach only" in breach.log, "the alert step did not run"
    [issue] = monitoring_issues(monitored.extra["after_first"])
    assert issue["user"]["login"] == BOT
    assert issue["state"] == "open"
    assert "threshold(s) breached" in issue["body"]
    assert [d["workflow"] for d in monitored.extra["after_first"]["dispatches"]] == ["retrain.yml"]
    # a second breach while the issue is open: reported on it, no second issue, no second retraining
    assert again.returncode != 0
    assert [i["number"] for i in monitoring_issues(monitored.extra["after_second"])] == [issue["number"]]
    [comment] = issue_comments(monitored.extra["after_second"], issue["number"])
    assert comment["user"]["login"] == BOT
    assert "threshold(s) breached" in comment["body"]
    assert len(monitored.extra["after_second"]["dispatches"]) == 1


def test_h_an_unobservable_production_fails_with_exit_2_and_opens_nothing(monitored: Step):
    *_, unobservable = monitored.runs
    assert unobservable.returncode != 0
    assert f"cannot observe production: cannot scrape {DEAD_METRICS}/metrics" in unobservable.output("monitor")
    assert "make ci-monitor-alert" not in unobservable.log
    [issue] = monitoring_issues(monitored.github)
    assert len(issue_comments(monitored.github, issue["number"])) == 1
    assert len(monitored.github["dispatches"]) == 1


def test_i_retraining_opens_a_pr_on_its_own_branch_and_merges_nothing(retrained: Step):
    [run] = retrained.runs
    assert run.returncode == 0, run.tail()
    branch = retrained.extra["branch"]
    [pr] = [p for p in retrained.github["pulls"].values() if p["head"]["ref"] == branch]
    assert (pr["base"]["ref"], pr["state"], pr["merged"]) == ("main", "open", False)
    assert pr["user"]["login"] == RETRAIN_BOT
    assert retrained.github["merges"] == []
    assert retrained.github["auto_merge"] == []
    assert retrained.extra["head"] == pr["head"]["sha"]
    assert retrained.extra["commit"] == (
        "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>|Retrain on newly ingested data"
    )
    assert {"data/raw.dvc", "dvc.lock", "models/package.json"} <= set(retrained.extra["changed"])
    assert retrained.extra["main_after"] == retrained.extra["main"], "something merged the retraining"
