"""The TorchServe handler without a server: a mock context, real pipeline, every input form and error."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import FunctionTransformer

from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import build_pipeline
from mlops.serving.inference import records
from support.handler import Answering

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "loans_small.csv"
pytestmark = pytest.mark.unit


class MockMetrics:
    """TorchServe's metric cache as the handler uses it: get_metric(name).add_or_update(value, dims)."""

    def __init__(self):
        self.values: dict[tuple[str, tuple[str, ...]], float] = {}

    def get_metric(self, name: str):
        metrics = self

        class Metric:
            def add_or_update(self, value, dimension_values):
                key = (name, tuple(dimension_values))
                metrics.values[key] = metrics.values.get(key, 0) + value

        return Metric()


class MockContext:
    """What TorchServe hands a handler: properties, manifest, model config, per-request status."""

    def get_request_id(self, idx: int = 0) -> str:
        return f"req-{idx}"

    def __init__(self, model_dir: Path, policy: dict[str, Any] | None = None):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 8}
        self.manifest = {"model": {"modelName": "loan-default", "modelVersion": "abc123"}}
        self.model_yaml_config = {"batchSize": 8, "mlops": {"policy": policy or {"max_rows": 50}}}
        self.statuses: dict[int, tuple[int, str]] = {}
        self.metrics = MockMetrics()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.statuses[idx] = (code, phrase)


def load_handler_module():
    spec = importlib.util.spec_from_file_location("handler_under_test", ROOT / "serve" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, frame) -> Path:
    contract = load_contract(FIXTURES / "contract.yaml")
    X, y = features_and_target(frame, contract)
    pipeline = build_pipeline(contract, load_params(FIXTURES / "params.yaml").train).fit(X, y)
    d = tmp_path_factory.mktemp("model")
    joblib.dump(pipeline, d / "pipeline.joblib")
    shutil.copy(FIXTURES / "contract.yaml", d / "contract.yaml")
    return d


@pytest.fixture
def handler(model_dir):
    h = Answering(load_handler_module().ModelHandler())
    ctx = MockContext(model_dir)
    h.initialize(ctx)
    return h, ctx


@pytest.fixture(scope="module")
def rows(frame) -> list[dict[str, Any]]:
    contract = load_contract(FIXTURES / "contract.yaml")
    return records(frame, [*contract.features, "loan_id"])


def offline_proba(model_dir: Path, rows: list[dict[str, Any]]) -> np.ndarray:
    pipeline = joblib.load(model_dir / "pipeline.joblib")
    return pipeline.predict_proba(pd.DataFrame.from_records(rows))


def test_handler_module_defines_exactly_one_class_of_its_own():
    # TorchServe refuses a handler module with more than one class of its own
    module = load_handler_module()
    own = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module.__name__]
    assert [c.__name__ for c in own] == ["ModelHandler"]


@pytest.mark.parametrize("form", ["bytes-object", "decoded-object", "bytes-list", "decoded-instances"])
def test_every_body_form_predicts_the_same_as_offline(handler, rows, model_dir, form):
    h, ctx = handler
    row = rows[3]
    body: Any = {
        "bytes-object": json.dumps(row).encode(),
        "decoded-object": row,
        "bytes-list": json.dumps([row]).encode(),
        "decoded-instances": {"instances": [row]},
    }[form]
    [out] = h.handle([{"body": body}], ctx)
    assert ctx.statuses == {}
    assert out["model_version"] == "abc123"
    [pred] = out["predictions"]
    assert pred["id"] == row["loan_id"]
    expected = offline_proba(model_dir, [row])[0]
    assert [pred["probabilities"]["0"], pred["probabilities"]["1"]] == list(expected)  # exactly
    assert pred["prediction"] == int(expected.argmax())


def test_data_key_is_accepted_like_body(handler, rows):
    h, ctx = handler
    [out] = h.handle([{"data": json.dumps(rows[0]).encode()}], ctx)
    assert len(out["predictions"]) == 1


def test_a_batch_of_requests_is_one_model_call_with_results_in_order(handler, rows, model_dir, monkeypatch):
    h, ctx = handler
    calls = []
    real = h.predictor.model.predict_proba
    monkeypatch.setattr(h.predictor.model, "predict_proba", lambda X: calls.append(len(X)) or real(X))
    requests = [{"body": rows[0]}, {"body": json.dumps(rows[1:4]).encode()}, {"body": {"instances": rows[4:6]}}]
    out = h.handle(requests, ctx)
    assert calls == [6]
    assert [len(o["predictions"]) for o in out] == [1, 3, 2]
    served = [p["probabilities"]["1"] for o in out for p in o["predictions"]]
    np.testing.assert_array_equal(served, offline_proba(model_dir, rows[:6])[:, 1])


BAD_REQUESTS = {
    "malformed JSON": (b'{"age": 41,', None, "not valid JSON"),
    "not an object": (b"42", None, "must be a JSON object"),
    "row not an object": ([1, 2], 0, "expected a JSON object"),
    "empty list": ([], None, "no rows"),
    "missing required field": ("drop:credit_score", 0, "'credit_score' is required"),
    "wrong type": ("set:age=forty", 0, "'age' must be a number"),
    "boolean for a number": ("set:age=True", 0, "'age' must be a number"),
    "fraction for an integer": ("set:open_accounts=2.5", 0, "must be a whole number"),
    "out of range": ("set:credit_score=9999", 0, "outside [300.0, 850.0]"),
    "unknown category": ("set:purpose=crypto", 0, "'purpose' = 'crypto' is not one of"),
    "null where none may be missing": ("set:age=None", 0, "'age' must not be empty"),
    "oversized payload": ("many:51", None, "at most 50 per request"),
}


def build_bad(spec: Any, row: dict[str, Any]) -> Any:
    if not isinstance(spec, str):
        return spec
    kind, _, arg = spec.partition(":")
    if kind == "drop":
        return {k: v for k, v in row.items() if k != arg}
    if kind == "many":
        return [row] * int(arg)
    field, _, value = arg.partition("=")
    parsed = {"True": True, "None": None}.get(value, value)
    if isinstance(parsed, str):
        with contextlib.suppress(ValueError):
            parsed = float(parsed) if "." in parsed else int(parsed)
    return dict(row, **{field: parsed})


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_is_a_400_naming_row_and_field_and_the_batch_goes_on(handler, rows, case):
    h, ctx = handler
    spec, row_index, words = BAD_REQUESTS[case]
    bad = build_bad(spec, rows[0])
    field = None
    if isinstance(spec, str) and spec.startswith(("drop:", "set:")):
        field = spec.split(":")[1].split("=")[0]
    out = h.handle([{"body": rows[1]}, {"body": bad}, {"body": rows[2]}], ctx)
    assert ctx.statuses == {1: (400, "Bad Request")}
    assert words in out[1]["error"]
    assert out[1]["row"] == row_index
    assert out[1]["field"] == field
    assert len(out[0]["predictions"]) == 1
    assert len(out[2]["predictions"]) == 1


def test_second_row_error_names_row_one(handler, rows):
    h, ctx = handler
    [out] = h.handle([{"body": [rows[0], dict(rows[1], purpose="crypto")]}], ctx)
    assert ctx.statuses[0][0] == 400
    assert out["row"] == 1
    assert out["field"] == "purpose"


def test_missing_values_where_allowed_still_predict(handler, rows):
    h, ctx = handler
    row = dict(rows[0], annual_income=None, months_employed=math.nan)
    row.pop("region")  # optional column
    [out] = h.handle([{"body": row}], ctx)
    assert ctx.statuses == {}
    assert 0 <= out["predictions"][0]["probabilities"]["1"] <= 1


def test_allow_policy_serves_unknown_categories(model_dir, rows):
    h = Answering(load_handler_module().ModelHandler())
    ctx = MockContext(model_dir, policy={"unknown_category": "allow"})
    h.initialize(ctx)
    [out] = h.handle([{"body": dict(rows[0], purpose="crypto")}], ctx)
    assert ctx.statuses == {}
    assert len(out["predictions"]) == 1


def test_a_model_that_raises_gives_500_and_the_handler_keeps_working(handler, rows, monkeypatch):
    h, ctx = handler
    broken = FunctionTransformer(func=np.linalg.inv)  # raises on a non-square batch
    monkeypatch.setattr(h.predictor, "pipeline", type(h.predictor.pipeline)([("boom", broken)]))
    out = h.handle([{"body": rows[0]}, {"body": b"{"}], ctx)
    assert ctx.statuses == {0: (500, "Internal Server Error"), 1: (400, "Bad Request")}
    assert "prediction failed" in out[0]["error"]
    monkeypatch.undo()
    ctx.statuses.clear()
    [again] = h.handle([{"body": rows[0]}], ctx)
    assert ctx.statuses == {}
    assert len(again["predictions"]) == 1


def test_telemetry_counts_rows_missing_values_and_buckets_and_logs_every_row(model_dir, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_DIR", str(tmp_path / "log"))
    h = Answering(load_handler_module().ModelHandler())
    ctx = MockContext(model_dir)
    h.initialize(ctx)
    batch = [dict(rows[0], annual_income=None), dict(rows[1], annual_income=None, months_employed=None), rows[2]]
    out = h.handle([{"body": batch[:2]}, {"body": batch[2]}, {"body": b"{"}], ctx)
    values = ctx.metrics.values
    assert values[("RowsServed", ("loan-default", "abc123"))] == 3
    assert values[("MissingValues", ("loan-default", "annual_income"))] == 2
    assert values[("MissingValues", ("loan-default", "months_employed"))] == 1
    assert sum(v for (name, _), v in values.items() if name == "PredictionBucket") == 3
    [log] = list((tmp_path / "log").glob("predictions-*.jsonl"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["req-0", "req-0", "req-1"]  # the bad request logs nothing
    assert lines[0]["id"] == rows[0]["loan_id"]
    assert lines[0]["inputs"]["annual_income"] is None
    assert lines[2]["outputs"] == out[1]["predictions"][0]
    assert all(line["model_version"] == "abc123" for line in lines)
