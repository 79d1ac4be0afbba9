"""The estimator registry: every family builds an unfitted scikit-learn estimator per task kind that
passes scikit-learn's own estimator checks, and its params section is validated strictly."""

from __future__ import annotations

import warnings

import pytest
import yaml
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.utils import estimator_checks as sk

from mlops.core.config import parse_params
from mlops.core.errors import UserError
from mlops.core.estimators import FAMILIES
from support import FIXTURES

pytestmark = pytest.mark.unit

# scikit-learn's checks that say "this is a well-behaved estimator", fast enough for the unit tier
CHECKS = [
    sk.check_no_attributes_set_in_init,
    sk.check_estimators_unfitted,
    sk.check_fit2d_predict1d,
    sk.check_estimators_dtypes,
    sk.check_estimators_empty_data_messages,
    sk.check_estimators_nan_inf,
    sk.check_estimators_pickle,
    sk.check_fit_idempotent,
    sk.check_n_features_in,
    sk.check_get_params_invariance,
    sk.check_set_params,
]


def small(name: str) -> object:
    """The family's params from the fixture, shrunk so the checks run in seconds."""
    raw = yaml.safe_load((FIXTURES / "params.yaml").read_text())["train"][name]
    for key, cap in (("n_estimators", 10), ("max_iter", 20)):
        if key in raw:
            raw[key] = min(raw[key], cap)
    if "early_stopping" in raw:  # the checks' toy data sets are too small to hold a validation split
        raw["early_stopping"] = False
    return FAMILIES[name].params.model_validate(raw)


@pytest.mark.parametrize("classify", [True, False], ids=["classifier", "regressor"])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_builds_an_unfitted_estimator_that_passes_sklearn_checks(name, classify):
    estimator = FAMILIES[name].build(small(name), classify, 0)
    assert is_classifier(estimator) if classify else is_regressor(estimator)
    assert not [a for a in vars(estimator) if a.endswith("_") and not a.startswith("_")], "returned fitted"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for check in CHECKS:
            if check is sk.check_estimators_nan_inf and estimator.__sklearn_tags__().input_tags.allow_nan:
                continue  # scikit-learn's own rule: the check applies to estimators that refuse NaN
            check(type(estimator).__name__, clone(estimator))


def test_the_same_seed_builds_the_same_estimator_and_another_seed_another():
    for name in FAMILIES:
        a, b = (FAMILIES[name].build(small(name), True, 7) for _ in range(2))
        assert a.get_params() == b.get_params()


def test_params_name_every_registered_family_and_only_those():
    raw = yaml.safe_load((FIXTURES / "params.yaml").read_text())
    assert set(raw["train"]) - {"estimator", "seed", "features"} == set(FAMILIES)
    raw["train"]["estimator"] = "gradient_magic"
    with pytest.raises(UserError, match=r"train\.estimator: .*'hist_gradient_boosting'"):
        parse_params(raw)
    raw["train"]["estimator"] = "linear"
    raw["train"]["linear"]["C"] = -1
    with pytest.raises(UserError, match=r"train\.linear\.C"):
        parse_params(raw)
