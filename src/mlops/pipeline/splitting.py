"""Deterministic train/holdout split: the latest periods (as in production) or seeded random."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from mlops.core.config import SplitParams
from mlops.core.contract import Contract
from mlops.core.errors import UserError
from mlops.core.task import task_of
from mlops.pipeline.datasets import parse_time


def split(frame: pd.DataFrame, contract: Contract, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and holdout tables.

    The holdout is the latest ``holdout_periods`` (``time``) or a seeded, stratified random
    share (``random``); raises UserError when the split is impossible.
    """
    if params.method == "time":
        if not contract.time:
            raise UserError("split.method is 'time' but the contract names no time column; use 'random'")
        # ordered by the parsed value, never by the text ("Sep" < "Oct" < "Nov" as strings is wrong)
        when = parse_time(frame[contract.time], contract.time, contract.columns[contract.time])
        periods = sorted(when.unique())
        if len(periods) <= params.holdout_periods:
            raise UserError(
                f"split.holdout_periods={params.holdout_periods} leaves no training data: "
                f"only {len(periods)} period(s) in the data"
            )
        mask = when.isin(periods[-params.holdout_periods :]).to_numpy()
        return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)
    stratify = task_of(contract).stratify(frame[contract.target])
    train, holdout = train_test_split(frame, test_size=params.test_size, random_state=params.seed, stratify=stratify)
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def periods(frame: pd.DataFrame, contract: Contract) -> list[str]:
    """The distinct values of the time column as written, oldest first (by their parsed value)."""
    if not contract.time or frame.empty:
        return []
    when = parse_time(frame[contract.time], contract.time, contract.columns[contract.time])
    text = frame[contract.time].astype(str)
    return list(dict.fromkeys(text.iloc[when.argsort(kind="stable")]))
