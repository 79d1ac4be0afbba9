"""pr.yml and pr-comment.yml under act: the one report comment, red checks that say why, forks.

(a) a same-repository PR changing a param, pushed twice; (c) invalid data and a model beyond the
regression budget; (b) a fork's PR, with no variables or secrets, and forged artifacts.
"""

from __future__ import annotations

import pytest

from conftest import BOT, Step

pytestmark = pytest.mark.workflows

WATERMARK = '"CML watermark mlops-pr-report")'


def comments(github: dict, number: int) -> list[dict]:
    return [c for c in github["comments"].values() if c["issue"] == number]


def test_a_a_param_change_gets_one_report_comment_updated_in_place(param_pr: Step):
    for run in param_pr.runs:
        assert run.returncode == 0, run.tail()
        assert (run.job("reproduce"), run.job("comment")) == ("success", "success")
    [first] = comments(param_pr.extra["after_first"], 7)
    assert first["user"]["login"] == BOT
    assert first["edits"] == []
    [comment] = comments(param_pr.github, 7)
    assert comment["id"] == first["id"]
    assert [e["by"] for e in comment["edits"]] == [BOT]
    body = comment["body"]
    assert body.startswith("## ✅ Gate passed: meets the thresholds, within the regression budget")
    assert "| `train.linear.C` | 1.0000 | 0.3000 |" in body
    assert "Production serves" in body
    assert WATERMARK in body
    # the pictures CML published are the report's own, beside it
    assert param_pr.github["assets"]
    assert all(a["path"].endswith(".png") and "/reports/pr/" in a["path"] for a in param_pr.github["assets"])


def test_c_invalid_data_and_a_regression_beyond_budget_are_red_and_the_comment_says_why(failing_prs: Step):
    bad, worse = failing_prs.runs
    for run, number, why in ((bad, 8, "data validation failed"), (worse, 9, "worse than production")):
        assert run.returncode != 0
        assert run.job("reproduce") == "failure"
        assert run.job("comment") == "success", run.tail()
        [comment] = comments(failing_prs.github, number)
        assert comment["body"].startswith("## ❌ Gate failed: ")
        assert why in comment["body"].splitlines()[0]
    assert "column 'purpose'" in comments(failing_prs.github, 8)[0]["body"] or "purpose" in bad.output("reproduce")


def test_b_a_fork_pr_is_reproduced_without_secrets_and_reported_by_pr_comment_only(param_pr: Step, fork_pr: Step):
    pr_run, comment_run, *_ = fork_pr.runs
    assert pr_run.returncode == 0, pr_run.tail()
    assert pr_run.job("reproduce") == "success"
    assert pr_run.job("comment") == "skipped"  # a fork's token may not comment: pr-comment.yml does
    assert "No DVC remote (DVC_REMOTE_URL is not set): regenerated the example data" in pr_run.summary("reproduce")
    assert comment_run.returncode == 0, comment_run.tail()
    [comment] = comments(fork_pr.github, 10)
    assert comment["user"]["login"] == BOT
    verdict = comment["body"].splitlines()[0]
    assert verdict.startswith("## ✅ Gate passed")
    # the verdict says what was compared (production's model only if this run rebuilt it), and that
    # there was no remote: the gate ran on regenerated example data
    assert "within the regression budget" in verdict or "NOT compared with production" in verdict
    assert "> ⚠️ No DVC remote (DVC_REMOTE_URL is not set, as for pull requests from forks)" in comment["body"]


def test_b_a_forged_pr_number_or_a_linked_local_file_is_refused(param_pr: Step, fork_pr: Step):
    forged = fork_pr.extra["forged"]
    for label, run in forged.items():
        assert run.returncode != 0, label
        assert "refusing to post" in run.log, label
    # nothing reached another PR, nothing new on the fork's PR, nothing was uploaded
    assert comments(fork_pr.github, 7) == comments(param_pr.github, 7)
    assert len(comments(fork_pr.github, 10)) == 1
    assert not any("passwd" in a["path"] or "hostname" in a["path"] for a in fork_pr.github["assets"])
