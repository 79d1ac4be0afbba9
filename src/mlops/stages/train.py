"""Train the feature pipeline and estimator; save it, its loss curve, and an MLflow run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from mlops.core import lineage, paths
from mlops.core.artifacts import save_pipeline, write_csv, write_json
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.progress import Progress
from mlops.pipeline import figures
from mlops.pipeline.datasets import read_table, write_table
from mlops.pipeline.features import features_and_target
from mlops.pipeline.training import reference, train
from mlops.stages import entry, parser

RUNTIME_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle")


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("train", __doc__)
    p.add_argument("--train", type=Path, default=paths.TRAIN)
    p.add_argument("--model", type=Path, default=paths.PIPELINE)
    p.add_argument("--curves", type=Path, default=paths.TRAIN_PLOTS, help="loss curve directory")
    p.add_argument("--metrics", type=Path, default=paths.TRAIN_METRICS)
    p.add_argument("--reference", type=Path, default=paths.REFERENCE, help="monitoring reference")
    p.add_argument("--root", type=Path, default=Path(), help="repository root (lineage, MLflow default)")
    p.add_argument("--no-mlflow", action="store_true", help="skip MLflow logging")
    args = p.parse_args(argv)
    params = load_params(args.params)
    contract = load_contract(args.contract)
    register = not args.no_mlflow and lineage.registers_here()  # checked first: a bad value wastes no fit
    progress = Progress("train")

    frame = read_table(args.train)
    with progress.step(f"fitting {params.train.estimator} on {len(frame):,} rows, {len(contract.features)} features"):
        t0 = time.perf_counter()
        result = train(frame, contract, params.train)
        fit_seconds = time.perf_counter() - t0
    save_pipeline(result.pipeline, args.model)
    write_table(reference(result.model, frame, contract, seed=params.train.seed), args.reference)
    write_csv(result.loss_curve, args.curves / "loss.csv")
    figures.loss_curve(result.loss_curve, args.curves / "loss.png")
    summary = {
        "train_loss": result.train_loss,
        "iterations": int(result.loss_curve["iteration"].max()),
        "rows": result.rows,
    }
    write_json(summary, args.metrics)
    progress(f"train loss {result.train_loss:.4f} after {summary['iterations']} iteration(s) -> {args.model}")
    progress(f"scoring: {result.model.path_}, verified against scikit-learn")

    if not args.no_mlflow:
        with progress.step("logging to MLflow"):
            from mlops.pipeline import tracking  # imported here: mlflow is slow to import

            X, _ = features_and_target(frame, contract)
            src = lineage.source(args.root)
            record = tracking.log_training(
                args.root,
                params.mlflow.experiment,
                params.mlflow.registered_model,
                pipeline=args.model,
                contract=contract,
                params={"train": params.train.model_dump(), "split": params.split.model_dump()},
                metrics={"train_loss": result.train_loss, "fit_seconds": fit_seconds},
                input_example=X.head(5),
                tags={
                    "git_commit": src.commit,
                    "git_dirty": str(src.dirty).lower(),
                    "git_diff_sha256": src.diff_sha256 or "",
                    "data_raw_md5": lineage.dvc_hash(args.root / "data" / "raw.dvc"),
                    "params_hash": params.digest(),
                    "task": contract.task,
                    tracking.MODEL_SHA_TAG: lineage.file_sha256(args.model),
                    **lineage.experiment_tags(),
                },
                artifacts=[args.curves / "loss.png"],
                pip_requirements=[f"{name}=={version(name)}" for name in RUNTIME_PACKAGES],
                register=register,
            )
        name = params.mlflow.registered_model
        registered = (
            f"model {name} v{record.model_version}"
            if record.model_version
            else f"not registered (only main in CI, or {lineage.REGISTER_ENV}=1; a deployment registers it)"
        )
        progress(f"MLflow run {record.run_id}, {registered} ({record.tracking_uri})")
    progress.done()
    return 0


if __name__ == "__main__":
    entry(main)
