"""The time-format expectation parses each distinct value once, with the same verdicts, counts and examples."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from great_expectations.expectations.metrics.column_map_metrics import column_values_match_strftime_format as gx_metric

from mlops.core.contract import load_contract
from mlops.pipeline.validation import Validator
from support import FIXTURES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(load_contract(FIXTURES / "contract.yaml"))


def batch(periods: list[object]) -> pd.DataFrame:
    n = len(periods)
    return pd.DataFrame({"loan_id": [f"L{i}" for i in range(n)], "period": pd.Series(periods, dtype=object)})


def format_check(validator: Validator, frame: pd.DataFrame) -> str:
    checks = [c for c in validator.validate_frame(frame, "b") if c.expectation.endswith("strftime_format")]
    assert len(checks) == 1
    return checks[0].line()


def test_a_period_repeated_on_every_row_is_parsed_once_per_distinct_value(validator, monkeypatch):
    calls: list[str] = []

    class Counting(datetime):
        @classmethod
        def strptime(cls, value, fmt):  # type: ignore[override]
            calls.append(value)
            return datetime.strptime(value, fmt)

    monkeypatch.setattr(gx_metric, "datetime", Counting)
    line = format_check(validator, batch(["2025-01"] * 3000 + ["2025-02"] * 2000))
    assert line.endswith("observed 0 values that do not parse [expect_column_values_to_match_strftime_format]")
    assert sorted(calls) == ["2025-01", "2025-02"]


@pytest.mark.parametrize(
    ("periods", "observed"),
    [
        (
            ["2025-01"] * 50 + ["2025-13", "garbage", None, "garbage"],
            "3 values that do not parse, e.g. 2025-13, garbage",
        ),
        ([np.nan] * 10, "0 values that do not parse"),
        (["2025-01"] * 5 + ["x" * 200], f"1 values that do not parse, e.g. {'x' * 80}... (200 characters)"),
        ([], "0 values that do not parse"),
    ],
)
def test_verdicts_counts_and_examples_are_great_expectations_own(validator, periods, observed):
    line = format_check(validator, batch(periods))
    assert f"observed {observed} [expect_column_values_to_match_strftime_format]" in line


def test_a_value_that_is_not_text_fails_the_check(validator):
    checks = validator.validate_frame(batch(["2025-01", 5, "2025-02"]), "b")
    (check,) = [c for c in checks if c.expectation.endswith("strftime_format")]
    assert not check.success
