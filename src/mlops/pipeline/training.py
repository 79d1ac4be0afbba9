"""Fit the feature pipeline plus the estimator family chosen in params, and compile it for scoring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.config import TrainParamsBase
from mlops.core.contract import Contract
from mlops.core.estimators import FAMILIES
from mlops.core.task import task_of
from mlops.core.threads import native_threads
from mlops.pipeline.compiled import CompiledPipeline, compile_pipeline, verify
from mlops.pipeline.features import build_preprocessor, features_and_target

VERIFY_ROWS = 2000  # training rows the compiled scorer is checked on (plus its edge rows)


def build_estimator(contract: Contract, params: TrainParamsBase) -> Any:
    """The unfitted estimator of the family ``params.estimator`` names (``mlops.core.estimators``)."""
    family = FAMILIES[params.estimator]
    return family.build(params.family_params(), task_of(contract).is_classification, params.seed)


def build_pipeline(contract: Contract, params: TrainParamsBase) -> Pipeline:
    """Unfitted: contract columns -> preprocessing -> estimator."""
    return Pipeline(
        [
            ("features", build_preprocessor(contract, params.features)),
            ("model", build_estimator(contract, params)),
        ]
    )


@dataclass
class TrainingResult:
    """A fitted pipeline, its compiled scorer, and its loss curve (iteration, train_loss[, validation_loss])."""

    pipeline: Pipeline
    model: CompiledPipeline  # the pipeline compiled and verified: what scores it everywhere
    loss_curve: pd.DataFrame
    train_loss: float
    rows: int


def predict_single_threaded(pipeline: Pipeline) -> None:
    """Make the fitted estimator predict with one job.

    A random forest fitted with ``n_jobs=-1`` also predicts with threads, which add the trees'
    answers in whatever order they finish: two calls on the same rows can differ in the last bits,
    and a row's score depends on its batch. With one job the sum runs in tree order.
    """
    estimator = pipeline.steps[-1][1]
    if "n_jobs" in estimator.get_params():
        estimator.set_params(n_jobs=1)


def train(frame: pd.DataFrame, contract: Contract, params: TrainParamsBase) -> TrainingResult:
    """Fit on ``frame``, compile the fitted pipeline and verify it; record the loss curve.

    Raises ``ParityError`` when the compiled scorer and scikit-learn disagree on the training rows.
    """
    X, y = features_and_target(frame, contract)
    with native_threads():
        pipeline = build_pipeline(contract, params).fit(X, y)
        predict_single_threaded(pipeline)
        model = compile_pipeline(pipeline, contract.features)
        verify(model, contract.features, X.head(VERIFY_ROWS))
        task = task_of(contract).for_model(pipeline)
        final = task.loss(y, task.outputs(model, X))
    return TrainingResult(pipeline, model, _loss_curve(pipeline, final), final, len(X))


def scorer(model: Pipeline | CompiledPipeline, contract: Contract) -> CompiledPipeline:
    """The compiled scorer of a fitted pipeline (itself if it is one already)."""
    return model if isinstance(model, CompiledPipeline) else compile_pipeline(model, contract.features)


def reference(
    model: Pipeline | CompiledPipeline, frame: pd.DataFrame, contract: Contract, rows: int = 5000, seed: int = 0
) -> pd.DataFrame:
    """A sample of the training inputs with the model's score: what monitoring compares serving with."""
    sample = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    X, _ = features_and_target(sample, contract)
    compiled = scorer(model, contract)
    task = task_of(contract).for_model(compiled.pipeline)
    out = X.reset_index(drop=True).copy()
    with native_threads():
        out["score"] = task.scores(task.outputs(compiled, X))
    return out


def _loss_curve(pipeline: Pipeline, final_loss: float) -> pd.DataFrame:
    model = pipeline.named_steps["model"]
    train_scores = getattr(model, "train_score_", np.array([]))
    if len(train_scores) > 1:
        # scoring="loss" records the negative loss; index 0 is the initial (constant) model
        curve = pd.DataFrame({"iteration": np.arange(len(train_scores)), "train_loss": -train_scores})
        valid = getattr(model, "validation_score_", np.array([]))
        if len(valid) == len(train_scores):
            curve["validation_loss"] = -valid
        return curve
    return pd.DataFrame({"iteration": [1], "train_loss": [final_loss]})
