"""TorchServe as a team runs it: services of their own, reached only by URL and token, fed from the object store.

Staging and production are TorchServe processes started from directories of their own (not a
checkout), each with a model store the deploy never writes to: the deploy publishes the archive
to the object store (moto's S3 server, standing in for S3) and registers it by a presigned URL,
which the service's ``allowed_urls`` admits only under that exact prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import s3fs
import yaml

from mlops.core.artifacts import read_json
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.release.packaging import archive_info, build_archive
from mlops.release.publish import publish_layout
from mlops.serving.inference import records
from support.project import sh
from support.team import ObjectStore, TorchServeService

pytestmark = pytest.mark.integration

NAME = "loan-default"


def holdout(project: Path, n: int) -> list[dict[str, object]]:
    import pandas as pd

    frame = pd.read_parquet(project / "data/split/holdout.parquet").head(n)
    return records(frame, load_contract(project / "data/contract.yaml").features)


def test_torchserve_starts_from_exactly_the_published_layout_and_predicts(
    trained_project: Path, object_store: ObjectStore, tmp_path: Path
) -> None:
    """What a KServe predictor (or the Deployment's init container) does with a storageUri."""
    env = {**os.environ, **object_store.env()}
    bucket = object_store.bucket()
    out = sh("mlops", "publish", "production", "--layout", "--prefix", f"s3://{bucket}/layouts",
             cwd=trained_project, env=env).stdout  # fmt: skip
    uri = out.split("published ", 1)[1].split()[0]
    layout = tmp_path / "mnt" / "models"
    fs = s3fs.S3FileSystem(endpoint_url=object_store.endpoint, key="testing", secret="testing")
    fs.get(uri.removeprefix("s3://") + "/", str(layout) + "/", recursive=True)
    files = sorted(str(p.relative_to(layout)) for p in layout.rglob("*") if p.is_file())
    assert files == ["config/config.properties", f"model-store/{NAME}.mar"]

    home = tmp_path / "pod"
    home.mkdir()
    service = TorchServeService(home, layout / "config/config.properties", layout / "model-store")
    # only the addresses differ from a pod (free loopback ports here), through the TS_* variables the config allows
    service.settings = {
        "TS_INFERENCE_ADDRESS": service.inference_url,
        "TS_MANAGEMENT_ADDRESS": service.management_url,
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{service.ports['metrics']}",
        "TS_GRPC_INFERENCE_PORT": str(service.ports["grpc_inference"]),
        "TS_GRPC_MANAGEMENT_PORT": str(service.ports["grpc_management"]),
    }
    started = time.perf_counter()
    with service:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and '"Healthy"' not in service.ping():
            time.sleep(0.2)
        resp = requests.post(f"{service.inference_url}/predictions/{NAME}", json=holdout(trained_project, 3),
                             timeout=30)  # fmt: skip
        seconds = time.perf_counter() - started
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert len(answer["predictions"]) == 3
        assert answer["model_version"] == json.loads((trained_project / "models/package.json").read_text())["version"]
        assert requests.get(f"{service.inference_url}/ping", timeout=5).json()["status"] == "Healthy"
        # the pod serves with the project's serving settings, as the local environments do (not
        # TorchServe's 100 ms default batch delay): asked of the running server
        serve = load_params(trained_project / "params.yaml").serve
        (described,) = requests.get(f"{service.management_url}/models/{NAME}", timeout=5).json()
        settings = {k: described[k] for k in ("batchSize", "maxBatchDelay", "minWorkers", "maxWorkers")}
        assert settings == {"batchSize": serve.batch_size, "maxBatchDelay": serve.max_batch_delay_ms,
                            "minWorkers": serve.workers, "maxWorkers": serve.workers}  # fmt: skip
        # the model API is off: nothing registers into a pod's TorchServe
        assert requests.post(f"{service.management_url}/models?url=x.mar", timeout=5).status_code >= 400
    print(f"published layout -> first prediction in {seconds:.1f}s")


@dataclass
class Remote:
    """A project whose staging and production are TorchServe services reached only by URL and token."""

    root: Path
    bucket: str
    store: ObjectStore
    services: dict[str, TorchServeService]

    def env(self) -> dict[str, str]:
        env = {**os.environ, **self.store.env()}
        for name, service in self.services.items():
            prefix = f"MLOPS_{name.upper()}_"
            env |= {
                prefix + "MANAGEMENT_URL": service.management_url,
                prefix + "INFERENCE_URL": service.inference_url,
                prefix + "MANAGEMENT_TOKEN": service.key("management"),
                prefix + "INFERENCE_TOKEN": service.key("inference"),
                prefix + "ARCHIVE_URL_PREFIX": f"s3://{self.bucket}/archives/{name}",
            }
        return env

    def mlops(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("mlops", *args, cwd=self.root, env=self.env(), check=check)

    def manage(self, env: str, method: str, path: str) -> requests.Response:
        service = self.services[env]
        headers = {"Authorization": f"Bearer {service.key('management')}"}
        return requests.request(method, service.management_url + path, headers=headers, timeout=60)

    def default_version(self, env: str) -> str:
        return str(self.manage(env, "GET", f"/models/{NAME}").json()[0]["modelVersion"])

    def timed(self, *args: str) -> tuple[str, float]:
        """Run a move; its output and the seconds from "registering" to "is the default"."""
        proc = subprocess.Popen(["mlops", *args], cwd=self.root, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines, marks = [], {}
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if ": registering " in line:
                marks["register"] = time.perf_counter()
            if " is the default (was " in line:
                marks["default"] = time.perf_counter()
        out = "".join(lines)
        assert proc.wait() == 0, out
        return out, marks["default"] - marks["register"]


def variant(root: Path, name: str, timeout_s: int) -> list[str]:
    """A new archive (the trained model, another response timeout) and a commit to deploy it from."""
    out = root.parent / "releases" / name
    out.mkdir(parents=True)
    shutil.copy(root / "models/pipeline.joblib", out / "pipeline.joblib")
    serve = load_params(root / "params.yaml").serve.model_copy(update={"response_timeout_s": timeout_s})
    archive, version = build_archive(
        out / "pipeline.joblib", root / "data/contract.yaml", root / "serve/handler.py", serve, out
    )
    metrics = read_json(root / "models/package.json")["metrics"]
    info = archive_info(archive, version, NAME, out / "pipeline.joblib", metrics)
    (out / "package.json").write_text(json.dumps(info.to_dict()))
    sh("git", "commit", "-q", "--allow-empty", "-m", f"release {name}", cwd=root)
    return ["--package", str(out / "package.json"), "--model", str(out / "pipeline.joblib")]


@pytest.fixture(scope="module")
def remote(
    trained_project: Path, object_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("team-serving")
    root = base / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["serve"]["workers"] = 1
    params["deploy"].update(parity_rows=100, quality_rows=300, smoke_rows=5, ready_timeout_s=90)
    params["deploy"]["latency"] = {"duration_s": 2, "concurrency": 2, "max_p99_ms": 5000, "min_rps": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "commit", "-qam", "remote environments", cwd=root)
    bucket = object_store.bucket()
    services = {
        env: TorchServeService.remote(base / f"{env}-service", f"{object_store.endpoint}/{bucket}/archives/{env}")
        for env in ("staging", "production")
    }
    with services["staging"], services["production"]:
        yield Remote(root, bucket, object_store, services)


def test_a_remote_deploy_publishes_to_the_store_and_registers_by_presigned_url(remote: Remote) -> None:
    out, seconds = remote.timed("deploy", "staging")
    version = json.loads((remote.root / "models/package.json").read_text())["version"]
    assert f"published s3://{remote.bucket}/archives/staging/{NAME}-{version}.mar" in out
    assert remote.default_version("staging") == version
    # the target is 15 s (registration, READY workers, the checks, set-default); the bound leaves
    # room for a loaded CI machine and still catches a stall of the kind this stack is prone to
    assert seconds <= 30, f"register to default took {seconds:.1f}s"
    print(f"remote deploy: register to default in {seconds:.1f}s")
    # the server fetched it; nothing of the checkout's was written into its store, and no token is on disk here
    store = remote.services["staging"].store
    assert sorted(p.name for p in store.iterdir()) == [f"{NAME}-{version}.mar"]
    assert not (remote.root / ".serve" / "staging" / "key_file.json").exists()
    assert not (remote.root / ".serve" / "staging" / "model-store").exists()


def test_remote_promote_a_second_version_then_rollback(remote: Remote) -> None:
    remote.mlops("deploy", "staging")  # recorded as unchanged when the first test deployed it
    first = remote.default_version("staging")
    remote.mlops("promote", "production")
    assert remote.default_version("production") == first
    release = variant(remote.root, "second", 37)
    second = json.loads(Path(release[1]).read_text())["version"]
    remote.mlops("deploy", "staging", *release)
    _, seconds = remote.timed("promote", "production", *release)
    assert remote.default_version("production") == second
    print(f"remote promote: register to default in {seconds:.1f}s")
    remote.mlops("rollback", "production")
    assert remote.default_version("production") == first
    row = {r["environment"]: r for r in json.loads(remote.mlops("status", "--json").stdout)}["production"]
    assert row["differences"] == []


def test_a_remote_service_refuses_archives_from_outside_its_prefix(remote: Remote) -> None:
    client = remote.store.client()
    other = remote.store.bucket()
    client.put_object(Bucket=other, Key=f"archives/staging/{NAME}-evil.mar", Body=b"not an archive")
    elsewhere = client.generate_presigned_url(
        "get_object", Params={"Bucket": other, "Key": f"archives/staging/{NAME}-evil.mar"}
    )
    production = client.generate_presigned_url(
        "get_object", Params={"Bucket": remote.bucket, "Key": f"archives/production/{NAME}-x.mar"}
    )
    for url in (elsewhere, production):
        resp = remote.manage("staging", "POST", f"/models?url={quote(url, safe='')}&synchronous=true")
        assert resp.status_code == 404, resp.text
        assert "does not match any allowed URL" in resp.text


def from_layout(layout: Path, home: Path) -> TorchServeService:
    """TorchServe started as a pod starts it: from a published layout alone, on free loopback ports."""
    home.mkdir(parents=True)
    service = TorchServeService(home, layout / "config/config.properties", layout / "model-store")
    p = service.ports
    service.settings = {
        "TS_INFERENCE_ADDRESS": service.inference_url,
        "TS_MANAGEMENT_ADDRESS": service.management_url,
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{p['metrics']}",
        "TS_GRPC_INFERENCE_PORT": str(p["grpc_inference"]),
        "TS_GRPC_MANAGEMENT_PORT": str(p["grpc_management"]),
    }
    return service


def ready(service: TorchServeService) -> bool:
    """The pods' readiness probe, run as the kubelet runs it (a command in the container)."""
    probe = [sys.executable, "-m", "mlops.serving.ready", NAME, "--url", service.management_url]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def wait_ready(service: TorchServeService, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready(service):
        assert time.monotonic() < deadline, f"not ready after {timeout_s:.0f}s"
        time.sleep(0.3)


class RoundRobin:
    """A Service in miniature: requests go round the replicas that are in rotation, under steady load."""

    def __init__(self, pool: list[TorchServeService], body: list[dict[str, object]], users: int = 2):
        self.pool = list(pool)
        self.lock = threading.Lock()
        self.answers: list[tuple[int, str]] = []  # (status, model version); status 0: no answer
        self.body = body
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._user, args=(i,)) for i in range(users)]

    def _user(self, i: int) -> None:
        session = requests.Session()
        n = i
        while not self.stopping.is_set():
            with self.lock:
                target = self.pool[n % len(self.pool)]
            n += 1
            try:
                resp = session.post(f"{target.inference_url}/predictions/{NAME}", json=self.body, timeout=30)
                version = resp.json().get("model_version", "?") if resp.status_code == 200 else resp.text[:80]
                self.answers.append((resp.status_code, version))
            except requests.RequestException as e:
                self.answers.append((0, str(e)[:80]))

    def replace(self, old: TorchServeService, new: TorchServeService) -> None:
        with self.lock:
            self.pool[self.pool.index(old)] = new

    def __enter__(self) -> RoundRobin:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)


def test_a_rollout_gated_on_model_readiness_switches_two_replicas_with_zero_failed_requests(
    trained_project: Path, tmp_path: Path
) -> None:
    """Multi-replica promotion as deploy/k8s does it: new pods from the new layout, each taking traffic
    only once ready, each old one leaving only after its successor joined (maxUnavailable 0)."""
    package = json.loads((trained_project / "models/package.json").read_text())
    old_version = package["version"]
    release = variant(trained_project_copy(trained_project, tmp_path), "rollout", 38)
    new_package = json.loads(Path(release[1]).read_text())
    prefix = f"file://{tmp_path / 'published'}"
    layouts = {}
    for version, archive, sha in (
        (old_version, trained_project / "models" / package["archive"], package["sha256"]),
        (new_package["version"], Path(release[1]).parent / new_package["archive"], new_package["sha256"]),
    ):
        work = tmp_path / f"work-{version}"
        work.mkdir()
        serve = load_params(trained_project / "params.yaml").serve
        published = publish_layout(archive, sha, prefix, NAME, version, serve, work)
        layouts[version] = Path(published.url.removeprefix("file://"))
    broken = tmp_path / "published" / f"{NAME}-broken"
    shutil.copytree(layouts[old_version], broken)
    (broken / f"model-store/{NAME}.mar").write_bytes(b"not an archive")

    replicas = [from_layout(layouts[old_version], tmp_path / f"old-{i}") for i in range(2)]
    for r in replicas:
        r.__enter__()
    started: list[TorchServeService] = list(replicas)
    try:
        for r in replicas:
            wait_ready(r)
        with RoundRobin(replicas, holdout(trained_project, 2)) as service:
            time.sleep(1)
            # a pod from a broken layout: TorchServe starts and /ping says Healthy, but it never becomes
            # ready, so it never joins and the rollout stops there with the old replicas serving
            with from_layout(broken, tmp_path / "broken") as bad:
                assert requests.get(bad.inference_url + "/ping", timeout=5).json()["status"] == "Healthy"
                assert not any(ready(bad) for _ in range(3))
            # the rollout: one new replica at a time, in rotation only once ready
            for i, old in enumerate(replicas):
                new = from_layout(layouts[new_package["version"]], tmp_path / f"new-{i}")
                new.__enter__()
                started.append(new)
                wait_ready(new)
                service.replace(old, new)
                time.sleep(1)  # in-flight requests to the old replica finish
                old.__exit__()
            time.sleep(1)
        answers = service.answers
    finally:
        for s in started:
            s.__exit__()
    failed = [a for a in answers if a[0] != 200]
    assert failed == []
    versions = [v for _, v in answers]
    assert versions[0] == old_version
    assert versions[-10:] == [new_package["version"]] * 10
    switched = versions.index(new_package["version"])
    assert set(versions[:switched]) == {old_version}
    print(f"rollout of two replicas under load: {len(answers)} requests, 0 failed")


def trained_project_copy(trained_project: Path, tmp_path: Path) -> Path:
    """A private copy to build a variant in (the session's trained project stays read-only)."""
    root = tmp_path / "copy" / "repo"
    shutil.copytree(trained_project, root, symlinks=True)
    return root
