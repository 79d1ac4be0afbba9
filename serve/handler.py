"""TorchServe handler: a thin adapter over ``mlops.serving.inference.Predictor``.

Only what differs from the library lives here: reading TorchServe's context, mapping
request errors to HTTP 400 per request of a batch, one model call per batch (one per request
if the batch call fails), and the telemetry of what was answered.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

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


class ModelHandler:
    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.telemetry: Telemetry | None = None

    def initialize(self, context: Any) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        settings = (context.model_yaml_config or {}).get("mlops", {})
        version = context.manifest["model"]["modelVersion"]
        self.predictor = Predictor.load(model_dir, version, Policy(**settings.get("policy", {})))
        telemetry = model_dir / "telemetry.json"
        edges = json.loads(telemetry.read_text()).get("score_edges") if telemetry.exists() else None
        contract = self.predictor.contract
        name = context.manifest["model"]["modelName"]
        self.telemetry = Telemetry(name, contract.features, self.predictor.task, version, edges or None)
        log.info("loaded model version %s from %s", version, model_dir)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        assert self.predictor is not None and self.telemetry is not None, "initialize() was not called"
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
