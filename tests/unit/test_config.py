from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mlops.core.config import load_params, parse_params
from mlops.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.unit


def raw_params() -> dict:
    return yaml.safe_load((FIXTURES / "params.yaml").read_text())


def test_repository_params_load_as_frozen_typed_config():
    params = load_params(FIXTURES / "params.yaml")
    assert params.train.estimator in ("linear", "random_forest", "hist_gradient_boosting")
    with pytest.raises(ValidationError, match="frozen"):
        params.train.seed = 1  # type: ignore[misc]


def test_misspelled_nested_key_is_named():
    raw = raw_params()
    raw["train"]["hist_gradient_boosting"]["learning_rte"] = 0.1
    with pytest.raises(UserError, match=r"train\.hist_gradient_boosting\.learning_rte: unknown key"):
        parse_params(raw)


def test_unknown_top_level_section_is_named():
    raw = raw_params()
    raw["trian"] = {}
    with pytest.raises(UserError, match=r"trian: unknown key"):
        parse_params(raw)


def test_mistyped_value_is_named_with_its_value():
    raw = raw_params()
    raw["train"]["hist_gradient_boosting"]["max_iter"] = "many"
    with pytest.raises(UserError, match=r"train\.hist_gradient_boosting\.max_iter: .*'many'"):
        parse_params(raw)


def test_unknown_estimator_lists_the_choices():
    raw = raw_params()
    raw["train"]["estimator"] = "xgboost"
    with pytest.raises(UserError, match=r"train\.estimator: .*'linear'.*'xgboost'"):
        parse_params(raw)


def test_missing_key_is_named():
    raw = raw_params()
    del raw["split"]["method"]
    with pytest.raises(UserError, match=r"split\.method: required key is missing"):
        parse_params(raw)


def test_every_problem_is_reported_at_once():
    raw = raw_params()
    raw["split"]["holdout_periods"] = 0
    raw["evaluate"]["bogus"] = 1
    with pytest.raises(UserError) as err:
        parse_params(raw)
    assert "2 problem(s)" in str(err.value)
    assert "split.holdout_periods" in str(err.value)
    assert "evaluate.bogus" in str(err.value)


def test_unreadable_yaml_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(UserError, match=r"params\.yaml: not valid YAML"):
        load_params(bad)


def test_digest_changes_with_any_value():
    raw = raw_params()
    a = parse_params(raw).digest()
    raw["train"]["seed"] += 1
    assert parse_params(raw).digest() != a
