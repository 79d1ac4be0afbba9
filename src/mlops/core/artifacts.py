"""Saving and loading the fitted pipeline and small JSON/CSV outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.errors import UserError


def save_pipeline(pipeline: Pipeline, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    joblib.dump(pipeline, tmp)
    tmp.replace(path)


def load_pipeline(path: Path) -> Pipeline:
    if not path.exists():
        raise UserError(f"{path}: no fitted pipeline (run `dvc repro` to train one)")
    pipeline = joblib.load(path)
    if not isinstance(pipeline, Pipeline):
        raise UserError(f"{path}: expected a scikit-learn Pipeline, found {type(pipeline).__name__}")
    return pipeline


def _rounded(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write JSON with floats rounded to 6 digits, so reruns give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_rounded(data), indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    if not path.exists():
        raise UserError(f"{path}: not found")
    return json.loads(path.read_text())


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")


def flatten(d: dict[str, Any], prefix: str = "", leaf: Any = None) -> dict[str, Any]:
    """Nested dicts as one level with dotted keys; ``leaf(value)`` True stops the descent."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not (leaf and leaf(v)):
            out.update(flatten(v, key + ".", leaf))
        else:
            out[key] = v
    return out
