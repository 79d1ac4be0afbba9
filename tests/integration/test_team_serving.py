"""TorchServe as a team runs it: services of their own, reached only by URL and token, fed from the object store.

Staging and production are TorchServe processes started from directories of their own (not a
checkout), each with a model store the deploy never writes to: the deploy publishes the archive
to the object store (moto's S3 server, standing in for S3) and registers it by a presigned URL,
which the service's ``allowed_urls`` admits only under that exact prefix.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests
import s3fs

from mlops.core.contract import load_contract
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
        # the model API is off: nothing registers into a pod's TorchServe
        assert requests.post(f"{service.management_url}/models?url=x.mar", timeout=5).status_code >= 400
    print(f"published layout -> first prediction in {seconds:.1f}s")
