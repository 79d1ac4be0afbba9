"""Serving telemetry: custom TorchServe metrics and a prediction log, written by the handler.

The prediction log is JSON lines, one per served row (request id, time, model name and
version, entity id, the contract's inputs, outputs, and ``traffic`` for marked deployment-check
requests), per worker process, rotated by size, readable by its owner only (it holds every
served input). The monitor reads it and joins late ground-truth labels on the entity id.

Telemetry never raises into the request path: a failure is logged and the answers go out.
"""

from __future__ import annotations

import io
import json
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

log = logging.getLogger(__name__)


class PrivateRotatingFileHandler(RotatingFileHandler):
    """A rotating log whose files only their owner can read or write (mode 600)."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # a file an older version created with the umask's mode
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def _line(record: dict[str, Any]) -> bytes | None:
    """One log line; None when even the lenient encoder cannot write it."""
    try:
        return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    except (TypeError, orjson.JSONEncodeError):
        pass  # e.g. a lone surrogate in a text value
    try:
        return json.dumps(record, default=str, allow_nan=False).encode()
    except (TypeError, ValueError):
        return None


class Telemetry:
    """Counts rows, missing values per feature and prediction buckets; appends the prediction log."""

    def __init__(
        self,
        name: str,
        features: list[str],
        task: Task,
        version: str,
        edges: list[float] | None = None,
    ):
        self.name, self.features, self.task, self.version = name, features, task, version
        self.edges = edges or task.score_edges(pd.Series(dtype=float))
        self.enabled = os.environ.get("MLOPS_TELEMETRY", "on") != "off"  # off: benchmarks measure its cost
        self.failures = 0
        self.log: logging.Logger | None = None
        directory = os.environ.get(LOG_DIR_ENV)
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True, mode=0o700)
            # one logger (and file) per process and folder
            self.log = logging.getLogger(f"mlops.predictions.{os.getpid()}:{Path(directory).resolve()}")
            self.log.propagate = False
            self.log.setLevel(logging.INFO)
            if not self.log.handlers:
                handler = PrivateRotatingFileHandler(
                    Path(directory) / f"predictions-{os.getpid()}.jsonl", maxBytes=64 << 20, backupCount=20
                )
                handler.setFormatter(logging.Formatter("%(message)s"))
                self.log.addHandler(handler)

    def record(
        self,
        metrics: Any,
        rows: list[dict[str, Any]],
        results: list[dict[str, Any]],
        request_ids: list[str],
        traffic: list[str | None] | None = None,
    ) -> None:
        """Count one batch's rows, missing values and buckets, and log every row; never raises.

        ``traffic`` marks rows per row (``CHECK_TRAFFIC`` for deployment checks): they are logged
        with the mark and left out of the missing-value and bucket counts.
        """
        if not self.enabled:
            return
        try:
            self._record(metrics, rows, results, request_ids, traffic or [None] * len(rows))
        except Exception as e:  # telemetry must never fail a request that was answered
            self.failures += 1
            log.warning("telemetry failed (%s); the answers were sent", type(e).__name__)

    def _record(
        self,
        metrics: Any,
        rows: list[dict[str, Any]],
        results: list[dict[str, Any]],
        request_ids: list[str],
        traffic: list[str | None],
    ) -> None:
        missing: dict[str, int] = {}
        buckets: dict[str, int] = {}
        for row, result, mark in zip(rows, results, traffic, strict=True):
            if mark is not None:
                continue
            for name in self.features:
                value = row.get(name)
                if value is None or (value != value):  # None or NaN
                    missing[name] = missing.get(name, 0) + 1
            label = self.task.bucket(self.task.score_of(result), self.edges)
            buckets[label] = buckets.get(label, 0) + 1
        if self.log is not None:  # one write per batch; NaN is written as null
            head = {"time": time.time(), "model": self.name, "model_version": self.version}
            lines = []
            for row, result, rid, mark in zip(rows, results, request_ids, traffic, strict=True):
                inputs = {name: row[name] for name in self.features if name in row}  # never the extra fields
                entry = {"request_id": rid, **head, "id": result.get("id"), "inputs": inputs, "outputs": result}
                if mark is not None:
                    entry["traffic"] = mark
                line = _line(entry)
                if line is None:
                    self.failures += 1
                else:
                    lines.append(line)
            if lines:
                self.log.info(b"\n".join(lines).decode())
        if metrics is None:
            return
        metrics.get_metric("RowsServed").add_or_update(len(rows), dimension_values=[self.name, self.version])
        for name, count in missing.items():
            metrics.get_metric("MissingValues").add_or_update(count, dimension_values=[self.name, name])
        for label, count in buckets.items():
            metrics.get_metric("PredictionBucket").add_or_update(count, dimension_values=[self.name, label])
