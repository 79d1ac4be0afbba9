"""Holdout metrics, a trivial baseline, the data behind the plots, and the absolute gates."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from joblib import parallel_config
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from mlops.core.config import EvaluateParams
from mlops.core.contract import Contract
from mlops.core.task import task_of
from mlops.core.threads import native_threads
from mlops.pipeline.compiled import CompiledPipeline, compile_pipeline
from mlops.pipeline.features import features_and_target


@dataclass
class Evaluation:
    """Holdout metrics (with the baseline's under ``baseline``) and the plot tables by name."""

    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def score(model: Any, frame: pd.DataFrame, contract: Contract) -> dict[str, Any]:
    """The task's metrics of a fitted model (or baseline) on a labelled table.

    A pipeline scores through its compiled scorer, as it is served.
    """
    X, y = features_and_target(frame, contract)
    if isinstance(model, Pipeline):
        model = compile_pipeline(model, contract.features)
    task = task_of(contract).for_model(model)
    with native_threads():
        return task.metrics(y, task.outputs(model, X))


def evaluate(
    pipeline: Pipeline | CompiledPipeline,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    contract: Contract,
    params: EvaluateParams,
    seed: int,
) -> Evaluation:
    """Score the model and a trivial baseline on the holdout; build the plot tables.

    The model scores through its compiled scorer: the code that serves it.
    """
    with native_threads():
        model = pipeline if isinstance(pipeline, CompiledPipeline) else compile_pipeline(pipeline, contract.features)
        X, y = features_and_target(holdout, contract)
        task = task_of(contract).for_model(model.pipeline)
        outputs = task.outputs(model, X)
        baseline = task.baseline().fit(*features_and_target(train, contract))
        metrics = task.metrics(y, outputs)
        metrics["baseline"] = {k: v for k, v in score(baseline, holdout, contract).items() if k != "per_class"}
        # permutation importance scores the model features x repeats times: on a large holdout it
        # would cost more than training, so it runs on a seeded sample (a new one each repeat)
        importance_rows = min(params.importance_rows, len(X))
        metrics["rows"] = {"train": len(train), "holdout": len(holdout), "importance": importance_rows}
        tables = task.plot_tables(y, outputs, params.max_curve_points)
        # two threads, one feature each at a time: the compiled scorer's numpy releases the GIL
        # (1.1 s -> 0.84 s on the example, 2 cores); each feature's shuffles come from seeds
        # drawn up front, so the importances are the same bits as with one
        with parallel_config(backend="threading"):
            imp = permutation_importance(
                model,
                X,
                y,
                scoring=task.importance_scoring,
                n_repeats=params.permutation_repeats,
                random_state=seed,
                n_jobs=min(2, os.cpu_count() or 1),
                max_samples=importance_rows,
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
    for bound, limits, misses, sign in (
        ("minimum", minimum, float.__lt__, "<"),
        ("maximum", maximum, float.__gt__, ">"),
    ):
        for name, limit in limits.items():
            if name not in metrics:
                failures.append(f"gates.{bound} names '{name}', which this task does not produce")
            elif misses(float(metrics[name]), float(limit)):
                failures.append(f"{name} {metrics[name]:.4f} {sign} {bound} {limit}")
    return failures
