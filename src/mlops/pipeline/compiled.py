"""The fitted pipeline compiled to numpy: scikit-learn's float64 operations, in scikit-learn's order.

Scoring through scikit-learn costs about 5 ms a call whatever the number of rows: pandas, input
validation and four sub-pipelines in the preprocessing, then one Cython call per tree. That is
call overhead, not arithmetic. ``CompiledPipeline`` reads the fitted objects once and replays
their arithmetic on plain arrays:

- **features** (``ContractColumns`` -> ``ColumnTransformer``): numbers as float64, a missing
  number replaced by the imputer's statistic, the missing-value indicators, then ``x -= mean_``
  and ``x /= scale_`` (the two in-place operations ``StandardScaler`` does); a category looked up
  in a table built from the encoder's ``categories_`` and infrequent categories, with its
  ``handle_unknown`` rule;
- **histogram gradient boosting**: every tree walked at once (flat node arrays), the leaf values
  added to the baseline one tree after the other (``np.cumsum`` is a sequential accumulate, the
  order of scikit-learn's ``raw += tree(X)`` loop; ``np.sum`` would not be: it sums pairwise),
  and the estimator's own link function;
- **linear models**: the dot product summed left to right, the same order for every row whatever
  the batch (scikit-learn's BLAS call sums in an order that depends on the batch size, so its
  answer for a row changes with its neighbours); then the estimator's own link.

Each part that is not recognised is scored by scikit-learn instead (the preprocessing, the
estimator, or the whole pipeline), and a log line says so. ``verify`` compares the compiled
parts with scikit-learn (bitwise; linear models to 1e-9, as above) and checks that a row scored
alone gets exactly its answer in a batch; training and packaging run it and fail on a difference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils import get_tags

from mlops.core.errors import MlopsError

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
Rows = Sequence[Row]
CHUNK = 256  # rows per tree walk: the walk's arrays stay in the CPU cache
LINEAR_TOLERANCE = 1e-9  # relative; a linear model's sum differs from BLAS's in the last bits
_ABSENT = object()  # a key the row does not have


class Unsupported(Exception):  # noqa: N818  (not an error: the part is scored by scikit-learn)
    """A fitted part the compiler does not know; scikit-learn scores that part instead."""


class ParityError(MlopsError):
    """Compiled scores differ from scikit-learn's, or a row's score depends on its batch (exit 1)."""


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Table rows as JSON-ready dicts: exact floats, missing values as null."""
    subset = frame[[c for c in columns if c in frame]]
    return subset.astype(object).where(subset.notna(), None).to_dict("records")


def rows_frame(rows: Rows, columns: Sequence[str]) -> pd.DataFrame:
    """Request rows as a table, each value as sent (an absent key is NaN, null stays None).

    ``DataFrame.from_records`` would infer a dtype per column from the whole batch (a null next to
    an absent key becomes NaN, an integer next to a null becomes a float), so a row's value would
    depend on its neighbours; object columns keep every value as it is.
    """
    data = {c: pd.Series([row.get(c, math.nan) for row in rows], dtype=object) for c in columns}
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))


# ---- features -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Categories:
    """One categorical input: which output column each value sets (-1: none)."""

    columns: dict[Any, int]  # an encoder category -> its output column (infrequent ones share one)
    unknown: int  # the column of a value the encoder never saw (the infrequent one, or -1)
    fill: Any  # what the imputer puts in for a missing value (NaN or an absent key)
    direct: dict[Any, int]  # text categories, None and an absent key: the values requests send

    def column_of(self, value: Any) -> int:
        """The output column of one raw value, with ``ContractColumns``' and the imputer's rules."""
        if value is _ABSENT or (isinstance(value, float) and value != value):
            key = self.fill  # NaN: the imputer's constant
        elif value is None:
            key = None  # None is not NaN to the imputer: it is a category of its own
        else:
            key = str(value)  # ContractColumns: astype(str)
        return self.columns.get(key, self.unknown)


def _steps(pipeline: Any, names: tuple[str, ...]) -> list[Any]:
    if not isinstance(pipeline, Pipeline) or tuple(pipeline.named_steps) != names:
        raise Unsupported(f"expected a pipeline of {names}, found {_describe(pipeline)}")
    return [pipeline.named_steps[n] for n in names]


def _describe(obj: Any) -> str:
    if isinstance(obj, Pipeline):
        return "Pipeline(" + ", ".join(f"{n}: {type(s).__name__}" for n, s in obj.steps) + ")"
    return type(obj).__name__


class CompiledFeatures:
    """The fitted preprocessing (``build_preprocessor``'s shape) as arrays and lookup tables."""

    def __init__(self, preprocessor: Any):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        from mlops.pipeline.features import ContractColumns

        select, columns = _steps(preprocessor, ("select", "columns"))
        if type(select) is not ContractColumns or type(columns) is not ColumnTransformer:
            raise Unsupported(f"preprocessing {_describe(preprocessor)}")
        self.select = select
        self.numeric: list[str] = list(select.numeric)
        self.categorical: list[str] = list(select.categorical)
        used = [(n, t, list(c)) for n, t, c in columns.transformers_ if not (t == "drop" and not list(c))]
        if [c for _, _, c in used] != [self.numeric, self.categorical]:
            raise Unsupported("the column transformer does not take the numeric then the categorical columns")
        (_, numeric, _), (_, categorical, _) = used
        impute, scale = _steps(numeric, ("impute", "scale"))
        fill, onehot = _steps(categorical, ("impute", "onehot"))
        if not (type(impute) is SimpleImputer and type(scale) is StandardScaler):
            raise Unsupported(f"numeric preprocessing {_describe(numeric)}")
        if not (type(fill) is SimpleImputer and type(onehot) is OneHotEncoder):
            raise Unsupported(f"categorical preprocessing {_describe(categorical)}")
        if not (_is_nan(impute.missing_values) and _is_nan(fill.missing_values)):
            raise Unsupported("an imputer whose missing value is not NaN")
        # a branch with no columns is never fitted (a table of numbers only, or of categories only)
        if self.numeric:
            self._numeric_branch(impute, scale)
        else:
            self._no_numbers()
        self.tables: list[_Categories] = []
        offset = self.n_numeric
        if self.categorical:
            offset = self._categorical_branch(fill, onehot, offset)
        self.width = offset
        if self.width != len(columns.get_feature_names_out()):
            raise Unsupported("the encoder's output columns are not what its categories say")

    def _numeric_branch(self, impute: Any, scale: Any) -> None:
        statistics = np.asarray(impute.statistics_, dtype=np.float64)
        if statistics.shape != (len(self.numeric),) or np.isnan(statistics).any():
            raise Unsupported("a numeric column with no value to impute (scikit-learn drops it)")
        self.statistics = statistics
        self.indicator = (
            np.asarray(impute.indicator_.features_, dtype=np.intp) if impute.add_indicator else np.empty(0, np.intp)
        )
        self.n_numeric = len(self.numeric) + len(self.indicator)
        self.mean = np.asarray(scale.mean_, dtype=np.float64) if scale.with_mean else None
        self.scale = np.asarray(scale.scale_, dtype=np.float64) if scale.with_std else None

    def _no_numbers(self) -> None:
        self.statistics = np.empty(0, np.float64)
        self.indicator = np.empty(0, np.intp)
        self.n_numeric = 0
        self.mean = self.scale = None

    def _categorical_branch(self, fill: Any, onehot: Any, offset: int) -> int:
        """One lookup table per categorical column; the next free output column."""
        if fill.strategy != "constant" or onehot.drop_idx_ is not None or onehot.dtype is not np.float64:
            raise Unsupported("a categorical imputer that is not constant, or an encoder that drops a column")
        if onehot.handle_unknown not in ("ignore", "infrequent_if_exist"):
            raise Unsupported(f"unknown categories handled by {onehot.handle_unknown!r}")
        for i, categories in enumerate(onehot.categories_):
            infrequent = onehot.infrequent_categories_[i] if getattr(onehot, "_infrequent_enabled", False) else None
            rare = set() if infrequent is None else set(np.asarray(infrequent, dtype=object).tolist())
            kept = [c for c in np.asarray(categories, dtype=object).tolist() if c not in rare]
            table = {c: offset + j for j, c in enumerate(kept)}
            rare_column = offset + len(kept) if rare else -1
            table.update(dict.fromkeys(rare, rare_column))
            unknown = rare_column if onehot.handle_unknown == "infrequent_if_exist" else -1
            cats = _Categories(table, unknown, fill.fill_value, {})
            direct: dict[Any, int] = {c: j for c, j in table.items() if isinstance(c, str)}
            direct[None] = cats.column_of(None)
            direct[_ABSENT] = cats.column_of(_ABSENT)
            self.tables.append(_Categories(table, unknown, fill.fill_value, direct))
            offset += len(kept) + (1 if rare else 0)
        return offset

    def from_rows(self, rows: Rows) -> np.ndarray:
        """The model matrix of request rows (dicts as decoded from JSON; absent keys allowed)."""
        n = len(rows)
        numbers = np.empty((n, len(self.numeric)), dtype=np.float64)
        for j, name in enumerate(self.numeric):
            numbers[:, j] = _numbers([row.get(name) for row in rows])
        codes = np.empty((n, len(self.categorical)), dtype=np.intp)
        for j, (name, table) in enumerate(zip(self.categorical, self.tables, strict=True)):
            get = table.direct.get
            for r, row in enumerate(rows):
                value = row.get(name, _ABSENT)
                try:
                    column = get(value)
                except TypeError:  # an unhashable value (unchecked rows only)
                    column = None
                codes[r, j] = table.column_of(value) if column is None else column
        return self._assemble(numbers, codes)

    def from_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """The model matrix of a table (offline: evaluation, monitoring references, deploy checks)."""
        selected = self.select.transform(frame)  # the fitted selector itself: numbers as float, text as str
        numbers = selected[self.numeric].to_numpy(dtype=np.float64) if self.numeric else np.empty((len(frame), 0))
        codes = np.empty((len(frame), len(self.categorical)), dtype=np.intp)
        for j, (name, table) in enumerate(zip(self.categorical, self.tables, strict=True)):
            codes[:, j] = [table.column_of(v) for v in selected[name].to_numpy(dtype=object)]
        return self._assemble(numbers, codes)

    def _assemble(self, numbers: np.ndarray, codes: np.ndarray) -> np.ndarray:
        n, k = numbers.shape
        out = np.zeros((n, self.width), dtype=np.float64)
        block = out[:, : self.n_numeric]
        missing = np.isnan(numbers)
        block[:, :k] = numbers
        if missing.any():
            np.copyto(block[:, :k], np.broadcast_to(self.statistics, (n, k)), where=missing)
        block[:, k:] = missing[:, self.indicator]
        if self.mean is not None:
            block -= self.mean
        if self.scale is not None:
            block /= self.scale
        rows = np.arange(n)
        for j in range(codes.shape[1]):
            hit = codes[:, j] >= 0
            out[rows[hit], codes[hit, j]] = 1.0
        return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _numbers(values: list[Any]) -> np.ndarray:
    """Numbers as ``pd.to_numeric(..., errors="coerce").astype(float)`` makes them; None is NaN."""
    if {type(v) for v in values} <= {int, float, type(None)}:
        try:
            return np.array(values, dtype=np.float64)  # None -> NaN; an int rounds as pandas rounds it
        except OverflowError:
            pass
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype(float).to_numpy()


# ---- estimators -----------------------------------------------------------------------------------


class CompiledTrees:
    """A fitted ``HistGradientBoosting{Classifier,Regressor}`` (numeric splits) as flat node arrays."""

    def __init__(self, model: Any):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        if type(model) not in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
            raise Unsupported(f"estimator {_describe(model)}")
        self.model = model
        self.k = int(model.n_trees_per_iteration_)
        features, thresholds, children, nan_right, values, roots = [], [], [], [], [], []
        offset, depth = 0, 0
        for iteration in model._predictors:
            for predictor in iteration:  # tree k of each iteration feeds output k
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise Unsupported("categorical splits")
                n = len(nodes)
                own = np.arange(offset, offset + n, dtype=np.intp)
                leaf = nodes["is_leaf"].astype(bool)
                left = np.where(leaf, own, nodes["left"].astype(np.intp) + offset)  # a leaf loops to itself
                right = np.where(leaf, own, nodes["right"].astype(np.intp) + offset)
                features.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp))
                thresholds.append(nodes["num_threshold"].astype(np.float64))
                children.append(np.stack([left, right], axis=1).ravel())
                nan_right.append(~nodes["missing_go_to_left"].astype(bool))
                values.append(nodes["value"].astype(np.float64))
                roots.append(offset)
                depth = max(depth, int(nodes["depth"].max()))
                offset += n
        self.feature = np.concatenate(features)
        self.threshold = np.concatenate(thresholds)
        self.children = np.concatenate(children)  # node i's children at 2i (left) and 2i + 1 (right)
        self.nan_right = np.concatenate(nan_right)
        self.value = np.concatenate(values)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        self.n_features = int(model.n_features_in_)
        # raw = zeros, += baseline (scikit-learn's first two steps), then each tree in turn
        self.start = np.zeros(self.k) + np.asarray(model._baseline_prediction, dtype=np.float64).ravel()

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The raw scores, shape (rows, trees per iteration), summed in scikit-learn's order."""
        n = X.shape[0]
        out = np.empty((n, self.k), dtype=np.float64)
        for start in range(0, n, CHUNK):
            out[start : start + CHUNK] = self._raw(np.ascontiguousarray(X[start : start + CHUNK], dtype=np.float64))
        return out

    def _raw(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        flat = X.ravel()
        base = (np.arange(n, dtype=np.intp) * self.n_features)[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots)))
        check_nan = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat.take(base + self.feature.take(node))
            right = x > self.threshold.take(node)  # scikit-learn: x <= threshold goes left; NaN compares False...
            if check_nan:  # ...and goes where the tree sends missing values
                right |= np.isnan(x) & self.nan_right.take(node)
            node = self.children.take(2 * node + right)
        leaves = self.value.take(node).reshape(n, -1, self.k)  # (rows, iterations, k)
        acc = np.empty((n, self.k, leaves.shape[1] + 1), dtype=np.float64)
        acc[:, :, 0] = self.start
        acc[:, :, 1:] = leaves.transpose(0, 2, 1)
        return np.cumsum(acc, axis=2)[:, :, -1]

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (classifier) or values (regressor), by the estimator's own link."""
        raw = self.raw(X)
        if is_classifier(self.model):
            return np.asarray(self.model._loss.predict_proba(raw))
        return np.asarray(self.model._loss.link.inverse(raw.ravel()))


class CompiledLinear:
    """A fitted ``LogisticRegression`` or ``Ridge`` whose dot product does not depend on the batch."""

    exact = False  # equal to scikit-learn to LINEAR_TOLERANCE, not bitwise (see the module docstring)

    def __init__(self, model: Any):
        from sklearn.linear_model import LogisticRegression, Ridge

        if type(model) not in (LogisticRegression, Ridge):
            raise Unsupported(f"estimator {_describe(model)}")
        coef = np.asarray(model.coef_, dtype=np.float64)
        if coef.ndim == 1 and type(model) is Ridge:
            coef = coef[None, :]
        elif type(model) is Ridge:
            raise Unsupported("a ridge regression with several targets")
        self.model = model
        self.coef = coef  # (outputs, features)
        self.intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), (coef.shape[0],)).copy()

    def decision(self, X: np.ndarray) -> np.ndarray:
        """``X @ coef.T + intercept`` with each row's sum taken left to right."""
        products = X[:, None, :] * self.coef[None, :, :]
        return np.cumsum(products, axis=2)[:, :, -1] + self.intercept

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (logistic) or values (ridge), as the estimator turns its decision into them."""
        from scipy.special import expit
        from sklearn.utils.extmath import softmax

        d = self.decision(np.asarray(X, dtype=np.float64))
        if not is_classifier(self.model):
            return d[:, 0]
        if d.shape[1] == 1:  # LogisticRegression._predict_proba_lr for two classes
            p = expit(d[:, 0])
            return np.stack([1 - p, p], axis=1)
        return np.asarray(softmax(d, copy=False))


def _compile_estimator(model: Any) -> CompiledTrees | CompiledLinear:
    for kind in (CompiledTrees, CompiledLinear):
        try:
            return kind(model)
        except Unsupported:
            continue
    raise Unsupported(f"estimator {_describe(model)}")


# ---- the pipeline -------------------------------------------------------------------------------


class CompiledPipeline(BaseEstimator):
    """A fitted pipeline scored through its compiled parts: request rows online, tables offline.

    A scikit-learn estimator wrapping an already fitted pipeline (like ``FrozenEstimator``):
    ``fit`` only compiles it. ``predict_proba`` and ``predict`` take a DataFrame or a list of
    request rows (dicts), so evaluation, permutation importance, the monitoring reference, the
    deploy parity check and serving all score through the same code. ``compiled=False`` scores
    through scikit-learn only (for comparisons).
    """

    def __init__(self, pipeline: Any, columns: Sequence[str] | None = None, compiled: bool = True):
        self.pipeline = pipeline
        self.columns = columns
        self.compiled = compiled

    def fit(self, X: Any = None, y: Any = None) -> CompiledPipeline:
        """Compile the fitted pipeline; ``X`` and ``y`` are ignored. Returns ``self``."""
        steps = _pipeline_steps(self.pipeline)
        estimator = steps[-1][1] if steps else None
        if estimator is not None and getattr(estimator, "n_jobs", None) not in (None, 1):
            # a forest's threads add their trees' answers in whatever order they finish
            estimator.set_params(n_jobs=1)
        self.features_: CompiledFeatures | None = None
        self.estimator_: CompiledTrees | CompiledLinear | None = None
        self.notes_: list[str] = []
        if estimator is None:
            self.notes_.append(f"the whole pipeline by scikit-learn ({_describe(self.pipeline)})")
        elif self.compiled:
            try:
                self.features_ = CompiledFeatures(Pipeline(steps[:-1]) if len(steps) > 2 else steps[0][1])
            except Unsupported as e:
                self.notes_.append(f"preprocessing by scikit-learn: {e}")
            try:
                self.estimator_ = _compile_estimator(estimator)
            except Unsupported as e:
                self.notes_.append(f"estimator by scikit-learn: {e}")
        else:
            self.notes_.append("compilation off: everything by scikit-learn")
        for note in self.notes_:
            log.info("scoring %s", note)
        return self

    @property
    def path_(self) -> str:
        """How rows are scored, in words (for logs and reports)."""
        features = "compiled" if self.features_ is not None else "scikit-learn"
        estimator = "compiled" if self.estimator_ is not None else "scikit-learn"
        return f"features: {features}, estimator: {estimator}"

    @property
    def classes_(self) -> np.ndarray:
        """The fitted pipeline's classes (classification only)."""
        return np.asarray(self.pipeline.classes_)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = get_tags(self.pipeline).estimator_type
        return tags

    def matrix(self, X: pd.DataFrame | Rows) -> np.ndarray:
        """The estimator's input for a table or request rows."""
        if self.features_ is not None:
            return self.features_.from_frame(X) if isinstance(X, pd.DataFrame) else self.features_.from_rows(X)
        return np.asarray(self.pipeline[:-1].transform(self._frame(X)))

    def outputs(self, X: pd.DataFrame | Rows) -> np.ndarray:
        """Class probabilities (classification) or values (regression) of a table or request rows."""
        if not _pipeline_steps(self.pipeline):
            frame = self._frame(X)
            return np.asarray(self.pipeline.predict_proba(frame) if self._classifies else self.pipeline.predict(frame))
        M = self.matrix(X)
        if self.estimator_ is not None:
            return self.estimator_.outputs(M)
        estimator = self.pipeline.steps[-1][1]
        return np.asarray(estimator.predict_proba(M) if self._classifies else estimator.predict(M))

    def predict_proba(self, X: pd.DataFrame | Rows) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        return self.outputs(X)

    def predict(self, X: pd.DataFrame | Rows) -> np.ndarray:
        """The most probable class (classification) or the value (regression)."""
        out = self.outputs(X)
        return self.classes_[out.argmax(axis=1)] if self._classifies else out

    @property
    def _classifies(self) -> bool:
        return bool(is_classifier(self.pipeline))

    def _frame(self, X: pd.DataFrame | Rows) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        names = list(self.columns) if self.columns is not None else list(dict.fromkeys(k for row in X for k in row))
        return pd.DataFrame.from_records(list(X), columns=names)  # as scikit-learn was always called


def _pipeline_steps(pipeline: Any) -> list[tuple[str, Any]]:
    """A pipeline's steps when it splits into preprocessing and an estimator, else none."""
    return list(pipeline.steps) if isinstance(pipeline, Pipeline) and len(pipeline.steps) >= 2 else []


def compile_pipeline(pipeline: Any, columns: Sequence[str] | None = None) -> CompiledPipeline:
    """``CompiledPipeline(pipeline, columns).fit()``: compile a fitted pipeline (milliseconds, no new artifact)."""
    return CompiledPipeline(pipeline, columns).fit()


# ---- verification -------------------------------------------------------------------------------


def edge_rows(model: CompiledPipeline, base: Row | None = None) -> list[dict[str, Any]]:
    """Rows that exercise every branch of the compiled features.

    From ``base`` (by default a typical row: each number at its imputed value, each category the
    first one seen): each number null, absent and at zero; each category at every known value,
    null, absent, NaN, unknown and as an integer; everything missing at once.
    """
    features = model.features_
    if features is None:
        return []
    row: dict[str, Any] = dict(base) if base is not None else {}
    for name, value in zip(features.numeric, features.statistics.tolist(), strict=True):
        row.setdefault(name, value)
    for name, table in zip(features.categorical, features.tables, strict=True):
        row.setdefault(name, next((c for c in table.columns if isinstance(c, str)), None))
    out = [row]
    for name in features.numeric:
        out += [dict(row, **{name: None}), {k: v for k, v in row.items() if k != name}, dict(row, **{name: 0})]
    for name, table in zip(features.categorical, features.tables, strict=True):
        out += [dict(row, **{name: value}) for value in table.columns]
        out += [dict(row, **{name: v}) for v in (None, math.nan, "\x00unseen", 7)]
        out.append({k: v for k, v in row.items() if k != name})
    out.append(dict.fromkeys(features.numeric + features.categorical))
    out.append({})
    return out


def _differ(a: np.ndarray, b: np.ndarray, exact: bool) -> np.ndarray:
    """Per row: whether ``a`` and ``b`` differ (bitwise, or beyond the linear tolerance)."""
    a2, b2 = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a2.shape != b2.shape:
        return np.ones(len(a), dtype=bool)
    same = (a2 == b2) | (np.isnan(a2) & np.isnan(b2))
    if not exact:
        same |= np.isclose(a2, b2, rtol=LINEAR_TOLERANCE, atol=LINEAR_TOLERANCE)
    return ~same.all(axis=1)


def _require(what: str, a: np.ndarray, b: np.ndarray, exact: bool = True) -> None:
    bad = _differ(a, b, exact)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        a2, b2 = a.reshape(len(a), -1).astype(float), b.reshape(len(b), -1).astype(float)
        delta = float(np.nanmax(np.abs(a2 - b2))) if a2.shape == b2.shape else math.inf
        raise ParityError(
            f"{what}: {int(bad.sum())} of {len(bad)} rows differ (first: row {first}, largest difference {delta:.3g}); "
            "the compiled scorer and scikit-learn disagree, so served and offline scores could differ"
        )


def verify(model: CompiledPipeline, features: Sequence[str], frame: pd.DataFrame | None = None, alone: int = 50) -> int:
    """Check the compiled parts against scikit-learn and a row alone against the row in a batch.

    On ``frame`` (a sample of real rows; optional) and on ``edge_rows``: the compiled features
    equal the fitted preprocessing's output bitwise, from a table and from request rows; the
    compiled estimator equals the fitted estimator's (bitwise; linear models to 1e-9) on those
    matrices; and the first ``alone`` rows, each scored alone, get exactly their batch answers.
    Raises ParityError naming what differs; returns the number of rows checked.
    """
    sample = frame[[c for c in features if c in frame]] if frame is not None else None
    rows = (records(sample, features) if sample is not None else []) + edge_rows(
        model, records(sample.head(1), features)[0] if sample is not None and len(sample) else None
    )
    if not rows:
        return 0
    steps = _pipeline_steps(model.pipeline)
    preprocessing = Pipeline(steps[:-1]) if steps else None
    exact_frame = rows_frame(rows, features)
    matrices = []
    if model.features_ is not None and preprocessing is not None:
        expected = np.asarray(preprocessing.transform(exact_frame))
        _require("compiled features of request rows", model.features_.from_rows(rows), expected)
        matrices.append(expected)
        if sample is not None and len(sample):
            expected_frame = np.asarray(preprocessing.transform(sample))
            _require("compiled features of a table", model.features_.from_frame(sample), expected_frame)
            matrices.append(expected_frame)
    if model.estimator_ is not None:
        M = np.vstack(matrices) if matrices else model.matrix(exact_frame)
        estimator = steps[-1][1]
        reference = estimator.predict_proba(M) if is_classifier(estimator) else estimator.predict(M)
        exact = not isinstance(model.estimator_, CompiledLinear)
        _require(f"compiled {type(estimator).__name__}", model.estimator_.outputs(M), np.asarray(reference), exact)
    batch = model.outputs(rows)
    each = np.concatenate([model.outputs([row]) for row in rows[:alone]])
    _require("a row scored alone against the same row in a batch", each, batch[:alone])
    return len(rows)
