"""params.yaml as typed, frozen config, validated once at the edge.

Every section is a strict pydantic model: a misspelled or unknown key, a missing key or a
value of the wrong type fails with a message naming its dotted path. The ``train`` section
takes one sub-section per registered estimator family (``mlops.core.estimators``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, create_model

from mlops.core.errors import UserError
from mlops.core.estimators import FAMILIES
from mlops.core.schema import Section, parse, read_yaml


class DataParams(Section):
    """Knobs of the example data generator (``mlops data``)."""

    seed: int
    periods: int = Field(ge=1)
    rows_per_period: int = Field(ge=1)
    start: str = Field(pattern=r"^\d{4}-\d{2}$")
    task: Literal["binary", "multiclass", "regression"]
    drift: float = Field(ge=0)
    drift_start: int = Field(ge=1)


class SplitParams(Section):
    method: Literal["time", "random"]
    holdout_periods: int = Field(ge=1)
    test_size: float = Field(gt=0, lt=1)
    seed: int


class FeatureParams(Section):
    min_category_frequency: float = Field(ge=0, lt=1)


class TrainParamsBase(Section):
    """``train``: the chosen family, the seed, feature settings; one section per family."""

    estimator: str
    seed: int
    features: FeatureParams

    def family_params(self) -> Section:
        """The params section of the chosen estimator family."""
        section: Section = getattr(self, self.estimator)
        return section


# The family sections come from the registry: adding a family there adds its section here.
TrainParams = create_model(  # type: ignore[call-overload]
    "TrainParams",
    __base__=TrainParamsBase,
    estimator=(Literal[tuple(FAMILIES)], ...),
    **{name: (family.params, ...) for name, family in FAMILIES.items()},
)


class EvaluateParams(Section):
    permutation_repeats: int = Field(ge=1)
    importance_rows: int = Field(ge=100)  # permutation importance: a seeded sample of at most this many holdout rows
    max_curve_points: int = Field(ge=10)


class GateParams(Section):
    """Absolute minimums and maximums, and how much worse than production a candidate may be."""

    minimum: dict[str, float]
    maximum: dict[str, float]
    regression_budget: dict[str, float]

    def check_metrics(self, metrics: Sequence[str], task: str) -> None:
        """Raise UserError naming (by dotted key) every gate on a metric the task does not produce.

        A misspelled name would otherwise be a gate that never fails.
        """
        unknown = [
            f"gates.{section}.{name}"
            for section in ("minimum", "maximum", "regression_budget")
            for name in getattr(self, section)
            if name not in metrics
        ]
        if unknown:
            raise UserError(
                "params: "
                + "; ".join(f"{key}: not a metric of a {task} task" for key in unknown)
                + f" (its metrics: {', '.join(metrics)})"
            )


class MlflowParams(Section):
    experiment: str = Field(min_length=1)
    registered_model: str = Field(min_length=1)


class ServeParams(Section):
    model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    workers: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    max_batch_delay_ms: int = Field(ge=0)
    response_timeout_s: int = Field(ge=1)
    max_rows: int = Field(ge=1)
    unknown_category: Literal["reject", "allow"]


class LatencyGate(Section):
    duration_s: float = Field(gt=0)
    concurrency: int = Field(ge=1)
    max_p99_ms: float = Field(gt=0)
    min_rps: float = Field(ge=0)


class DeployParams(Section):
    ready_timeout_s: int = Field(ge=1)
    smoke_rows: int = Field(ge=1)
    parity_rows: int = Field(ge=1)
    quality_rows: int = Field(ge=0)
    latency: LatencyGate


class MonitorParams(Section):
    lookback_hours: float = Field(gt=0)
    window_minutes: float = Field(gt=0)
    min_rows: int = Field(ge=1)
    psi_threshold: float = Field(gt=0)
    p_value: float = Field(gt=0, lt=1)
    max_missing_increase: float = Field(ge=0, le=1)
    max_error_rate: float = Field(ge=0, le=1)
    max_p99_ms: float = Field(gt=0)
    max_metric_drop: float = Field(ge=0)


class Params(Section):
    # the example generator's knobs: only the example repository has them (`mlops init` removes them)
    data: DataParams | None = None
    split: SplitParams
    if TYPE_CHECKING:
        train: TrainParamsBase
    else:
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


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; raise UserError naming every bad key."""
    params: Params = parse(Params, raw, source)
    return params


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; raise UserError naming every bad key."""
    path = Path(path)
    return parse_params(read_yaml(path), str(path))
