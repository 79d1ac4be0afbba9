"""Online inference, independent of the serving runtime: parse, check against the contract, predict.

The TorchServe handler (serve/handler.py) is a thin adapter over ``Predictor``; another
runtime could wrap it the same way.

A request body is untrusted. It goes through three separate steps before the model sees it:
``decode`` (bytes to JSON, refusing what cannot be represented: over-long number literals,
numbers outside the float or 64-bit integer range, deep nesting), ``parse_rows`` (the body's
shape: one row, a list of rows or ``{"instances": [...]}``) and ``RequestChecker.check_row``
(each row against the contract). Every message quotes at most a bounded prefix of a value and
states its length, and only contract fields and a checked id ever reach an answer or the log, so
answers are bounded by construction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.artifacts import load_pipeline
from mlops.core.contract import Column, Contract, load_contract
from mlops.core.task import task_of

QUOTE_CHARS = 80  # at most this much of an untrusted value appears in a message
MAX_DEPTH = 10  # objects and lists nested deeper than this are refused
MAX_NUMBER_CHARS = 100  # a number literal longer than this is refused before Python converts it
INT64 = 2**63  # integers must fit in a signed 64-bit integer (what JSON tools, pandas and the log agree on)
CATEGORIES_SHOWN = 10


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
    """What a request may do: rows per request, unknown categories, and the size of text values."""

    max_rows: int = 1000
    unknown_category: str = "reject"  # or "allow": the pipeline treats it as an infrequent value
    max_text_chars: int = 1000  # a string feature value (category or free text)
    max_id_chars: int = 256  # the id column's value, echoed in the answer and logged


def records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Table rows as JSON-ready dicts: exact floats, missing values as null."""
    subset = frame[[c for c in columns if c in frame]]
    return subset.astype(object).where(subset.notna(), None).to_dict("records")


# ---- bounded quoting ----------------------------------------------------------------------------


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """An untrusted value for a message: at most ``limit`` characters of it, and its length if cut."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        # str() of a huge integer is slow or refused; its bit length is not
        return (
            repr(value)
            if -INT64 <= value < INT64
            else f"an integer of about {value.bit_length() * 0.30103:,.0f} digits"
        )
    if isinstance(value, dict):
        return f"an object of {len(value):,} keys"
    if isinstance(value, list | tuple):
        return f"a list of {len(value):,} items"
    return f"a {type(value).__name__}"


def _kind(value: Any) -> str:
    """The JSON kind of a value, for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__


def _shown_categories(col: Column) -> str:
    cats = list(col.categories or [])
    shown = ", ".join(repr(c) for c in cats[:CATEGORIES_SHOWN])
    return f"[{shown}]" if len(cats) <= CATEGORIES_SHOWN else f"[{shown}, ...] ({len(cats)} in all)"


# ---- decode: bytes to bounded JSON --------------------------------------------------------------


class _Unrepresentable:
    """A number the decoder refused; ``bound`` reports it with where it was."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _int(text: str) -> int | _Unrepresentable:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unrepresentable(f"a number literal of {len(text):,} characters (at most {MAX_NUMBER_CHARS})")
    value = int(text)
    if not -INT64 <= value < INT64:
        return _Unrepresentable(f"an integer of {len(text.lstrip('-')):,} digits is outside the 64-bit range")
    return value


def _float(text: str) -> float | _Unrepresentable:
    if len(text) > MAX_NUMBER_CHARS:
        return _Unrepresentable(f"a number literal of {len(text):,} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if math.isinf(value):
        return _Unrepresentable(f"{text[:QUOTE_CHARS]} is outside the float range")
    return value


def _constant(name: str) -> float | _Unrepresentable:
    return math.nan if name == "NaN" else _Unrepresentable(f"{name} is outside the float range")


def decode(body: bytes | bytearray | str) -> Any:
    """JSON text to Python values; raises RequestError for what cannot be represented.

    Number literals are converted by hooks that look at their length first (Python would spend
    quadratic time on, or refuse, a 5,000-digit integer), and values are then checked by ``bound``.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except UnicodeDecodeError as e:
        raise RequestError(f"body is not valid JSON: not UTF-8 at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise RequestError(f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise RequestError(f"body is nested more than {MAX_DEPTH} levels deep") from None
    bound(value)
    return value


class _RefusedError(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []  # JSON path steps, innermost first


def _step(key: Any) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    return f".{key}" if key.isidentifier() and len(key) <= QUOTE_CHARS else f"[{quote(key)}]"


def _walk(value: Any, depth: int) -> None:
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise _RefusedError(f"nested more than {MAX_DEPTH} levels deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            try:
                _walk(item, depth + 1)
            except _RefusedError as e:
                e.path.append(_step(key))
                raise
    elif isinstance(value, _Unrepresentable):
        raise _RefusedError(value.reason)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise _RefusedError(f"{quote(value)} is outside the 64-bit range")
    elif isinstance(value, float) and math.isinf(value):
        raise _RefusedError(f"{value} is outside the float range")


def bound(value: Any) -> None:
    """Refuse a decoded body the service cannot represent, naming where (a JSON path).

    Used on bodies this module decodes and on bodies a runtime decoded itself.
    """
    try:
        _walk(value, 0)
    except _RefusedError as e:
        where = "$" + "".join(reversed(e.path))
        raise RequestError(f"body at {where}: {e.reason}") from None


# ---- parse: the body's shape --------------------------------------------------------------------


def parse_rows(body: Any, max_rows: int) -> list[dict[str, Any]]:
    """A JSON object (one row), a list of rows or ``{"instances": [...]}``, as bytes, text or decoded."""
    if body is None:
        raise RequestError("body is empty")
    if isinstance(body, bytes | bytearray | str):
        body = decode(body)
    else:
        bound(body)
    if isinstance(body, dict) and "instances" in body:
        body = body["instances"]
    rows = [body] if isinstance(body, dict) else body
    if not isinstance(rows, list):
        raise RequestError(
            f'body must be a JSON object, a list of objects, or {{"instances": [...]}}; got {_kind(rows)}'
        )
    if not rows:
        raise RequestError("body has no rows")
    if len(rows) > max_rows:
        raise RequestError(f"payload has {len(rows):,} rows; at most {max_rows} per request")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"row {i} is {_kind(row)}, expected a JSON object", row=i)
    return rows


# ---- check: each row against the contract -------------------------------------------------------


@dataclass(frozen=True)
class RequestChecker:
    """Parse a body and check its rows against the contract under a policy (no model needed)."""

    contract: Contract
    policy: Policy

    def parse(self, body: Any) -> list[dict[str, Any]]:
        """Parsed and checked rows of one request; raises RequestError."""
        rows = parse_rows(body, self.policy.max_rows)
        for i, row in enumerate(rows):
            self.check_row(row, i)
        return rows

    def check_row(self, row: dict[str, Any], index: int) -> None:
        """Raise RequestError for the first field of ``row`` that breaks the contract.

        Fields the contract does not name are ignored: never checked, answered or logged.
        """
        for name in self.contract.features:
            col = self.contract.columns[name]
            if name not in row:
                if col.required:
                    raise RequestError(f"row {index}: field '{name}' is required", index, name)
                continue
            value = row[name]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                if col.allowed_missing == 0:
                    raise RequestError(f"row {index}: field '{name}' must not be empty", index, name)
                continue
            problem = self._numeric(value, col) if col.is_numeric else self._text(value, col)
            if problem:
                raise RequestError(f"row {index}: field '{name}' {problem}", index, name)
        self.check_id(row, index)

    def check_id(self, row: dict[str, Any], index: int) -> None:
        """The id, when sent, is echoed and logged: a string of bounded length or an integer."""
        name = self.contract.id
        if not name or name not in row or row[name] is None:
            return
        value = row[name]
        if isinstance(value, str):
            if len(value) > self.policy.max_id_chars:
                raise RequestError(
                    f"row {index}: field '{name}' is {len(value):,} characters long; "
                    f"at most {self.policy.max_id_chars}: {quote(value)}",
                    index,
                    name,
                )
            if not _encodable(value):
                raise RequestError(f"row {index}: field '{name}' is not valid Unicode text", index, name)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise RequestError(
                f"row {index}: field '{name}' must be a string or an integer, got {_kind(value)}", index, name
            )

    @staticmethod
    def _numeric(value: Any, col: Column) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isinf(value):
            return f"must be a number, got {_kind(value)} {quote(value)}"
        if col.type == "integer" and float(value) != int(value):
            return f"must be a whole number, got {quote(value)}"
        if (col.min is not None and value < col.min) or (col.max is not None and value > col.max):
            return f"= {quote(value)} is outside [{col.min}, {col.max}]"
        return None

    def _text(self, value: Any, col: Column) -> str | None:
        categories = col.categories or []
        text_ok = col.categories is None or any(isinstance(c, str) for c in categories)
        int_ok = any(isinstance(c, int) for c in categories)
        if isinstance(value, str) and text_ok:
            if len(value) > self.policy.max_text_chars:
                return f"is {len(value):,} characters long; at most {self.policy.max_text_chars}: {quote(value)}"
            if not _encodable(value):
                return "is not valid Unicode text"
        elif not (int_ok and isinstance(value, int) and not isinstance(value, bool)):
            # an integer category takes integers only: "4" is not 4 (and a text category takes text)
            wanted = "a string or an integer" if text_ok and int_ok else "a string" if text_ok else "an integer"
            return f"must be {wanted}, got {_kind(value)} {quote(value)}"
        if col.categories is not None and self.policy.unknown_category == "reject" and not _member(value, categories):
            return f"= {quote(value)} is not one of {_shown_categories(col)}"
        return None


def _member(value: str | int, categories: Sequence[str | int]) -> bool:
    return any(type(c) is type(value) and c == value for c in categories)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which "\ud800" in JSON decodes to
        return False
    return True


# ---- predict ------------------------------------------------------------------------------------


class Predictor:
    """The fitted pipeline plus the contract: rows in, one result per row out."""

    def __init__(self, pipeline: Pipeline, contract: Contract, version: str, policy: Policy | None = None):
        self.pipeline = pipeline
        self.contract = contract
        self.version = version
        self.policy = policy or Policy()
        self.checker = RequestChecker(contract, self.policy)
        self.task = task_of(contract).for_model(pipeline)

    @classmethod
    def load(cls, model_dir: Path, version: str, policy: Policy | None = None) -> Predictor:
        """A predictor from an archive's model directory (``pipeline.joblib``, ``contract.yaml``)."""
        return cls(
            load_pipeline(model_dir / "pipeline.joblib"), load_contract(model_dir / "contract.yaml"), version, policy
        )

    def parse(self, body: Any) -> list[dict[str, Any]]:
        """Parsed and checked rows of one request; raises RequestError."""
        return self.checker.parse(body)

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One model call for all rows (of possibly many requests)."""
        frame = pd.DataFrame.from_records(rows, columns=self.contract.features)
        out = self.task.answers(self.task.outputs(self.pipeline, frame))
        if self.contract.id:
            for result, row in zip(out, rows, strict=True):
                if self.contract.id in row:
                    result["id"] = row[self.contract.id]
        return out

    def predict_each(self, groups: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]] | Exception]:
        """Results per group of rows (one group per request), in one model call when possible.

        If the call for all rows raises, each group is predicted on its own, so a failure caused
        by one request's rows fails that request only: its slot holds the exception.
        """
        rows = [row for group in groups for row in group]
        try:
            predictions = self.predict(rows)
        except Exception as e:
            if len(groups) == 1:
                return [e]
        else:
            out: list[list[dict[str, Any]] | Exception] = []
            start = 0
            for group in groups:
                out.append(predictions[start : start + len(group)])
                start += len(group)
            return out
        each: list[list[dict[str, Any]] | Exception] = []
        for group in groups:
            try:
                each.append(self.predict(group))
            except Exception as e:  # this request's rows break the model; the others are served
                each.append(e)
        return each

    def respond(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The answer to one request: the model version and one result per row."""
        return {"model_version": self.version, "predictions": results}
