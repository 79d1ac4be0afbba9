"""TorchServe 0.12 cannot be given tokens (it draws random keys at every start and overwrites its
key_file.json), so on Kubernetes token authorization is off, by the setting TorchServe reads, in
both the base's config and the published layout's, and no Secret poses as a key file: the one
Secret the pods reference is the object store's credentials (docs/kubernetes.md, "Tokens")."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from mlops.core.config import ServeParams
from mlops.release.publish import layout_config
from support import ROOT

pytestmark = pytest.mark.unit


def render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    proc = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy/k8s" / overlay)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


@pytest.mark.parametrize("env", ["staging", "production"])
def test_pods_switch_token_authorization_off_and_mount_no_secret_as_a_key_file(env: str) -> None:
    docs = render(f"overlays/{env}")
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("serve-config"))
    props = properties(config["data"]["config.properties"])
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert not [v for v in pod.get("volumes", []) if "secret" in v]
    secrets = {ref["secretRef"]["name"] for c in pod["initContainers"] + pod["containers"]
               for ref in c.get("envFrom", []) if "secretRef" in ref}  # fmt: skip
    assert secrets <= {"object-store-credentials"}
    assert "key_file" not in json.dumps(pod)


def test_the_published_layout_switches_token_authorization_off_too() -> None:
    serve = ServeParams(model_name="m", workers=1, batch_size=1, max_batch_delay_ms=0, response_timeout_s=30,
                        max_rows=10, unknown_category="reject")  # fmt: skip
    props = properties(layout_config("m", "0123456789ab", serve))
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    assert props["management_address"].startswith("http://127.0.0.1:")
