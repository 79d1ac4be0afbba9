"""params.yaml as typed, frozen config, validated once at the edge.

Every section is a pydantic model with ``extra="forbid"``: a misspelled or unknown key,
a missing key or a value of the wrong type fails with a message naming its dotted path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops.errors import UserError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataParams(_Section):
    """Knobs of the example data generator (``mlops data``)."""

    seed: int
    periods: int = Field(ge=1)
    rows_per_period: int = Field(ge=1)
    start: str = Field(pattern=r"^\d{4}-\d{2}$")
    task: Literal["binary", "multiclass", "regression"]
    drift: float = Field(ge=0)
    drift_start: int = Field(ge=1)


class SplitParams(_Section):
    method: Literal["time", "random"]
    holdout_periods: int = Field(ge=1)
    test_size: float = Field(gt=0, lt=1)
    seed: int


class LinearParams(_Section):
    C: float = Field(gt=0)
    max_iter: int = Field(ge=1)


class RandomForestParams(_Section):
    n_estimators: int = Field(ge=1)
    max_depth: int | None = Field(ge=1)
    min_samples_leaf: int = Field(ge=1)


class HistGradientBoostingParams(_Section):
    learning_rate: float = Field(gt=0)
    max_iter: int = Field(ge=1)
    max_leaf_nodes: int = Field(ge=2)
    l2_regularization: float = Field(ge=0)
    early_stopping: bool
    validation_fraction: float = Field(gt=0, lt=1)
    n_iter_no_change: int = Field(ge=1)


class FeatureParams(_Section):
    min_category_frequency: float = Field(ge=0, lt=1)


class TrainParams(_Section):
    estimator: Literal["linear", "random_forest", "hist_gradient_boosting"]
    seed: int
    features: FeatureParams
    linear: LinearParams
    random_forest: RandomForestParams
    hist_gradient_boosting: HistGradientBoostingParams


class EvaluateParams(_Section):
    permutation_repeats: int = Field(ge=1)
    max_curve_points: int = Field(ge=10)


class GateParams(_Section):
    """Absolute minimums and maximums, and how much worse than production a candidate may be."""

    minimum: dict[str, float]
    maximum: dict[str, float]
    regression_budget: dict[str, float]


class MlflowParams(_Section):
    experiment: str = Field(min_length=1)
    registered_model: str = Field(min_length=1)


class ServeParams(_Section):
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    workers: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    max_batch_delay_ms: int = Field(ge=0)
    response_timeout_s: int = Field(ge=1)
    max_rows: int = Field(ge=1)
    unknown_category: Literal["reject", "allow"]


class LatencyGate(_Section):
    duration_s: float = Field(gt=0)
    concurrency: int = Field(ge=1)
    max_p99_ms: float = Field(gt=0)
    min_rps: float = Field(ge=0)


class DeployParams(_Section):
    ready_timeout_s: int = Field(ge=1)
    smoke_rows: int = Field(ge=1)
    parity_rows: int = Field(ge=1)
    quality_rows: int = Field(ge=0)
    latency: LatencyGate


class MonitorParams(_Section):
    lookback_hours: float = Field(gt=0)
    window_minutes: float = Field(gt=0)
    min_rows: int = Field(ge=1)
    psi_threshold: float = Field(gt=0)
    p_value: float = Field(gt=0, lt=1)
    max_missing_increase: float = Field(ge=0, le=1)
    max_error_rate: float = Field(ge=0, le=1)
    max_p99_ms: float = Field(gt=0)
    max_metric_drop: float = Field(ge=0)


class Params(_Section):
    data: DataParams
    split: SplitParams
    train: TrainParams
    evaluate: EvaluateParams
    gates: GateParams
    mlflow: MlflowParams
    serve: ServeParams
    deploy: DeployParams
    monitor: MonitorParams

    def digest(self) -> str:
        """A stable hash of the validated params (a lineage tag)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} problem(s)"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (misspelled?)")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required key is missing")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from None


def parse_params(raw: Any, source: str = "params") -> Params:
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(source, e)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; raise UserError naming every bad key."""
    path = Path(path)
    return parse_params(read_yaml(path), str(path))
