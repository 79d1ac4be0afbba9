"""The time column: declared with its type and format, checked by validation, ordered by its parsed value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops.core.config import SplitParams
from mlops.core.contract import load_contract
from mlops.core.errors import UserError
from mlops.pipeline.splitting import split
from mlops.pipeline.validation import validate_dir

pytestmark = pytest.mark.unit

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
HOLD_TWO = SplitParams(method="time", holdout_periods=2, test_size=0.2, seed=0)


def contract_file(tmp_path: Path, month: dict) -> Path:
    raw = {
        "name": "sales",
        "task": "regression",
        "target": "amount",
        "time": "month",
        "columns": {
            "month": month,
            "price": {"type": "float", "min": 0, "max": 100},
            "amount": {"type": "float"},
        },
    }
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def months_frame(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "month": [m for m in labels for _ in range(3)],
            "price": [float(i % 7) for i in range(3 * len(labels))],
            "amount": [float(i) for i in range(3 * len(labels))],
        }
    )


def test_month_names_are_held_out_in_calendar_order_not_as_strings(tmp_path):
    contract = load_contract(contract_file(tmp_path, {"type": "period", "format": "%b"}))
    train, holdout = split(months_frame(MONTHS), contract, HOLD_TWO)
    assert set(holdout["month"]) == {"Nov", "Dec"}  # as strings the latest two would be Oct and Sep
    assert "Oct" in set(train["month"])


def test_iso_dates_are_ordered_by_date(tmp_path):
    contract = load_contract(contract_file(tmp_path, {"type": "date", "format": "%d/%m/%Y"}))
    frame = months_frame(["01/12/2024", "15/01/2025", "02/02/2025", "28/11/2024"])
    _, holdout = split(frame, contract, HOLD_TWO)
    assert set(holdout["month"]) == {"15/01/2025", "02/02/2025"}


def test_an_unparseable_time_value_is_a_clear_error_naming_the_column_and_the_value(tmp_path):
    contract = load_contract(contract_file(tmp_path, {"type": "period", "format": "%b"}))
    frame = months_frame([*MONTHS[:8], "Sept", "Oct", "Nov", "Dec"])
    with pytest.raises(UserError, match=r"time column 'month'.*'Sept'.*'%b'"):
        split(frame, contract, HOLD_TWO)


def test_a_long_bad_time_value_is_quoted_by_a_bounded_prefix(tmp_path):
    contract = load_contract(contract_file(tmp_path, {"type": "period", "format": "%b"}))
    frame = months_frame([*MONTHS[:11], "x" * 5000])
    with pytest.raises(UserError) as err:
        split(frame, contract, HOLD_TWO)
    assert len(str(err.value)) < 400
    assert "5000 characters" in str(err.value)


def test_a_time_column_of_plain_text_is_refused_by_the_contract(tmp_path):
    with pytest.raises(UserError, match=r"time column 'month'.*type.*date.*datetime.*period.*format"):
        load_contract(contract_file(tmp_path, {"type": "string"}))


def test_format_belongs_to_time_types_only(tmp_path):
    raw = yaml.safe_load(contract_file(tmp_path, {"type": "period", "format": "%b"}).read_text())
    raw["columns"]["price"]["format"] = "%Y"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=r"columns\.price.*format"):
        load_contract(tmp_path / "bad.yaml")


def test_validation_checks_the_time_format_with_an_expectation(tmp_path):
    contract = load_contract(contract_file(tmp_path, {"type": "period", "format": "%b"}))
    raw = tmp_path / "raw"
    raw.mkdir()
    months_frame(MONTHS[:6]).to_csv(raw / "2025-a.csv", index=False)
    months_frame(["Jul", "Aug", "Sept"]).to_csv(raw / "2025-b.csv", index=False)
    report = validate_dir(raw, contract)
    checks = [c for c in report.checks if c.column == "month"]
    assert {c.expectation for c in checks} >= {"expect_column_values_to_match_strftime_format"}
    [failure] = report.failures
    assert (failure.batch, failure.column) == ("2025-b.csv", "month")
    assert "'%b'" in failure.expected
    assert "Sept" in failure.observed


def test_a_numeric_time_column_orders_numerically(tmp_path):
    contract = load_contract(contract_file(tmp_path, {"type": "integer", "min": 1, "max": 20}))
    frame = months_frame([str(i) for i in (9, 10, 11, 2)])
    frame["month"] = frame["month"].astype(int)
    _, holdout = split(frame, contract, HOLD_TWO)
    assert set(holdout["month"]) == {10, 11}  # as strings: 9 and 2
