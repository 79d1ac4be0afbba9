"""What differs per kind of task (binary, multiclass, regression), in one place.

A ``Task`` knows, for its kind: the model outputs to take offline (probabilities or values),
the metrics and which are lower-is-better, the shape of a served answer and how to read one
back, the one score per row that monitoring follows (and its buckets), the trivial baseline,
and the tables behind its plots. Every module that used to branch on the task asks it instead.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mlops.core.contract import Contract

# Metrics where lower is better; every other metric is higher-is-better.
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most ``max_points`` rows, evenly spaced, first and last included."""
    if len(frame) <= max_points:
        return frame.reset_index(drop=True)
    idx = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[idx].reset_index(drop=True)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values (JSON answers, dict keys)."""
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class Task(ABC):
    """The task of a contract. ``classes`` are in the model's order (``classes_``) once bound."""

    classes: tuple[Any, ...] = ()
    kind: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]  # in the order reports show them
    importance_scoring: ClassVar[str]  # scikit-learn scorer for permutation importance
    categorical_score: ClassVar[bool] = False

    @property
    def is_classification(self) -> bool:
        return bool(self.classes)

    @property
    def headline(self) -> str:
        """The metric a one-line summary shows first."""
        return self.metric_names[0]

    def for_model(self, model: Any) -> Task:
        """This task with the class order of a fitted model (``predict_proba``'s columns)."""
        classes = getattr(model, "classes_", None)
        return replace(self, classes=tuple(_plain(c) for c in classes)) if classes is not None else self

    @abstractmethod
    def outputs(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        """What the model answers offline: class probabilities (n, k) or values (n,)."""

    @abstractmethod
    def metrics(self, y: pd.Series, outputs: np.ndarray) -> dict[str, Any]:
        """The task's metrics of ``outputs`` against the truth ``y``."""

    @abstractmethod
    def answers(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """One served answer per row: ``{"prediction": ...}`` (plus ``probabilities``)."""

    @abstractmethod
    def from_answers(self, answers: Sequence[dict[str, Any]]) -> np.ndarray:
        """Served answers back into the ``outputs`` form (for parity and quality checks)."""

    @abstractmethod
    def scores(self, outputs: np.ndarray) -> np.ndarray:
        """The one value per row monitoring follows: P(positive), the class, or the value."""

    @abstractmethod
    def score_of(self, answer: dict[str, Any]) -> float | str:
        """``scores`` of one served answer (the handler's telemetry, per row)."""

    @abstractmethod
    def loss(self, y: pd.Series, outputs: np.ndarray) -> float:
        """The training loss the estimator minimises (log loss; half squared error)."""

    @abstractmethod
    def baseline(self) -> Any:
        """An unfitted trivial model to beat (the prior, or the mean)."""

    @abstractmethod
    def plot_tables(self, y: pd.Series, outputs: np.ndarray, max_points: int) -> dict[str, pd.DataFrame]:
        """The data behind the task's plots, by plot name."""

    def score_edges(self, reference_scores: pd.Series) -> list[float]:
        """Bucket edges for the served score (probability deciles by default)."""
        return [round(i / 10, 1) for i in range(11)]

    @staticmethod
    def bucket(score: float | str, edges: Sequence[float]) -> str:
        """A label for the score's bucket: the class itself, or the interval between edges."""
        if isinstance(score, str):
            return score
        for lo, hi in itertools.pairwise(edges):
            if score < hi:
                return f"{lo:g}-{hi:g}"
        return f">={edges[-1]:g}"

    def stratify(self, target: pd.Series) -> pd.Series | None:
        """What a random split stratifies on."""
        return target if self.is_classification else None

    def worse_by(self, metric: str, candidate: float, reference: float) -> float:
        """How much worse ``candidate`` is than ``reference`` (negative: better)."""
        delta = candidate - reference
        return delta if metric in LOWER_IS_BETTER else -delta


@dataclass(frozen=True)
class _Classification(Task):
    importance_scoring: ClassVar[str] = "neg_log_loss"

    def outputs(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(X))

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[outputs.argmax(axis=1)]

    def answers(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        names = [str(c) for c in self.classes]
        labels = self.labels(outputs).tolist()
        return [
            {"prediction": label, "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(labels, np.asarray(outputs, dtype=float).tolist(), strict=True)
        ]

    def from_answers(self, answers: Sequence[dict[str, Any]]) -> np.ndarray:
        names = [str(c) for c in self.classes]
        return np.array([[a["probabilities"][n] for n in names] for a in answers], dtype=float)

    def baseline(self) -> Any:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="prior")

    def _common(self, y: pd.Series, outputs: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import accuracy_score, log_loss

        return {
            "accuracy": float(accuracy_score(y, self.labels(outputs).astype(y.dtype))),
            "log_loss": float(log_loss(y, outputs, labels=list(self.classes))),
        }

    def loss(self, y: pd.Series, outputs: np.ndarray) -> float:
        from sklearn.metrics import log_loss

        return float(log_loss(y, outputs, labels=list(self.classes)))

    def plot_tables(self, y: pd.Series, outputs: np.ndarray, max_points: int) -> dict[str, pd.DataFrame]:
        actual = y.astype(str).to_numpy()
        return {"confusion": pd.DataFrame({"actual": actual, "predicted": self.labels(outputs).astype(str)})}


@dataclass(frozen=True)
class Binary(_Classification):
    """Two classes; the positive one is the second in the model's (sorted) order."""

    kind: ClassVar[str] = "binary"
    metric_names: ClassVar[tuple[str, ...]] = ("roc_auc", "f1", "accuracy", "precision", "recall", "log_loss")

    def metrics(self, y: pd.Series, outputs: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

        positive = self.classes[1]
        pred = self.labels(outputs).astype(y.dtype)
        p, r, f, _ = precision_recall_fscore_support(y, pred, pos_label=positive, average="binary", zero_division=0)
        auc = float(roc_auc_score(y == positive, outputs[:, 1])) if y.nunique() > 1 else 0.5
        return {"roc_auc": auc, "f1": float(f), "precision": float(p), "recall": float(r)} | self._common(y, outputs)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[:, 1]

    def score_of(self, answer: dict[str, Any]) -> float:
        return float(answer["probabilities"][str(self.classes[1])])

    def plot_tables(self, y: pd.Series, outputs: np.ndarray, max_points: int) -> dict[str, pd.DataFrame]:
        from sklearn.metrics import precision_recall_curve, roc_curve

        positive = (y == self.classes[1]).to_numpy()
        fpr, tpr, thr = roc_curve(positive, outputs[:, 1])
        prec, rec, thr_pr = precision_recall_curve(positive, outputs[:, 1])
        return super().plot_tables(y, outputs, max_points) | {
            "roc": _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}), max_points),
            "prc": _thin(pd.DataFrame({"recall": rec[:-1], "precision": prec[:-1], "threshold": thr_pr}), max_points),
        }


@dataclass(frozen=True)
class Multiclass(_Classification):
    """Three or more classes: macro averages plus per-class figures; monitoring follows the class."""

    kind: ClassVar[str] = "multiclass"
    metric_names: ClassVar[tuple[str, ...]] = ("roc_auc", "f1", "accuracy", "precision", "recall", "log_loss")
    categorical_score: ClassVar[bool] = True

    def metrics(self, y: pd.Series, outputs: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

        labels = list(self.classes)
        pred = self.labels(outputs).astype(y.dtype)
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average="macro", zero_division=0)
        pc, rc, fc, sc = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
        return {
            "roc_auc": float(roc_auc_score(y, outputs, multi_class="ovr", labels=labels)),
            "f1": float(f),
            "precision": float(p),
            "recall": float(r),
            **self._common(y, outputs),
            "per_class": {
                str(c): {"precision": float(a), "recall": float(b), "f1": float(d), "support": int(s)}
                for c, a, b, d, s in zip(labels, pc, rc, fc, sc, strict=True)
            },
        }

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        return self.labels(outputs).astype(str)

    def score_of(self, answer: dict[str, Any]) -> str:
        return str(answer["prediction"])


@dataclass(frozen=True)
class Regression(Task):
    """A number: RMSE, MAE, R²; monitoring follows the predicted value in training-score deciles."""

    kind: ClassVar[str] = "regression"
    metric_names: ClassVar[tuple[str, ...]] = ("rmse", "mae", "r2")
    importance_scoring: ClassVar[str] = "neg_root_mean_squared_error"

    def outputs(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(X), dtype=float)

    def metrics(self, y: pd.Series, outputs: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

        return {
            "rmse": float(root_mean_squared_error(y, outputs)),
            "mae": float(mean_absolute_error(y, outputs)),
            "r2": float(r2_score(y, outputs)),
        }

    def answers(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{"prediction": v} for v in np.asarray(outputs, dtype=float).tolist()]

    def from_answers(self, answers: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.array([a["prediction"] for a in answers], dtype=float)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def score_of(self, answer: dict[str, Any]) -> float:
        return float(answer["prediction"])

    def loss(self, y: pd.Series, outputs: np.ndarray) -> float:
        from sklearn.metrics import mean_squared_error

        return float(mean_squared_error(y, outputs) / 2)  # half squared error, as HGB reports

    def baseline(self) -> Any:
        from sklearn.dummy import DummyRegressor

        return DummyRegressor()

    def score_edges(self, reference_scores: pd.Series) -> list[float]:
        return [float(v) for v in np.quantile(reference_scores.astype(float), np.linspace(0, 1, 11))]

    def plot_tables(self, y: pd.Series, outputs: np.ndarray, max_points: int) -> dict[str, pd.DataFrame]:
        actual = y.to_numpy(dtype=float)
        table = pd.DataFrame({"actual": actual, "predicted": outputs, "residual": actual - outputs})
        return {"predictions": _thin(table, max_points)}


TASKS: dict[str, type[Task]] = {t.kind: t for t in (Binary, Multiclass, Regression)}


def task_of(contract: Contract) -> Task:
    """The contract's task, with its classes in sorted order (as a fitted model will have them)."""
    cls = TASKS[contract.task]
    if cls is Regression:
        return cls()
    return cls(classes=tuple(sorted(contract.classes, key=lambda c: (isinstance(c, str), c))))
