"""Ingestion facing a hostile landing place: only regular files with safe names are read, a batch is
known by its content, ids are unique across all batches, quarantine never overwrites."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from mlops.core.config import DataParams, load_params
from mlops.example.data import generate
from mlops.monitoring.ingest import ingest
from mlops.pipeline.validation import validate_dir
from support import FIXTURES

pytestmark = pytest.mark.unit


def land(folder: Path, index: int, *faults: str) -> Path:
    params = DataParams.model_validate(
        load_params(FIXTURES / "params.yaml").data.model_dump() | {"rows_per_period": 150}
    )
    [path] = generate(params, folder, range(index, index + 1), faults)
    return path


def run(tmp_path: Path, contract):
    return ingest(str(tmp_path / "landing"), tmp_path / "raw", tmp_path / "quarantine", contract, lambda _: None, False)


def test_a_symlink_to_a_directory_is_skipped_and_every_batch_still_lands(tmp_path, contract):
    names = [land(tmp_path / "landing", i).name for i in (12, 13, 14)]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "landing" / "2026-01x.csv").symlink_to(tmp_path / "elsewhere")  # sorts among the batches
    result = run(tmp_path, contract)
    assert result.added == names
    assert "symbolic link" in result.skipped["2026-01x.csv"]
    assert (tmp_path / "landing" / "2026-01x.csv").is_symlink()  # left where it was
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == names


def test_a_symlink_to_a_file_outside_is_never_read(tmp_path, contract):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "passwd.csv").symlink_to(secret)
    result = run(tmp_path, contract)
    assert list(result.skipped) == ["passwd.csv"]
    assert result.quarantined == {}
    assert not (tmp_path / "quarantine").exists()
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())


@pytest.mark.parametrize("name", ["-rf.csv", "...csv", ".hidden.csv", "..%2F..%2Fevil.csv", "a b.csv"])
def test_a_file_with_an_unsafe_name_is_left_unread(tmp_path, contract, name):
    batch = land(tmp_path / "made", 12)
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / name).write_bytes(batch.read_bytes())
    result = run(tmp_path, contract)
    assert result.added == []
    assert "not a safe batch name" in result.skipped[name]
    assert (tmp_path / "landing" / name).exists()


def test_the_same_batch_under_another_name_is_a_duplicate(tmp_path, contract):
    first = land(tmp_path / "landing", 12)
    data = first.read_bytes()
    run(tmp_path, contract)
    (tmp_path / "landing" / "copy-of-2026-01.csv").write_bytes(data)
    again = run(tmp_path, contract)
    assert again.added == []
    assert again.duplicates == ["copy-of-2026-01.csv"]
    assert [p.name for p in (tmp_path / "raw").iterdir()] == [first.name]
    assert not (tmp_path / "landing" / "copy-of-2026-01.csv").exists()


def test_ids_already_in_raw_are_refused_in_a_new_batch(tmp_path, contract):
    first = land(tmp_path / "landing", 12)
    frame = pd.read_csv(first, dtype=str)
    run(tmp_path, contract)
    frame.loc[0, "age"] = "41" if frame.loc[0, "age"] != "41" else "42"  # other bytes, the same 150 ids
    frame.to_csv(tmp_path / "landing" / "2026-02.csv", index=False)
    result = run(tmp_path, contract)
    assert result.added == []
    [reason] = result.quarantined["2026-02.csv"]
    assert "column 'loan_id': expected unique values" in reason
    assert "with " in reason.split(":")[0]  # checked together with data/raw, not alone


def test_validate_checks_id_uniqueness_over_all_batches(tmp_path, contract):
    a, b = land(tmp_path / "raw", 1), land(tmp_path / "raw", 2)
    frame = pd.read_csv(b, dtype=str)
    frame["loan_id"] = pd.read_csv(a, dtype=str)["loan_id"]  # batch 2 reuses batch 1's ids
    frame.to_csv(b, index=False)
    report = validate_dir(tmp_path / "raw", contract)
    assert not report.success
    [failure] = report.failures
    assert failure.batch == "all batches"
    assert failure.column == "loan_id"
    assert failure.expectation == "expect_column_values_to_be_unique"


def test_two_different_bad_batches_of_one_name_are_both_kept(tmp_path, contract):
    land(tmp_path / "landing", 12, "out_of_range")
    name = next((tmp_path / "landing").iterdir()).name
    first = (tmp_path / "landing" / name).read_bytes()
    run(tmp_path, contract)
    land(tmp_path / "landing", 12, "unknown_category")
    second = (tmp_path / "landing" / name).read_bytes()
    run(tmp_path, contract)
    kept = sorted((tmp_path / "quarantine").glob(f"*-{name}"))
    assert sorted(p.read_bytes() for p in kept) == sorted([first, second])
    reasons = [json.loads(p.with_name(f"{p.name}.reason.json").read_text())["reasons"] for p in kept]
    assert sorted("out of range" in " ".join(r) for r in reasons) == [False, True]


def test_a_fifo_is_not_read(tmp_path, contract):
    (tmp_path / "landing").mkdir()
    os.mkfifo(tmp_path / "landing" / "2026-01.csv")  # opening it for reading blocks until a writer comes

    def blocked(*_):
        raise TimeoutError("ingest blocked on a fifo")

    old = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(30)
    try:
        result = run(tmp_path, contract)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "not a regular file" in result.skipped["2026-01.csv"]
