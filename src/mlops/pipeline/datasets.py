"""Reading raw batches and split tables as the contract describes them."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import pandas as pd

from mlops.core.contract import Column, Contract
from mlops.core.errors import UserError, quoted


def list_batches(raw_dir: Path) -> list[Path]:
    """The batch files under ``raw_dir``, oldest period first (file names sort by period)."""
    if not raw_dir.is_dir():
        raise UserError(f"{raw_dir}: no such directory (run `make data` to create the example data)")
    batches = sorted(raw_dir.glob("*.csv"))
    if not batches:
        raise UserError(f"{raw_dir}: no *.csv batches found")
    return batches


def read_batch(path: Path | IO[bytes], contract: Contract, label: str | None = None) -> pd.DataFrame:
    """One batch (a path or an open file); text columns stay text, numbers are inferred so a wrong type shows."""
    label = label or str(path)
    text = {name: object for name, col in contract.columns.items() if col.is_text}
    try:
        return pd.read_csv(path, dtype=text, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(contract.columns))
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"{label}: not a readable CSV file: {e}") from None


def read_raw(raw_dir: Path, contract: Contract) -> pd.DataFrame:
    """All batches concatenated in period order."""
    frames = [read_batch(p, contract) for p in list_batches(raw_dir)]
    return pd.concat(frames, ignore_index=True)


def parse_time(values: pd.Series, name: str, column: Column) -> pd.Series:
    """A time column's values as what orders them: timestamps (time types) or numbers.

    Raises UserError naming the column, a value that does not parse and the format expected.
    """
    if column.is_numeric:
        parsed = pd.to_numeric(values, errors="coerce")
        expected = "a number"
    else:
        fmt = column.time_format
        parsed = pd.to_datetime(values.astype("string"), format=fmt or "ISO8601", errors="coerce")
        expected = f"a {column.type} in the format {fmt!r}" if fmt else f"an ISO 8601 {column.type}"
    bad = values[parsed.isna()]
    if not bad.empty:
        empty = bad.isna()
        example = "an empty value" if empty.all() else quoted(str(bad[~empty].iloc[0]))
        raise UserError(
            f"time column '{name}': {example} is not {expected} ({len(bad)} of {len(values)} values are not); "
            "fix the data or the column's 'format' in the contract"
        )
    return parsed


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a table as Parquet, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet table; a missing file is a UserError saying which stage makes it."""
    if not path.exists():
        raise UserError(f"{path}: not found (run the stage that produces it: `dvc repro`)")
    return pd.read_parquet(path)
