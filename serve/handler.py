"""TorchServe handler: a thin adapter over ``mlops.serving.inference.Predictor``.

Only what differs from the library lives here: reading TorchServe's context, mapping
request errors to HTTP 400 per request of a batch, and one model call per batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import json

from mlops.serving.inference import Policy, Predictor, RequestError
from mlops.serving.telemetry import Telemetry

log = logging.getLogger(__name__)


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
        rows: list[dict[str, Any]] = []
        spans: list[tuple[int, int, int]] = []  # request index, first row, row count
        for i, request in enumerate(data):
            body = request.get("body")
            if body is None:
                body = request.get("data")
            try:
                parsed = self.predictor.parse(body)
            except RequestError as e:
                context.set_response_status(400, "Bad Request", idx=i)
                results[i] = e.to_dict()
                continue
            spans.append((i, len(rows), len(parsed)))
            rows.extend(parsed)
        if rows:
            try:
                predictions = self.predictor.predict(rows)
            except Exception as e:  # a broken model: 500 for these requests, the worker lives on
                log.exception("prediction failed")
                for i, _, _ in spans:
                    context.set_response_status(500, "Internal Server Error", idx=i)
                    results[i] = {"error": f"prediction failed: {type(e).__name__}: {e}"}
                return results
            for i, start, count in spans:
                results[i] = self.predictor.respond(predictions[start : start + count])
            request_ids = [str(context.get_request_id(i)) for i, start, count in spans for _ in range(count)]
            self.telemetry.record(getattr(context, "metrics", None), rows, predictions, request_ids)
        return results
