"""`mlops init` in a repository like a fresh clone: it replaces the example with the user's table, tracks the
batches with DVC, commits, and refuses to replace a user's own data without --force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import make_project, sh
from mlops.core.config import load_params
from mlops.core.contract import load_contract

pytestmark = pytest.mark.integration


def write_table(path: Path, rows: int = 300, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "order_id": [f"O{seed}-{i:05d}" for i in range(rows)],
            "week": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 120, rows), unit="D"),
            "items": rng.integers(1, 9, rows),
            "basket": rng.gamma(2.0, 20.0, rows).round(2),
            "channel": rng.choice(["web", "shop", "phone"], rows),
            "returned": rng.choice([0, 1], rows),
        }
    ).to_csv(path, index=False, date_format="%Y-%m-%d")
    return path


def state(repo: Path) -> dict[str, object]:
    return {
        "contract": (repo / "data/contract.yaml").read_bytes(),
        "params": (repo / "params.yaml").read_bytes(),
        "raw": sorted(p.name for p in (repo / "data/raw").iterdir()),
        "head": sh("git", "rev-parse", "HEAD", cwd=repo).stdout,
    }


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A repository holding the example, as a clone of the template does."""
    return make_project(tmp_path / "repo", params={"data": {"periods": 2, "rows_per_period": 50}})


def test_init_replaces_the_example_tracks_the_batches_and_commits(example, tmp_path):
    table = write_table(tmp_path / "orders.csv")
    proc = sh("mlops", "init", "--data", str(table), "--target", "returned", "--time", "week", "--id", "order_id",
              cwd=example)  # fmt: skip
    assert "Check by hand" in proc.stdout
    contract = load_contract(example / "data/contract.yaml")
    assert (contract.name, contract.task, contract.time, contract.id) == ("orders", "binary", "week", "order_id")
    assert contract.columns["week"].type == "date"
    assert load_params(example / "params.yaml").data is None
    assert sorted(p.name for p in (example / "data/raw").iterdir()) == ["2024-01.csv", "2024-02.csv",
                                                                        "2024-03.csv", "2024-04.csv"]  # fmt: skip
    written = pd.concat([pd.read_csv(p) for p in sorted((example / "data/raw").glob("*.csv"))])
    assert sorted(written["order_id"]) == sorted(pd.read_csv(table)["order_id"])  # every row, once
    assert "Data and pipelines are up to date" in sh("dvc", "status", "data/raw.dvc", cwd=example).stdout
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=example).stdout == ""
    message = sh("git", "log", "-1", "--format=%s", "--name-only", cwd=example).stdout
    assert message.startswith("Bring your own data: orders (mlops init)")
    assert {"data/contract.yaml", "params.yaml", "data/raw.dvc"} <= set(message.split())
    tracked = yaml.safe_load(sh("git", "show", "HEAD:data/raw.dvc", cwd=example).stdout)
    assert tracked["outs"][0]["nfiles"] == 4


def test_init_refuses_to_replace_your_own_data_without_force(example, tmp_path):
    args = ["mlops", "init", "--target", "returned", "--id", "order_id"]
    sh(*args, "--data", str(write_table(tmp_path / "orders.csv")), cwd=example)
    before = state(example)
    again = sh(*args, "--data", str(write_table(tmp_path / "orders-2.csv", seed=1)), cwd=example, check=False)
    assert again.returncode == 2
    assert "already holds your own data" in again.stderr
    assert "--force" in again.stderr
    assert state(example) == before  # nothing written
    sh(*args, "--data", str(tmp_path / "orders-2.csv"), "--force", cwd=example)
    after = pd.concat([pd.read_csv(p) for p in (example / "data/raw").glob("*.csv")])
    assert after["order_id"].str.startswith("O1-").all()
    assert load_contract(example / "data/contract.yaml").name == "orders-2"


def test_a_table_that_cannot_be_read_changes_nothing(example, tmp_path):
    before = state(example)
    missing = sh("mlops", "init", "--data", str(tmp_path / "nope.csv"), "--target", "y", cwd=example, check=False)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    wrong = sh("mlops", "init", "--data", str(write_table(tmp_path / "t.csv")), "--target", "refunded",
               cwd=example, check=False)  # fmt: skip
    assert wrong.returncode == 2
    assert "['refunded'] are not in the table" in wrong.stderr
    assert state(example) == before
