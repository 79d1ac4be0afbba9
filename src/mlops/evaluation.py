"""Holdout metrics, a trivial baseline, and the data behind the plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    precision_recall_curve,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    roc_curve,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline

from mlops.config import EvaluateParams
from mlops.contract import Contract
from mlops.features import features_and_target

# Metrics where lower is better; every other metric is higher-is-better.
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def classification_metrics(y: pd.Series, proba: np.ndarray, classes: list[Any], contract: Contract) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC AUC and log loss (macro plus per class for multiclass)."""
    pred = np.asarray(classes)[proba.argmax(axis=1)]
    out: dict[str, Any] = {"accuracy": float(accuracy_score(y, pred))}
    if contract.task == "binary":
        positive = classes[1]
        p, r, f, _ = precision_recall_fscore_support(y, pred, pos_label=positive, average="binary", zero_division=0)
        out.update(precision=float(p), recall=float(r), f1=float(f))
        out["roc_auc"] = float(roc_auc_score(y == positive, proba[:, 1])) if y.nunique() > 1 else 0.5
    else:
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=classes, average="macro", zero_division=0)
        out.update(precision=float(p), recall=float(r), f1=float(f))
        out["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        pc, rc, fc, sc = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
        out["per_class"] = {
            str(c): {"precision": float(a), "recall": float(b), "f1": float(d), "support": int(s)}
            for c, a, b, d, s in zip(classes, pc, rc, fc, sc, strict=True)
        }
    out["log_loss"] = float(log_loss(y, proba, labels=classes))
    return out


def regression_metrics(y: pd.Series, pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(root_mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)),
    }


def score(pipeline: Any, frame: pd.DataFrame, contract: Contract) -> dict[str, Any]:
    """The task's metrics of a fitted model (or baseline) on a labelled table."""
    X, y = features_and_target(frame, contract)
    if contract.is_classification:
        return classification_metrics(y, pipeline.predict_proba(X), list(pipeline.classes_), contract)
    return regression_metrics(y, pipeline.predict(X))


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """Keep at most ``max_points`` rows, evenly spaced, first and last included."""
    if len(frame) <= max_points:
        return frame.reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[idx].reset_index(drop=True)


def evaluate(
    pipeline: Pipeline,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    contract: Contract,
    params: EvaluateParams,
    seed: int,
) -> Evaluation:
    """Score the model and a trivial baseline on the holdout; build the plot tables."""
    X, y = features_and_target(holdout, contract)
    Xt, yt = features_and_target(train, contract)
    baseline = (DummyClassifier(strategy="prior") if contract.is_classification else DummyRegressor()).fit(Xt, yt)
    metrics = score(pipeline, holdout, contract)
    metrics["baseline"] = {k: v for k, v in score(baseline, holdout, contract).items() if k != "per_class"}
    metrics["rows"] = {"train": len(train), "holdout": len(holdout)}
    tables: dict[str, pd.DataFrame] = {}
    if contract.is_classification:
        classes = list(pipeline.classes_)
        proba = pipeline.predict_proba(X)
        tables["confusion"] = pd.DataFrame(
            {"actual": y.astype(str).to_numpy(), "predicted": np.asarray(classes)[proba.argmax(axis=1)].astype(str)}
        )
        if contract.task == "binary":
            positive = y == classes[1]
            fpr, tpr, thr = roc_curve(positive, proba[:, 1])
            tables["roc"] = _thin(
                pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}), params.max_curve_points
            )
            prec, rec, thr = precision_recall_curve(positive, proba[:, 1])
            prc = pd.DataFrame({"recall": rec[:-1], "precision": prec[:-1], "threshold": thr})
            tables["prc"] = _thin(prc, params.max_curve_points)
        scoring = "neg_log_loss"
    else:
        pred = pipeline.predict(X)
        tables["predictions"] = _thin(
            pd.DataFrame({"actual": y.to_numpy(), "predicted": pred, "residual": y.to_numpy() - pred}),
            params.max_curve_points,
        )
        scoring = "neg_root_mean_squared_error"
    imp = permutation_importance(
        pipeline, X, y, scoring=scoring, n_repeats=params.permutation_repeats, random_state=seed, n_jobs=1
    )
    tables["importance"] = (
        pd.DataFrame({"feature": X.columns, "importance": imp.importances_mean.round(6)})
        .sort_values(["importance", "feature"], ascending=[False, True])
        .reset_index(drop=True)
    )
    return Evaluation(metrics, tables)


def gate_failures(metrics: dict[str, Any], minimum: dict[str, float], maximum: dict[str, float]) -> list[str]:
    """One line per absolute threshold the metrics miss (a threshold naming no metric is an error)."""
    failures = []
    for name, floor in minimum.items():
        if name not in metrics:
            failures.append(f"gates.minimum names '{name}', which this task does not produce")
        elif metrics[name] < floor:
            failures.append(f"{name} {metrics[name]:.4f} < minimum {floor}")
    for name, ceiling in maximum.items():
        if name not in metrics:
            failures.append(f"gates.maximum names '{name}', which this task does not produce")
        elif metrics[name] > ceiling:
            failures.append(f"{name} {metrics[name]:.4f} > maximum {ceiling}")
    return failures
