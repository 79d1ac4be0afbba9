"""Deterministic train/holdout split: the latest periods (as in production) or seeded random."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from mlops.core.config import SplitParams
from mlops.core.contract import Contract
from mlops.core.errors import UserError
from mlops.core.task import task_of


def split(frame: pd.DataFrame, contract: Contract, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and holdout tables.

    The holdout is the latest ``holdout_periods`` (``time``) or a seeded, stratified random
    share (``random``); raises UserError when the split is impossible.
    """
    if params.method == "time":
        if not contract.time:
            raise UserError("split.method is 'time' but the contract names no time column; use 'random'")
        periods = sorted(frame[contract.time].astype(str).unique())
        if len(periods) <= params.holdout_periods:
            raise UserError(
                f"split.holdout_periods={params.holdout_periods} leaves no training data: "
                f"only {len(periods)} period(s) in the data"
            )
        held = set(periods[-params.holdout_periods :])
        mask = frame[contract.time].astype(str).isin(held)
        return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)
    stratify = task_of(contract).stratify(frame[contract.target])
    train, holdout = train_test_split(frame, test_size=params.test_size, random_state=params.seed, stratify=stratify)
    return train.reset_index(drop=True), holdout.reset_index(drop=True)
