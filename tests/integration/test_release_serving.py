"""Releases on real TorchServe: published archives, crashes (SIGKILL) and restarts, load through a switch.

One staging/production pair of this module's own on free loopback ports. Every new archive is
the trained model with another serving config (a new version without retraining), deployed
from a commit of its own, as a merge to main would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from conftest import sh
from mlops.core.artifacts import read_json
from mlops.core.config import load_params
from mlops.release.packaging import archive_info, build_archive
from mlops.release.records import production_tags
from support.servers import Site, write_env_configs

pytestmark = pytest.mark.integration

NAME = "loan-default"


@pytest.fixture(scope="module")
def site(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A copy of the trained project, both environments up, model A in staging and production."""
    base = tmp_path_factory.mktemp("release-serving")
    root = base / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    (base / "bucket").mkdir()
    write_env_configs(root, extra_allowed=f"file://{base / 'bucket'}/.*")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["serve"]["workers"] = 1  # registrations and restores twice as fast; the stall was never about workers
    params["deploy"].update(parity_rows=100, quality_rows=300, smoke_rows=5, ready_timeout_s=90)
    params["deploy"]["latency"] = {"duration_s": 2, "concurrency": 2, "max_p99_ms": 2000, "min_rps": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "commit", "-qam", "test environments", cwd=root)
    s = Site(root)
    try:  # a setup that fails stops the servers too
        s.mlops("serve", "up")
        s.mlops("deploy", "staging")
        s.mlops("promote", "production")
        yield s
    finally:
        s.mlops("serve", "down", check=False)


def variant(site: Site, name: str, timeout_s: int) -> list[str]:
    """A new archive (the trained model, another response timeout) and a commit to deploy it from."""
    out = site.root.parent / "releases" / name
    out.mkdir(parents=True)
    shutil.copy(site.root / "models/pipeline.joblib", out / "pipeline.joblib")
    serve = load_params(site.root / "params.yaml").serve.model_copy(update={"response_timeout_s": timeout_s})
    archive, version = build_archive(
        out / "pipeline.joblib", site.root / "data/contract.yaml", site.root / "serve/handler.py", serve, out
    )
    metrics = read_json(site.root / "models/package.json")["metrics"]
    info = archive_info(archive, version, NAME, out / "pipeline.joblib", metrics)
    (out / "package.json").write_text(json.dumps(info.to_dict()))
    sh("git", "commit", "-q", "--allow-empty", "-m", f"release {name}", cwd=site.root)
    return ["--package", str(out / "package.json"), "--model", str(out / "pipeline.joblib")]


def two_versions_in_production(site: Site, name: str) -> None:
    """Production serves one version and keeps the previous one (promoting a new variant if need be)."""
    if len(site.registered("production")) < 2:
        release = variant(site, name, 36 if name == "before-restart" else 35)
        site.mlops("deploy", "staging", *release)
        site.mlops("promote", "production", *release)


def version_of(args: list[str]) -> str:
    return str(json.loads(Path(args[1]).read_text())["version"])


def status(site: Site) -> dict[str, dict[str, Any]]:
    return site.status()


def assert_converged(site: Site, env: str, version: str) -> None:
    """Server, ledger, git tag and MLflow alias all say ``version``; status sees no difference."""
    row = status(site)[env]
    assert site.default_version(env) == version
    assert row["differences"] == [], row["differences"]
    assert row["record"]["version"] == version
    assert row["alias"][f"{env}.archive_version"] == version
    ledger = [json.loads(line) for line in (site.root / f".serve/{env}/deployments.jsonl").read_text().splitlines()]
    assert (ledger[-1]["version"], ledger[-1]["phase"]) == (version, "done")
    tag = sh("git", "tag", "-l", f"{NAME}#{env}#*", "--sort=-creatordate", cwd=site.root).stdout.split()
    assert tag, f"no {env} tag"
    assert site.tag_record(max(tag, key=lambda t: int(t.rsplit("#", 1)[1])))["version"] == version


def test_a_remote_environment_registers_the_archive_publish_uploaded(site, monkeypatch):
    release = variant(site, "published", 31)
    bucket = site.root.parent / "bucket"
    props, keys = site.props("staging"), site.keys("staging")
    remote = {
        "MLOPS_STAGING_MANAGEMENT_URL": props["management_address"],
        "MLOPS_STAGING_INFERENCE_URL": props["inference_address"],
        "MLOPS_STAGING_MANAGEMENT_TOKEN": keys["management"]["key"],
        "MLOPS_STAGING_INFERENCE_TOKEN": keys["inference"]["key"],
        "MLOPS_STAGING_ARCHIVE_URL_PREFIX": f"file://{bucket}",
    }
    for k, v in remote.items():
        monkeypatch.setenv(k, v)
    published = site.mlops("publish", "staging", "--package", release[1])
    url = f"file://{bucket}/{NAME}-{version_of(release)}.mar"
    assert f"published {url}" in published.stdout
    assert (bucket / f"{NAME}-{version_of(release)}.mar").exists()
    deployed = site.mlops("deploy", "staging", *release)
    assert f"already published {url}" in deployed.stdout
    described = site.management("staging", f"/models/{NAME}/{version_of(release)}").json()[0]
    assert described["modelUrl"] == url  # registered from the published copy, not the model store
    assert site.default_version("staging") == version_of(release)
    assert site.mlops("publish", "staging", "--package", release[1]).stdout.count("already published") == 1


def test_killed_after_set_default_then_run_again_records_what_serves(site):
    """Issue 10 finding 4: killed right after set-default, staging served an unrecorded version and a
    rerun said "nothing to do"; promote then refused it."""
    release = variant(site, "killed", 32)
    version = version_of(release)
    killed = sh("mlops", "deploy", "staging", *release, cwd=site.root, check=False,
                env={**os.environ, "MLOPS_FAULT": "after-set-default"})  # fmt: skip
    assert killed.returncode == -9
    assert site.default_version("staging") == version
    assert any("an interrupted deploy of " + version in d for d in status(site)["staging"]["differences"])
    site.mlops("deploy", "staging", *release)
    assert_converged(site, "staging", version)

    killed = sh("mlops", "promote", "production", *release, cwd=site.root, check=False,
                env={**os.environ, "MLOPS_FAULT": "after-tag"})  # fmt: skip
    assert killed.returncode == -9
    assert site.default_version("production") != version  # the record leads, the server follows
    assert production_tags(site.root)[-1].record["version"] == version
    site.mlops("reconcile", "production")
    assert_converged(site, "production", version)


def test_no_request_waits_more_than_2s_while_production_registers_switches_and_retires(site):
    """Issue 10 finding 7: during a registration, in-flight requests stalled up to 12.4 s."""
    two_versions_in_production(site, "before-load")  # so that the promotion below retires one
    release = variant(site, "under-load", 33)
    site.mlops("deploy", "staging", *release)
    _, rows = site.holdout_rows(50)
    token = site.keys("production")["inference"]["key"]
    url = site.props("production")["inference_address"] + f"/predictions/{NAME}"
    timings: list[tuple[float, int]] = []
    stop = threading.Event()

    def user(offset: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        i = offset
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                code = session.post(url, json=rows[i % len(rows)], timeout=30).status_code
            except requests.RequestException:
                code = -1
            timings.append((time.monotonic() - t0, code))
            i += 1

    users = [threading.Thread(target=user, args=(k,)) for k in range(4)]
    for u in users:
        u.start()
    try:
        time.sleep(1)
        promoted = site.mlops("promote", "production", *release)
        time.sleep(1)
    finally:
        stop.set()
        for u in users:
            u.join()
    assert "registering" in promoted.stdout
    assert "retired" in promoted.stdout
    assert site.default_version("production") == version_of(release)
    seconds = sorted(t for t, _ in timings)
    assert len(seconds) > 200
    assert [c for _, c in timings if c != 200] == []
    print(f"{len(seconds)} requests, median {statistics.median(seconds) * 1000:.0f} ms, max {seconds[-1]:.2f} s")
    assert seconds[-1] < 2.0


def test_serve_down_and_up_restores_production_and_rollback_still_works(site):
    """Issue 10 finding 6: after serve down/up production served nothing (404) while its tag named a
    version, and rollback said "nothing to roll back to"."""
    two_versions_in_production(site, "before-restart")
    serving = site.default_version("production")
    registered = site.registered("production")
    assert len(registered) == 2
    site.mlops("serve", "down", "production")
    up = site.mlops("serve", "up", "production")
    assert f"production: serves {serving}" in up.stdout
    assert site.default_version("production") == serving
    assert site.registered("production") == registered  # the previous version too, for rollback
    [previous] = registered - {serving}
    site.mlops("rollback", "production")
    assert_converged(site, "production", previous)


def test_a_version_whose_workers_never_get_ready_is_unregistered_again(site, tmp_path):
    """A registration whose workers never got READY used to stay registered."""
    release = variant(site, "never-ready", 34)
    package = Path(release[1])
    info = json.loads(package.read_text())
    archive = package.parent / info["archive"]
    with zipfile.ZipFile(archive) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["pipeline.joblib"] = b"not a pickle"  # the worker cannot load the model: no worker gets READY
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    info["sha256"] = hashlib.sha256(archive.read_bytes()).hexdigest()
    package.write_text(json.dumps(info))
    params = yaml.safe_load((site.root / "params.yaml").read_text())
    params["deploy"]["ready_timeout_s"] = 15
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    before = site.default_version("staging")
    failed = site.mlops("deploy", "staging", *release, "--params", str(tmp_path / "params.yaml"), check=False)
    assert failed.returncode == 3, failed.stderr
    assert "workers not READY" in failed.stderr
    assert "unregistered it again" in failed.stderr
    assert info["version"] not in site.registered("staging")
    assert site.default_version("staging") == before
