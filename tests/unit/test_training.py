from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.core.config import DataParams, Params, load_params
from mlops.core.contract import load_contract
from mlops.example.data import generate_period
from mlops.pipeline.evaluation import evaluate
from mlops.pipeline.splitting import split
from mlops.pipeline.training import train

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CONTRACTS = {
    "binary": FIXTURES / "contract.yaml",
    "multiclass": FIXTURES / "contract-multiclass.yaml",
    "regression": FIXTURES / "contract-regression.yaml",
}
pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(FIXTURES / "params.yaml")


def data(params: Params, task: str, periods: int = 5, rows: int = 600) -> pd.DataFrame:
    p = DataParams.model_validate(params.data.model_dump() | {"task": task, "rows_per_period": rows})
    return pd.concat([generate_period(p, i) for i in range(periods)], ignore_index=True)


def with_estimator(params: Params, estimator: str) -> Params:
    return params.model_validate(params.model_dump() | {"train": params.train.model_dump() | {"estimator": estimator}})


def test_training_loss_decreases_and_converges_below_a_bound(params):
    contract = load_contract(CONTRACTS["binary"])
    result = train(data(params, "binary", rows=1000), contract, params.train)
    curve = result.loss_curve
    assert len(curve) > 20
    assert list(curve.columns) == ["iteration", "train_loss", "validation_loss"]
    losses = curve["train_loss"].to_numpy()
    assert losses[-1] < losses[0] * 0.8  # learned something beyond the prior
    window = 10
    smoothed = np.convolve(losses, np.ones(window) / window, mode="valid")
    assert (np.diff(smoothed) <= 1e-9).mean() > 0.95  # decreasing, allowing tiny wiggles
    assert losses[-1] < 0.40  # log loss of the prior on this data is about 0.42
    assert result.train_loss < 0.40


@pytest.mark.parametrize("task", list(CONTRACTS))
@pytest.mark.parametrize("estimator", ["linear", "random_forest", "hist_gradient_boosting"])
def test_every_estimator_trains_for_every_task_and_beats_the_baseline(params, task, estimator):
    contract = load_contract(CONTRACTS[task])
    p = with_estimator(params, estimator)
    train_set, holdout = split(data(p, task), contract, p.split)
    fitted = train(train_set, contract, p.train).pipeline
    result = evaluate(fitted, train_set, holdout, contract, p.evaluate, seed=0)
    m = result.metrics
    if task == "regression":
        assert {"rmse", "mae", "r2"} <= m.keys()
        assert m["rmse"] < m["baseline"]["rmse"] * 0.8
        assert set(result.tables) == {"predictions", "importance"}
    else:
        assert {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"} <= m.keys()
        assert m["log_loss"] < m["baseline"]["log_loss"]
        assert m["roc_auc"] > 0.7
        expected_tables = {"confusion", "importance"} | ({"roc", "prc"} if task == "binary" else set())
        assert set(result.tables) == expected_tables
    if task == "multiclass":
        assert set(m["per_class"]) == {"A", "B", "C", "D"}
        assert all(0 <= v["f1"] <= 1 for v in m["per_class"].values())
    assert m["rows"] == {"train": len(train_set), "holdout": len(holdout), "importance": len(holdout)}


def test_time_split_holds_out_the_latest_periods(params):
    contract = load_contract(CONTRACTS["binary"])
    frame = data(params, "binary", periods=4, rows=50)
    train_set, holdout = split(frame, contract, params.split)
    assert sorted(holdout["period"].unique()) == ["2025-03", "2025-04"]
    assert train_set["period"].max() < holdout["period"].min()


def test_random_split_is_seeded_and_stratified(params):
    contract = load_contract(CONTRACTS["binary"])
    frame = data(params, "binary", periods=2, rows=500)
    p = params.split.model_copy(update={"method": "random"})
    a, b = split(frame, contract, p), split(frame, contract, p)
    pd.testing.assert_frame_equal(a[1], b[1])
    assert len(a[1]) == 200
    assert abs(a[1]["defaulted"].mean() - frame["defaulted"].mean()) < 0.01


def test_feature_importance_ranks_credit_score_among_the_top(params):
    contract = load_contract(CONTRACTS["binary"])
    train_set, holdout = split(data(params, "binary", rows=800), contract, params.split)
    fitted = train(train_set, contract, params.train).pipeline
    importance = evaluate(fitted, train_set, holdout, contract, params.evaluate, seed=0).tables["importance"]
    assert set(importance["feature"]) == set(contract.features)
    assert "credit_score" in importance["feature"].head(3).to_list()
