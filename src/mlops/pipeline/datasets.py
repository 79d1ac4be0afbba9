"""Reading raw batches and split tables as the contract describes them."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import pandas as pd

from mlops.core.contract import Contract
from mlops.core.errors import UserError


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
    text = {
        name: object
        for name, col in contract.columns.items()
        if col.type == "string" or (col.type == "category" and any(isinstance(c, str) for c in col.categories or []))
    }
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


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write a table as Parquet, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet table; a missing file is a UserError saying which stage makes it."""
    if not path.exists():
        raise UserError(f"{path}: not found (run the stage that produces it: `dvc repro`)")
    return pd.read_parquet(path)
