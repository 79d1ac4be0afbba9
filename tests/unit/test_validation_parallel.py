"""Validation in one process per core: the same report, in batch order, as one process gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.core.config import DataParams, load_params
from mlops.core.contract import load_contract
from mlops.example.data import generate
from mlops.pipeline import validation
from mlops.pipeline.validation import validate_dir
from support import FIXTURES

pytestmark = pytest.mark.unit


def test_several_processes_give_the_report_one_process_gives(tmp_path: Path):
    params = load_params(FIXTURES / "params.yaml").data.model_dump() | {"periods": 4, "rows_per_period": 200}
    generate(DataParams.model_validate(params), tmp_path / "raw", faults=("out_of_range",))
    contract = load_contract(FIXTURES / "contract.yaml")
    lines: list[str] = []
    parallel = validate_dir(tmp_path / "raw", contract, lines.append, jobs=2)
    single = validate_dir(tmp_path / "raw", contract, jobs=1)
    assert parallel.to_dict() == single.to_dict()
    assert not parallel.success
    assert [line.split(":")[0] for line in lines] == [*sorted(parallel.rows), "all batches"]


def test_large_data_is_validated_by_one_process_per_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    params = load_params(FIXTURES / "params.yaml").data.model_dump() | {"periods": 3, "rows_per_period": 50}
    generate(DataParams.model_validate(params), tmp_path / "raw")
    used = []
    real = validation._validated
    monkeypatch.setattr(validation, "_validated", lambda paths, c, jobs: used.append(jobs) or real(paths, c, jobs))
    monkeypatch.setattr(validation, "PARALLEL_BYTES", 1)  # these few KB count as large
    monkeypatch.setattr(validation.os, "cpu_count", lambda: 2)
    assert len(validate_dir(tmp_path / "raw", load_contract(FIXTURES / "contract.yaml")).rows) == 3
    monkeypatch.setattr(validation, "PARALLEL_BYTES", 1 << 40)
    validate_dir(tmp_path / "raw", load_contract(FIXTURES / "contract.yaml"))
    assert used == [2, 1]
