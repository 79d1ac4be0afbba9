"""The bad-data corpus: each fault is rejected by `validate` with a message naming the problem."""

import json
from pathlib import Path

import pytest

from mlops.core.config import DataParams, load_params
from mlops.core.contract import load_contract
from mlops.core.errors import run
from mlops.example.data import generate
from mlops.pipeline.validation import ValidationReport, validate_dir
from mlops.stages import validate as validate_stage

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CONTRACT = FIXTURES / "contract.yaml"
pytestmark = pytest.mark.unit

# fault -> (column named in the failure, words that must appear)
CORPUS = {
    "missing_burst": ("annual_income", "at most 5.0% missing"),
    "missing_column": ("credit_score", "column to be present"),
    "wrong_dtype": ("age", "non-numeric values, e.g. 'unknown'"),
    "out_of_range": ("credit_score", "out of range, e.g. 9999"),
    "unknown_category": ("purpose", "unknown values, e.g. crypto"),
    "empty": (None, "at least 1 row; observed 0 rows"),
    "missing_target": ("defaulted", "at most 0.0% missing"),
}


# the stage's defaults are the repository's own params.yaml and contract: a test names its fixtures
FIXTURE_ARGS = ["--params", str(FIXTURES / "params.yaml"), "--contract", str(CONTRACT)]


def write_data(tmp_path: Path, *faults: str) -> Path:
    params = load_params(FIXTURES / "params.yaml").data.model_dump() | {"periods": 3, "rows_per_period": 300}
    generate(DataParams.model_validate(params), tmp_path / "raw", faults=faults)
    return tmp_path / "raw"


def test_clean_example_data_passes_every_expectation(tmp_path):
    report = validate_dir(write_data(tmp_path), load_contract(CONTRACT))
    assert report.success, [c.line() for c in report.failures]
    assert len(report.checks) > 3 * 40  # every column checked in every batch
    kinds = {c.expectation for c in report.checks}
    assert {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set"} <= kinds


@pytest.mark.parametrize("fault", list(CORPUS))
def test_bad_batch_is_rejected_naming_the_problem(tmp_path, fault, capsys):
    raw = write_data(tmp_path, fault)
    report_path = tmp_path / "validation.json"
    code = validate_stage.main([*FIXTURE_ARGS, "--raw", str(raw), "--report", str(report_path)])
    err = capsys.readouterr().err
    assert code == 1
    column, words = CORPUS[fault]
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert failed, err
    assert all("2025-03.csv" in line for line in failed)  # only the broken (newest) batch
    assert any(words in line and (column is None or f"column '{column}'" in line) for line in failed), err
    report = json.loads(report_path.read_text())
    assert report["success"] is False
    assert report["failed"] == len(failed)
    assert all(e["success"] for e in report["expectations"] if e["batch"] != "2025-03.csv")


def test_report_records_every_expectation_with_observed_values(tmp_path):
    report_path = tmp_path / "validation.json"
    assert validate_stage.main([*FIXTURE_ARGS, "--raw", str(write_data(tmp_path)), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["success"] is True
    assert report["failed"] == 0
    assert report["evaluated"] == len(report["expectations"])
    assert report["batches"] == {"2025-01.csv": 300, "2025-02.csv": 300, "2025-03.csv": 300}
    null_checks = [e for e in report["expectations"] if e["expectation"].endswith("not_be_null")]
    assert all("% missing" in e["observed"] for e in null_checks)


def test_a_suite_that_evaluates_nothing_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(validate_stage, "validate_dir", lambda *a, **k: ValidationReport())
    args = [*FIXTURE_ARGS, "--raw", str(write_data(tmp_path)), "--report", str(tmp_path / "v.json")]
    code = run(validate_stage.main, args)
    assert code == 2
    assert "zero expectations" in capsys.readouterr().err
    assert not (tmp_path / "v.json").exists()


def test_missing_raw_directory_is_a_clear_error(tmp_path, capsys):
    assert run(validate_stage.main, [*FIXTURE_ARGS, "--raw", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_unparseable_batch_is_a_clear_error(tmp_path, capsys):
    raw = write_data(tmp_path)
    (raw / "2025-04.csv").write_bytes(b'a,b\n"unterminated,1\n')
    assert run(validate_stage.main, [*FIXTURE_ARGS, "--raw", str(raw), "--report", str(tmp_path / "v.json")]) == 2
    assert "2025-04.csv" in capsys.readouterr().err


def test_optional_column_may_be_absent_but_required_may_not(tmp_path):
    raw = write_data(tmp_path, "missing_column:region")
    assert validate_dir(raw, load_contract(CONTRACT)).success
