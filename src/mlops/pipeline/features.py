"""The one feature pipeline, built from the data contract.

It is the only implementation of feature logic: training, evaluation, serving and
monitoring all go through the fitted ``Pipeline`` that ``build_pipeline`` returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.core.config import FeatureParams
from mlops.core.contract import Contract

MISSING_CATEGORY = "__missing__"


class ContractColumns(TransformerMixin, BaseEstimator):
    """Select the contract's feature columns in contract order and give them stable types.

    Input columns may come in any order and with extra columns (ids, the target); an
    optional column that is absent becomes all-missing. Numbers become float, categories
    become strings, so ``3`` and ``"3"`` or ``int`` and ``float`` inputs agree.
    """

    def __init__(self, numeric: list[str], categorical: list[str]):
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: Any = None) -> ContractColumns:
        """Learn nothing but the output width; returns ``self``."""
        self.n_features_out_ = len(self.numeric) + len(self.categorical)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The contract's feature columns, in contract order, numbers as float and categories as text."""
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        out = {}
        for col in self.numeric:
            values = frame[col] if col in frame else pd.Series(np.nan, index=frame.index)
            out[col] = pd.to_numeric(values, errors="coerce").astype(float)
        for col in self.categorical:
            values = frame[col] if col in frame else pd.Series(np.nan, index=frame.index)
            out[col] = values.where(values.isna(), values.astype(str)).astype(object)
        return pd.DataFrame(out, index=frame.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Numeric then categorical feature names, as ``transform`` orders them."""
        return np.asarray(self.numeric + self.categorical, dtype=object)


def build_preprocessor(contract: Contract, params: FeatureParams) -> Pipeline:
    """Contract columns -> imputed, scaled numbers and one-hot categories."""
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            (
                "onehot",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    min_frequency=params.min_category_frequency or None,
                    sparse_output=False,
                ),
            ),
        ]
    )
    columns = ColumnTransformer(
        [
            ("numeric", numeric, contract.numeric_features),
            ("categorical", categorical, contract.categorical_features),
        ],
        remainder="drop",
    )
    return Pipeline(
        [
            ("select", ContractColumns(contract.numeric_features, contract.categorical_features)),
            ("columns", columns),
        ]
    )


def features_and_target(frame: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, pd.Series]:
    """Split a table into the model's input (feature columns) and the target."""
    return frame[[c for c in contract.features if c in frame]], frame[contract.target]
