"""Serving telemetry: custom TorchServe metrics and a prediction log, written by the handler.

The prediction log is JSON lines, one per served row (request id, time, model version,
entity id, inputs, outputs), per worker process, rotated by size. The monitor reads it and
joins late ground-truth labels on the entity id.
"""

from __future__ import annotations

import logging
import os
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from mlops.core.task import Task

LOG_DIR_ENV = "MLOPS_PREDICTION_LOG_DIR"


class Telemetry:
    """Counts rows, missing values per feature and prediction buckets; appends the prediction log."""

    def __init__(self, name: str, features: list[str], task: Task, version: str, edges: list[float] | None = None):
        self.name, self.features, self.task, self.version = name, features, task, version
        self.edges = edges or task.score_edges(pd.Series(dtype=float))
        self.enabled = os.environ.get("MLOPS_TELEMETRY", "on") != "off"  # off: benchmarks measure its cost
        self.log: logging.Logger | None = None
        directory = os.environ.get(LOG_DIR_ENV)
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.log = logging.getLogger(f"mlops.predictions.{os.getpid()}")
            self.log.propagate = False
            self.log.setLevel(logging.INFO)
            if not self.log.handlers:
                handler = RotatingFileHandler(
                    Path(directory) / f"predictions-{os.getpid()}.jsonl", maxBytes=64 << 20, backupCount=20
                )
                handler.setFormatter(logging.Formatter("%(message)s"))
                self.log.addHandler(handler)

    def record(
        self, metrics: Any, rows: list[dict[str, Any]], results: list[dict[str, Any]], request_ids: list[str]
    ) -> None:
        """Count one batch's rows, missing values and buckets, and log every row."""
        if not self.enabled:
            return
        missing: dict[str, int] = {}
        buckets: dict[str, int] = {}
        for row, result in zip(rows, results, strict=True):
            for name in self.features:
                value = row.get(name)
                if value is None or (value != value):  # None or NaN
                    missing[name] = missing.get(name, 0) + 1
            label = self.task.bucket(self.task.score_of(result), self.edges)
            buckets[label] = buckets.get(label, 0) + 1
        if self.log is not None:  # one write per batch; orjson writes NaN as null
            now = time.time()
            head = {"time": now, "model_version": self.version}
            lines = [
                orjson.dumps(
                    {"request_id": rid, **head, "id": result.get("id"), "inputs": row, "outputs": result},
                    option=orjson.OPT_SERIALIZE_NUMPY,
                    default=str,
                )
                for row, result, rid in zip(rows, results, request_ids, strict=True)
            ]
            self.log.info(b"\n".join(lines).decode())
        if metrics is None:
            return
        metrics.get_metric("RowsServed").add_or_update(len(rows), dimension_values=[self.name, self.version])
        for name, count in missing.items():
            metrics.get_metric("MissingValues").add_or_update(count, dimension_values=[self.name, name])
        for label, count in buckets.items():
            metrics.get_metric("PredictionBucket").add_or_update(count, dimension_values=[self.name, label])
