"""Online inference, independent of the serving runtime: parse, check against the contract, predict.

The TorchServe handler (serve/handler.py) is a thin adapter over ``Predictor``; another
runtime could wrap it the same way. ``Predictor`` scores through the compiled pipeline
(``mlops.pipeline.compiled``), the same code evaluation and the deploy parity check use.

A request body is untrusted. It goes through three separate steps before the model sees it:
``decode`` (bytes to JSON, refusing what cannot be represented: over-long number literals,
numbers outside the float or 64-bit integer range, deep nesting), ``parse_rows`` (the body's
shape: one row, a list of rows or ``{"instances": [...]}``) and ``RequestChecker.check_row``
(each row against the contract). Every message quotes at most a bounded prefix of a value and
states its length, and only contract fields and a checked id ever reach an answer or the log, so
answers are bounded by construction.

Each step has a fast path for the common case and falls back to the careful one for anything
else, so every answer and every message is exactly the careful path's: orjson decodes a body
whose numbers and nesting are plainly fine, and a batch's rows are checked column by column
(numbers with numpy, categories as sets) when every value is valid.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.pipeline import Pipeline

from mlops.core.artifacts import load_pipeline
from mlops.core.contract import Column, Contract, load_contract
from mlops.core.task import task_of
from mlops.pipeline.compiled import CompiledPipeline, ParityError, compile_pipeline, records, verify

__all__ = ["Policy", "Predictor", "RequestChecker", "RequestError", "decode", "parse_rows", "quote", "records"]

log = logging.getLogger(__name__)

QUOTE_CHARS = 80  # at most this much of an untrusted value appears in a message
MAX_DEPTH = 10  # objects and lists nested deeper than this are refused
MAX_NUMBER_CHARS = 100  # a number literal longer than this is refused before Python converts it
INT64 = 2**63  # integers must fit in a signed 64-bit integer (what JSON tools, pandas and the log agree on)
CATEGORIES_SHOWN = 10
EXACT_INT = 2**53  # integers up to this compare with a float bound the same as their float does
SMALL_BATCH = 4  # up to this many rows, the row-by-row check is the faster one


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


_CAREFUL = object()  # the fast decoder's "ask the careful one"
_CONTAINERS = frozenset({dict, list})
# Every number orjson might read differently from the careful decoder has a run of 19 digits: an
# integer of 2**63 or more (orjson reads one of 2**64 or more as a float) and a literal over 100
# characters (at most 4 of its characters are not digits). A run of 19 digits anywhere, even in a
# string, sends the body the careful way.
_DIGITS = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
_DIGIT_RUN = b"\x01" * 19
_DIGIT_RUN_TEXT = re.compile("[0-9]{19}")


def _fits(value: Any, depth: int) -> bool:
    """True when ``bound`` would accept ``value`` for certain (a quick walk that keeps no path)."""
    if not isinstance(value, dict | list):
        return _fits([value], depth)  # a bare number or text: judged as a list's item
    if depth >= MAX_DEPTH:
        return False
    for item in value.values() if isinstance(value, dict) else value:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is float:
            if math.isinf(item):
                return False
        elif kind is int:
            if not -INT64 <= item < INT64:
                return False
        elif kind is dict or kind is list:
            if not _fits(item, depth + 1):
                return False
        else:
            return False
    return True


def _nested_within(value: Any, depth: int) -> bool:
    """True when no object or list in ``value`` is nested ``MAX_DEPTH`` levels deep."""
    if type(value) not in _CONTAINERS:
        return True
    if depth >= MAX_DEPTH:
        return False
    items = value.values() if type(value) is dict else value
    if _CONTAINERS.isdisjoint(map(type, items)):
        return True  # a row of plain values: the common case, judged in C
    return all(_nested_within(item, depth + 1) for item in (value.values() if type(value) is dict else value))


def _decode_fast(body: bytes | bytearray | str) -> Any:
    """orjson's reading of a body when it is certainly the careful decoder's; else ``_CAREFUL``.

    orjson refuses what the careful decoder words a refusal for (infinity, NaN, bad UTF-8, lone
    surrogates, 1,024 levels of nesting): those bodies go the careful way, as do long digit runs
    (above) and bodies nested too deep.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _CAREFUL
    if isinstance(body, str):
        long_run = _DIGIT_RUN_TEXT.search(body) is not None
    else:
        long_run = _DIGIT_RUN in body.translate(_DIGITS)
    return _CAREFUL if long_run or not _nested_within(value, 0) else value


def decode(body: bytes | bytearray | str) -> Any:
    """JSON text to Python values; raises RequestError for what cannot be represented.

    Number literals are converted by hooks that look at their length first (Python would spend
    quadratic time on, or refuse, a 5,000-digit integer), and values are then checked by ``bound``.
    orjson reads the bodies that are plainly fine (most of them, much faster); it reads the same
    numbers (both round correctly) and the careful path reads everything else.
    """
    fast = _decode_fast(body)
    return _decode_carefully(body) if fast is _CAREFUL else fast


def _decode_carefully(body: bytes | bytearray | str) -> Any:
    """The careful decoder on its own (``decode`` without orjson)."""
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
    if _fits(value, 0):
        return
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
        self.check_rows(rows)
        return rows

    def check_rows(self, rows: list[dict[str, Any]]) -> None:
        """Raise RequestError for the first field of the first row that breaks the contract.

        A batch whose every feature value is valid is recognised column by column; any other
        batch is checked row by row, which finds (and words) the first problem.
        """
        if len(rows) > SMALL_BATCH and self._features_valid(rows):
            for i, row in enumerate(rows):
                self.check_id(row, i)  # every feature is fine: the first problem, if any, is an id
            return
        for i, row in enumerate(rows):
            self.check_row(row, i)

    @cached_property
    def _plan(self) -> _ColumnPlan:
        return _ColumnPlan.of(self.contract, self.policy)

    def _features_valid(self, rows: list[dict[str, Any]]) -> bool:
        """True when ``check_row`` would pass every feature of every row (False: not sure)."""
        plan = self._plan
        for row in rows:
            if not plan.required <= row.keys():
                return False
        for name, kinds, nullable, integer, low, high in plan.numeric:
            values = [row.get(name) for row in rows]
            if not {type(v) for v in values} <= kinds:
                return False
            numbers = np.array(values, dtype=np.float64)
            present = numbers[~np.isnan(numbers)]
            if (not nullable and len(present) < len(numbers)) or np.isinf(present).any():
                return False
            if int in kinds and len(present) and np.abs(present).max() > EXACT_INT:
                return False  # a float comparison of a huge integer could disagree with Python's
            if (present < low).any() or (present > high).any():
                return False
            if integer and (present != np.floor(present)).any():
                return False
        for name, allowed in plan.categories:
            try:
                if not {row.get(name, _ABSENT) for row in rows} <= allowed:
                    return False
            except TypeError:  # an unhashable value
                return False
        for row in rows:
            for name, col in plan.others:
                if name not in row:
                    if col.required:
                        return False
                    continue
                value = row[name]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    if col.max_missing == 0:
                        return False
                    continue
                if (self._numeric(value, col) if col.is_numeric else self._text(value, col)) is not None:
                    return False
        return True

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


_ABSENT = object()


@dataclass(frozen=True)
class _ColumnPlan:
    """How the column-wise check judges each feature of a contract under a policy."""

    required: frozenset[str]
    # name, the value types that can be valid, nullable, integer, min, max
    numeric: list[tuple[str, frozenset[type], bool, bool, float, float]]
    categories: list[tuple[str, frozenset[Any]]]  # name, every valid value (text, None, absent)
    others: list[tuple[str, Column]]  # judged value by value with ``check_row``'s own rules

    @classmethod
    def of(cls, contract: Contract, policy: Policy) -> _ColumnPlan:
        required = frozenset(n for n in contract.features if contract.columns[n].required)
        numeric: list[tuple[str, frozenset[type], bool, bool, float, float]] = []
        categories: list[tuple[str, frozenset[Any]]] = []
        others: list[tuple[str, Column]] = []
        for name in contract.features:
            col = contract.columns[name]
            nullable = col.max_missing > 0
            if col.is_numeric and (col.required or nullable):
                kinds: frozenset[type] = frozenset({int, float, type(None)} if nullable else {int, float})
                low = -math.inf if col.min is None else col.min
                high = math.inf if col.max is None else col.max
                numeric.append((name, kinds, nullable, col.type == "integer", low, high))
            elif (
                not col.is_numeric
                and col.categories is not None
                and all(isinstance(c, str) for c in col.categories)
                and policy.unknown_category == "reject"
            ):
                short = [c for c in col.categories if isinstance(c, str) and len(c) <= policy.max_text_chars]
                valid: set[Any] = {c for c in short if _encodable(c)}
                valid |= {None} if nullable else set()
                valid |= set() if col.required else {_ABSENT}
                categories.append((name, frozenset(valid)))
            else:
                others.append((name, col))
        return cls(required, numeric, categories, others)


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
    """The fitted pipeline plus the contract: rows in, one result per row out.

    The pipeline is scored through ``CompiledPipeline`` (compiled when it is set, milliseconds):
    the same scores as ``evaluate`` and the deploy parity check, from request rows. Setting it
    also checks the compiled parts against scikit-learn on a few dozen edge rows; if they
    disagree (another scikit-learn than the one that trained the model, say), the log says so
    and scikit-learn scores every request instead.
    """

    def __init__(self, pipeline: Pipeline | None, contract: Contract, version: str, policy: Policy | None = None):
        self.contract = contract
        self.version = version
        self.policy = policy or Policy()
        self.checker = RequestChecker(contract, self.policy)
        self.pipeline = pipeline

    @property
    def pipeline(self) -> Pipeline | None:
        """The fitted pipeline; setting it compiles it."""
        return self._pipeline

    @pipeline.setter
    def pipeline(self, pipeline: Pipeline | None) -> None:
        self._pipeline = pipeline
        self.task = task_of(self.contract).for_model(pipeline)
        self.model: CompiledPipeline | None = None if pipeline is None else self._compile(pipeline)

    def _compile(self, pipeline: Pipeline) -> CompiledPipeline:
        model = compile_pipeline(pipeline, self.contract.features)
        if model.features_ is None and model.estimator_ is None:
            return model
        try:
            verify(model, self.contract.features)
        except ParityError as e:
            log.error("%s; scoring with scikit-learn only", e)
        except Exception as e:  # the pipeline fails on the edge rows: let requests show how
            log.error("checking the compiled scorer failed (%s); scoring with scikit-learn only", type(e).__name__)
        else:
            return model
        return CompiledPipeline(pipeline, self.contract.features, compiled=False).fit()

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
        if self.model is None:
            raise RuntimeError("this predictor has no model")
        out = self.task.answers(self.task.outputs(self.model, rows))
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

    def answer(self, body: Any) -> bytes:
        """A request body to its answer's JSON bytes (parse, check, predict, respond); raises RequestError."""
        return orjson.dumps(self.respond(self.predict(self.parse(body))))
