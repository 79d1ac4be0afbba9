"""One home for the repository's paths: every default the stages and commands use.

``dvc.yaml`` names the same files (a test checks that the two agree); where a path depends on
a param (the archive follows ``serve.model_name``) ``dvc.yaml`` uses DVC's ``${...}``
templating and the code calls ``archive(name)``.
"""

from __future__ import annotations

import os
from pathlib import Path

PARAMS = Path("params.yaml")
DVC_LOCK = Path("dvc.lock")
CONTRACT = Path("data/contract.yaml")
RAW = Path("data/raw")
RAW_DVC = Path("data/raw.dvc")
LANDING = Path("data/landing")
QUARANTINE = Path("data/quarantine")
LABELS = Path("data/labels")
SPLIT = Path("data/split")
TRAIN = SPLIT / "train.parquet"
HOLDOUT = SPLIT / "holdout.parquet"

MODELS = Path("models")
PIPELINE = MODELS / "pipeline.joblib"
REFERENCE = MODELS / "reference.parquet"
PACKAGE = MODELS / "package.json"

REPORTS = Path("reports")
VALIDATION = REPORTS / "validation.json"
METRICS = REPORTS / "metrics.json"
TRAIN_METRICS = REPORTS / "train_metrics.json"
TRAIN_PLOTS = REPORTS / "train"
EVALUATE_PLOTS = REPORTS / "evaluate"
PR_REPORT = REPORTS / "pr" / "pr-report.md"
MONITOR_REPORT = REPORTS / "monitor.md"
BENCH = REPORTS / "bench.json"

SERVE = Path("serve")
HANDLER = SERVE / "handler.py"
MLFLOW_DB = Path("mlflow.db")


def mlflow_tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI``, or the sqlite file at the repository root.

    A stage DVC runs gets the repository's root in ``DVC_ROOT``: a queued experiment runs in a
    temporary copy, and its run belongs in the repository's store, not in the copy's.
    """
    root = Path(os.environ.get("DVC_ROOT") or root)
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / MLFLOW_DB).resolve()}"


def archive(model_name: str) -> Path:
    """The model archive of ``serve.model_name`` (``models/<name>.mar``)."""
    return MODELS / f"{model_name}.mar"


def serve_dir() -> Path:
    """The environment configs (``serve/``; ``MLOPS_SERVE_DIR`` overrides)."""
    return Path(os.environ.get("MLOPS_SERVE_DIR", str(SERVE)))


def runtime_dir() -> Path:
    """Model stores, logs, keys and ledgers of local servers (``.serve/``; ``MLOPS_RUNTIME_DIR``)."""
    return Path(os.environ.get("MLOPS_RUNTIME_DIR", ".serve"))
