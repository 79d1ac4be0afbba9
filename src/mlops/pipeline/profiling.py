"""Profile a user's table into a data contract, the params of its task, and time-ordered batches.

``profile`` reads what pandas infers (types, ranges, category sets, missing rates) and turns
each column into a contract column, with a note saying why; ``render_contract`` writes the
contract with that note as a comment per column; ``task_params`` picks the split, the gates and
the names for the task; ``batches`` cuts the table into the files ``data/raw`` holds. Nothing
here writes to the repository (``mlops.pipeline.onboarding`` does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from mlops.core.contract import Column, Contract
from mlops.core.errors import UserError, quoted
from mlops.core.schema import parse
from mlops.core.task import task_of
from mlops.pipeline.datasets import parse_time

TaskChoice = Literal["auto", "binary", "multiclass", "regression"]

MAX_CATEGORIES = 50  # more distinct values than this: free text, not a category
MAX_CLASSES = 20  # an integer target with more distinct values than this is a number to predict
RANGE_MARGIN = 0.1  # declared ranges extend the observed ones by this share of their span
RARE = 0.01  # categories seen in fewer rows than this share are pointed out
BATCH_ROWS = 10_000  # rows per batch when there is no time column
# Formats tried, in order, when a time column comes without --time-format.
TIME_GUESSES = (("period", "%Y-%m"), ("date", "%Y-%m-%d"), ("datetime", None))
NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class InitParams:
    """What ``mlops init`` was asked: the table, its target and roles, the task, a name."""

    data: str
    target: str
    task: TaskChoice = "auto"
    time: str | None = None
    time_format: str | None = None
    id: str | None = None
    name: str | None = None

    @property
    def model_name(self) -> str:
        """``--name``, or the table's file name, as a name DVC, MLflow and TorchServe all accept."""
        raw = self.name or Path(self.data.split("?")[0].rstrip("/")).stem or "model"
        name = NAME.sub("-", raw).strip("-_") or "model"
        return name if name[0].isalnum() else f"m{name}"


@dataclass
class Profile:
    """The inferred contract, why each choice was made, and what a person should look at."""

    contract: Contract
    notes: dict[str, str]  # a comment per column and per top-level choice ("task", "time", ...)
    checks: list[str] = field(default_factory=list)  # what to check by hand
    rows: int = 0
    dropped: int = 0  # rows left out because their target is empty
    target_stats: dict[str, float] = field(default_factory=dict)


def read_source(source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table as pandas infers it (for profiling) and as text (written to batches unchanged).

    CSV or Parquet, from a path or any URL pandas (fsspec) reads.
    """
    try:
        if source.split("?")[0].endswith((".parquet", ".pq")):
            typed = pd.read_parquet(source)
            text = typed.astype(object).where(typed.notna(), "").astype(str)
        else:
            typed = pd.read_csv(source)
            text = pd.read_csv(source, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"--data {quoted(source)}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"--data {quoted(source)}: not a readable CSV or Parquet table: {str(e)[:300]}") from None
    if typed.empty or typed.columns.empty:
        raise UserError(f"--data {quoted(source)}: the table has no rows")
    return typed, text


def _outward(lo: float, hi: float, integer: bool, non_negative: bool) -> tuple[float, float]:
    """The observed range widened by the margin, on a round grid (never below 0 for non-negative data)."""
    span = hi - lo or abs(hi) or 1.0
    step = 10 ** (math.floor(math.log10(span)) - 2)
    a, b = lo - RANGE_MARGIN * span, hi + RANGE_MARGIN * span
    a, b = math.floor(a / step) * step, math.ceil(b / step) * step
    if non_negative:
        a = max(a, 0.0)
    if integer:
        return float(math.floor(a)), float(math.ceil(b))
    return float(f"{a:.10g}"), float(f"{b:.10g}")


def _missing_limit(rate: float) -> float:
    """The declared ``max_missing`` for an observed missing rate: headroom above it, two decimals."""
    return 0.0 if rate == 0 else min(1.0, math.ceil((rate * 1.5 + 0.01) * 100) / 100)


def _number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else float(v)


def _whole(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(len(present)) and bool((present == present.round()).all())


def _numeric_column(values: pd.Series) -> tuple[dict[str, Any], str]:
    present = values.dropna()
    rate = float(values.isna().mean())
    integer = pd.api.types.is_integer_dtype(values) or (rate > 0 and _whole(values))
    lo, hi = float(present.min()), float(present.max())
    a, b = _outward(lo, hi, integer, lo >= 0)
    spec: dict[str, Any] = {"type": "integer" if integer else "float", "min": _number(a), "max": _number(b)}
    note = f"observed {_number(lo)}..{_number(hi)} (+{RANGE_MARGIN:.0%} margin)"
    if integer and not pd.api.types.is_integer_dtype(values):
        note += ", whole numbers with gaps"
    elif not integer and _whole(values):
        note += ", whole numbers written as decimals"
    return spec, note


def _missing_note(values: pd.Series) -> tuple[float, str]:
    rate = float(values.isna().mean())
    if rate == 0:
        return 0.0, "none missing"
    limit = _missing_limit(rate)
    return limit, f"{rate:.1%} missing, up to {limit:.0%} allowed"


def _text_column(name: str, values: pd.Series) -> tuple[dict[str, Any], str, list[str]]:
    """A category (few repeated values) or a string; the check a person should make, if any."""
    present = values.dropna().astype(str)
    counts = present.value_counts()
    if len(counts) <= MAX_CATEGORIES and len(counts) <= max(2, len(present) // 2):
        rare = [str(v) for v, n in counts.items() if n < RARE * len(present)]
        note = f"{len(counts)} values seen"
        checks = []
        if rare:
            shown = ", ".join(quoted(v, 30) for v in rare[:5]) + (" ..." if len(rare) > 5 else "")
            note += f"; {len(rare)} in under {RARE:.0%} of rows: {shown}"
            checks.append(f"'{name}': {len(rare)} rare categories are allowed ({shown}); remove any that are errors")
        return {"type": "category", "categories": [str(v) for v in counts.index]}, note, checks
    note = f"{len(counts)} distinct values: free text, a feature through its frequent values"
    return (
        {"type": "string"},
        note,
        [f"'{name}': text with {len(counts)} distinct values is a feature; drop it if it is an identifier"],
    )


def _time_column(values: pd.Series, fmt: str | None, name: str) -> tuple[dict[str, Any], str]:
    if pd.api.types.is_numeric_dtype(values) and fmt is None:
        spec, note = _numeric_column(values)
        return spec, f"the time column, ordered as numbers; {note}"
    text = values.astype("string")
    candidates: tuple[tuple[str, str | None], ...]
    if fmt is not None:
        kind = "datetime" if re.search(r"%[HIMSfpTXc]", fmt) else "date" if re.search(r"%[dejaAuwx]", fmt) else "period"
        candidates = ((kind, fmt),)
    else:
        candidates = TIME_GUESSES
    for kind, guess in candidates:
        col = Column.model_validate({"type": kind, "format": guess} if guess else {"type": kind})
        try:
            parsed = parse_time(text.dropna(), name, col)
        except UserError as e:
            if fmt is not None:
                raise UserError(f"--time {name} --time-format {fmt!r}: {e}") from None
            continue
        declared: dict[str, Any] = {"type": kind, "format": guess} if guess else {"type": kind}
        first, last = text.dropna().iloc[parsed.argmin()], text.dropna().iloc[parsed.argmax()]
        how = f"read as {guess!r}" if guess else "read as ISO 8601"
        return declared, f"the time column: {parsed.nunique()} {kind}s from {first} to {last}, {how}"
    example = quoted(str(text.dropna().iloc[0])) if text.notna().any() else "empty values"
    raise UserError(
        f"--time {name}: cannot tell how to read values like {example} as dates or periods; pass --time-format "
        "with strftime codes (e.g. '%b' for month names, '%d/%m/%Y')"
    )


def _target(
    values: pd.Series, task: TaskChoice, name: str
) -> tuple[Literal["binary", "multiclass", "regression"], dict[str, Any], str, dict[str, float]]:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    classes = values.value_counts()
    integer_like = numeric and _whole(values)
    if task == "auto":
        few = len(classes) <= MAX_CLASSES
        task = (
            ("binary" if len(classes) == 2 else "multiclass") if not numeric or (integer_like and few) else "regression"
        )
    if task == "regression":
        if not numeric:
            raise UserError(
                f"--target {name}: regression needs numbers; it holds text such as {quoted(values.iloc[0])}"
            )
        spec, note = _numeric_column(values)
        stats = {"std": float(values.std(ddof=0)), "mean": float(values.mean())}
        return task, spec, f"a number to predict, {note}", stats
    want = "exactly 2" if task == "binary" else "at least 3"
    if (task == "binary" and len(classes) != 2) or (task == "multiclass" and len(classes) < 3):
        raise UserError(f"--target {name}: a {task} target needs {want} classes; the table has {len(classes)}")
    if integer_like:
        cats: list[str | int] = sorted(int(c) for c in classes.index)
        spec = {"type": "integer", "categories": cats}
    else:
        cats = sorted(str(c) for c in classes.index)
        spec = {"type": "category", "categories": cats}
    shares = (classes / classes.sum()).to_numpy()
    stats = {"majority": float(shares.max()), "prior_log_loss": float(-(shares * np.log(shares)).sum())}
    counts = ", ".join(f"{c}: {n}" for c, n in classes.head(8).items())
    return task, spec, f"{len(classes)} classes ({counts})", stats


def profile(typed: pd.DataFrame, spec: InitParams) -> Profile:
    """The contract pandas' view of the table implies, with a note per choice and checks for a person."""
    missing = [c for c in (spec.target, spec.id, spec.time) if c is not None and c not in typed.columns]
    if missing:
        raise UserError(f"column(s) {missing} are not in the table; it has {quoted(list(typed.columns), 300)}")
    dropped = int(typed[spec.target].isna().sum())
    frame = typed[typed[spec.target].notna()].reset_index(drop=True)
    if frame.empty:
        raise UserError(f"--target {spec.target}: every value is empty")
    task, target_spec, target_note, stats = _target(frame[spec.target], spec.task, spec.target)
    columns: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {"task": "from --task" if spec.task != "auto" else "inferred from the target"}
    checks: list[str] = []
    for name in frame.columns:
        values = frame[name]
        if name == spec.target:
            col, note = dict(target_spec), target_note
        elif name == spec.id:
            duplicated = values.duplicated() & values.notna()
            if duplicated.any():
                raise UserError(
                    f"--id {name}: ids must be unique; {int(duplicated.sum())} repeat, "
                    f"e.g. {quoted(str(values[duplicated].iloc[0]))}"
                )
            col, note = {"type": "string"}, "the id: never a feature; joins late labels to served predictions"
        elif name == spec.time:
            if values.isna().any():  # a row with no time has no place in the batches or the holdout
                raise UserError(f"--time {name}: {int(values.isna().sum())} row(s) have no value; fill or drop them")
            col, note = _time_column(values, spec.time_format, name)
        elif pd.api.types.is_bool_dtype(values):
            col, note = {"type": "category", "categories": ["False", "True"]}, "true/false"
        elif pd.api.types.is_numeric_dtype(values):
            col, note = _numeric_column(values)
        else:
            col, note, more = _text_column(name, values)
            checks += more
        limit, missing_note = _missing_note(values)
        if limit:
            col["max_missing"] = limit
        if name != spec.target:
            note = f"{note}; {missing_note}"
        columns[str(name)] = col
        notes[f"column:{name}"] = note
    raw = {"name": spec.model_name, "task": task, "target": spec.target, "id": spec.id, "time": spec.time}
    contract = parse(Contract, {**raw, "columns": columns}, "the inferred contract")
    notes["task_why"] = "a number to predict" if task == "regression" else f"'{spec.target}' has {target_note}"
    if dropped:
        checks.insert(0, f"{dropped} row(s) with an empty '{spec.target}' were left out of data/raw")
    if task != "regression" and spec.task == "auto" and pd.api.types.is_numeric_dtype(frame[spec.target]):
        checks.insert(0, f"task {task}: '{spec.target}' has {target_note}; if it is a number, use --task regression")
    return Profile(contract, notes, checks, len(frame), dropped, stats)


# ---- the contract file -------------------------------------------------------------------------

HEADER = """\
# The data contract of {name}: one source for validation (Great Expectations), the feature
# pipeline's columns and request checks in serving. Written by `mlops init` from {source}
# ({rows:,} rows); every choice below was inferred from the data and says why. Edit freely.
# Per column: type (float | integer | category | string | date | datetime | period), required,
# max_missing (fraction of rows allowed empty; none when absent), min/max (numbers), categories,
# format (time types).
"""


def _flow(value: Any) -> str:
    """One line of YAML (a plain scalar loses the document-end marker PyYAML adds)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**9).strip()
    return text.removesuffix("...").strip()


def render_contract(p: Profile, source: str) -> str:
    """The contract as YAML with a comment per inferred choice; it loads back as ``p.contract``."""
    c = p.contract
    lines = [HEADER.format(name=c.name, source=quoted(source, 120), rows=p.rows)]
    lines.append(f"name: {_flow(c.name)}")
    lines.append(f"task: {c.task:<22} # {p.notes['task']}: {p.notes['task_why']}")
    lines.append(f"target: {_flow(c.target)}")
    if c.id:
        lines.append(f"id: {_flow(c.id):<24} # never a feature; joins late labels to served predictions")
    if c.time:
        lines.append(f"time: {_flow(c.time):<22} # the time split holds out the latest periods, in time order")
    lines.append("\ncolumns:")
    width = max(len(n) for n in c.columns) + 2
    for name, col in c.columns.items():
        declared = col.model_dump(exclude_defaults=True)
        if col.type == "integer":  # whole bounds read better as whole numbers
            declared |= {k: int(declared[k]) for k in ("min", "max") if k in declared}
        body = _flow(declared)
        lines.append(f"  {_flow(name) + ':':<{width}} {body}  # {p.notes[f'column:{name}']}")
    return "\n".join(lines) + "\n"


# ---- params for the task ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One value ``mlops init`` puts in params.yaml, at a dotted key, with the reason as a comment."""

    key: str
    value: Any
    why: str


def task_params(p: Profile, periods: int) -> list[Setting]:
    """The split, gates and names for the task; the gates ask only to beat the trivial baseline."""
    c, s = p.contract, p.target_stats
    name = c.name
    out = [
        Setting("mlflow.experiment", name, "your table's experiment"),
        Setting("mlflow.registered_model", name, "the registry name"),
        Setting("serve.model_name", name, "the archive models/<name>.mar and the endpoint /predictions/<name>"),
    ]
    if c.time and periods >= 2:
        held = max(1, round(periods * 0.2))
        out += [
            Setting("split.method", "time", f"hold out the latest periods of '{c.time}', as production sees data"),
            Setting("split.holdout_periods", held, f"{held} of {periods} periods"),
        ]
    else:
        why = "no time column" if not c.time else f"'{c.time}' has a single period"
        out += [Setting("split.method", "random", f"{why}: a seeded random holdout")]
    # the first minimum is the headline the monitor follows on late labels
    minimum: dict[str, float]
    if c.task == "regression":
        std = s["std"]
        minimum, maximum = {"r2": 0.0}, {"rmse": float(f"{std:.4g}")}
        budget = {"r2": 0.01, "rmse": float(f"{0.01 * std:.2g}")}
        why = f"beat predicting the mean (rmse {std:.4g}, r2 0)"
    else:
        prior = s["prior_log_loss"]
        maximum = {"log_loss": math.ceil(prior * 100) / 100}
        if c.task == "binary":
            minimum, budget = {"roc_auc": 0.6}, {"roc_auc": 0.01, "log_loss": 0.01}
        else:
            minimum = {"accuracy": math.floor(s["majority"] * 100) / 100, "roc_auc": 0.6}
            budget = {"accuracy": 0.01, "log_loss": 0.01}
        why = f"beat the class shares (log loss {prior:.3f}, accuracy {s['majority']:.3f}) and chance (roc_auc 0.5)"
    assert set(minimum) | set(maximum) | set(budget) <= set(task_of(c).metric_names)
    return [
        *out,
        Setting("gates.minimum", minimum, f"{why}: tighten once you know what your model reaches"),
        Setting("gates.maximum", maximum, "a sanity ceiling at the trivial baseline"),
        Setting("gates.regression_budget", budget, "how much worse than production, on the same holdout"),
    ]


# ---- batches ------------------------------------------------------------------------------------


def _period_names(starts: pd.Series) -> pd.Series:
    """File names that sort by time: 2025-01, 2025-01-31 or 2025-01-31T12-00-00, as precise as needed."""
    ts = pd.to_datetime(starts)
    if ((ts.dt.day == 1) & (ts.dt.normalize() == ts)).all():
        return ts.dt.strftime("%Y-%m")
    if (ts.dt.normalize() == ts).all():
        return ts.dt.strftime("%Y-%m-%d")
    return ts.dt.strftime("%Y-%m-%dT%H-%M-%S")


def batches(typed: pd.DataFrame, text: pd.DataFrame, contract: Contract) -> Iterator[tuple[str, pd.DataFrame]]:
    """(file name, rows as text) per batch, oldest first: by period, by month (dates), or in row chunks."""
    keep = typed[contract.target].notna().to_numpy()
    typed, text = typed[keep].reset_index(drop=True), text[keep].reset_index(drop=True)
    if contract.time is None:
        for i, start in enumerate(range(0, len(text), BATCH_ROWS)):
            yield f"batch-{i + 1:04d}.csv", text.iloc[start : start + BATCH_ROWS]
        return
    col = contract.columns[contract.time]
    when = parse_time(text[contract.time].replace("", pd.NA), contract.time, col)
    if col.is_numeric:
        width = len(str(int(when.abs().max())))
        names = when.map(lambda v: f"{int(v):0{width}d}" if float(v).is_integer() else f"{v:012.4f}")
    else:
        starts = when.dt.to_period("M").dt.to_timestamp() if col.type in ("date", "datetime") else when
        names = _period_names(starts)
    for key in sorted(set(when if col.is_numeric else starts)):
        rows = (when if col.is_numeric else starts) == key
        yield f"{names[rows].iloc[0]}.csv", text[rows.to_numpy()]
