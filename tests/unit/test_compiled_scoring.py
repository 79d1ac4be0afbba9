"""The compiled scorer: scikit-learn's answers bit for bit, the same answer for a row alone or in any
batch for every estimator family, and a loud failure when that does not hold.

Served predictions must equal the offline ones exactly (the deploy parity check compares them):
evaluation, the monitoring reference, the parity check and serving all score through
``CompiledPipeline``. Models are small (a few hundred generated rows, few trees) and shared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_info, threadpool_limits

from mlops.core.config import DataParams, Params, load_params
from mlops.core.contract import Contract, load_contract
from mlops.core.task import task_of
from mlops.example.data import generate_period
from mlops.pipeline import training
from mlops.pipeline.datasets import read_table, write_table
from mlops.pipeline.evaluation import evaluate
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import reference, train
from mlops.release import deploy
from mlops.serving.inference import Predictor, records
from support import FIXTURES
from support.fake_torchserve import FakeClient, FakeContext, FakeServer

pytestmark = pytest.mark.unit

CONTRACTS = {
    "binary": FIXTURES / "contract.yaml",
    "multiclass": FIXTURES / "contract-multiclass.yaml",
    "regression": FIXTURES / "contract-regression.yaml",
}
FAMILIES = ("linear", "random_forest", "hist_gradient_boosting")


@pytest.fixture(scope="module")
def params() -> Params:
    """The fixture params, with small forests and boosting so each fit takes a fraction of a second."""
    p = load_params(FIXTURES / "params.yaml")
    rf = p.train.random_forest.model_copy(update={"n_estimators": 25})
    hgb = p.train.hist_gradient_boosting.model_copy(update={"max_iter": 60})
    return p.model_copy(
        update={"train": p.train.model_copy(update={"random_forest": rf, "hist_gradient_boosting": hgb})}
    )


@pytest.fixture(scope="module")
def data(params: Params, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], pd.DataFrame]:
    """Generated loans per task, stored and read back as Parquet, as the pipeline keeps its splits."""
    cache: dict[str, pd.DataFrame] = {}

    def get(task: str) -> pd.DataFrame:
        if task not in cache:
            p = DataParams.model_validate(params.data.model_dump() | {"task": task, "rows_per_period": 400})
            path = tmp_path_factory.mktemp("data") / f"{task}.parquet"
            write_table(pd.concat([generate_period(p, i) for i in range(2)], ignore_index=True), path)
            cache[task] = read_table(path)
        return cache[task]

    return get


@pytest.fixture(scope="module")
def fitted(params: Params, data: Callable[[str], pd.DataFrame]) -> Callable[[str, str], Any]:
    """(pipeline, contract, holdout) per (family, task), fitted once with the library's ``train``."""
    cache: dict[tuple[str, str], tuple[Pipeline, Contract, pd.DataFrame]] = {}

    def get(family: str, task: str) -> tuple[Pipeline, Contract, pd.DataFrame]:
        if (family, task) not in cache:
            contract = load_contract(CONTRACTS[task])
            frame = data(task)
            p = params.train.model_copy(update={"estimator": family})
            cache[family, task] = (train(frame.iloc[:600], contract, p).pipeline, contract, frame.iloc[600:])
        return cache[family, task]

    return get


def sklearn_outputs(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    return pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else pipeline.predict(X)


def compiled(pipeline: Pipeline, contract: Contract) -> Any:
    from mlops.pipeline.compiled import compile_pipeline

    return compile_pipeline(pipeline, contract.features)


# ---- bitwise equal to scikit-learn -------------------------------------------------------------


@pytest.mark.parametrize("task", list(CONTRACTS))
@pytest.mark.parametrize("family", ["hist_gradient_boosting", "random_forest"])
def test_compiled_scores_equal_scikit_learn_bit_for_bit(fitted, family, task):
    from mlops.pipeline.compiled import edge_rows, rows_frame

    pipeline, contract, holdout = fitted(family, task)
    model = compiled(pipeline, contract)
    assert model.features_ is not None
    assert (model.estimator_ is not None) == (family == "hist_gradient_boosting")  # forests: scikit-learn's trees
    X, _ = features_and_target(holdout, contract)
    expected = sklearn_outputs(pipeline, X)
    np.testing.assert_array_equal(model.outputs(X), expected)  # a table, as evaluation scores it
    np.testing.assert_array_equal(model.outputs(records(X, contract.features)), expected)  # rows, as served
    edges = edge_rows(model, records(X.head(1), contract.features)[0])
    assert len(edges) > 30
    np.testing.assert_array_equal(
        model.outputs(edges), sklearn_outputs(pipeline, rows_frame(edges, contract.features))
    )  # nulls, absent keys, unknown and infrequent categories, integers as categories


@pytest.mark.parametrize("task", list(CONTRACTS))
def test_linear_scores_equal_scikit_learn_to_1e9_and_do_not_depend_on_the_batch(fitted, task):
    pipeline, contract, holdout = fitted("linear", task)
    model = compiled(pipeline, contract)
    X, _ = features_and_target(holdout, contract)
    batch = model.outputs(X)
    np.testing.assert_allclose(batch, sklearn_outputs(pipeline, X), rtol=1e-9, atol=1e-9)
    alone = np.concatenate([model.outputs(X.iloc[i : i + 1]) for i in range(50)])
    np.testing.assert_array_equal(alone, batch[:50])


# ---- parity: a row alone, in a batch, offline -------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_a_served_row_scores_exactly_as_offline_alone_and_in_any_batch(fitted, family):
    pipeline, contract, holdout = fitted(family, "binary")
    frame = holdout.head(120)
    offline = reference(pipeline, frame, contract, rows=len(frame))["score"].to_numpy()  # monitoring's reference
    predictor = Predictor(pipeline, contract, "v1")
    task = task_of(contract).for_model(pipeline)
    rows = records(frame, contract.features)
    for size in (1, 7, 100, len(rows)):
        served = [task.score_of(a) for i in range(0, len(rows), size) for a in predictor.predict(rows[i : i + size])]
        np.testing.assert_array_equal(np.array(served), offline, err_msg=f"batches of {size} rows")


@pytest.fixture(scope="module")
def release_params(params: Params) -> Params:
    latency = params.deploy.latency.model_copy(update={"max_p99_ms": 60_000.0, "min_rps": 0.0})
    return params.model_copy(
        update={"deploy": params.deploy.model_copy(update={"parity_rows": 180, "latency": latency})}
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_the_deploy_parity_check_passes_for_every_family_every_time(fitted, release_params, family, tmp_path):
    pipeline, contract, holdout = fitted(family, "binary")
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    holdout.to_parquet(tmp_path / "holdout.parquet")
    served = joblib.load(tmp_path / "pipeline.joblib")  # the archive's copy, loaded by the worker
    server = FakeServer("staging", {"v1": Predictor(served, contract, "v1")})
    client = FakeClient(server)
    client.register("m-v1.mar", "m", "v1", 10)
    ctx = FakeContext(tmp_path, release_params, tmp_path, tmp_path, lambda _: None, contract, tmp_path / "m.mar",
                      {"version": "v1"}, tmp_path / "pipeline.joblib", tmp_path / "holdout.parquet")  # fmt: skip
    frame = pd.read_parquet(tmp_path / "holdout.parquet")
    for _ in range(3):
        check = deploy.check_parity(ctx, client, frame)
        assert check.passed, check.detail
        assert check.figures == {"rows": 180, "mismatched": 0}


def test_a_random_forest_predicts_with_one_job_and_gives_the_same_answer_twice(fitted):
    pipeline, contract, holdout = fitted("random_forest", "binary")
    assert pipeline.steps[-1][1].n_jobs == 1  # fitted with every core, predicting with one
    X, _ = features_and_target(holdout, contract)
    np.testing.assert_array_equal(pipeline.predict_proba(X), pipeline.predict_proba(X))


def test_a_null_category_scores_the_same_alone_and_next_to_a_row_without_the_field():
    contract = load_contract(CONTRACTS["binary"])
    frame = pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})
    p = load_params(FIXTURES / "params.yaml").train.model_copy(update={"estimator": "linear"})
    predictor = Predictor(train(frame, contract, p).pipeline, contract, "v1")
    [row, other] = records(frame.head(2), contract.features)
    with_null = dict(row, region=None)  # "region": null
    without = {k: v for k, v in other.items() if k != "region"}  # no "region" key at all (it is optional)
    alone = predictor.predict([with_null])[0]
    assert predictor.predict([with_null, without])[0] == alone
    assert predictor.predict([without, with_null])[1] == alone


# ---- a difference is loud; what is not compiled is scored by scikit-learn ---------------------


def test_a_compiled_score_that_differs_from_scikit_learn_stops_training(params, data, monkeypatch):
    from mlops.pipeline import compiled as compiled_module

    real = compiled_module.CompiledTrees.outputs
    monkeypatch.setattr(compiled_module.CompiledTrees, "outputs", lambda self, X: np.nextafter(real(self, X), 2))
    contract = load_contract(CONTRACTS["binary"])
    with pytest.raises(compiled_module.ParityError, match=r"compiled HistGradientBoostingClassifier: \d+ of \d+ rows"):
        train(data("binary").iloc[:300], contract, params.train)


def test_a_score_that_depends_on_its_batch_is_refused(fitted, monkeypatch):
    from mlops.pipeline import compiled as compiled_module

    pipeline, contract, holdout = fitted("hist_gradient_boosting", "binary")
    model = compiled(pipeline, contract)
    real = model.estimator_.outputs
    monkeypatch.setattr(model.estimator_, "outputs", lambda X: real(X) if len(X) > 1 else real(X) * (1 - 1e-16))
    with pytest.raises(compiled_module.ParityError, match="alone against the same row in a batch"):
        compiled_module.verify(model, contract.features, holdout)


def test_parts_the_compiler_does_not_know_are_scored_by_scikit_learn_and_said_so(fitted, caplog):
    pipeline, contract, holdout = fitted("hist_gradient_boosting", "binary")
    X, y = features_and_target(holdout, contract)
    extra = Pipeline([pipeline.steps[0], ("copy", FunctionTransformer(np.array)), pipeline.steps[1]])
    knn = Pipeline([pipeline.steps[0], ("model", KNeighborsClassifier(5).fit(pipeline[:-1].transform(X), y))])
    with caplog.at_level(logging.INFO, logger="mlops.pipeline.compiled"):
        a, b = compiled(extra, contract), compiled(knn, contract)
    assert a.path_ == "features: scikit-learn, estimator: compiled"
    assert b.path_ == "features: compiled, estimator: scikit-learn"
    assert "scoring preprocessing by scikit-learn" in caplog.text
    assert "scoring estimator by scikit-learn: estimator KNeighborsClassifier" in caplog.text
    np.testing.assert_array_equal(a.outputs(records(X, contract.features)), extra.predict_proba(X))
    np.testing.assert_array_equal(b.outputs(X), knn.predict_proba(X))


def test_evaluation_scores_through_the_compiled_scorer(fitted, params, data, monkeypatch):
    from mlops.pipeline.compiled import CompiledPipeline

    pipeline, contract, holdout = fitted("hist_gradient_boosting", "binary")
    calls = []
    real = CompiledPipeline.outputs
    monkeypatch.setattr(CompiledPipeline, "outputs", lambda self, X: calls.append(len(X)) or real(self, X))
    result = evaluate(pipeline, data("binary").iloc[:600], holdout, contract, params.evaluate, seed=0)
    assert calls[0] == len(holdout)  # the holdout, then each permutation
    X, y = features_and_target(holdout, contract)
    assert result.metrics["log_loss"] == pytest.approx(
        task_of(contract).for_model(pipeline).loss(y, pipeline.predict_proba(X)), abs=0
    )


# ---- native threads ----------------------------------------------------------------------------


def openmp_threads() -> int:
    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"), default=1)


def test_training_fits_with_one_native_thread(params, data, monkeypatch):
    seen = []
    real = training.build_pipeline

    def spy(*args: Any, **kwargs: Any) -> Pipeline:
        pipeline = real(*args, **kwargs)
        estimator = pipeline.steps[-1][1]
        fit = estimator.fit
        monkeypatch.setattr(estimator, "fit", lambda X, y, **kw: seen.append(openmp_threads()) or fit(X, y, **kw))
        return pipeline

    monkeypatch.setattr(training, "build_pipeline", spy)
    monkeypatch.delenv("MLOPS_NATIVE_THREADS", raising=False)
    with threadpool_limits(2):  # whatever the process allows, the fit takes one
        train(data("binary").iloc[:300], load_contract(CONTRACTS["binary"]), params.train)
    assert seen == [1]


def test_one_native_thread_fits_the_same_trees_and_scores_as_two(params, data):
    contract = load_contract(CONTRACTS["binary"])
    X, y = features_and_target(data("binary").iloc[:300], contract)
    fits = []
    for n in (1, 2):
        with threadpool_limits(n):
            fits.append(training.build_pipeline(contract, params.train).fit(X, y))
    trees = [b"".join(p[0].nodes.tobytes() for p in f.steps[-1][1]._predictors) for f in fits]
    assert trees[0] == trees[1]
    np.testing.assert_array_equal(fits[0].predict_proba(X), fits[1].predict_proba(X))


def test_a_bad_thread_setting_names_the_variable(monkeypatch):
    from mlops.core.errors import UserError
    from mlops.core.threads import limit

    monkeypatch.setenv("MLOPS_NATIVE_THREADS", "many")
    with pytest.raises(UserError, match="MLOPS_NATIVE_THREADS='many'"):
        limit()
    monkeypatch.setenv("MLOPS_NATIVE_THREADS", "0")
    assert limit() is None


@pytest.mark.parametrize("keep", ["numbers", "categories"])
def test_a_table_of_numbers_only_or_categories_only_compiles_and_scores_as_scikit_learn(params, data, keep):
    # the preprocessing branch with no columns is never fitted: the compiler must not read it
    contract = load_contract(CONTRACTS["binary"])
    numbers_wanted = keep == "numbers"
    dropped = [n for n in contract.features if contract.columns[n].is_numeric != numbers_wanted]
    assert dropped
    assert len(dropped) < len(contract.features)
    spec = contract.model_dump(exclude_defaults=True)
    contract = Contract.model_validate(
        {**spec, "columns": {n: c for n, c in spec["columns"].items() if n not in dropped}}
    )
    frame = data("binary").drop(columns=dropped)
    pipeline = train(frame.iloc[:600], contract, params.train).pipeline
    model = compiled(pipeline, contract)
    assert model.features_ is not None
    X, _ = features_and_target(frame.iloc[600:], contract)
    np.testing.assert_array_equal(model.outputs(X), sklearn_outputs(pipeline, X))
    np.testing.assert_array_equal(model.outputs(records(X, contract.features)), sklearn_outputs(pipeline, X))
