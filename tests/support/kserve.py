"""KServe's InferenceService API, read from KServe's own Python SDK, to check deploy/k8s/kserve offline.

The SDK's models are generated from the CRD's OpenAPI schema: each class lists its fields
(`openapi_types`: attribute -> type, `attribute_map`: attribute -> JSON key), and its setters refuse
`None` for the required ones. `make setup` installs the pinned SDK (requirements-kserve.txt) with
--no-deps into <venv>/kserve-sdk: its own pins conflict with requirements.txt, so it is never
imported; the source files are parsed (`ast`), nothing of it runs. The Kubernetes types the models
embed (V1ObjectMeta, V1ResourceRequirements, V1EnvVar, ...) are checked against Kubernetes' own
strict schemas, from kubernetes-validate, for the cluster version given."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils
from referencing import Registry, Resource

SDK = Path(sys.prefix) / "kserve-sdk"
GROUP = "serving.kserve.io"
# the SDK's models have no class for a quantity ("1536Mi", 2): Kubernetes defines it
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


@dataclass(frozen=True)
class Model:
    """One generated class: JSON key -> the SDK's type string, and the JSON keys that are required."""

    name: str
    fields: dict[str, str]
    required: frozenset[str]


def sdk_version(sdk: Path = SDK) -> str:
    """The installed SDK's version (its dist-info), or an error telling how to install it."""
    infos = sorted(sdk.glob("kserve-*.dist-info"))
    if not (sdk / "kserve" / "models").is_dir() or not infos:
        raise FileNotFoundError(f"KServe's SDK is not installed in {sdk}: run `make setup` (requirements-kserve.txt)")
    return infos[-1].name.removeprefix("kserve-").removesuffix(".dist-info")


@cache
def _index(sdk: Path) -> dict[str, Path]:
    sdk_version(sdk)
    found: dict[str, Path] = {}
    for path in sorted((sdk / "kserve" / "models").glob("*.py")):
        for name in re.findall(r"^class (\w+)\(", path.read_text(), flags=re.MULTILINE):
            found[name] = path
    return found


def _refuses_none(setter: ast.FunctionDef) -> bool:
    # the generator's required check: `raise ValueError("Invalid value for `x`, must not be `None`")`
    return any(
        isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and any(isinstance(a, ast.Constant) and "must not be `None`" in str(a.value) for a in node.exc.args)
        for node in ast.walk(setter)
    )


@cache
def model(name: str, sdk: Path = SDK) -> Model | None:
    """The SDK's class `name` (e.g. V1beta1PredictorSpec), or None when the SDK has no such class."""
    path = _index(sdk).get(name)
    if path is None:
        return None
    cls = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef) and n.name == name)
    tables: dict[str, dict[str, str]] = {}
    required: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("openapi_types", "attribute_map"):
                tables[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.FunctionDef) and len(node.args.args) == 2 and _refuses_none(node):
            required.add(node.name)
    keys = tables["attribute_map"]
    return Model(
        name=name,
        fields={keys[attr]: kind for attr, kind in tables["openapi_types"].items()},
        required=frozenset(keys[attr] for attr in required),
    )


@cache
def _kubernetes(version: str) -> tuple[dict[str, Any], Registry]:
    full = next(v for v in kubernetes_validate.utils.all_versions() if v.startswith(f"{version}."))
    defs = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{full}-local-strict/_definitions.json", full
    )
    return defs, Resource.from_contents(defs) @ Registry()


def _kubernetes_problems(value: Any, definition: str, where: str, version: str) -> list[str]:
    defs, registry = _kubernetes(version)
    schema = {"$ref": f"{defs['$id']}#/$defs/{definition}"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{'.'.join([where, *map(str, e.absolute_path)])}: {e.message}" for e in validator.iter_errors(value)]


def _kubernetes_definition(kind: str, version: str) -> str | None:
    match = re.fullmatch(r"V(\d+)(\w+)", kind)
    if match is None:
        return None
    suffix = f".v{match[1]}.{match[2]}"
    names = [n for n in _kubernetes(version)[0]["$defs"] if n.endswith(suffix)]
    return names[0] if len(names) == 1 else None


def check(value: Any, kind: str, where: str, kubernetes: str, sdk: Path = SDK) -> list[str]:
    """Problems of `value` as the SDK's type `kind` at path `where`: unknown or missing fields, wrong types."""
    if value is None:  # null is "unset" to the API server; a required field is checked by its parent
        return []
    if m := re.fullmatch(r"list\[(.+)\]", kind):
        if not isinstance(value, list):
            return [f"{where}: expected a list ({kind}), got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in check(item, m[1], f"{where}.{i}", kubernetes, sdk)]
    if m := re.fullmatch(r"dict\(str, (.+)\)", kind):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping ({kind}), got {type(value).__name__}"]
        return [p for k, v in value.items() for p in check(v, m[1], f"{where}.{k}", kubernetes, sdk)]
    if kind in SCALARS:
        ok = isinstance(value, SCALARS[kind]) and (kind == "bool" or not isinstance(value, bool))
        return [] if ok else [f"{where}: expected {kind}, got {type(value).__name__} {str(value)[:80]!r}"]
    if kind == "object":
        return []
    if kind == "ResourceQuantity":
        return _kubernetes_problems(value, QUANTITY, where, kubernetes)
    spec = model(kind, sdk)
    if spec is None:
        definition = _kubernetes_definition(kind, kubernetes)
        if definition is None:
            return [f"{where}: no schema for the SDK's type {kind} (neither KServe's nor Kubernetes {kubernetes}'s)"]
        return _kubernetes_problems(value, definition, where, kubernetes)
    if not isinstance(value, dict):
        return [f"{where}: expected an object ({spec.name}), got {type(value).__name__}"]
    found = [f"{where}.{key}: required by {spec.name}" for key in sorted(spec.required) if value.get(key) is None]
    for key, item in value.items():
        if key not in spec.fields:
            found.append(f"{where}.{str(key)[:80]}: unknown field of {spec.name}")
        else:
            found += check(item, spec.fields[key], f"{where}.{key}", kubernetes, sdk)
    return found


def inference_service_problems(doc: dict[str, Any], kubernetes: str, sdk: Path = SDK) -> list[str]:
    """Every problem of an InferenceService object against KServe's v1beta1 API (its SDK's models)."""
    if doc.get("apiVersion") != f"{GROUP}/v1beta1":
        return [f"apiVersion: expected {GROUP}/v1beta1, got {str(doc.get('apiVersion'))[:80]!r}"]
    return [p.removeprefix("$.") for p in check(doc, "V1beta1InferenceService", "$", kubernetes, sdk)]
