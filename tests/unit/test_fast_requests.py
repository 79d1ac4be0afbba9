"""The request path's fast lanes answer exactly what the careful path answers, and the TorchServe
configuration hands the handler raw bytes, logs quietly and does not hold requests back.

orjson decodes the bodies that are plainly fine and a batch's rows are checked column by column;
anything else takes the careful path, so every value and every message stays the same.
"""

from __future__ import annotations

import json
import math
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.core.contract import Contract
from mlops.serving.inference import Policy, RequestChecker, RequestError, decode, records
from mlops.serving.torchserve import Client, Endpoint, LocalServer, read_properties
from support import FIXTURES, ROOT
from support.handler import MockContext, fitted_model_dir, load_handler_module

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def rows(contract: Contract) -> list[dict[str, Any]]:
    frame = pd.read_csv(FIXTURES / "loans_small.csv", dtype={"loan_id": str, "period": str}).head(40)
    return records(frame, [*contract.features, "loan_id"])


def outcome(fn: Any, *args: Any) -> Any:
    """What a call returns, or the error it raises as (message, row, field)."""
    try:
        return ("ok", fn(*args))
    except RequestError as e:
        return ("error", str(e), e.row, e.field)


# ---- decode: orjson or the careful decoder, the same values and messages ------------------------

numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 10**18, 10**19])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e300, -1e300, 5e-324, 9.223372036854776e18, 0.1, -0.0])
)
texts = st.text(max_size=30) | st.sampled_from(["1" * 19, "9" * 120, "x" * 5, "\u00e9\u00e8"])
values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=20,
)
raw_bodies = st.sampled_from(
    [
        b"NaN",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"1e400",
        b'{"a": 1e400}',
        b"[" * 12 + b"]" * 12,
        b"",
        b'{"a": "\\ud800"}',
        b"\xff",
        b'{"a": 1}x',
        b'{"a": ' + b"7" * 150 + b"}",
        b'{"a": 0.' + b"0" * 120 + b"1}",
        b"[" * 2000 + b"]" * 2000,
        b'{"age": 12345678901234567890123}',
    ]
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, raw=raw_bodies, use_raw=st.booleans(), as_text=st.booleans())
def test_orjson_reads_every_body_as_the_careful_decoder_does(value, raw, use_raw, as_text):
    from mlops.serving.inference import _decode_carefully

    body = raw if use_raw else json.dumps(value).encode()
    if as_text:
        body = body.decode("utf-8", "surrogateescape")
    fast, careful = outcome(decode, body), outcome(_decode_carefully, body)
    assert repr(fast) == repr(careful)  # repr: NaN equals NaN, and 1 is not 1.0


# ---- check: column by column or row by row, the same first problem -----------------------------

BAD_VALUES = [None, math.nan, "x", "", True, 2**60, -1, 1e9, 2.5, 41, 41.0, "RENT", "north", "crypto", [1], {"a": 1},
              "\u00e9" * 1001, "\ud800", 7, "4"]  # fmt: skip


@st.composite
def batches(draw: st.DrawFn, rows: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    out = []
    for row in draw(st.lists(st.sampled_from(rows), min_size=5, max_size=12)):
        row = dict(row)
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
            name = draw(st.sampled_from(names))
            if draw(st.booleans()):
                row.pop(name, None)
            else:
                row[name] = draw(st.sampled_from(BAD_VALUES))
        out.append(row)
    return out


@pytest.mark.parametrize("policy", [Policy(), Policy(unknown_category="allow", max_text_chars=5)])
def test_the_column_check_finds_the_first_problem_the_row_check_finds(contract, rows, policy):
    checker = RequestChecker(contract, policy)

    def row_by_row(batch: list[dict[str, Any]]) -> None:
        for i, row in enumerate(batch):
            checker.check_row(row, i)

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=batches(rows, [*contract.features, "loan_id"]))
    def check(batch: list[dict[str, Any]]) -> None:
        assert outcome(checker.check_rows, batch) == outcome(row_by_row, batch)

    check()


def test_a_valid_batch_takes_the_column_check(contract, rows, monkeypatch):
    monkeypatch.setattr(RequestChecker, "check_row", lambda *a: pytest.fail("a valid batch was checked row by row"))
    RequestChecker(contract, Policy()).check_rows(rows[:20])


# ---- the handler and TorchServe's configuration ---------------------------------------------------


def test_the_handler_answers_json_bytes_with_a_json_content_type(tmp_path, rows):
    h = load_handler_module().ModelHandler()
    ctx = MockContext(fitted_model_dir(tmp_path / "model"))
    h.initialize(ctx)
    out = h.handle([{"body": json.dumps(rows[0]).encode()}, {"body": b"{"}], ctx)
    assert all(isinstance(b, bytes) for b in out)
    assert ctx.content_types == {0: "application/json", 1: "application/json"}
    assert json.loads(out[0])["predictions"][0]["id"] == rows[0]["loan_id"]
    assert "not valid JSON" in json.loads(out[1])["error"]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_torchserve_hands_the_handler_raw_bytes(env):
    assert read_properties(ROOT / "serve" / f"{env}.properties")["decode_input_request"] == "false"


def test_local_servers_log_each_request_once_to_the_access_log_only(tmp_path):
    server = LocalServer("production", ROOT / "serve" / "production.properties", tmp_path)
    server.home.mkdir(parents=True)
    config = server._effective_config()
    vmargs = read_properties(config)["vmargs"]
    assert f"-Dlog4j.configurationFile={ROOT / 'serve' / 'log4j2.xml'}" in vmargs
    loggers = {e.get("name"): e for e in ET.parse(ROOT / "serve" / "log4j2.xml").getroot().iter("Logger")}
    access = loggers["ACCESS_LOG"]
    assert access.get("level") == "info"  # the monitor reads request latencies from the access log
    assert access.get("additivity") == "false"
    assert [r.get("ref") for r in access.iter("AppenderRef")] == ["access_log"]
    assert loggers["org.pytorch.serve"].get("level") == "warn"  # no per-request debug lines
    assert loggers["MODEL_METRICS"].get("level") == "off"


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        _Recorder.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_registration_passes_the_batch_delay_torchserve_ignores_in_the_archive(monkeypatch):
    monkeypatch.setattr(Client, "wait_ready", lambda *a: None)  # the stand-in registers nothing to wait for
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        Client(Endpoint("staging", url, url, None, "t", "t", None)).register("m-v1.mar", "m", "v1", 5, 0)
    finally:
        server.shutdown()
    [path] = _Recorder.seen
    assert path.endswith("&max_batch_delay=0")
