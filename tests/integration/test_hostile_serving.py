"""Real TorchServe under hostile requests: one request never hurts another, no worker dies, the
deployment checks' traffic is marked, archives come only from the environment's own model store.

Staging of this module's own (free loopback ports), with the model deployed by `mlops deploy
staging`, whose checks are the only traffic before the tests send theirs.
"""

from __future__ import annotations

import json
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
import yaml

from mlops.core.errors import ServiceError
from mlops.serving.torchserve import Client, local_server
from support.project import sh
from support.servers import Site, write_env_configs

pytestmark = pytest.mark.integration

ENV = "staging"


@pytest.fixture(scope="module")
def site(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("hostile") / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    write_env_configs(root, extra_allowed="file:///nowhere/.*")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["deploy"]["latency"] = {"duration_s": 2, "concurrency": 2, "max_p99_ms": 3000, "min_rps": 5}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "commit", "-qam", "test environment", cwd=root)
    s = Site(root)
    s.mlops("serve", "up", ENV)
    try:
        s.mlops("deploy", ENV)
        yield s
    finally:
        s.mlops("serve", "down", ENV, check=False)


def log_lines(site: Site) -> list[dict[str, Any]]:
    folder = site.root / ".serve" / ENV / "predictions"
    return [
        json.loads(line) for p in sorted(folder.glob("predictions-*.jsonl*")) for line in p.read_text().splitlines()
    ]


def post(site: Site, body: bytes, content_type: str = "application/json") -> requests.Response:
    token = site.keys(ENV)["inference"]["key"]
    url = site.props(ENV)["inference_address"] + f"/predictions/{site.model}"
    return requests.post(url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
                         timeout=60)  # fmt: skip


def worker_pids(site: Site) -> set[int]:
    [described] = site.management(ENV, f"/models/{site.model}").json()
    return {w["pid"] for w in described["workers"]}


def test_deployment_check_traffic_is_marked_and_the_monitor_leaves_it_out(site):
    checks = log_lines(site)
    assert len(checks) > 100  # smoke, parity, quality and the latency burst
    assert {line["traffic"] for line in checks} == {"deploy-check"}
    assert {line["model"] for line in checks} == {site.model}
    since = min(line["time"] for line in checks) - 1
    _, rows = site.holdout_rows(3)
    assert site.predict(ENV, rows).status_code == 200
    client = [line for line in log_lines(site) if "traffic" not in line]
    assert len(client) == 3
    site.mlops("monitor", ENV, "--since", str(since), "--labels", str(site.root / "no-labels"), check=False)
    report = json.loads((site.root / "reports/monitor.json").read_text())
    assert report["rows"] == 3
    assert report["skipped"] == {"deployment-check rows": len(checks)}


HOSTILE = {
    "4.6 MB value": lambda row: json.dumps(dict(row, purpose="é" * 2_300_000), ensure_ascii=False).encode(),
    "4.6 MB id": lambda row: json.dumps(dict(row, loan_id="é" * 2_300_000), ensure_ascii=False).encode(),
    "id 2**70": lambda row: json.dumps(dict(row, loan_id=2**70)).encode(),
    "extra 2**64": lambda row: json.dumps(dict(row, extra=2**64)).encode(),
    "id nested 300 deep": lambda row: json.dumps(dict(row, loan_id=json.loads("[" * 300 + "]" * 300))).encode(),
    "10,000-level nesting": lambda row: b"[" * 10_000 + b"]" * 10_000,
    "age 10**400": lambda row: json.dumps(dict(row, age=10**400)).encode(),
    "5,000-digit integer": lambda row: json.dumps(row).encode()[:-1] + b', "x": ' + b"9" * 5_000 + b"}",
}


def test_hostile_requests_under_load_never_fail_a_valid_one_or_kill_a_worker(site):
    frame, rows = site.holdout_rows(40)
    offline = joblib.load(site.root / "models/pipeline.joblib").predict_proba(frame)[:, 1]
    workers = worker_pids(site)
    hostile = [make(rows[0]) for make in HOSTILE.values()]
    valid: list[tuple[int, int, float | None]] = []  # (row, status, served probability)
    attacks: list[tuple[int, int, int]] = []  # (case, status, answer bytes)
    stop = time.monotonic() + 12

    def client(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            r = post(site, json.dumps(rows[i % len(rows)]).encode())
            p = r.json()["predictions"][0]["probabilities"]["1"] if r.status_code == 200 else None
            valid.append((i % len(rows), r.status_code, p))
            i += 1

    def attacker(offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            r = post(site, hostile[i % len(hostile)])
            attacks.append((i % len(hostile), r.status_code, len(r.content)))
            i += 1

    threads = [threading.Thread(target=client, args=(k * 10,)) for k in range(4)]
    threads += [threading.Thread(target=attacker, args=(k * 3,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(valid) > 100
    assert {status for _, status, _ in valid} == {200}
    np.testing.assert_array_equal([p for _, _, p in valid], offline[[i for i, _, _ in valid]])
    assert {case for case, _, _ in attacks} == set(range(len(HOSTILE)))  # every kind was sent
    assert {status for _, status, _ in attacks} == {400}
    assert max(size for _, _, size in attacks) < 2_000  # bounded answers, whatever was sent
    assert worker_pids(site) == workers  # no worker died and was replaced


def test_valid_json_sent_as_text_plain_is_served(site):
    _, rows = site.holdout_rows(1)
    r = post(site, json.dumps(rows[0]).encode(), "text/plain")
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1


def test_a_body_over_the_size_limit_gets_413_without_a_body_and_the_server_goes_on(site):
    # TorchServe answers before any handler runs (its HTTP aggregator): no JSON body is possible
    limit = int(site.props(ENV)["max_request_size"])
    r = post(site, b'{"x": "' + b"a" * limit + b'"}')
    assert r.status_code == 413
    assert r.content == b""
    _, rows = site.holdout_rows(1)
    assert site.predict(ENV, rows[0]).status_code == 200


def test_an_archive_outside_the_environments_model_store_is_refused(site, tmp_path):
    evil = tmp_path / "evil" / ".serve" / ENV / "model-store"
    evil.mkdir(parents=True)
    shutil.copy(site.root / "models" / site.package()["archive"], evil / "evil.mar")
    client = Client(local_server(ENV, site.root / "serve", site.root / ".serve").endpoint())
    with pytest.raises(ServiceError, match="does not match any allowed URL"):
        client.register(f"file://{evil / 'evil.mar'}", site.package()["name"], "evil", 60)
    assert "evil" not in {m["modelName"] for m in site.management(ENV, "/models").json()["models"]}


def test_the_prediction_log_is_readable_by_its_owner_only(site):
    files = list((site.root / ".serve" / ENV / "predictions").glob("predictions-*.jsonl*"))
    assert files
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}


def test_the_metrics_api_answers_without_a_token_on_loopback_only_as_documented(site):
    address = site.props(ENV)["metrics_address"]
    assert address.startswith("http://127.0.0.1:")
    assert requests.get(address + "/metrics", timeout=10).status_code == 200  # TorchServe has no token for it
    docs = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    assert "metrics API answers without a token" in docs
