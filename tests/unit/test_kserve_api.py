"""deploy/k8s/kserve is checked against KServe's own InferenceService API (its Python SDK's generated
models, installed by `make setup` from requirements-kserve.txt) and, for the Kubernetes types it
embeds, Kubernetes' strict schemas: a misspelt field at any depth, a wrong type or a missing
required field fails; a field KServe has and the overlays do not use yet passes."""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from support import ROOT
from support.kserve import SDK, inference_service_problems, model, sdk_version

pytestmark = pytest.mark.unit

KUBERNETES = "1.32"


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    proc = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy/k8s/kserve/overlays/production")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    (doc,) = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return doc


def changed(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of doc with `value` at the dotted `path` (None deletes the key)."""
    new = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = new
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is None:
        del node[last]
    else:
        node[last] = value
    return new


def test_the_checked_api_is_the_pinned_kserve_sdk() -> None:
    pinned = [line for line in (ROOT / "requirements-kserve.txt").read_text().splitlines() if line.startswith("kserve")]
    assert pinned == [f"kserve=={sdk_version()}"], f"reinstall {SDK}: run make setup"
    spec = model("V1beta1PredictorSpec")
    assert spec is not None
    assert spec.fields["canaryTrafficPercent"] == "int"
    assert spec.fields["model"] == "V1beta1ModelSpec"


def test_the_rendered_inferenceservice_has_no_problem(isvc: dict[str, Any]) -> None:
    assert inference_service_problems(isvc, KUBERNETES) == []


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("spec.predictorr", {}, "spec.predictorr: unknown field of V1beta1InferenceServiceSpec"),
        ("spec.predictor.canaryTrafficPercentage", 10, "spec.predictor.canaryTrafficPercentage: unknown field"),
        ("spec.predictor.pytorch", {"storageUrl": "s3://b/m"}, "spec.predictor.pytorch.storageUrl: unknown field"),
        ("spec.predictor.model.modelFormat.nme", "pytorch", "spec.predictor.model.modelFormat.nme: unknown field"),
        # below: the Kubernetes types KServe embeds, against Kubernetes' strict schemas
        ("spec.predictor.model.env", [{"name": "A", "valu": "b"}], "spec.predictor.model.env.0: Additional prop"),
        ("spec.predictor.model.resources.limit", {"cpu": "1"}, "spec.predictor.model.resources: Additional prop"),
        ("metadata.lables", {"a": "b"}, "metadata: Additional properties"),
    ],
)
def test_a_misspelt_field_at_any_depth_is_an_error(isvc: dict[str, Any], path: str, value: Any, problem: str) -> None:
    problems = inference_service_problems(changed(isvc, path, value), KUBERNETES)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("spec.predictor.canaryTrafficPercent", "10", "spec.predictor.canaryTrafficPercent: expected int, got str"),
        ("spec.predictor.minReplicas", True, "spec.predictor.minReplicas: expected int, got bool"),
        ("spec.predictor.model.storageUri", ["s3://b/m"], "spec.predictor.model.storageUri: expected str, got list"),
        ("spec.predictor.model.env", {"name": "A"}, "spec.predictor.model.env: expected a list"),
        ("spec.predictor.model", "pytorch", "spec.predictor.model: expected an object (V1beta1ModelSpec)"),
        ("spec.predictor.model.resources.limits.cpu", {"n": 2}, "spec.predictor.model.resources.limits.cpu: "),
    ],
)
def test_a_wrong_type_is_an_error(isvc: dict[str, Any], path: str, value: Any, problem: str) -> None:
    problems = inference_service_problems(changed(isvc, path, value), KUBERNETES)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("spec.predictor", "spec.predictor: required by V1beta1InferenceServiceSpec"),
        ("spec.predictor.model.modelFormat", "spec.predictor.model.modelFormat: required by V1beta1ModelSpec"),
    ],
)
def test_a_missing_required_field_is_an_error(isvc: dict[str, Any], path: str, problem: str) -> None:
    assert problem in inference_service_problems(changed(isvc, path, None), KUBERNETES)


def test_fields_kserve_has_beyond_the_ones_the_overlays_use_pass(isvc: dict[str, Any]) -> None:
    doc = changed(isvc, "spec.predictor.timeout", 60)
    doc = changed(doc, "spec.predictor.model.runtimeVersion", "0.12.0")
    doc = changed(doc, "spec.predictor.model.resources.claims", [{"name": "gpu"}])
    doc = changed(doc, "metadata.annotations", {"serving.kserve.io/deploymentMode": "RawDeployment"})
    assert inference_service_problems(doc, KUBERNETES) == []


def test_another_api_version_is_an_error(isvc: dict[str, Any]) -> None:
    problems = inference_service_problems(changed(isvc, "apiVersion", "serving.kserve.io/v1alpha1"), KUBERNETES)
    assert problems == ["apiVersion: expected serving.kserve.io/v1beta1, got 'serving.kserve.io/v1alpha1'"]
