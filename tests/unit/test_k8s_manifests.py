"""deploy/k8s renders and validates offline: every overlay through `kubectl kustomize`, the core kinds
against Kubernetes' own schemas (kubernetes-validate, strict: an unknown field fails), the KServe
InferenceService against KServe's API as its Python SDK defines it (support.kserve). Any other kind
fails: the Kubernetes schemas only warn about kinds they do not know."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from support import ROOT
from support.kserve import inference_service_problems

pytestmark = pytest.mark.unit

K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.32"
OVERLAYS = ["overlays/staging", "overlays/production", "kserve/overlays/staging", "kserve/overlays/production"]


def render(path: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def problems(doc: dict[str, Any]) -> list[str]:
    if doc.get("kind") == "InferenceService":
        return inference_service_problems(doc, KUBERNETES)
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"no schema for {doc.get('apiVersion')}/{doc.get('kind')}: {e}"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_validates_with_zero_errors(overlay: str) -> None:
    docs = render(K8S / overlay)
    errors = [f"{d['kind']}/{d['metadata']['name']}: {p}" for d in docs for p in problems(d)]
    assert errors == []
    kinds = {d["kind"] for d in docs}
    plain = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"}
    expected = {"InferenceService"} if overlay.startswith("kserve") else plain
    assert kinds == expected
    env = overlay.rsplit("/", 1)[1]
    assert {d["metadata"]["namespace"] for d in docs} == {f"mlops-{env}"}


def test_a_misspelt_field_or_an_unknown_kind_is_an_error(tmp_path: Path) -> None:
    docs = render(K8S / "overlays/production")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    assert problems(deployment)
    assert problems({"apiVersion": "v1", "kind": "Servic", "metadata": {"name": "x"}})
    isvc = render(K8S / "kserve/overlays/production")[0]
    model = isvc["spec"]["predictor"]["model"]
    model["storageURI"] = model.pop("storageUri")
    assert any("storageURI" in p for p in problems(isvc))


def test_the_deployment_is_ready_on_its_workers_limited_non_root_and_reads_the_token_free_config() -> None:
    docs = {d["kind"]: d for d in render(K8S / "overlays/production")}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    # on the model's workers: TorchServe's /ping says Healthy even when the model failed to load
    assert server["readinessProbe"]["exec"]["command"] == ["python", "-m", "mlops.serving.ready"]
    assert {"name": "MLOPS_MODEL_NAME", "value": "loan-default"} in server["env"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert set(container["resources"]) == {"requests", "limits"}
    configs = [d for d in render(K8S / "overlays/production") if d["kind"] == "ConfigMap"]
    config = next(c for c in configs if c["metadata"]["name"].startswith("serve-config"))
    props = dict(line.split("=", 1) for line in config["data"]["config.properties"].splitlines() if "=" in line
                 and not line.startswith("#"))  # fmt: skip
    assert props["management_address"].startswith("http://127.0.0.1:")
    assert props["enable_model_api"] == "false"
    policy = docs["NetworkPolicy"]["spec"]
    open_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert 8081 not in open_ports
    assert open_ports == {8080, 8082}


def test_promotion_is_a_commit_changing_the_overlays_model_uri() -> None:
    for env in ("staging", "production"):
        configs = [d for d in render(K8S / f"overlays/{env}") if d["kind"] == "ConfigMap"]
        model = next(c for c in configs if c["metadata"]["name"].startswith("model-"))
        deployment = next(d for d in render(K8S / f"overlays/{env}") if d["kind"] == "Deployment")
        refs = json.dumps(deployment["spec"]["template"])
        assert model["metadata"]["name"] in refs  # a new URI is a new ConfigMap name: a rollout
        assert model["data"]["MODEL_URI"].startswith(f"s3://your-bucket/archives/{env}/loan-default-")
    isvc = render(K8S / "kserve/overlays/production")[0]["spec"]["predictor"]
    assert isvc["model"]["storageUri"].startswith("s3://your-bucket/archives/production/loan-default-")
    assert 0 < isvc["canaryTrafficPercent"] <= 100
    app = yaml.safe_load((K8S / "argocd/production.yaml").read_text())
    assert (K8S.parent.parent / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()
