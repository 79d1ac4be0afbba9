"""Fit the feature pipeline plus the estimator family chosen in params."""

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
from mlops.pipeline.features import build_preprocessor, features_and_target


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
    """A fitted pipeline with its loss curve (iteration, train_loss[, validation_loss])."""

    pipeline: Pipeline
    loss_curve: pd.DataFrame
    train_loss: float
    rows: int


def train(frame: pd.DataFrame, contract: Contract, params: TrainParamsBase) -> TrainingResult:
    """Fit on ``frame``; record the loss curve where the estimator has one."""
    X, y = features_and_target(frame, contract)
    pipeline = build_pipeline(contract, params).fit(X, y)
    task = task_of(contract).for_model(pipeline)
    final = task.loss(y, task.outputs(pipeline, X))
    return TrainingResult(pipeline, _loss_curve(pipeline, final), final, len(X))


def reference(
    pipeline: Pipeline, frame: pd.DataFrame, contract: Contract, rows: int = 5000, seed: int = 0
) -> pd.DataFrame:
    """A sample of the training inputs with the model's score: what monitoring compares serving with."""
    sample = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    X, _ = features_and_target(sample, contract)
    task = task_of(contract).for_model(pipeline)
    out = X.reset_index(drop=True).copy()
    out["score"] = task.scores(task.outputs(pipeline, X))
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
