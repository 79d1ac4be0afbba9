"""Great Expectations 1.x: a suite built from the data contract, run batch by batch.

Ids are checked once more over the whole data set, every batch together: unique across batches.
Batches are independent, so large data sets are validated by one process per core; the report
is the same, in batch order.
"""

from __future__ import annotations

import inspect
import logging
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.core.contract import Column, Contract
from mlops.pipeline.datasets import list_batches, read_batch

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.metrics.column_map_metrics.column_values_match_strftime_format import (
    ColumnValuesMatchStrftimeFormat,
)
from great_expectations.expectations.metrics.map_metric_provider import column_condition_partial

# Great Expectations' own per-value check of a strftime format (the function its pandas metric maps
# over the column); ``_StrftimeOncePerDistinctValue`` calls it on the distinct values only.
_gx_strftime_check = inspect.unwrap(ColumnValuesMatchStrftimeFormat._pandas)


# Great Expectations logs a warning when a metric is registered again: here that is the point.
_registry_log = logging.getLogger("great_expectations.expectations.registry")
_registry_log.disabled = True


class _StrftimeOncePerDistinctValue(ColumnValuesMatchStrftimeFormat):
    """``expect_column_values_to_match_strftime_format`` on pandas, parsing each distinct value once.

    Great Expectations parses every row with one ``datetime.strptime`` call: half of a batch's
    validation time on monthly data, where a batch holds one period in every row. This registers
    a replacement for its pandas metric (same metric name, so the expectation, its counts,
    examples and errors are unchanged) that applies Great Expectations' own check to the distinct
    values and maps the answers back to the rows.
    """

    @column_condition_partial(engine=PandasExecutionEngine)  # type: ignore[untyped-decorator]
    def _pandas(cls, column: pd.Series, strftime_format: str, **kwargs: Any) -> pd.Series:  # noqa: N805 (GX passes the class)
        distinct = pd.Series(pd.unique(column), dtype=object)
        parses = _gx_strftime_check(cls, distinct, strftime_format=strftime_format, **kwargs)
        return column.map(dict(zip(distinct, parses, strict=True))).astype(bool)


_registry_log.disabled = False


NUMERIC_DTYPES = {
    "float": ["float64", "float32", "int64", "int32", "Int64", "Float64"],
    "integer": ["int64", "int32", "Int64", "float64"],  # float64: an integer column with gaps
}
TEXT_DTYPES = ["object", "string", "str"]


@dataclass
class Check:
    """One evaluated expectation, in words."""

    batch: str
    expectation: str
    column: str | None
    success: bool
    expected: str
    observed: str

    def line(self) -> str:
        """The check as one readable line for logs and reports."""
        where = f"column '{self.column}'" if self.column else "table"
        return f"{self.batch}: {where}: expected {self.expected}; observed {self.observed} [{self.expectation}]"


@dataclass
class ValidationReport:
    """Every evaluated expectation of every batch, and the row count per batch."""

    checks: list[Check] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.success]

    @property
    def success(self) -> bool:
        """True when at least one expectation ran and none failed."""
        return bool(self.checks) and not self.failures

    def to_dict(self) -> dict[str, Any]:
        """The report as written to ``reports/validation.json``."""
        return {
            "success": self.success,
            "evaluated": len(self.checks),
            "failed": len(self.failures),
            "batches": self.rows,
            "expectations": [asdict(c) for c in self.checks],
        }


ALL_BATCHES = "all batches"


def expectations_for(contract: Contract, present: set[str]) -> list[gxe.Expectation]:
    """The suite for one batch: absent optional columns are skipped, absent required ones fail.

    Id uniqueness is not a per-batch expectation: ids must be unique across every batch, which
    ``Validator.validate_ids`` checks over the whole data set.
    """
    out: list[gxe.Expectation] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    for name, col in contract.columns.items():
        if name not in present:
            if col.required:
                out.append(gxe.ExpectColumnToExist(column=name))
            continue
        out.extend(_column_expectations(name, col))
    return out


def _column_expectations(name: str, col: Column) -> list[gxe.Expectation]:
    types = NUMERIC_DTYPES[col.type] if col.is_numeric else TEXT_DTYPES
    if col.integer_categories:
        types = NUMERIC_DTYPES["integer"]
    out: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=types),
        gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=round(1.0 - col.allowed_missing, 6)),
    ]
    if col.is_numeric and (col.min is not None or col.max is not None):
        out.append(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=col.min, max_value=col.max))
    if col.categories:
        out.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=list(col.categories)))
    if col.is_time:
        fmt = col.time_format
        out.append(
            gxe.ExpectColumnValuesToMatchStrftimeFormat(column=name, strftime_format=fmt)
            if fmt
            else gxe.ExpectColumnValuesToBeDateutilParseable(column=name)
        )
    return out


def _describe(kind: str, kwargs: dict[str, Any], result: dict[str, Any], error: str | None) -> tuple[str, str]:
    """(expected, observed) in words for the expectation types the suite uses."""
    count = result.get("unexpected_count")
    examples = sorted({_short(str(v)) for v in result.get("partial_unexpected_list") or []})[:3]
    eg = f", e.g. {', '.join(examples)}" if examples else ""
    if kind == "expect_table_row_count_to_be_between":
        expected, observed = "at least 1 row", f"{result.get('observed_value')} rows"
    elif kind == "expect_column_to_exist":
        expected, observed = "the column to be present", "it is missing"
    elif kind == "expect_column_values_to_be_in_type_list":
        observed_type = result.get("observed_value") or "text (object)"
        expected, observed = f"type in {kwargs['type_list']}", str(observed_type)
    elif kind == "expect_column_values_to_not_be_null":
        limit = 1.0 - float(kwargs.get("mostly") or 1.0)
        pct = result.get("unexpected_percent") or 0.0
        expected, observed = f"at most {limit:.1%} missing", f"{pct:.1f}% missing ({count} rows)"
    elif kind == "expect_column_values_to_be_between":
        expected = f"values in [{kwargs.get('min_value')}, {kwargs.get('max_value')}]"
        observed = f"{count} values out of range{eg}" if count is not None else "values that are not all numbers"
    elif kind == "expect_column_values_to_be_in_set":
        expected = f"values in {kwargs.get('value_set')}"
        observed = f"{count} unknown values{eg}"
    elif kind == "expect_column_values_to_match_strftime_format":
        expected = f"values in the format {kwargs.get('strftime_format')!r}"
        observed = f"{count} values that do not parse{eg}"
    elif kind == "expect_column_values_to_be_dateutil_parseable":
        expected, observed = "dates or times", f"{count} values that do not parse{eg}"
    elif kind == "expect_column_values_to_be_unique":
        expected, observed = "unique values", f"{count} duplicated values{eg}"
    else:
        expected, observed = str(kwargs), str(result)
    if error:
        observed = f"could not be evaluated: {error}"
    return expected, observed


def _non_numeric_examples(values: pd.Series) -> str:
    bad = values[values.notna() & pd.to_numeric(values, errors="coerce").isna()]
    if bad.empty:
        return ""
    shown = ", ".join(repr(_short(v)) for v in sorted(set(bad.astype(str)))[:3])
    return f" with {len(bad)} non-numeric values, e.g. {shown}"


def _short(text: str, limit: int = 80) -> str:
    """A value from a data file, cut to ``limit`` characters with its length when longer."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class Validator:
    """An in-memory GX context for one contract; validate as many frames as you like."""

    def __init__(self, contract: Contract):
        self.contract = contract
        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(),
        )
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        asset = self._context.data_sources.add_pandas("batches").add_dataframe_asset("batch")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self._suites = 0

    def validate_frame(self, frame: pd.DataFrame, label: str) -> list[Check]:
        """Evaluate the contract's suite on one batch; one ``Check`` per expectation."""
        return self._run(frame, label, expectations_for(self.contract, set(frame.columns)))

    def validate_ids(self, ids: pd.Series, label: str = ALL_BATCHES) -> list[Check]:
        """Ids unique over the whole data set (every batch's id column, concatenated): one ``Check``.

        Nothing to check (no ``Check``) when the contract has no id column.
        """
        if not self.contract.id:
            return []
        frame = pd.DataFrame({self.contract.id: ids.reset_index(drop=True)})
        return self._run(frame, label, [gxe.ExpectColumnValuesToBeUnique(column=self.contract.id)])

    def _run(self, frame: pd.DataFrame, label: str, expectations: list[gxe.Expectation]) -> list[Check]:
        self._suites += 1
        suite = gx.ExpectationSuite(name=f"{self.contract.name}-{self._suites}", expectations=expectations)
        suite = self._context.suites.add(suite)
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format="BASIC")  # counts and examples: all the report shows
        checks = []
        for r in result.results:
            cfg = r.expectation_config
            assert cfg is not None
            info = r.exception_info or {}
            error = str(info.get("exception_message")).splitlines()[0] if info.get("raised_exception") else None
            expected, observed = _describe(cfg.type, cfg.kwargs, r.result or {}, error)
            if cfg.type == "expect_column_values_to_be_in_type_list" and not r.success:
                observed += _non_numeric_examples(frame[cfg.kwargs["column"]])
            checks.append(Check(label, cfg.type, cfg.kwargs.get("column"), bool(r.success), expected, observed))
        return checks


def id_values(frame: pd.DataFrame, contract: Contract) -> pd.Series:
    """A batch's ids as read (empty when the contract or the batch has no id column)."""
    if contract.id and contract.id in frame:
        return frame[contract.id].astype(object)
    return pd.Series([], dtype=object)


PARALLEL_BYTES = 8 << 20  # below this much CSV, starting processes costs more than it saves


def _validate_batch(validator: Validator, path: Path) -> tuple[str, int, list[Check], pd.Series]:
    frame = read_batch(path, validator.contract)
    return path.name, len(frame), validator.validate_frame(frame, path.name), id_values(frame, validator.contract)


_worker_validator: Validator | None = None


def _worker_start(validator: Validator) -> None:
    global _worker_validator
    _worker_validator = validator


def _worker_validate(path: Path) -> tuple[str, int, list[Check], pd.Series]:
    assert _worker_validator is not None, "the pool's initializer did not run"
    return _validate_batch(_worker_validator, path)


def _validated(paths: list[Path], validator: Validator, jobs: int) -> Iterator[tuple[str, int, list[Check], pd.Series]]:
    """Each batch's name, rows, checks and ids, in the order of ``paths``."""
    if jobs <= 1 or len(paths) < 2:
        for path in paths:
            yield _validate_batch(validator, path)
        return
    # fork: the workers start with Great Expectations imported and this process's context built
    # (a fresh interpreter takes seconds; a context, a few tenths of a second per worker)
    with multiprocessing.get_context("fork").Pool(jobs, _worker_start, (validator,)) as pool:
        yield from pool.imap(_worker_validate, paths)


def validate_dir(raw_dir: Path, contract: Contract, progress: Any = None, jobs: int | None = None) -> ValidationReport:
    """Validate every batch under ``raw_dir`` against the contract, then ids across all of them.

    ``jobs`` processes validate batches side by side (default: one per core when the batches
    hold more than a few MB; one otherwise).
    """
    paths = list_batches(raw_dir)
    if jobs is None:
        big = sum(p.stat().st_size for p in paths) > PARALLEL_BYTES
        jobs = min(len(paths), os.cpu_count() or 1) if big else 1
    report = ValidationReport()
    ids = []
    validator = Validator(contract)
    for name, rows, checks, batch_ids in _validated(paths, validator, jobs):
        report.checks.extend(checks)
        report.rows[name] = rows
        ids.append(batch_ids)
        if progress:
            bad = sum(not c.success for c in checks)
            progress(f"{name}: {rows:,} rows, {len(checks)} expectations, {bad} failed")
    unique = validator.validate_ids(pd.concat(ids, ignore_index=True)) if ids else []
    report.checks.extend(unique)
    if progress and unique:
        progress(f"{ALL_BATCHES}: ids {'unique' if unique[0].success else 'NOT unique: ' + unique[0].observed}")
    return report
