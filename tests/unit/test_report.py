"""The PR report's decide and render steps over plain facts, and how it reads `dvc repro`."""

from __future__ import annotations

import pytest

from mlops.core.config import GateParams
from mlops.core.task import Binary, Regression
from mlops.release import report
from mlops.release.report import Change, Comparison, DataDiff, Facts, Production
from mlops.release.repro import Repro, StageRun, stage_event

pytestmark = pytest.mark.unit

GATES = GateParams(minimum={"roc_auc": 0.75}, maximum={"log_loss": 0.6}, regression_budget={"roc_auc": 0.01})
VALID = {"success": True, "evaluated": 10, "failed": 0, "batches": {"a.csv": 100}, "expectations": []}


def facts(**over) -> Facts:
    base = {
        "base": "main",
        "repro": Repro(0, [StageRun("train", "ran", 2.0), StageRun("validate", "unchanged")], 3.0),
        "validation": VALID,
        "candidate": {"roc_auc": 0.82, "log_loss": 0.3},
        "params": [Change("train.seed", 1, 2)],
        "metrics": [Change("roc_auc", 0.8, 0.82, 0.02), Change("baseline.roc_auc", 0.5, 0.5, 0.0)],
        "production": None,
        "vs_production": [],
        "data": DataDiff(files={"added": ["2025-07.csv"]}, rows=(100, 150)),
        "images": {},
    }
    return Facts(**(base | over))


def test_a_branch_within_every_threshold_passes():
    f = facts()
    assert report.decide(f, GATES) == []
    text = report.render(f, [])
    assert text.startswith("## ✅ Gate passed")
    assert "| `train.seed` | 1 | 2 |" in text
    assert "added `2025-07.csv`" in text
    assert "Rows: 100 → 150." in text
    assert "dvc repro: 1 stage(s) ran, 1 from cache, 3.0s" in text


def test_invalid_data_fails_first_and_names_the_count():
    bad = VALID | {"success": False, "failed": 2}
    failures = report.decide(facts(validation=bad, candidate={}), GATES)
    assert failures[0] == "data validation failed: 2 expectation(s)"
    assert report.render(facts(validation=bad), failures).startswith("## ❌ Gate failed: data validation failed")


def test_metrics_outside_the_absolute_gates_fail():
    failures = report.decide(facts(candidate={"roc_auc": 0.7, "log_loss": 0.7}), GATES)
    assert failures == ["roc_auc 0.7000 < minimum 0.75", "log_loss 0.7000 > maximum 0.6"]


def test_a_gate_naming_a_metric_the_task_lacks_fails_rather_than_passing():
    failures = report.decide(facts(candidate={"rmse": 1.0}), GATES)
    assert "gates.minimum names 'roc_auc', which this task does not produce" in failures


def test_a_candidate_worse_than_production_beyond_the_budget_fails():
    rows = report.compare_with_production({"roc_auc": 0.80, "log_loss": 0.35}, {"roc_auc": 0.82, "log_loss": 0.30},
                                          {"roc_auc": 0.01}, Binary((0, 1)))  # fmt: skip
    auc = next(r for r in rows if r.metric == "roc_auc")
    assert auc.worse_by == pytest.approx(0.02)
    assert auc.over_budget
    assert not next(r for r in rows if r.metric == "log_loss").over_budget  # no budget: shown, not gated
    failures = report.decide(facts(vs_production=rows), GATES)
    assert failures == ["roc_auc 0.8000 is 0.0200 worse than production 0.8200 (budget 0.01)"]


def test_lower_is_better_metrics_count_an_increase_as_worse():
    [rmse] = [r for r in report.compare_with_production({"rmse": 2.0}, {"rmse": 1.5}, {"rmse": 0.1}, Regression())]
    assert rmse.worse_by == pytest.approx(0.5)
    assert rmse.over_budget


def test_the_production_section_says_why_it_is_missing():
    assert "Nothing is in production yet: no production record in git" in report.render(facts(), [])
    unfetched = Production("model/production/3", {"version": "abc"}, None, "could not fetch its model")
    assert "Production is `abc` (model/production/3), but could not fetch its model" in report.render(
        facts(production=unfetched), []
    )
    served = Production("model/production/3", {"version": "abc"}, object())
    row = Comparison("roc_auc", 0.82, 0.83, 0.01, -0.01)
    text = report.render(facts(production=served, vs_production=[row]), [])
    assert "| roc_auc | 0.8200 | 0.8300 | +0.0100 | ok (budget 0.01) |" in text


def test_dvc_repro_lines_are_read_as_stage_outcomes():
    assert stage_event("Running stage 'train':\n") == StageRun("train", "ran")
    assert stage_event("Stage 'split' is cached - skipping run, checking out outputs\n") == StageRun(
        "split", "run-cache"
    )
    assert stage_event("Stage 'validate' didn't change, skipping\n") == StageRun("validate", "unchanged")
    assert stage_event("Updating lock file 'dvc.lock'\n") is None


def test_images_are_linked_in_a_fixed_order():
    text = report.render(facts(images={"this branch": "a.png", "base": "b.png"}), [])
    assert "| this branch | base |" in text
    assert "![this branch](a.png) | ![base](b.png)" in text
