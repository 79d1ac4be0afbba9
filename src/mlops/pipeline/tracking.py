"""MLflow tracking and registry. The only module that imports mlflow.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; without it, a sqlite file at the
repository root (``mlflow.db``, git-ignored) with artifacts beside it in ``mlartifacts/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import AnyType

from mlops.core import paths
from mlops.core.contract import Column, Contract
from mlops.core.errors import quoted
from mlops.core.task import task_of
from mlops.core.threads import native_threads

MODEL_SHA_TAG = "model_sha256"
# ``predict(frame, params={"output": ...})``: "label" (the class, or the value) or "probabilities"
OUTPUTS = ("label", "probabilities")


def _column_type(col: Column) -> DataType | AnyType:
    """The MLflow type of a column as pandas reads it from a CSV file.

    Text is ``string`` and gapless integers are ``long``. Other numbers are ``Any``: pandas reads
    a float column whose values happen to be whole as int64, and an integer column with a gap as
    float64, and MLflow's ``double`` refuses int64 (as ``long`` refuses float64). ``predict``
    checks that those columns hold numbers, and the model's metadata carries the contract's types.
    """
    if col.type == "integer" or col.integer_categories:
        return DataType.long if col.allowed_missing == 0 else AnyType()
    if col.is_numeric:
        return AnyType()
    return DataType.string


def signature(contract: Contract) -> ModelSignature:
    """The model's signature from the contract: the features (optional ones optional) in, the prediction out."""
    columns = [(n, contract.columns[n]) for n in contract.features]
    inputs = Schema([ColSpec(_column_type(col), name, required=col.required) for name, col in columns])
    task = task_of(contract)
    if not task.is_classification:
        target = DataType.double
    else:
        target = DataType.long if all(isinstance(c, int) for c in task.classes) else DataType.string
    params = ParamSchema([ParamSpec("output", DataType.string, "label")])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec(target, "prediction")]), params=params)


def _declared(contract: Contract) -> dict[str, dict[str, Any]]:
    """Each feature's declared type and constraints, as the contract states them."""
    return {n: contract.columns[n].model_dump(exclude_defaults=True) for n in contract.features}


class ContractModel(PythonModel):
    """The fitted pipeline as an MLflow pyfunc, for any MLflow client.

    ``predict(frame)`` returns a frame with one column, ``prediction``: the class (classification)
    or the value (regression), as the signature says. ``predict(frame, params={"output":
    "probabilities"})`` returns one column per class instead, named by the class.
    """

    def __init__(self, contract: Contract):
        self.contract = contract

    def load_context(self, context: Any) -> None:
        """Load the fitted pipeline from the model's artifacts."""
        from mlops.core.artifacts import load_pipeline  # scikit-learn: only a loaded model needs it

        self.pipeline_ = load_pipeline(Path(context.artifacts["pipeline"]))
        self.task_ = task_of(self.contract).for_model(self.pipeline_)

    def _check(self, frame: pd.DataFrame) -> None:
        """Numbers must be numbers (columns typed ``Any`` in the signature are not checked by MLflow)."""
        for name in self.contract.features:
            col = self.contract.columns[name]
            if name not in frame or not (col.is_numeric or col.integer_categories):
                continue
            values = frame[name]
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[values.notna() & numbers.isna()]
            if not bad.empty:
                raise MlflowException(f"column '{name}' must hold numbers; got {quoted(bad.iloc[0])}")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Labels or values (``prediction``), or per-class probabilities with ``params={"output": "probabilities"}``."""
        frame = pd.DataFrame(model_input)
        self._check(frame)
        output = (params or {}).get("output", "label")
        if output not in OUTPUTS:
            raise MlflowException(f"params.output must be one of {list(OUTPUTS)}; got {quoted(output)}")
        outputs = self.task_.outputs(self.pipeline_, frame)
        if output == "probabilities":
            if not self.task_.is_classification:
                raise MlflowException("probabilities exist for classification only; this model predicts a value")
            return pd.DataFrame(outputs, columns=[str(c) for c in self.task_.classes], index=frame.index)
        if not self.task_.is_classification:
            return pd.DataFrame({"prediction": outputs}, index=frame.index)
        labels = np.asarray(self.task_.classes)[outputs.argmax(axis=1)]
        return pd.DataFrame({"prediction": labels}, index=frame.index)


@dataclass(frozen=True)
class TrainingRecord:
    """What ``log_training`` leaves in MLflow: the run, the registered version (None: not registered), the store."""

    run_id: str
    model_version: str | None
    tracking_uri: str


def configure(root: Path) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` or at the repository's sqlite file."""
    uri = paths.mlflow_tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # the model is a cloudpickled ContractModel on purpose: its code travels with it (code_paths)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    return uri


def _experiment(name: str) -> str:
    """The id of experiment ``name``, created if missing (safe when clones create it at once)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except mlflow.exceptions.MlflowException as e:
        # another clone (or thread) created it between our lookup and create: use theirs
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        created = client.get_experiment_by_name(name)
        if created is None:
            raise
        return str(created.experiment_id)


def log_training(
    root: Path,
    experiment: str,
    registered_model: str,
    *,
    pipeline: Path,
    contract: Contract,
    params: dict[str, Any],
    metrics: dict[str, float],
    input_example: pd.DataFrame,
    tags: dict[str, str],
    artifacts: list[Path],
    pip_requirements: list[str],
    register: bool = False,
) -> TrainingRecord:
    """One run: params, metrics, lineage tags, the model (a ``ContractModel`` pyfunc); a version if ``register``."""
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
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ContractModel(contract),
            artifacts={"pipeline": str(pipeline)},
            signature=signature(contract),
            input_example=input_example,
            pip_requirements=pip_requirements,
            registered_model_name=registered_model if register else None,
            metadata={"contract": {"task": contract.task, "target": contract.target, "columns": _declared(contract)}},
            code_paths=[str(Path(__file__).parents[1])],  # the model needs the mlops package to load
        )
    version = str(info.registered_model_version) if info.registered_model_version is not None else None
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


def runs_table(root: Path, experiment: str) -> pd.DataFrame:
    """The experiment's runs, newest first: one row a run (``run_id``, ``params.*``, ``metrics.*``, ``tags.*``).

    Empty when the experiment does not exist here.
    """
    configure(root)
    found = MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame()
    runs = mlflow.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], output_format="pandas")
    return pd.DataFrame(runs)


def find_model_version(
    root: Path, registered_model: str, model_sha256: str, register: bool = False
) -> tuple[str, str] | None:
    """(run id, registry version) of the newest run here that logged this exact model file, or None.

    With ``register``, a model file whose runs have no version yet gets one, from its newest run:
    training registers only on main (``mlops.core.lineage.registers_here``), so a deployment registers what it deploys.
    """
    configure(root)
    client = MlflowClient()
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.{MODEL_SHA_TAG} = '{model_sha256}'",
        order_by=["attributes.start_time DESC"],
    )
    if not runs:
        return None
    try:
        client.get_registered_model(registered_model)
    except MlflowException:  # nothing registered under this name yet
        pass
    else:
        for run in runs:
            versions = client.search_model_versions(f"name = '{registered_model}' and run_id = '{run.info.run_id}'")
            if versions:
                return run.info.run_id, str(versions[0].version)
    if not register:
        return None
    run_id = runs[0].info.run_id
    version = mlflow.register_model(f"runs:/{run_id}/model", registered_model)
    return run_id, str(version.version)


def set_alias(
    root: Path,
    registered_model: str,
    alias: str,
    model_sha256: str,
    tags: dict[str, str],
    found: tuple[str, str] | None = None,
) -> tuple[str, str] | None:
    """Point a registry alias (``staging``/``production``) at the version trained as this model file.

    ``found`` (run id, version) skips the search when the caller already looked it up; a logged
    model without a version is registered from its newest run. Returns (run id, model version),
    or None when no run here logged this model.
    """
    found = found or find_model_version(root, registered_model, model_sha256, register=True)
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
