"""The TorchServe handler without a server: its module loaded from serve/, and a stand-in context.

The context keeps what TorchServe hands a handler (properties, manifest, model config, request
ids and headers, per-request status, the metric cache); the served tests repeat the same
requests on real TorchServe.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import pandas as pd

from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import build_pipeline
from support import FIXTURES, ROOT


class MockMetrics:
    """TorchServe's metric cache as the handler uses it: get_metric(name).add_or_update(value, dims)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[str, ...]], float] = {}

    def get_metric(self, name: str) -> Any:
        metrics = self

        class Metric:
            def add_or_update(self, value: float, dimension_values: list[str]) -> None:
                key = (name, tuple(dimension_values))
                metrics.values[key] = metrics.values.get(key, 0) + value

        return Metric()


class MockContext:
    """What TorchServe hands a handler, with per-request headers."""

    def __init__(self, model_dir: Path, policy: dict[str, Any] | None = None, name: str = "loan-default"):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 8}
        self.manifest = {"model": {"modelName": name, "modelVersion": "abc123"}}
        self.model_yaml_config = {"batchSize": 8, "mlops": {"policy": policy or {"max_rows": 50}}}
        self.statuses: dict[int, tuple[int, str]] = {}
        self.headers: dict[int, dict[str, str]] = {}
        self.content_types: dict[int, str] = {}
        self.metrics = MockMetrics()

    def get_request_id(self, idx: int = 0) -> str:
        return f"req-{idx}"

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.headers.get(idx, {}).get(key)

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.content_types[idx] = value


class Answering:
    """A handler whose answers are read as a client reads them: its JSON bytes decoded."""

    def __init__(self, handler: Any):
        self.handler = handler

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        out = self.handler.handle(data, context)
        assert all(isinstance(b, bytes) for b in out), "the handler answers JSON bytes"
        return [json.loads(b) for b in out]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handler, name)


def load_handler_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("handler_under_test", ROOT / "serve" / "handler.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fitted_model_dir(directory: Path, estimator: str = "linear") -> Path:
    """An archive's model directory: a pipeline fitted on the loan fixture, and its contract."""
    contract = load_contract(FIXTURES / "contract.yaml")
    frame = pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})
    train = load_params(FIXTURES / "params.yaml").train
    train = train.model_copy(update={"estimator": estimator})
    X, y = features_and_target(frame, contract)
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(build_pipeline(contract, train).fit(X, y), directory / "pipeline.joblib")
    shutil.copy(FIXTURES / "contract.yaml", directory / "contract.yaml")
    return directory
