"""Real TorchServe: one staging/production pair for the session, on free loopback ports.

Deploy, promote and roll back; broken archives rejected; no request lost through a switch;
tokens required; the management API only on loopback.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import psutil
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from conftest import repro, sh
from mlops.core.config import load_params
from mlops.release.packaging import archive_info, build_archive
from mlops.serving import loadgen
from mlops.serving.torchserve import Client, install_archive, local_server
from support.servers import Site, write_env_configs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def site(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A copy of the trained project with both environments up on free ports."""
    root = tmp_path_factory.mktemp("serving") / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    bucket = root.parent / "bucket"
    bucket.mkdir()
    write_env_configs(root, extra_allowed=f"file://{bucket}/.*")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["deploy"]["latency"] = {"duration_s": 2, "concurrency": 2, "max_p99_ms": 2000, "min_rps": 5}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "commit", "-qam", "test environments", cwd=root)
    s = Site(root)
    s.mlops("serve", "up")
    yield s
    s.mlops("serve", "down", check=False)


@pytest.fixture(scope="session")
def first(site: Site, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Model A deployed to staging and promoted to production; its files kept for later."""
    site.mlops("deploy", "staging")
    site.mlops("promote", "production")
    keep = tmp_path_factory.mktemp("release-a")
    package = site.package()
    for name in (
        "models/package.json",
        f"models/{package['archive']}",
        "models/pipeline.joblib",
        "models/reference.parquet",
    ):
        shutil.copy(site.root / name, keep / Path(name).name)
    commit = sh("git", "rev-parse", "HEAD", cwd=site.root).stdout.strip()  # the commit deployed
    return {"version": package["version"], "dir": keep, "commit": commit}


def release_args(d: Path) -> list[str]:
    return ["--package", str(d / "package.json"), "--model", str(d / "pipeline.joblib")]


def build_release(site: Site, pipeline: Pipeline, out: Path) -> Path:
    """An archive of ``pipeline`` with its record, as `mlops package` writes them."""
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, out / "pipeline.joblib")
    params = load_params(site.root / "params.yaml")
    archive, version = build_archive(
        out / "pipeline.joblib", site.root / "data/contract.yaml", site.root / "serve/handler.py", params.serve, out
    )
    info = archive_info(archive, version, params.serve.model_name, out / "pipeline.joblib", {})
    (out / "package.json").write_text(json.dumps(info.to_dict()))
    return out


def test_deploy_and_promote_serve_the_model_everywhere_with_records(site, first):
    version = first["version"]
    assert site.default_version("staging") == version
    assert site.default_version("production") == version
    status = site.status()
    for env in ("staging", "production"):
        assert status[env]["version"] == version
        assert status[env]["commit"] == first["commit"][:12]
        assert status[env]["metrics"]["roc_auc"] > 0.7
    [tag] = site.tags()
    record = site.tag_record(tag)
    assert record["version"] == version
    assert record["sha256"] == site.package()["sha256"]
    assert record["mlflow_run"]
    assert record["checks"]["parity"]["mismatched"] == 0
    from mlflow.tracking import MlflowClient

    model = MlflowClient().get_registered_model("loan-default")
    prod = MlflowClient().get_model_version("loan-default", model.aliases["production"])
    assert prod.tags["archive_sha256"] == site.package()["sha256"]
    assert prod.run_id == record["mlflow_run"]


def test_served_predictions_equal_offline_exactly(site, first):
    frame, rows = site.holdout_rows(300)
    resp = site.predict("production", {"instances": rows})
    assert resp.status_code == 200
    served = np.array([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in resp.json()["predictions"]])
    offline = joblib.load(site.root / "models/pipeline.joblib").predict_proba(frame)
    np.testing.assert_array_equal(served, offline)


def test_bad_requests_get_400_with_the_field_and_workers_keep_serving(site, first):
    _, rows = site.holdout_rows(2)
    resp = site.predict("production", [rows[0], dict(rows[1], credit_score="high")])
    assert resp.status_code == 400
    assert resp.json()["row"] == 1
    assert resp.json()["field"] == "credit_score"
    assert site.predict("production", rows[0]).status_code == 200


def test_requests_without_a_valid_token_are_refused(site, first):
    props = site.props("production")
    _, rows = site.holdout_rows(1)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        inference = requests.post(
            props["inference_address"] + "/predictions/loan-default", json=rows[0], headers=headers
        )
        management = requests.get(props["management_address"] + "/models", headers=headers)
        for resp in (inference, management):
            assert resp.status_code == 400
            assert "Token Authorization failed" in resp.json()["message"]
    inference_key = site.keys("production")["inference"]["key"]
    wrong_api = requests.get(
        props["management_address"] + "/models", headers={"Authorization": f"Bearer {inference_key}"}
    )
    assert wrong_api.status_code == 400  # the inference token cannot manage models


def test_every_listening_socket_is_on_loopback(site, first):
    pid = int((site.root / ".serve/production/tmp/.model_server.pid").read_text())
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    listening = [c for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the server listens somewhere"
    for c in listening:
        ip = ipaddress.ip_address(c.laddr.ip)
        mapped = getattr(ip, "ipv4_mapped", None)
        assert (mapped or ip).is_loopback, f"listening on {c.laddr.ip}:{c.laddr.port}"


def test_the_management_port_refuses_connections_on_other_addresses(site, first):
    mgmt_port = int(site.props("production")["management_address"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", mgmt_port), timeout=2):
        pass  # the port is open on loopback, so a refusal elsewhere means something
    others = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    if not others:
        pytest.skip("this machine has no address other than loopback to try")
    for address in others:
        with pytest.raises(ConnectionRefusedError), socket.create_connection((address, mgmt_port), timeout=2):
            pass


@pytest.mark.parametrize(
    ("kind", "failed_check"),
    [("raises", "smoke"), ("nondeterministic", "parity")],
)
def test_a_broken_archive_is_rejected_by_staging_and_production_never_changes(
    site, first, tmp_path, kind, failed_check
):
    good = joblib.load(site.root / "models/pipeline.joblib")
    if kind == "raises":  # inversion fails on a non-square batch
        broken = Pipeline([*good.steps[:-1], ("boom", FunctionTransformer(np.linalg.inv)), good.steps[-1]])
    else:  # shuffles rows: answers 200, but not the predictions of the model offline
        broken = Pipeline([*good.steps[:-1], ("shuffle", FunctionTransformer(np.random.permutation)), good.steps[-1]])
    release = build_release(site, broken, tmp_path / kind)
    proc = site.mlops("deploy", "staging", *release_args(release), check=False)
    assert proc.returncode == 1
    assert re.search(rf"rejected \(([a-z]+, )*{failed_check}(, [a-z]+)* failed\)", proc.stderr), proc.stderr
    assert f"{first['version']} keeps serving" in proc.stderr
    bad_version = json.loads((release / "package.json").read_text())["version"]
    assert bad_version not in site.registered("staging")
    assert site.default_version("staging") == first["version"]
    assert site.default_version("production") == first["version"]
    promote = site.mlops("promote", "production", *release_args(release), check=False)
    assert promote.returncode == 2
    assert "has not passed staging" in promote.stderr
    assert site.default_version("production") == first["version"]


def test_promotion_and_rollback_under_load_lose_no_request(site, first, tmp_path):
    tagged = len(site.tags())
    params_path = site.root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["train"]["hist_gradient_boosting"]["learning_rate"] = 0.1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "commit", "-qam", "faster learning", cwd=site.root)
    repro(site.root)
    new = site.package()["version"]
    assert new != first["version"]
    site.mlops("deploy", "staging")
    assert site.default_version("staging") == new

    _, rows = site.holdout_rows(50)
    props, token = site.props("production"), site.keys("production")["inference"]["key"]
    load = loadgen.start(props["inference_address"], "/predictions/loan-default", token, rows, 4, 600, tmp_path)
    time.sleep(2)
    site.mlops("promote", "production")
    assert site.default_version("production") == new
    t0 = time.monotonic()
    site.mlops("rollback", "production")
    rollback_seconds = time.monotonic() - t0
    assert load.poll() is None, "the load was still running through both switches"
    time.sleep(1)
    loadgen.stop(load)
    result = loadgen.finish(load, tmp_path)
    assert result.requests > 200
    assert result.failures == 0
    assert site.default_version("production") == first["version"]
    assert site.registered("production") == {first["version"], new}  # the newer one stays for a roll forward
    # a ceiling that catches a rollback waiting on a re-registration or a timeout, not a busy machine's
    # noise (two test workers share two cores): how fast it is belongs to the benchmarks
    assert rollback_seconds < 30
    tags = site.tags()
    assert len(tags) == tagged + 2  # the promotion and the rollback
    assert site.tag_record(tags[-2])["version"] == new
    assert site.tag_record(tags[-1])["action"] == "rollback"
    assert site.tag_record(tags[-1])["version"] == first["version"]


def test_an_older_model_is_refused_by_production_unless_forced(site, first, tmp_path):
    # a newer model of this test's own: built at a later commit, through staging into production
    sh("git", "commit", "-q", "--allow-empty", "-m", "a later commit", cwd=site.root)
    model = joblib.load(first["dir"] / "pipeline.joblib").set_params(model__max_iter=30)
    release = build_release(site, model.fit(*_train_xy(site)), tmp_path / "newer")
    newer = json.loads((release / "package.json").read_text())["version"]
    site.mlops("deploy", "staging", *release_args(release))
    site.mlops("promote", "production", *release_args(release))
    assert site.default_version("production") == newer
    older = [*release_args(first["dir"]), "--commit", first["commit"]]  # deployed again from its own commit
    refused = site.mlops("promote", "production", *older, check=False)
    assert refused.returncode == 2
    assert "does not descend" in refused.stderr
    assert site.default_version("production") == newer
    site.mlops("promote", "production", *older, "--force")
    assert site.default_version("production") == first["version"]


def test_a_remote_environment_is_driven_by_urls_and_tokens(site, first, tmp_path, monkeypatch):
    good = joblib.load(site.root / "models/pipeline.joblib")
    good.set_params(model__max_iter=20)
    release = build_release(site, good.fit(*_train_xy(site)), tmp_path / "remote")
    version = json.loads((release / "package.json").read_text())["version"]
    bucket = site.root.parent / "bucket"
    shutil.copy(release / "loan-default.mar", bucket / f"loan-default-{version}.mar")  # the "upload"
    props, keys = site.props("staging"), site.keys("staging")
    env = {
        "MLOPS_STAGING_MANAGEMENT_URL": props["management_address"],
        "MLOPS_STAGING_INFERENCE_URL": props["inference_address"],
        "MLOPS_STAGING_MANAGEMENT_TOKEN": keys["management"]["key"],
        "MLOPS_STAGING_INFERENCE_TOKEN": keys["inference"]["key"],
        "MLOPS_STAGING_ARCHIVE_URL_PREFIX": f"file://{bucket}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    site.mlops("deploy", "staging", *release_args(release))
    assert site.default_version("staging") == version
    monkeypatch.delenv("MLOPS_STAGING_ARCHIVE_URL_PREFIX")
    missing = site.mlops("status", check=False)
    assert missing.returncode == 2
    assert "MLOPS_STAGING_ARCHIVE_URL_PREFIX" in missing.stderr


def _train_xy(site: Site):
    train = pd.read_parquet(site.root / "data/split/train.parquet")
    return train, train["defaulted"]


def land_batch(site: Site, tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    sh("mlops", "data", "--next", "--landing", str(out), "--out", str(out), "--rows", "800", *args, cwd=site.root)
    [batch] = list(out.glob("*.csv"))
    return batch


def monitor(site: Site, first: dict[str, Any], since: float, labels: Path | None = None):
    """Monitor production, which serves model A by now, against A's training reference."""
    assert site.default_version("production") == first["version"]
    args = ["monitor", "production", "--since", str(since), "--reference", str(first["dir"] / "reference.parquet")]
    args += ["--labels", str(labels)] if labels else ["--labels", str(site.root / "no-labels")]
    proc = site.mlops(*args, check=False)
    return proc, json.loads((site.root / "reports/monitor.json").read_text())


def telemetry(site: Site) -> tuple[dict[str, Any], int]:
    """Production's metric families and the number of rows in its prediction log, now."""
    text = requests.get(site.props("production")["metrics_address"] + "/metrics").text
    logged = sum(1 for p in (site.root / ".serve/production/predictions").glob("predictions-*.jsonl") for _ in p.open())
    return {f.name: f for f in text_string_to_metric_families(text)}, logged


def test_telemetry_appears_on_the_metrics_endpoint(site, first, tmp_path):
    batch = land_batch(site, tmp_path, "telemetry")
    before, logged_before = telemetry(site)  # the counters are cumulative: earlier tests served rows too
    site.mlops("serve", "replay", "production", "--batch", str(batch))
    families, logged = telemetry(site)

    def total(fams: dict[str, Any], name: str) -> float:
        return sum(s.value for s in fams[name].samples) if name in fams else 0.0

    assert total(families, "RowsServed") - total(before, "RowsServed") == 800  # exactly the replayed rows
    assert logged - logged_before == 800
    features = {s.labels["Feature"] for s in families["MissingValues"].samples}
    assert {"annual_income", "months_employed"} <= features
    buckets = {s.labels["Bucket"] for s in families["PredictionBucket"].samples}
    assert len(buckets) >= 3


def test_monitor_flags_a_drifted_batch_and_not_an_undrifted_one(site, first, tmp_path):
    calm = land_batch(site, tmp_path, "calm")
    since = time.time()
    site.mlops("serve", "replay", "production", "--batch", str(calm))
    proc, report = monitor(site, first, since)
    assert proc.returncode == 0, proc.stderr
    assert report["rows"] == 800
    assert not any(d["drifted"] for d in report["drift"].values())
    assert "No threshold breached" in (site.root / "reports/monitor.md").read_text()

    stormy = land_batch(site, tmp_path, "stormy", "--drift", "1.5", "--drift-start", "1")
    since = time.time()
    site.mlops("serve", "replay", "production", "--batch", str(stormy))
    proc, report = monitor(site, first, since)
    assert proc.returncode == 1
    assert report["drift"]["credit_score"]["drifted"]
    assert report["drift"]["prediction"]["drifted"]
    assert "BREACH drift in 'credit_score'" in proc.stderr
    assert (site.root / "reports/monitor/drift.png").exists()


def test_monitor_flags_a_burst_of_missing_values(site, first, tmp_path):
    burst = land_batch(site, tmp_path, "burst", "--fault", "missing_burst")
    since = time.time()
    site.mlops("serve", "replay", "production", "--batch", str(burst))
    proc, report = monitor(site, first, since)
    assert proc.returncode == 1
    assert report["missing"]["annual_income"]["served"] > 0.5
    assert "missing values in 'annual_income'" in proc.stderr


def test_monitor_flags_an_accuracy_drop_on_late_labels(site, first, tmp_path):
    batch = land_batch(site, tmp_path, "labelled")
    since = time.time()
    labels = tmp_path / "labels"
    site.mlops("serve", "replay", "production", "--batch", str(batch), "--labels-to", str(labels))
    proc, report = monitor(site, first, since, labels)
    assert proc.returncode == 0, proc.stderr
    assert report["labels"]["rows"] == 800
    assert report["labels"]["drop"] < 0.05
    truth = pd.read_csv(labels / batch.name)
    truth["defaulted"] = 1 - truth["defaulted"]  # the world changed: the model is now wrong
    truth.to_csv(labels / batch.name, index=False)
    proc, report = monitor(site, first, since, labels)
    assert proc.returncode == 1
    assert report["labels"]["drop"] > 0.3
    assert "roc_auc on 800 labelled predictions" in proc.stderr


@pytest.fixture
def own_pair(trained_project: Path, short_tmp: Path) -> Iterator[Site]:
    """A pair of servers of this test's own, each with the model registered (two workers)."""
    root = short_tmp / "repo"  # the servers' runtime is in it (.serve): a short path for their sockets
    shutil.copytree(trained_project, root, symlinks=True)
    write_env_configs(root, extra_allowed="file:///nowhere/.*")
    own = Site(root)
    own.mlops("serve", "up")
    try:  # the servers stop even when a registration fails
        package = own.package()
        for env in ("staging", "production"):
            endpoint = local_server(env, root / "serve", root / ".serve").endpoint()
            url = install_archive(endpoint, root / "models" / package["archive"], package["name"], package["version"])
            Client(endpoint).register(url, package["name"], package["version"], 90)
        yield own
    finally:
        own.mlops("serve", "down", check=False)


def test_serve_down_stops_every_process(own_pair):
    site = own_pair
    pids = [int((site.root / f".serve/{env}/tmp/.model_server.pid").read_text()) for env in ("staging", "production")]
    workers = [c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)]
    assert len(workers) >= 4  # two workers per environment
    site.mlops("serve", "down")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids + workers):
        time.sleep(0.2)
    alive = [p for p in pids + workers if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive
    assert "staging: down" in site.mlops("serve", "status").stdout
