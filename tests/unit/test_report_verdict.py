"""The PR report's verdict says what was compared: a regression budget never checked is not "met"."""

from __future__ import annotations

import pytest

from mlops.core.config import GateParams
from mlops.release import report
from mlops.release.report import Comparison, DataDiff, Facts, Production

pytestmark = pytest.mark.unit

GATES = GateParams(minimum={"roc_auc": 0.75}, maximum={}, regression_budget={"roc_auc": 0.01})
VALID = {"success": True, "evaluated": 10, "failed": 0, "batches": {"a.csv": 100}, "expectations": []}
RECORD = {"version": "abc123", "sha256": "0" * 64}


def facts(production: Production | None, vs: list[Comparison]) -> Facts:
    return Facts(base="main", repro=None, validation=VALID, candidate={"roc_auc": 0.82}, params=[], metrics=[],
                 production=production, vs_production=vs, data=DataDiff(), images={})  # fmt: skip


def verdict(f: Facts) -> str:
    assert report.decide(f, GATES) == []
    return report.render(f, []).splitlines()[0]


def test_a_production_model_that_could_not_be_fetched_is_named_in_the_verdict_not_called_within_budget():
    unfetched = Production("model/production/3", RECORD, None, "could not fetch its model with DVC: no remote")
    line = verdict(facts(unfetched, []))
    assert line.startswith("## ✅ Gate passed")
    assert "within the regression budget" not in line
    assert "NOT compared with production (could not fetch its model with DVC: no remote)" in line


def test_a_compared_branch_says_it_is_within_the_budget():
    compared = [Comparison("roc_auc", 0.82, 0.82, 0.01, 0.0)]
    line = verdict(facts(Production("model/production/3", RECORD, object()), compared))
    assert "within the regression budget" in line


def test_without_production_the_verdict_says_there_was_nothing_to_compare():
    line = verdict(facts(None, []))
    assert "nothing in production to compare with yet" in line
    assert "within the regression budget" not in line


def test_notes_from_the_caller_are_shown_under_the_verdict():
    f = facts(None, [])
    f.notes = ["No DVC remote: this run regenerated the example data."]
    lines = report.render(f, []).splitlines()
    assert lines[0].startswith("## ✅ Gate passed")
    assert "> ⚠️ No DVC remote: this run regenerated the example data." in lines[1:4]
