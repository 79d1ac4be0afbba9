from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.core.config import DataParams, load_params
from mlops.core.contract import load_contract
from mlops.core.errors import UserError
from mlops.example.data import FAULTS, apply_fault, generate, generate_period, period_label, write_batch
from mlops.pipeline.datasets import read_batch

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "loans_small.csv"
pytestmark = pytest.mark.unit


def small(**kw) -> DataParams:
    base = load_params(FIXTURES / "params.yaml").data.model_dump() | {"rows_per_period": 400}
    return DataParams.model_validate(base | kw)


def csv_bytes(frame: pd.DataFrame, tmp_path: Path) -> bytes:
    path = tmp_path / "b.csv"
    write_batch(frame, path)
    return path.read_bytes()


def test_generator_matches_the_committed_golden_batch(tmp_path):
    # If this fails, the generator changed: data/raw.dvc no longer matches `make data`.
    assert csv_bytes(generate_period(small(), 0), tmp_path) == FIXTURE.read_bytes()


def test_period_is_the_same_alone_or_with_others(tmp_path):
    together = generate(small(periods=3), tmp_path / "all")
    alone = generate(small(periods=3), tmp_path / "one", periods=range(2, 3))
    assert together[2].read_bytes() == alone[0].read_bytes()


def test_another_seed_gives_other_data():
    assert not generate_period(small(), 0).equals(generate_period(small(seed=1), 0))


def test_period_labels_roll_over_years():
    assert [period_label("2025-11", i) for i in range(3)] == ["2025-11", "2025-12", "2026-01"]


def test_data_has_a_few_percent_missing_and_a_realistic_default_rate():
    frame = pd.concat(generate_period(small(rows_per_period=3000), i) for i in range(2))
    missing = frame.isna().mean()
    assert 0.005 < missing["annual_income"] < 0.05
    assert 0.01 < missing["months_employed"] < 0.15
    assert missing["credit_score"] == 0
    assert 0.08 < frame["defaulted"].mean() < 0.25


def test_drift_knob_shifts_later_periods_only():
    calm = small(rows_per_period=3000, drift=0.0, drift_start=2)
    stormy = small(rows_per_period=3000, drift=1.0, drift_start=2)
    assert generate_period(calm, 0).equals(generate_period(stormy, 0))  # before drift_start
    before, after = generate_period(calm, 1), generate_period(stormy, 1)
    assert after["credit_score"].mean() < before["credit_score"].mean() - 15
    assert after["defaulted"].mean() > before["defaulted"].mean() + 0.05


@pytest.mark.parametrize(("task", "target"), [("multiclass", "risk_grade"), ("regression", "interest_rate")])
def test_task_knob_picks_the_target(task, target):
    frame = generate_period(small(task=task), 0)
    assert target in frame
    assert "defaulted" not in frame
    if task == "multiclass":
        assert set(frame[target]) == {"A", "B", "C", "D"}
    else:
        assert frame[target].between(3, 36).all()
        assert frame[target].std() > 1


def test_every_fault_changes_the_batch(tmp_path):
    clean = generate_period(small(), 0)
    for kind in FAULTS:
        broken = apply_fault(clean, kind, "binary")
        assert not broken.equals(clean), kind
    assert apply_fault(clean, "empty", "binary").empty
    assert "credit_score" not in apply_fault(clean, "missing_column", "binary")
    assert apply_fault(clean, "missing_target", "binary")["defaulted"].isna().mean() > 0.05


def test_fault_on_a_chosen_column():
    broken = apply_fault(generate_period(small(), 0), "missing_burst:loan_amount", "binary")
    assert broken["loan_amount"].isna().mean() > 0.5


def test_unknown_fault_or_column_is_a_clear_error():
    clean = generate_period(small(), 0)
    with pytest.raises(UserError, match="unknown fault 'flood'"):
        apply_fault(clean, "flood", "binary")
    with pytest.raises(UserError, match="no column 'salary'"):
        apply_fault(clean, "missing_burst:salary", "binary")


def test_a_written_batch_reads_back_with_its_values(tmp_path):
    frame = generate_period(small(), 0)
    write_batch(frame, tmp_path / "2025-01.csv")
    back = read_batch(tmp_path / "2025-01.csv", load_contract(FIXTURES / "contract.yaml"))
    assert list(back.columns) == list(frame.columns)
    pd.testing.assert_series_equal(back["loan_id"], frame["loan_id"])
    np.testing.assert_allclose(back["debt_to_income"], frame["debt_to_income"].astype(float), rtol=1e-5)
    assert back["credit_score"].dtype == np.int64
