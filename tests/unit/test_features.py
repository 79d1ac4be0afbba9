from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.pipeline.features import MISSING_CATEGORY, build_preprocessor, features_and_target
from mlops.pipeline.training import build_pipeline

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "loans_small.csv"
pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def frame():
    return pd.read_csv(FIXTURE)


@pytest.fixture(scope="module")
def fitted(frame, contract, params):
    X, y = features_and_target(frame, contract)
    return build_pipeline(contract, params.train).fit(X, y)


def test_preprocessor_uses_exactly_the_contract_columns(frame, contract, params):
    pre = build_preprocessor(contract, params.train.features).fit(frame)
    numeric, categorical = (
        pre.named_steps["columns"].transformers_[0][2],
        pre.named_steps["columns"].transformers_[1][2],
    )
    assert numeric == contract.numeric_features
    assert categorical == contract.categorical_features
    names = pre.get_feature_names_out()
    assert not any(contract.id in n or contract.target in n or contract.time in n for n in names)


def test_missing_values_are_imputed_with_indicators(frame, contract, params):
    assert frame["months_employed"].isna().any()  # the fixture has gaps
    pre = build_preprocessor(contract, params.train.features).fit(frame)
    out = pre.transform(frame)
    assert not np.isnan(out).any()
    assert any("missingindicator_months_employed" in n for n in pre.get_feature_names_out())


def test_all_missing_row_still_predicts(fitted, contract):
    row = pd.DataFrame([{c: np.nan for c in contract.features}])
    proba = fitted.predict_proba(row)
    assert proba.shape == (1, 2)
    assert np.isfinite(proba).all()


def test_unseen_category_does_not_fail_and_acts_like_missing_information(fitted, frame, contract):
    X, _ = features_and_target(frame.head(50), contract)
    unseen = X.copy()
    unseen["purpose"] = "space_tourism"
    proba = fitted.predict_proba(unseen)
    assert np.isfinite(proba).all()
    assert not np.allclose(proba, fitted.predict_proba(X))  # the category mattered before


def test_column_order_and_extra_columns_do_not_change_predictions(fitted, frame, contract):
    X, _ = features_and_target(frame.head(100), contract)
    shuffled = X[X.columns[::-1]].assign(extra_column=1, loan_id="x")
    np.testing.assert_array_equal(fitted.predict_proba(X), fitted.predict_proba(shuffled))


def test_numbers_as_text_and_ints_as_floats_agree(fitted, frame, contract):
    X, _ = features_and_target(frame.head(20), contract)
    as_text = X.astype({c: str for c in ["age", "credit_score"]}).astype({"term_months": float})
    np.testing.assert_array_equal(fitted.predict_proba(X), fitted.predict_proba(as_text))


def test_absent_optional_column_is_treated_as_missing(fitted, frame, contract):
    assert not contract.columns["region"].required
    X, _ = features_and_target(frame.head(20), contract)
    without = X.drop(columns=["region"])
    blank = X.assign(region=np.nan)
    np.testing.assert_array_equal(fitted.predict_proba(without), fitted.predict_proba(blank))


def test_missing_category_value_maps_to_its_own_level(frame, contract, params):
    pre = build_preprocessor(contract, params.train.features).fit(frame)
    assert any(MISSING_CATEGORY in n for n in pre.get_feature_names_out() if "home_ownership" in n)
