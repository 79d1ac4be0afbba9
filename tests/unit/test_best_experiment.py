"""`mlops exp best`'s choice among `dvc exp show` rows: finished experiments only, by one metric."""

from __future__ import annotations

import pytest

from mlops.core.errors import UserError
from mlops.pipeline.experiments import best_experiment

pytestmark = pytest.mark.unit

ROWS = [
    {"Experiment": None, "rev": "workspace", "State": None, "roc_auc": 0.99, "log_loss": 0.01},  # a baseline
    {"Experiment": "fluky-bold", "rev": "7639730", "State": "Success", "roc_auc": 0.787, "log_loss": 0.36},
    {"Experiment": "rusty-snib", "rev": "6d21743", "State": "Success", "roc_auc": 0.783, "log_loss": 0.35},
    {"Experiment": "still-going", "rev": "1111111", "State": "Running", "roc_auc": 0.95, "log_loss": 0.1},
    {"Experiment": "no-metric", "rev": "2222222", "State": "Success", "roc_auc": None, "log_loss": None},
]


def test_the_highest_metric_among_finished_experiments_wins():
    chosen = best_experiment(ROWS, "roc_auc")
    assert (chosen.name, chosen.rev, chosen.value) == ("fluky-bold", "7639730", 0.787)


def test_lower_is_better_picks_the_smallest():
    assert best_experiment(ROWS, "log_loss", higher_is_better=False).name == "rusty-snib"


def test_an_unknown_metric_is_named_with_the_ones_there_are():
    with pytest.raises(UserError, match=r"no experiment has the metric 'auc'; metrics: log_loss, roc_auc"):
        best_experiment(ROWS, "auc")


def test_no_experiment_says_how_to_run_one():
    with pytest.raises(UserError, match=r"no finished experiment.*dvc exp run"):
        best_experiment(ROWS[:1], "roc_auc")
