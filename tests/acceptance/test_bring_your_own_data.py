"""Bring your own data, as a new user does: a fresh clone of the template, `mlops init` on a table,
then the README's two commands, `make demo` and `make test`, with no file edited by hand.

Two public tables that ship with scikit-learn (no download), written to CSV as a user would have
them: the diabetes table (regression) with a visit month written as month names (`--time month
--time-format %b`: the holdout must be Nov and Dec, not the latest names as strings), and the wine
table (multiclass) with a sample id (`--id`, so late labels reach the monitor). Each goes through
`mlops init`, then `make demo` (a fresh `dvc repro`, local staging and production, deploy and
promote under the table's own model name); then a served prediction equal to the offline one, the
registered model in MLflow read by a standard client, the PR report and the monitor; and last the
whole `make test` of the template on that repository, which must pass: the suite brings its own
fixtures and never reads the user's data, contract or params.

Its own tier (`make test-acceptance`): it runs the whole suite once per table, so `make test`
does not run it (which also keeps it from running itself).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import FIXTURES, ROOT, sh
from mlops.core.contract import load_contract
from mlops.core.task import task_of
from mlops.pipeline.features import features_and_target
from mlops.serving.inference import records
from mlops.serving.torchserve import Client, resolve
from support.servers import write_env_configs

pytestmark = pytest.mark.acceptance

VENV = Path(sys.executable).parents[1]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def diabetes_csv(path: Path) -> Path:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame.insert(0, "month", [MONTHS[i * 12 // len(frame)] for i in range(len(frame))])
    frame.to_csv(path, index=False)
    return path


def wine_csv(path: Path) -> Path:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame.insert(0, "wine_id", [f"W{i:04d}" for i in range(len(frame))])
    frame.to_csv(path, index=False)
    return path


TABLES = {
    "diabetes": (diabetes_csv, ["--target", "target", "--time", "month", "--time-format", "%b"], "regression"),
    "wine": (wine_csv, ["--target", "target", "--id", "wine_id", "--name", "wine-cultivars"], "multiclass"),
}


# This repository's own data and what was built from it: the template ships the example instead
# (the tests' fixtures), whatever data this checkout holds.
OWN_DATA = ("params.yaml", "data/contract.yaml", "data/raw.dvc", "dvc.lock", "models/", "reports/")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template as a git repository to clone: this checkout's code, the example's contract and
    params from the fixtures (whatever data this checkout holds)."""
    origin = tmp_path_factory.mktemp("byod") / "template"
    listed = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file() and not name.startswith(OWN_DATA):
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, origin / name)
    shutil.copy(FIXTURES / "params.yaml", origin / "params.yaml")
    shutil.copy(FIXTURES / "contract.yaml", origin / "data" / "contract.yaml")
    sh("git", "init", "-q", "-b", "main", cwd=origin)
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "the template", cwd=origin)
    return origin


def clone(origin: Path, name: str) -> Path:
    """A fresh clone. `make setup` there would install the pinned requirements and the workflow
    linter: the clone uses this environment (`VENV=... SKIP_SETUP=1`) with its own package source
    first on the path, and this checkout's installed node tools."""
    repo = origin.parent / name
    sh("git", "clone", "-q", str(origin), str(repo), cwd=origin.parent)
    (repo / "node_modules").symlink_to(ROOT / "node_modules")
    return repo


def make(repo: Path, target: str, env: dict[str, str], log: Path) -> subprocess.CompletedProcess[str]:
    """One of the README's commands in ``repo``, its output kept in ``log``."""
    with log.open("w") as out:
        proc = subprocess.run(
            ["make", "--no-print-directory", target, f"VENV={VENV}", "SKIP_SETUP=1"],
            cwd=repo, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text(), "")


def served(env: dict[str, str], name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    client = Client(resolve("production", Path(env["MLOPS_SERVE_DIR"]), Path(env["MLOPS_RUNTIME_DIR"])))
    status, body = client.predict(name, rows)
    assert status == 200, body
    return body["predictions"]


@pytest.mark.parametrize("table", list(TABLES))
def test_mlops_init_then_make_demo_and_make_test_pass_with_no_file_edited_by_hand(template, tmp_path, table):
    write, args, task = TABLES[table]
    repo = clone(template, table)
    source = write(tmp_path / f"{table}.csv")
    times: dict[str, float] = {}

    # 1. mlops init: contract, params, batches, dvc add, one commit; nothing left to edit
    t0 = time.monotonic()
    init = sh("mlops", "init", "--data", str(source), *args, cwd=repo)
    assert "Check by hand" in init.stdout
    contract = load_contract(repo / "data/contract.yaml")
    assert contract.task == task
    name = contract.name
    assert name == ("wine-cultivars" if table == "wine" else "diabetes")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert "data" not in params
    assert params["serve"]["model_name"] == params["mlflow"]["registered_model"] == name
    assert sh("git", "status", "--porcelain", "--untracked-files=no", cwd=repo).stdout == ""
    initialised = sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    times["init"] = time.monotonic() - t0

    # 2. the README's first command: a fresh dvc repro, local staging and production, deploy, promote.
    # The servers get free ports (a copy of the clone's serve/ configs), the clone's own stay as init left them.
    serve = tmp_path / "serve"
    shutil.copytree(repo / "serve", serve)
    write_env_configs(tmp_path, extra_allowed="file:///nowhere/.*")
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "MLOPS_SERVE_DIR": str(serve),
           "MLOPS_RUNTIME_DIR": str(tmp_path / "runtime")}  # fmt: skip
    t0 = time.monotonic()
    try:
        demo = make(repo, "demo", env, tmp_path / "demo.log")
        assert demo.returncode == 0, demo.stdout[-6000:]
        times["make demo"] = time.monotonic() - t0
        ran = [ln.split("'")[1] for ln in demo.stdout.splitlines() if ln.startswith("Running stage")]
        assert ran == ["validate", "split", "train", "evaluate", "package"], ran
        holdout = pd.read_parquet(repo / "data/split/holdout.parquet")
        if table == "diabetes":
            assert set(holdout["month"]) == {"Nov", "Dec"}  # the calendar's latest months, not the strings'
            assert "latest 2 period(s) of 'month': Nov, Dec" in demo.stdout
        metrics = json.loads((repo / "reports/metrics.json").read_text())
        headline = task_of(contract).headline
        assert task_of(contract).worse_by(headline, metrics[headline], metrics["baseline"][headline]) < 0

        # staging, then production, under the model's own name (the archive follows serve.model_name)
        package = json.loads((repo / "models/package.json").read_text())
        assert package["archive"] == f"{name}.mar"
        status = {r["environment"]: r for r in json.loads(sh("mlops", "status", "--json", cwd=repo, env=env).stdout)}
        assert status["staging"]["version"] == status["production"]["version"] == package["version"]
        # the records, in GTO's format under the model's own name: one version, assigned to each stage once
        tags = sh("git", "tag", "-l", f"{name}*", cwd=repo).stdout.split()
        assert sorted(t.split("#")[1] for t in tags if "#" in t) == ["production", "staging"], tags
        assert [t for t in tags if "@" in t] == [f"{name}@v0.0.1"], tags

        # 3. production answers as the offline model does, exactly
        pipeline = joblib.load(repo / "models/pipeline.joblib")
        X, _ = features_and_target(holdout, contract)
        offline = task_of(contract).for_model(pipeline)
        answers = served(env, name, records(holdout, contract.features))
        np.testing.assert_array_equal(offline.from_answers(answers), offline.outputs(pipeline, X))

        # 4. a standard MLflow client uses the production model on a frame read from the user's CSV
        import mlflow

        table_frame = pd.read_csv(source)
        predicted = mlflow.pyfunc.load_model(f"models:/{name}@production").predict(table_frame)
        expected = pipeline.predict(table_frame)
        if task == "regression":
            np.testing.assert_array_equal(predicted["prediction"].to_numpy(), expected)
        else:
            assert predicted["prediction"].tolist() == expected.tolist()

        # 5. the PR report for the task, its gate passing
        report = sh("mlops", "report", "--base", "main", cwd=repo, env=env)
        text = (repo / "reports/pr/pr-report.md").read_text()
        assert text.startswith("## ✅ Gate passed"), text[:500]
        assert f"Production serves `{package['version']}`" in text
        assert f"| {headline} |" in text
        assert "gate passed" in report.stdout

        # 6. production traffic (with late labels where there is an id), and the monitor
        since = time.time()
        batches = sorted(str(p) for p in (repo / "data/raw").glob("*.csv"))
        replay = ["mlops", "serve", "replay", "production", *[a for b in batches for a in ("--batch", b)]]
        sh(*replay, "--labels-to", str(repo / "data/labels"), cwd=repo, env=env)
        monitor = sh("mlops", "monitor", "production", "--since", str(since), cwd=repo, env=env, check=False)
        assert monitor.returncode == 0, monitor.stdout + monitor.stderr
        seen = json.loads((repo / "reports/monitor.json").read_text())
        assert seen["rows"] == len(table_frame)
        if contract.id:
            assert seen["labels"]["rows"] == len(table_frame)
            assert seen["labels"]["headline"] == next(iter(params["gates"]["minimum"]))  # what the monitor follows
            assert seen["labels"]["drop"] <= 0.05  # the served rows are the ones it learned from: no drop
        else:
            assert set(seen["drift"]) == {*contract.features, "prediction"}  # 442 rows: enough for a verdict
        assert "No threshold breached" in (repo / "reports/monitor.md").read_text()
    finally:
        subprocess.run(["make", "--no-print-directory", "down", f"VENV={VENV}", "SKIP_SETUP=1"],
                       cwd=repo, capture_output=True, env=env)  # fmt: skip

    # 7. the README's second command: the template's whole suite, on the user's repository
    t0 = time.monotonic()
    quiet = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    suite = make(repo, "test", {**quiet, "PYTHONPATH": str(repo / "src")}, tmp_path / "make-test.log")
    times["make test"] = time.monotonic() - t0
    assert suite.returncode == 0, suite.stdout[-8000:]
    summaries = [ln for ln in suite.stdout.splitlines() if ln.startswith("=") and " passed" in ln]
    assert len(summaries) == 2, summaries  # the unit tier, then the rest
    assert not any("failed" in s or "error" in s for s in summaries), summaries

    # 8. nothing was edited by hand: the contract, params and template code are what init committed
    assert sh("git", "diff", "--stat", initialised, "--", "data/contract.yaml", "params.yaml", "src", "serve",
              "dvc.yaml", "Makefile", "tests", cwd=repo).stdout == ""  # fmt: skip
    print(f"{table}: " + "; ".join(f"{k} {v:.0f}s" for k, v in times.items()) + f"; {' | '.join(summaries)}")
