"""MLflow tracking and registry. The only module that imports mlflow.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; without it, a sqlite file at the
repository root (``mlflow.db``, git-ignored) with artifacts beside it in ``mlartifacts/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mlops.core import paths
from mlops.core.threads import native_threads

if TYPE_CHECKING:
    import pandas as pd

MODEL_SHA_TAG = "model_sha256"


@dataclass(frozen=True)
class TrainingRecord:
    """What ``log_training`` leaves in MLflow: the run, the registered version, the store."""

    run_id: str
    model_version: str
    tracking_uri: str


def configure(root: Path) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or at the repository's sqlite file."""
    uri = paths.mlflow_tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # we log with cloudpickle on purpose (the pipeline holds this package's transformer)
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    return uri


def _experiment(name: str) -> str:
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def log_training(
    root: Path,
    experiment: str,
    registered_model: str,
    *,
    pipeline: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    input_example: pd.DataFrame,
    tags: dict[str, str],
    artifacts: list[Path],
    pip_requirements: list[str],
) -> TrainingRecord:
    """One run: params, metrics, lineage tags, the model (signature + example), a registry version."""
    from mlops.core.artifacts import flatten  # scikit-learn comes with it: only training needs it

    uri = configure(root)
    experiment_id = _experiment(experiment)
    # MLflow scores the input example (signature, serving check): one native thread, as everywhere
    with native_threads(), mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(flatten(params))
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        for path in artifacts:
            mlflow.log_artifact(str(path))
        prediction = pipeline.predict_proba(input_example) if hasattr(pipeline, "predict_proba") else None
        signature = infer_signature(
            input_example, prediction if prediction is not None else pipeline.predict(input_example)
        )
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            registered_model_name=registered_model,
            serialization_format="cloudpickle",
            code_paths=[str(Path(__file__).parents[1])],  # the model needs the mlops package to load
        )
    version = str(info.registered_model_version) if info.registered_model_version is not None else "none"
    return TrainingRecord(run.info.run_id, version, uri)


def log_evaluation(
    root: Path, experiment: str, model_sha256: str, metrics: dict[str, float], artifacts: list[Path]
) -> str | None:
    """Add holdout metrics and plots to the run that trained this exact model file, if it is here."""
    configure(root)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.{MODEL_SHA_TAG} = '{model_sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
    return str(run_id)


def find_model_version(root: Path, registered_model: str, model_sha256: str) -> tuple[str, str] | None:
    """(run id, registry version) of the newest run here that logged this exact model file, or None."""
    from mlflow.exceptions import MlflowException

    configure(root)
    client = MlflowClient()
    try:
        client.get_registered_model(registered_model)
    except MlflowException:  # nothing registered under this name: no run to find
        return None
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.{MODEL_SHA_TAG} = '{model_sha256}'",
        order_by=["attributes.start_time DESC"],
    )
    for run in runs:
        versions = client.search_model_versions(f"name = '{registered_model}' and run_id = '{run.info.run_id}'")
        if versions:
            return run.info.run_id, str(versions[0].version)
    return None


def set_alias(
    root: Path,
    registered_model: str,
    alias: str,
    model_sha256: str,
    tags: dict[str, str],
    found: tuple[str, str] | None = None,
) -> tuple[str, str] | None:
    """Point a registry alias (``staging``/``production``) at the version trained as this model file.

    ``found`` (run id, version) skips the search when the caller already looked it up. Returns
    (run id, model version), or None when no run here logged this model.
    """
    found = found or find_model_version(root, registered_model, model_sha256)
    if found is None:
        return None
    configure(root)
    client = MlflowClient()
    client.set_registered_model_alias(registered_model, alias, found[1])
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, found[1], key, value)
    return found


def alias_target(root: Path, registered_model: str, alias: str) -> dict[str, str] | None:
    """The version an alias points at, with its run and tags; None when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    configure(root)
    try:
        version = MlflowClient().get_model_version_by_alias(registered_model, alias)
    except MlflowException:
        return None
    return {**version.tags, "version": str(version.version), "run_id": str(version.run_id)}
