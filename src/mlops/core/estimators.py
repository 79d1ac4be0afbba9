"""The estimator registry: every model family ``train.estimator`` can name, in one place.

A family is its hyperparameters (a strict params section, ``train.<name>`` in params.yaml)
and a function that returns an *unfitted* scikit-learn estimator for a classification or a
regression task. To add a family, register it here and add its section to params.yaml;
``tests/unit/test_estimators.py`` runs scikit-learn's estimator checks on every family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from mlops.core.schema import Section

Builder = Callable[[Any, bool, int], Any]


@dataclass(frozen=True)
class Family:
    """A model family: its params section and its builder ``(params, classify, seed) -> estimator``."""

    name: str
    params: type[Section]
    build: Builder


FAMILIES: dict[str, Family] = {}


def family(name: str, params: type[Section]) -> Callable[[Builder], Builder]:
    """Register a builder under ``name`` with its params section."""

    def register(build: Builder) -> Builder:
        FAMILIES[name] = Family(name, params, build)
        return build

    return register


class LinearParams(Section):
    C: float = Field(gt=0)
    max_iter: int = Field(ge=1)


@family("linear", LinearParams)
def linear(p: LinearParams, classify: bool, seed: int) -> Any:
    """Logistic regression (classification) or ridge regression with ``alpha = 1 / C``."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if classify:
        return LogisticRegression(C=p.C, max_iter=p.max_iter, random_state=seed)
    return Ridge(alpha=1.0 / p.C, max_iter=p.max_iter, random_state=seed)


class RandomForestParams(Section):
    n_estimators: int = Field(ge=1)
    max_depth: int | None = Field(ge=1)
    min_samples_leaf: int = Field(ge=1)


@family("random_forest", RandomForestParams)
def random_forest(p: RandomForestParams, classify: bool, seed: int) -> Any:
    """A random forest; all cores for fitting."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    cls = RandomForestClassifier if classify else RandomForestRegressor
    return cls(
        n_estimators=p.n_estimators,
        max_depth=p.max_depth,
        min_samples_leaf=p.min_samples_leaf,
        random_state=seed,
        n_jobs=-1,
    )


class HistGradientBoostingParams(Section):
    learning_rate: float = Field(gt=0)
    max_iter: int = Field(ge=1)
    max_leaf_nodes: int = Field(ge=2)
    l2_regularization: float = Field(ge=0)
    early_stopping: bool
    validation_fraction: float = Field(gt=0, lt=1)
    n_iter_no_change: int = Field(ge=1)


@family("hist_gradient_boosting", HistGradientBoostingParams)
def hist_gradient_boosting(p: HistGradientBoostingParams, classify: bool, seed: int) -> Any:
    """Histogram gradient boosting, scored on the loss (its curve is the training loss plot)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
    return cls(
        learning_rate=p.learning_rate,
        max_iter=p.max_iter,
        max_leaf_nodes=p.max_leaf_nodes,
        l2_regularization=p.l2_regularization,
        early_stopping=p.early_stopping,
        validation_fraction=p.validation_fraction,
        n_iter_no_change=p.n_iter_no_change,
        scoring="loss",
        random_state=seed,
    )
