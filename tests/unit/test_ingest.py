"""Ingestion: valid batches join data/raw, each kind of bad batch is quarantined with reasons, twice is once."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from mlops.core.config import DataParams, load_params
from mlops.core.errors import UserError
from mlops.example.data import FAULTS, generate, next_period
from mlops.monitoring.ingest import ingest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.unit


def land(folder: Path, index: int, *faults: str) -> Path:
    params = DataParams.model_validate(
        load_params(FIXTURES / "params.yaml").data.model_dump() | {"rows_per_period": 200}
    )
    [path] = generate(params, folder, range(index, index + 1), faults)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))} if folder.exists() else {}


def test_valid_batches_are_added_and_landing_is_emptied(tmp_path, contract):
    landing, raw, quarantine = tmp_path / "landing", tmp_path / "raw", tmp_path / "quarantine"
    sent = {land(landing, i).name: land(landing, i).read_bytes() for i in (12, 13)}
    result = ingest(str(landing), raw, quarantine, contract, progress=lambda _: None, dvc_add=False)
    assert result.added == sorted(sent)
    assert snapshot(raw) == sent  # byte for byte
    assert not list(landing.glob("*.csv"))
    assert not quarantine.exists()


# fault -> what its reason must name: the column (None: the table) and the problem
REASONS = {
    "missing_burst": ("annual_income", "missing"),
    "missing_column": ("credit_score", "expected the column to be present"),
    "wrong_dtype": ("age", "non-numeric values"),
    "out_of_range": ("credit_score", "out of range"),
    "unknown_category": ("purpose", "unknown values"),
    "empty": (None, "observed 0 rows"),
    "missing_target": ("defaulted", "missing"),
}


def test_every_fault_has_the_reason_it_must_give():
    assert set(REASONS) == set(FAULTS)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_kind_of_bad_batch_is_quarantined_with_its_reason(tmp_path, contract, fault):
    landing, raw, quarantine = tmp_path / "landing", tmp_path / "raw", tmp_path / "quarantine"
    good = land(landing, 12).name
    bad = land(landing, 13, fault)
    bad_bytes = bad.read_bytes()
    result = ingest(str(landing), raw, quarantine, contract, progress=lambda _: None, dvc_add=False)
    assert result.added == [good]
    assert list(result.quarantined) == [bad.name]
    [kept] = quarantine.glob(f"*-{bad.name}")  # content-addressed: <sha256 prefix>-<name>
    assert kept.read_bytes() == bad_bytes  # nothing lost
    reasons = json.loads(kept.with_name(f"{kept.name}.reason.json").read_text())["reasons"]
    assert all(bad.name in r for r in reasons)
    column, problem = REASONS[fault]
    where = f"column '{column}'" if column else "table"
    assert any(where in r and problem in r for r in reasons), reasons
    assert not (raw / bad.name).exists()
    assert not list(landing.glob("*.csv"))


def test_running_twice_changes_nothing(tmp_path, contract):
    landing, raw, quarantine = tmp_path / "landing", tmp_path / "raw", tmp_path / "quarantine"
    land(landing, 12)
    land(landing, 13, "empty")
    ingest(str(landing), raw, quarantine, contract, progress=lambda _: None, dvc_add=False)
    before = (snapshot(raw), snapshot(quarantine))
    again = ingest(str(landing), raw, quarantine, contract, progress=lambda _: None, dvc_add=False)
    assert (again.added, again.quarantined, again.duplicates) == ([], {}, [])
    assert (snapshot(raw), snapshot(quarantine)) == before


def test_a_redelivered_batch_is_recognised_and_an_interrupted_run_is_finished(tmp_path, contract):
    landing, raw, quarantine = tmp_path / "landing", tmp_path / "raw", tmp_path / "quarantine"
    path = land(landing, 12)
    raw.mkdir()
    (raw / path.name).write_bytes(path.read_bytes())  # copied, but the run died before deleting the source
    result = ingest(str(landing), raw, quarantine, contract, progress=lambda _: None, dvc_add=False)
    assert result.duplicates == [path.name]
    assert not path.exists()
    assert not quarantine.exists()


def test_a_different_batch_under_an_existing_name_is_quarantined(tmp_path, contract):
    landing, raw, quarantine = tmp_path / "landing", tmp_path / "raw", tmp_path / "quarantine"
    path = land(landing, 12)
    raw.mkdir()
    (raw / path.name).write_text("loan_id\nsomething else\n")
    result = ingest(str(landing), raw, quarantine, contract, progress=lambda _: None, dvc_add=False)
    assert "immutable" in result.quarantined[path.name][0]
    assert (raw / path.name).read_text() == "loan_id\nsomething else\n"


def test_any_fsspec_location_works(tmp_path, contract):
    local = land(tmp_path / "made", 12)
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/landing-{id(tmp_path)}/{local.name}", local.read_bytes())
    result = ingest(
        f"memory:///landing-{id(tmp_path)}", tmp_path / "raw", tmp_path / "q", contract, lambda _: None, False
    )
    assert result.added == [local.name]
    assert (tmp_path / "raw" / local.name).read_bytes() == local.read_bytes()
    assert not fs.exists(f"/landing-{id(tmp_path)}/{local.name}")


def test_a_missing_landing_location_is_a_clear_error(tmp_path, contract):
    with pytest.raises(UserError, match="does not exist"):
        ingest(str(tmp_path / "nowhere"), tmp_path / "raw", tmp_path / "q", contract, lambda _: None, False)


def test_next_period_follows_the_newest_batch_anywhere(tmp_path):
    land(tmp_path / "raw", 11)
    land(tmp_path / "landing", 12)
    assert next_period("2025-01", [tmp_path / "raw", tmp_path / "landing"]) == 13
    assert next_period("2025-01", [tmp_path / "empty"]) == 0
