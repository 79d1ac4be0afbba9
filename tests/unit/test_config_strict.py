"""Config that used to be accepted silently: misspelled gate metrics, duplicate YAML keys, archive
URLs that only looked like the environment's model store, and unmarked deployment-check clients."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.errors import UserError
from mlops.core.schema import read_yaml
from mlops.monitoring import monitor as mon
from mlops.release import report
from mlops.release.deploy import Site
from mlops.serving.torchserve import archive_url_pattern, local_server, read_properties
from mlops.serving.traffic import CHECK_TRAFFIC, TRAFFIC_HEADER
from support import FIXTURES, ROOT

pytestmark = pytest.mark.unit


def misspelled(params):
    return params.gates.model_copy(update={"regression_budget": {"roc_aoc": 0.01, "log_loss": 0.01}})


def test_a_misspelled_metric_under_gates_stops_the_pr_report_naming_its_dotted_key(tmp_path, contract, params):
    with pytest.raises(UserError, match=r"gates\.regression_budget\.roc_aoc: not a metric of a binary task"):
        report.write(tmp_path, "main", contract, misspelled(params), tmp_path / "report.md", None)
    assert not (tmp_path / "report.md").exists()


def test_a_misspelled_metric_under_gates_stops_the_monitor(tmp_path, contract, params):
    sources = mon.Sources("production", tmp_path, pd.DataFrame(), {})
    with pytest.raises(UserError, match=r"gates\.regression_budget\.roc_aoc"):
        mon.monitor(sources, contract, params.monitor, misspelled(params), now=time.time())


def test_a_misspelled_metric_under_gates_stops_a_deployment_before_it_reads_anything(tmp_path, contract, params):
    from mlops.release.deploy import Context

    site = Site(
        tmp_path,
        params.model_copy(update={"gates": misspelled(params)}),
        tmp_path / "serve",
        tmp_path / "runtime",
        lambda _: None,
    )
    missing = tmp_path / "nothing-here"  # the check comes first: no archive or model is read
    with pytest.raises(UserError, match=r"gates\.regression_budget\.roc_aoc"):
        Context.load(site, contract, missing / "package.json", missing / "model.joblib", missing / "holdout.parquet")


def test_a_duplicate_column_in_the_contract_is_refused_naming_it(tmp_path):
    text = (FIXTURES / "contract.yaml").read_text()
    text = text.replace("  credit_score:", "  age:              {type: float}\n  credit_score:", 1)
    (tmp_path / "contract.yaml").write_text(text)
    with pytest.raises(UserError, match=r"duplicate key columns\.age \(line \d+\)"):
        load_contract(tmp_path / "contract.yaml")


def test_a_duplicate_key_in_params_is_refused_naming_it(tmp_path):
    text = (FIXTURES / "params.yaml").read_text()
    assert "  seed: 42\n" in text
    (tmp_path / "params.yaml").write_text(text.replace("  seed: 42\n", "  seed: 42\n  seed: 43\n", 1))
    with pytest.raises(UserError, match=r"duplicate key train\.seed"):
        load_params(tmp_path / "params.yaml")


def test_yaml_anchors_and_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nthird: *b\n")
    assert read_yaml(path)["other"] == {"x": 1, "y": 3}


def allowed_patterns(config: Path) -> list[str]:
    return read_properties(config)["allowed_urls"].split(",")  # TorchServe splits on commas


def test_allowed_urls_admit_the_environments_own_model_store_only(tmp_path):
    serve = tmp_path / "serve"
    shutil.copytree(ROOT / "serve", serve, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    server = local_server("production", serve, tmp_path / "runtime")
    server.store.mkdir(parents=True)
    patterns = allowed_patterns(server._effective_config())
    evil = "file:///tmp/evil/.serve/production/model-store/evil.mar"
    own = f"file://{server.store}/loan-default-1a2b3c.mar"
    assert not [p for p in patterns if re.fullmatch(p, evil)]
    assert [p for p in patterns if re.fullmatch(p, own)]
    for outside in (
        f"file://{server.store}/../x.mar",
        f"file://{server.store}/sub/x.mar",
        f"file://{server.store}x.mar",
    ):
        assert not [p for p in patterns if re.fullmatch(p, outside)], outside


def test_a_remote_archive_prefix_admits_archives_directly_under_it_only():
    pattern = archive_url_pattern("https://archives.example.com/team-a/")
    assert re.fullmatch(pattern, "https://archives.example.com/team-a/loan-default-1a2b.mar")
    for outside in (
        "https://archives.example.com/team-a.evil/loan-default.mar",
        "https://archives.example.com/team-a/../team-b/x.mar",
        "https://archives.example.com/team-a/sub/x.mar",
        "https://archivesXexample.com/team-a/x.mar",
    ):
        assert not re.fullmatch(pattern, outside), outside


def test_the_release_rooms_client_marks_its_predictions_as_deployment_checks(tmp_path, params, monkeypatch):
    remote = {"MANAGEMENT_URL": "http://127.0.0.1:9", "INFERENCE_URL": "http://127.0.0.1:9"}
    remote |= {"MANAGEMENT_TOKEN": "m", "INFERENCE_TOKEN": "i", "ARCHIVE_URL_PREFIX": "file:///x"}
    for key, value in remote.items():
        monkeypatch.setenv(f"MLOPS_STAGING_{key}", value)
    client = Site(tmp_path, params, tmp_path, tmp_path).client("staging")
    assert client.inference.headers[TRAFFIC_HEADER] == CHECK_TRAFFIC
    assert TRAFFIC_HEADER not in client.management.headers
