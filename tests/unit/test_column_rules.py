"""Two contract rules held the same everywhere (validation, serving, the MLflow signature): an optional
column may be absent or empty, and a category of numbers accepts numbers only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops.core.contract import load_contract
from mlops.pipeline.validation import validate_dir
from mlops.serving.inference import Policy, RequestChecker, RequestError

pytestmark = pytest.mark.unit


@pytest.fixture
def contract(tmp_path: Path):
    raw = {
        "name": "visits",
        "task": "regression",
        "target": "cost",
        "columns": {
            "age": {"type": "integer", "min": 0, "max": 120},
            "referrer": {"type": "category", "categories": ["gp", "self"], "required": False},
            "grade": {"type": "category", "categories": [1, 2, 3]},
            "cost": {"type": "float"},
        },
    }
    (tmp_path / "contract.yaml").write_text(yaml.safe_dump(raw))
    return load_contract(tmp_path / "contract.yaml")


def batch(tmp_path: Path, frame: pd.DataFrame) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    frame.to_csv(raw / "b1.csv", index=False)
    return raw


def test_an_optional_column_may_be_absent_or_empty_in_a_request(contract):
    RequestChecker(contract, Policy()).check_row({"age": 40, "grade": 2}, 0)
    RequestChecker(contract, Policy()).check_row({"age": 40, "grade": 2, "referrer": None}, 0)
    with pytest.raises(RequestError, match="'age' must not be empty"):
        RequestChecker(contract, Policy()).check_row({"age": None, "grade": 2}, 0)


def test_an_optional_column_may_be_absent_or_empty_in_a_batch(contract, tmp_path):
    frame = pd.DataFrame({"age": [30, 40], "grade": [1, 3], "referrer": ["gp", None], "cost": [1.0, 2.0]})
    assert validate_dir(batch(tmp_path, frame), contract).success
    assert validate_dir(batch(tmp_path, frame.drop(columns="referrer")), contract).success


def test_a_category_of_numbers_refuses_text_in_a_request(contract):
    RequestChecker(contract, Policy()).check_row({"age": 40, "grade": 2}, 0)
    for value in ("2", "two"):
        with pytest.raises(RequestError, match="'grade' must be an integer") as err:
            RequestChecker(contract, Policy(unknown_category="allow")).check_row({"age": 40, "grade": value}, 3)
        assert (err.value.row, err.value.field) == (3, "grade")


def test_a_category_of_numbers_refuses_text_in_a_batch(contract, tmp_path):
    frame = pd.DataFrame({"age": [30, 40], "grade": ["1", "two"], "cost": [1.0, 2.0]})
    report = validate_dir(batch(tmp_path, frame), contract)
    failed = {(c.column, c.expectation) for c in report.failures}
    assert ("grade", "expect_column_values_to_be_in_type_list") in failed
