"""An ingest run is a transaction (real git and DVC): killed after any step, the next run converges
to the same state; a failing `dvc add` leaves every batch where it landed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem

from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.errors import ServiceError
from mlops.example.data import generate
from mlops.monitoring import ingest as ingest_module
from mlops.monitoring.ingest import ingest
from support.project import make_project, sh

pytestmark = pytest.mark.integration


class Killed(BaseException):
    """The process died here: no handler of the code under test runs (as with SIGKILL)."""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with two small batches in data/raw, tracked by DVC and committed."""
    return make_project(tmp_path_factory.mktemp("ingest") / "repo", {"data": {"periods": 2, "rows_per_period": 100}})


def prepared(template: Path, where: Path) -> Path:
    """A copy of the template with one good and one bad batch landed."""
    root = where / "repo"
    shutil.copytree(template, root, symlinks=True)
    params = load_params(root / "params.yaml").data
    generate(params, root / "data/landing", range(5, 6))
    generate(params, root / "data/landing", range(6, 7), ("out_of_range",))
    return root


def run(root: Path) -> Any:
    return ingest(
        str(root / "data/landing"), root / "data/raw", root / "data/quarantine",
        load_contract(root / "data/contract.yaml"), lambda _: None, True, root,
    )  # fmt: skip


def dvc_clean(root: Path) -> bool:
    proc = sh("dvc", "status", "--json", "data/raw.dvc", cwd=root)
    return json.loads(proc.stdout or "{}") == {}


def state(root: Path) -> dict[str, Any]:
    """Everything a run may change, by content."""

    def files(folder: str) -> dict[str, bytes]:
        d = root / folder
        return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}

    return {
        "raw": files("data/raw"),
        "landing": files("data/landing"),
        "quarantine": files("data/quarantine"),
        "raw.dvc": (root / "data/raw.dvc").read_text(),
        "journal": (root / "data/.raw.ingest.json").exists(),
        "dvc clean": dvc_clean(root),
    }


def die_after(k: int, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Kill the run right after its k-th step (a durable write, `dvc add`, a deletion, the journal's removal)."""
    steps = 0

    def step(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            nonlocal steps
            out = real(*args, **kwargs)
            steps += 1
            if steps == k:
                raise Killed(f"after step {k}")
            return out

        return wrapped

    monkeypatch.setattr(ingest_module, "_write_atomic", step(ingest_module._write_atomic))
    monkeypatch.setattr(ingest_module.subprocess, "run", step(subprocess.run))
    monkeypatch.setattr(LocalFileSystem, "rm", step(LocalFileSystem.rm))
    if hasattr(ingest_module, "Journal"):  # (so that the same test runs against a version without one)
        monkeypatch.setattr(ingest_module.Journal, "remove", step(ingest_module.Journal.remove))
    return lambda: steps


def test_a_run_killed_after_any_step_is_finished_by_the_next(template, tmp_path, monkeypatch):
    reference = prepared(template, tmp_path / "reference")
    run(reference)
    expected = state(reference)
    assert expected["dvc clean"]
    assert not expected["journal"]
    assert len(expected["raw"]) == 3
    assert expected["landing"] == {}
    assert len(expected["quarantine"]) == 2  # the bad batch and its reason
    k = 0
    while True:
        k += 1
        root = prepared(template, tmp_path / f"k{k}")
        with monkeypatch.context() as m:
            steps = die_after(k, m)
            try:
                run(root)
                completed = True
            except Killed:
                completed = False
        run(root)  # the rerun, unharmed
        assert state(root) == expected, f"killed after step {k}, the rerun did not converge"
        if completed:
            assert steps() == k - 1  # every step boundary was tried
            break
    assert k > 6


def test_a_failing_dvc_add_leaves_every_batch_where_it_landed(template, tmp_path):
    root = prepared(template, tmp_path)
    good = sorted((root / "data/landing").glob("*.csv"))[0]
    first = sorted((root / "data/raw").glob("*.csv"))[0]
    sh("git", "add", "-f", str(first), cwd=root)  # DVC refuses an output that git tracks
    before = state_without_dvc(root)
    with pytest.raises(ServiceError, match=r"(?s)dvc add .* failed: .*tracked by SCM.*stay in the landing place"):
        run(root)
    after = state_without_dvc(root)
    assert after["raw"] == before["raw"]
    assert good.name in after["landing"]
    assert not (root / "data/.raw.ingest.json").exists()


def state_without_dvc(root: Path) -> dict[str, Any]:
    return {
        "raw": {p.name: p.read_bytes() for p in (root / "data/raw").iterdir()},
        "landing": {p.name: p.read_bytes() for p in (root / "data/landing").iterdir()},
    }
