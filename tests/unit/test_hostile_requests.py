"""Hostile requests against the handler, without a server: bounded messages and answers, nothing
escapes, and one request never fails another in its batch.

Each body is sent in both forms a handler receives it: the raw bytes (the handler decodes them)
and the value TorchServe's worker already decoded (what it does for ``application/json`` unless
its own ``json.loads`` fails, when it forwards the bytes).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops.core.contract import Contract
from mlops.serving.inference import Predictor, RequestError
from mlops.serving.telemetry import Telemetry
from support import FIXTURES
from support.handler import Answering, MockContext, fitted_model_dir, load_handler_module

pytestmark = pytest.mark.unit

MAX_ERROR_BYTES = 1_000  # an error body, whatever the request held
MAX_ROW_BYTES = 400  # one answered row: prediction, probabilities and a bounded id


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def rows(contract) -> list[dict[str, Any]]:
    frame = pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str})
    from mlops.serving.inference import records

    return records(frame.head(20), [*contract.features, "loan_id"])


@pytest.fixture(scope="module")
def handler(model_dir, tmp_path_factory):
    """One handler for the module, logging to a folder of its own (the log is per process)."""
    log_dir = tmp_path_factory.mktemp("log")
    os.environ["MLOPS_PREDICTION_LOG_DIR"] = str(log_dir)
    try:
        h = Answering(load_handler_module().ModelHandler())
        h.initialize(MockContext(model_dir))
    finally:
        os.environ.pop("MLOPS_PREDICTION_LOG_DIR")
    return h, log_dir


def handle(handler, bodies: list[Any], headers: dict[int, dict[str, str]] | None = None):
    h, _ = handler
    ctx = MockContext(Path())
    ctx.headers = headers or {}
    out = h.handle([{"body": b} for b in bodies], ctx)
    return out, {i: ctx.statuses.get(i, (200, ""))[0] for i in range(len(bodies))}


def size(answer: Any) -> int:
    return len(json.dumps(answer, indent=2))  # as TorchServe writes a handler's answer


def as_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


# ---- finding 1: a huge value gets a bounded message, a huge id is not echoed ---------------------


@pytest.mark.parametrize("form", ["bytes", "decoded"])
def test_a_huge_value_gets_a_400_that_quotes_a_prefix_and_states_its_length(handler, rows, form):
    hostile = dict(rows[0], purpose="é" * 2_300_000)  # 4.6 MB as UTF-8, 13.8 MB JSON-escaped
    body = hostile if form == "decoded" else as_bytes(hostile)
    out, status = handle(handler, [rows[1], body, rows[2]])
    assert status == {0: 200, 1: 400, 2: 200}
    assert out[1]["field"] == "purpose"
    assert "2,300,000 characters" in out[1]["error"]
    assert size(out[1]) < MAX_ERROR_BYTES


@pytest.mark.parametrize("form", ["bytes", "decoded"])
def test_a_huge_id_is_refused_not_echoed(handler, rows, form):
    hostile = dict(rows[0], loan_id="é" * 2_300_000)
    body = hostile if form == "decoded" else as_bytes(hostile)
    out, status = handle(handler, [body, rows[1]])
    assert status == {0: 400, 1: 200}
    assert out[0]["field"] == "loan_id"
    assert "2,300,000 characters long" in out[0]["error"]
    assert size(out[0]) < MAX_ERROR_BYTES


def test_extra_fields_are_neither_answered_nor_logged(handler, rows):
    row = dict(rows[0], comment="x" * 100_000, nested={"a": [1, 2, {"b": "c"}]})
    out, status = handle(handler, [row])
    assert status == {0: 200}
    assert size(out[0]) < MAX_ROW_BYTES
    _, log_dir = handler
    logged = [json.loads(line) for p in log_dir.glob("predictions-*.jsonl") for line in p.read_text().splitlines()]
    assert logged
    assert all(set(line["inputs"]) <= set(rows[0]) for line in logged)


# ---- finding 2: numbers and nesting the service cannot represent fail their own request only ----

HOSTILE: dict[str, tuple[Any, str, str]] = {
    # name: (how to make the body from a valid row, what the 400 says, the forms TorchServe can hand over)
    "id 2**70": (lambda r: dict(r, loan_id=2**70), "outside the 64-bit range", "bytes decoded"),
    "extra field 2**64": (lambda r: dict(r, extra=2**64), "outside the 64-bit range", "bytes decoded"),
    "id nested 300 deep": (lambda r: dict(r, loan_id=nest(300)), "nested more than", "bytes decoded"),
    "extra field nested 300 deep": (lambda r: dict(r, extra=nest(300)), "nested more than", "bytes decoded"),
    "age 10**400": (lambda r: dict(r, age=10**400), "body at $.age: ", "bytes decoded"),
    "age 1e400": (lambda r: b'{"age": 1e400}', "outside the float range", "bytes"),
    "10,000-level nesting": (lambda r: b"[" * 10_000 + b"]" * 10_000, "nested more than", "bytes"),
    "5,000-digit integer": (lambda r: b'{"age": ' + b"7" * 5_000 + b"}", "5,000 characters", "bytes"),
}


def nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("case", "form"), [(c, f) for c, (_, _, forms) in HOSTILE.items() for f in forms.split()])
def test_an_unrepresentable_request_gets_a_400_and_the_rest_of_its_batch_is_served(handler, rows, case, form):
    make, words, _ = HOSTILE[case]
    body = make(rows[0])
    if form == "bytes" and not isinstance(body, bytes):
        body = as_bytes(body)
    out, status = handle(handler, [rows[1], body, rows[2]])
    assert status == {0: 200, 1: 400, 2: 200}
    assert words in out[1]["error"]
    assert size(out[1]) < MAX_ERROR_BYTES
    assert [p["id"] for p in out[0]["predictions"] + out[2]["predictions"]] == [rows[1]["loan_id"], rows[2]["loan_id"]]


def test_a_row_that_breaks_the_model_fails_only_its_own_request(handler, rows, monkeypatch):
    h, _ = handler

    def poison(X: pd.DataFrame) -> pd.DataFrame:
        if (X["age"] == 77).any():
            raise ValueError("the model cannot take age 77")
        return X

    monkeypatch.setattr(h.predictor, "pipeline", Pipeline([("poison", FunctionTransformer(poison)),
                                                           *h.predictor.pipeline.steps]))  # fmt: skip
    out, status = handle(handler, [rows[0], dict(rows[1], age=77), rows[2]])
    assert status == {0: 200, 1: 500, 2: 200}
    assert out[1] == {"error": "prediction failed: ValueError"}
    assert out[0]["predictions"][0]["id"] == rows[0]["loan_id"]
    assert out[2]["predictions"][0]["id"] == rows[2]["loan_id"]


def test_telemetry_never_raises_into_the_request_path(model_dir, rows, tmp_path, contract, monkeypatch):
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_DIR", str(tmp_path / "log"))
    predictor = Predictor.load(model_dir, "v1")
    telemetry = Telemetry("loan-default", contract.features, predictor.task, "v1")
    results = predictor.predict(rows[:2])
    telemetry.record(None, [dict(rows[0], age=2**70), rows[1]], results, ["a", "b"])  # orjson refuses it
    telemetry.record(None, rows[:2], [{"prediction": 1}, {}], ["c", "d"])  # answers it cannot read
    assert telemetry.failures == 1
    [log] = (tmp_path / "log").glob("predictions-*.jsonl")
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["request_id"] for line in logged] == ["a", "b"]
    assert logged[0]["inputs"]["age"] == 2**70


# ---- finding 3: text bodies, integer categories ------------------------------------------------


def test_json_sent_as_text_is_parsed_as_json(handler, rows):
    # TorchServe hands a text/plain body over as str
    out, status = handle(handler, [json.dumps(rows[0]), "not json"])
    assert status == {0: 200, 1: 400}
    assert "not valid JSON" in out[1]["error"]


def test_an_integer_category_refuses_the_string_of_its_number(contract, rows):
    columns = dict(contract.columns) | {"grade": {"type": "category", "categories": [1, 2, 3, 4]}}
    graded = Contract.model_validate(contract.model_dump() | {"columns": columns})
    predictor = Predictor(None, graded, "v1")  # parse needs no model
    assert predictor.parse([dict(rows[0], grade=4)])
    with pytest.raises(RequestError, match=r"field 'grade' must be an integer, got a string '4'"):
        predictor.parse([dict(rows[0], grade="4")])


# ---- finding 17: the prediction log is its owner's only -----------------------------------------


def test_the_prediction_log_is_readable_by_its_owner_only(model_dir, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_DIR", str(tmp_path / "log"))
    old = os.umask(0o022)
    try:
        h = load_handler_module().ModelHandler()
        h.initialize(MockContext(model_dir))
        h.handle([{"body": rows[0]}], MockContext(model_dir))
    finally:
        os.umask(old)
    [log] = (tmp_path / "log").glob("predictions-*.jsonl")
    assert log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


# ---- the property: any JSON at all ----------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    | st.sampled_from(["salaried", "RENT", "north", "car", "4", "é" * 300])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)


@st.composite
def bodies(draw: st.DrawFn, rows: list[dict[str, Any]]) -> Any:
    """Arbitrary JSON, or valid rows with arbitrary values in contract fields, the id and extras."""
    if draw(st.booleans()):
        return draw(json_values)
    names = [*rows[0], "extra", "instances"]
    mutated = []
    for row in draw(st.lists(st.sampled_from(rows), min_size=1, max_size=3)):
        changes = draw(st.dictionaries(st.sampled_from(names) | st.text(max_size=8), json_values, max_size=3))
        mutated.append(dict(row, **changes))
    return draw(st.sampled_from([mutated[0], mutated, {"instances": mutated}]))


@settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints the example to reproduce it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_json_gets_200_or_a_bounded_400_and_never_hurts_its_neighbour(handler, rows, data):
    value = data.draw(bodies(rows))
    try:
        raw = json.dumps(value).encode()
    except ValueError:  # an integer json.dumps will not write: only the decoded form exists
        raw = None
    sent = [value] + ([raw] if raw is not None else []) + [rows[5]]
    out, status = handle(handler, sent)
    assert status[len(sent) - 1] == 200, out[-1]
    expected = offline(handler, rows[5])
    assert out[-1]["predictions"][0]["probabilities"]["1"] == expected
    for i in range(len(sent) - 1):
        assert status[i] in (200, 400), out[i]
        if status[i] == 400:
            assert isinstance(out[i]["error"], str)
            assert size(out[i]) < MAX_ERROR_BYTES
        else:
            assert size(out[i]) < 50 * MAX_ROW_BYTES
            assert len(out[i]["predictions"]) <= 50


def offline(handler, row: dict[str, Any]) -> float:
    h, _ = handler
    return float(np.asarray(h.predictor.pipeline.predict_proba(pd.DataFrame.from_records([row])))[0, 1])
