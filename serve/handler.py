"""TorchServe handler: a thin adapter over ``mlops.serving.inference.Predictor``.

Only what differs from the library lives here: reading TorchServe's context, mapping
request errors to HTTP 400 per request of a batch, one model call per batch (one per request
if the batch call fails), the telemetry of what was answered, and answers as JSON bytes
(TorchServe would otherwise write each answer with ``json.dumps(answer, indent=2)``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import orjson

from mlops.serving.inference import Policy, Predictor, RequestError, quote
from mlops.serving.telemetry import Telemetry
from mlops.serving.traffic import CHECK_TRAFFIC, TRAFFIC_HEADER

log = logging.getLogger(__name__)


def _traffic(context: Any, idx: int) -> str | None:
    """The deployment-check mark of a request (any other header value is ignored, never logged)."""
    try:
        value = context.get_request_header(idx, TRAFFIC_HEADER) or context.get_request_header(
            idx, TRAFFIC_HEADER.lower()
        )
    except Exception:  # a runtime without headers
        return None
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", "replace")
    return CHECK_TRAFFIC if value == CHECK_TRAFFIC else None


def _quiet_torchserve(context: Any) -> None:
    """Inside TorchServe's worker: no per-request log lines, custom metrics still reported.

    The worker logs every batch at INFO ("Backend received inference at ...") and the frontend
    copies each line into its own log; that costs more than answering a one-row request. The
    metric lines (``ts.metrics``) are how custom metrics reach the frontend, so they stay.
    """
    if type(context).__module__ != "ts.context":
        return  # not TorchServe (tests, another runtime): leave the process's logging alone
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("ts.metrics").setLevel(logging.INFO)


def _json(result: Any) -> bytes:
    """An answer as JSON bytes (orjson; the standard encoder for what orjson refuses)."""
    try:
        return orjson.dumps(result)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(result, default=str).encode()


def _json_type(context: Any, idx: int) -> None:
    with contextlib.suppress(AttributeError):  # a runtime without per-request content types
        context.set_response_content_type(idx, "application/json")


class ModelHandler:
    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.telemetry: Telemetry | None = None

    def initialize(self, context: Any) -> None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # the workers are the parallelism; spinning OpenMP threads cost milliseconds
        _quiet_torchserve(context)
        model_dir = Path(context.system_properties["model_dir"])
        settings = (context.model_yaml_config or {}).get("mlops", {})
        version = context.manifest["model"]["modelVersion"]
        self.predictor = Predictor.load(model_dir, version, Policy(**settings.get("policy", {})))
        telemetry = model_dir / "telemetry.json"
        edges = json.loads(telemetry.read_text()).get("score_edges") if telemetry.exists() else None
        contract = self.predictor.contract
        name = context.manifest["model"]["modelName"]
        self.telemetry = Telemetry(name, contract.features, self.predictor.task, version, edges or None)
        model = self.predictor.model
        log.warning("loaded model version %s from %s (%s)", version, model_dir, model.path_ if model else "no model")

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        assert self.predictor is not None and self.telemetry is not None, "initialize() was not called"
        results = self._handle(data, context)
        for i in range(len(results)):
            _json_type(context, i)
        return [_json(r) for r in results]

    def _handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        assert self.predictor is not None and self.telemetry is not None
        results: list[Any] = [None] * len(data)
        accepted: list[int] = []
        groups: list[list[dict[str, Any]]] = []
        for i, request in enumerate(data):
            body = request.get("body")
            if body is None:
                body = request.get("data")
            try:
                groups.append(self.predictor.parse(body))
                accepted.append(i)
            except RequestError as e:
                context.set_response_status(400, "Bad Request", idx=i)
                results[i] = e.to_dict()
            except Exception as e:  # a bug in the checks: this request fails, never its batch
                log.error("reading a request failed: %s", type(e).__name__)
                context.set_response_status(500, "Internal Server Error", idx=i)
                results[i] = {"error": f"the request could not be read: {type(e).__name__}"}
        if not groups:
            return results
        rows, served, request_ids, traffic = [], [], [], []
        for i, group, outcome in zip(accepted, groups, self.predictor.predict_each(groups), strict=True):
            if isinstance(outcome, Exception):  # the model failed on this request's rows; the worker lives on
                log.error("prediction failed: %s: %s", type(outcome).__name__, quote(str(outcome)))
                context.set_response_status(500, "Internal Server Error", idx=i)
                results[i] = {"error": f"prediction failed: {type(outcome).__name__}"}
                continue
            results[i] = self.predictor.respond(outcome)
            mark = _traffic(context, i)
            rows.extend(group)
            served.extend(outcome)
            request_ids.extend([str(context.get_request_id(i))] * len(group))
            traffic.extend([mark] * len(group))
        if rows:
            self.telemetry.record(getattr(context, "metrics", None), rows, served, request_ids, traffic)
        return results
