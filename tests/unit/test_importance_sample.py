"""Permutation importance runs on a seeded sample of at most `evaluate.importance_rows` holdout rows."""

from pathlib import Path

import pandas as pd
import pytest
from sklearn.inspection import permutation_importance

from mlops.core.config import DataParams, Params, load_params
from mlops.core.contract import load_contract
from mlops.core.task import task_of
from mlops.example.data import generate_period
from mlops.pipeline.compiled import compile_pipeline
from mlops.pipeline.evaluation import evaluate
from mlops.pipeline.features import features_and_target
from mlops.pipeline.splitting import split
from mlops.pipeline.training import train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def setting():
    base = load_params(FIXTURES / "params.yaml")
    params = Params.model_validate(
        base.model_dump()
        | {"train": base.train.model_dump() | {"estimator": "linear"}}
        | {"evaluate": base.evaluate.model_dump() | {"importance_rows": 300, "permutation_repeats": 2}}
    )
    contract = load_contract(FIXTURES / "contract.yaml")
    data = DataParams.model_validate(params.data.model_dump() | {"rows_per_period": 400})
    frame = pd.concat([generate_period(data, i) for i in range(5)], ignore_index=True)
    train_set, holdout = split(frame, contract, params.split)
    assert len(holdout) > 300
    fitted = train(train_set, contract, params.train).pipeline
    return params, contract, train_set, holdout, fitted


def test_importance_scores_at_most_importance_rows_per_call(setting):
    params, contract, train_set, holdout, fitted = setting
    model = compile_pipeline(fitted, contract.features)
    sizes: list[int] = []
    outputs = model.outputs

    def counted(X):
        sizes.append(len(X))
        return outputs(X)

    model.outputs = counted  # type: ignore[method-assign]
    result = evaluate(model, train_set, holdout, contract, params.evaluate, seed=0)
    # the metrics and scikit-learn's baseline score score the whole holdout once each; every
    # permuted copy (features x repeats) is the sample
    assert sizes.count(len(holdout)) == 2
    importance_calls = [n for n in sizes if n != len(holdout)]
    assert importance_calls == [300] * len(contract.features) * params.evaluate.permutation_repeats
    assert result.metrics["rows"]["importance"] == 300
    assert set(result.tables["importance"]["feature"]) == set(contract.features)


def test_importance_on_a_sample_is_the_same_in_two_runs(setting):
    params, contract, train_set, holdout, fitted = setting
    first = evaluate(fitted, train_set, holdout, contract, params.evaluate, seed=0)
    second = evaluate(fitted, train_set, holdout, contract, params.evaluate, seed=0)
    pd.testing.assert_frame_equal(first.tables["importance"], second.tables["importance"])
    assert first.metrics == second.metrics


def test_a_holdout_smaller_than_the_cap_is_used_whole(setting):
    params, contract, train_set, holdout, fitted = setting
    small = holdout.head(200)
    result = evaluate(fitted, train_set, small, contract, params.evaluate, seed=0)
    assert result.metrics["rows"] == {"train": len(train_set), "holdout": 200, "importance": 200}


def test_importance_in_two_threads_is_the_same_bits_as_in_one(setting):
    # evaluate scores features in two threads; each feature's shuffles come from seeds drawn up
    # front, so the table must equal scikit-learn's one-thread answer exactly
    params, contract, train_set, holdout, fitted = setting
    model = compile_pipeline(fitted, contract.features)
    result = evaluate(model, train_set, holdout, contract, params.evaluate, seed=0)
    X, y = features_and_target(holdout, contract)
    one = permutation_importance(
        model,
        X,
        y,
        scoring=task_of(contract).importance_scoring,
        n_repeats=params.evaluate.permutation_repeats,
        random_state=0,
        n_jobs=1,
        max_samples=params.evaluate.importance_rows,
    )
    expected = dict(zip(X.columns, one.importances_mean.round(6), strict=True))
    table = result.tables["importance"]
    assert dict(zip(table["feature"], table["importance"], strict=True)) == expected
    assert len(set(expected.values())) > 1  # the features differ: the comparison says something
