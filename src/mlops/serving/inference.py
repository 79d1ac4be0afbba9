"""Online inference, independent of the serving runtime: parse, check against the contract, predict.

The TorchServe handler (serve/handler.py) is a thin adapter over ``Predictor``; another
runtime could wrap it the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.artifacts import load_pipeline
from mlops.core.contract import Contract, load_contract
from mlops.core.task import task_of


class RequestError(Exception):
    """A request the contract rejects: becomes HTTP 400 with a JSON body naming row and field."""

    def __init__(self, message: str, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.row, self.field = row, field

    def to_dict(self) -> dict[str, Any]:
        """The HTTP 400 body: the message, the row and the field."""
        return {"error": str(self), "row": self.row, "field": self.field}


@dataclass(frozen=True)
class Policy:
    """What a request may do: how many rows, and whether unknown categories are refused."""

    max_rows: int = 1000
    unknown_category: str = "reject"  # or "allow": the pipeline treats it as an infrequent value


def records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Table rows as JSON-ready dicts: exact floats, missing values as null."""
    subset = frame[[c for c in columns if c in frame]]
    return subset.astype(object).where(subset.notna(), None).to_dict("records")


def parse_rows(body: Any, max_rows: int) -> list[dict[str, Any]]:
    """A JSON object (one row), a list of rows or ``{"instances": [...]}``, as bytes or decoded."""
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(f"body is not valid JSON: {e}") from None
    if isinstance(body, dict) and "instances" in body:
        body = body["instances"]
    rows = [body] if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise RequestError('body must be a JSON object, a list of objects, or {"instances": [...]}')
    if not rows:
        raise RequestError("body has no rows")
    if len(rows) > max_rows:
        raise RequestError(f"payload has {len(rows)} rows; at most {max_rows} per request")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"row {i} is {type(row).__name__}, expected a JSON object", row=i)
    return rows


def check_row(row: dict[str, Any], index: int, contract: Contract, policy: Policy) -> None:
    """Raise RequestError for the first field of ``row`` that breaks the contract."""
    for name in contract.features:
        col = contract.columns[name]
        if name not in row:
            if col.required:
                raise RequestError(f"row {index}: field '{name}' is required", index, name)
            continue
        value = row[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if col.allowed_missing == 0:
                raise RequestError(f"row {index}: field '{name}' must not be empty", index, name)
            continue
        if col.is_numeric:
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isinf(value):
                raise RequestError(f"row {index}: field '{name}' must be a number, got {value!r}", index, name)
            if col.type == "integer" and float(value) != int(value):
                raise RequestError(f"row {index}: field '{name}' must be a whole number, got {value!r}", index, name)
            if (col.min is not None and value < col.min) or (col.max is not None and value > col.max):
                raise RequestError(
                    f"row {index}: field '{name}' = {value!r} is outside [{col.min}, {col.max}]", index, name
                )
        elif col.integer_categories:  # "2" is not the category 2: the model would read it as text
            if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
                raise RequestError(f"row {index}: field '{name}' must be a whole number, got {value!r}", index, name)
            if policy.unknown_category == "reject" and int(value) not in set(col.categories or []):
                raise RequestError(
                    f"row {index}: field '{name}' = {value!r} is not one of {list(col.categories or [])}", index, name
                )
        elif col.categories is not None:
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise RequestError(f"row {index}: field '{name}' must be a string, got {value!r}", index, name)
            if policy.unknown_category == "reject" and str(value) not in {str(c) for c in col.categories}:
                raise RequestError(
                    f"row {index}: field '{name}' = {value!r} is not one of {list(col.categories)}", index, name
                )


class Predictor:
    """The fitted pipeline plus the contract: rows in, one result per row out."""

    def __init__(self, pipeline: Pipeline, contract: Contract, version: str, policy: Policy | None = None):
        self.pipeline = pipeline
        self.contract = contract
        self.version = version
        self.policy = policy or Policy()
        self.task = task_of(contract).for_model(pipeline)

    @classmethod
    def load(cls, model_dir: Path, version: str, policy: Policy | None = None) -> Predictor:
        """A predictor from an archive's model directory (``pipeline.joblib``, ``contract.yaml``)."""
        return cls(
            load_pipeline(model_dir / "pipeline.joblib"), load_contract(model_dir / "contract.yaml"), version, policy
        )

    def parse(self, body: Any) -> list[dict[str, Any]]:
        """Parsed and checked rows of one request; raises RequestError."""
        rows = parse_rows(body, self.policy.max_rows)
        for i, row in enumerate(rows):
            check_row(row, i, self.contract, self.policy)
        return rows

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One model call for all rows (of possibly many requests)."""
        frame = pd.DataFrame.from_records(rows, columns=self.contract.features)
        out = self.task.answers(self.task.outputs(self.pipeline, frame))
        if self.contract.id:
            for result, row in zip(out, rows, strict=True):
                if self.contract.id in row:
                    result["id"] = row[self.contract.id]
        return out

    def respond(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The answer to one request: the model version and one result per row."""
        return {"model_version": self.version, "predictions": results}
