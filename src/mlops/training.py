"""Fit the feature pipeline plus the estimator chosen in params."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.pipeline import Pipeline

from mlops.config import TrainParams
from mlops.contract import Contract
from mlops.features import build_preprocessor, features_and_target


def build_estimator(contract: Contract, params: TrainParams) -> BaseEstimator:
    classify = contract.is_classification
    if params.estimator == "linear":
        p = params.linear
        if classify:
            return LogisticRegression(C=p.C, max_iter=p.max_iter, random_state=params.seed)
        return Ridge(alpha=1.0 / p.C, max_iter=p.max_iter, random_state=params.seed)
    if params.estimator == "random_forest":
        rf = params.random_forest
        cls = RandomForestClassifier if classify else RandomForestRegressor
        return cls(
            n_estimators=rf.n_estimators,
            max_depth=rf.max_depth,
            min_samples_leaf=rf.min_samples_leaf,
            random_state=params.seed,
            n_jobs=-1,
        )
    h = params.hist_gradient_boosting
    hgb = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return hgb(
        learning_rate=h.learning_rate,
        max_iter=h.max_iter,
        max_leaf_nodes=h.max_leaf_nodes,
        l2_regularization=h.l2_regularization,
        early_stopping=h.early_stopping,
        validation_fraction=h.validation_fraction,
        n_iter_no_change=h.n_iter_no_change,
        scoring="loss",
        random_state=params.seed,
    )


def build_pipeline(contract: Contract, params: TrainParams) -> Pipeline:
    """Unfitted: contract columns -> preprocessing -> estimator."""
    return Pipeline(
        [
            ("features", build_preprocessor(contract, params.features)),
            ("model", build_estimator(contract, params)),
        ]
    )


@dataclass
class TrainingResult:
    pipeline: Pipeline
    loss_curve: pd.DataFrame  # iteration, train_loss[, validation_loss]
    train_loss: float
    rows: int


def train(frame: pd.DataFrame, contract: Contract, params: TrainParams) -> TrainingResult:
    """Fit on ``frame``; record the loss curve where the estimator has one."""
    X, y = features_and_target(frame, contract)
    pipeline = build_pipeline(contract, params).fit(X, y)
    final = _training_loss(pipeline, X, y, contract)
    return TrainingResult(pipeline, _loss_curve(pipeline, final), final, len(X))


def reference(
    pipeline: Pipeline, frame: pd.DataFrame, contract: Contract, rows: int = 5000, seed: int = 0
) -> pd.DataFrame:
    """A sample of the training inputs with the model's score: what monitoring compares serving with."""
    sample = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    X, _ = features_and_target(sample, contract)
    out = X.reset_index(drop=True).copy()
    if contract.task == "binary":
        out["score"] = pipeline.predict_proba(X)[:, 1]
    elif contract.task == "multiclass":
        out["score"] = pipeline.predict(X).astype(str)
    else:
        out["score"] = pipeline.predict(X)
    return out


def score_edges(reference_frame: pd.DataFrame, task: str) -> list[float]:
    """Bucket edges for the served score: probability deciles, or training-score deciles (regression)."""
    if task == "regression":
        return [float(v) for v in np.quantile(reference_frame["score"], np.linspace(0, 1, 11))]
    return [round(i / 10, 1) for i in range(11)]


def _training_loss(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series, contract: Contract) -> float:
    if contract.is_classification:
        return float(log_loss(y, pipeline.predict_proba(X), labels=pipeline.classes_))
    return float(mean_squared_error(y, pipeline.predict(X)) / 2)  # half squared error, as HGB reports


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
