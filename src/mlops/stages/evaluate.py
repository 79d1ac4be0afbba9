"""Score the trained pipeline on the holdout against a trivial baseline; write metrics and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops.core import lineage, paths
from mlops.core.artifacts import load_pipeline, write_csv, write_json
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.progress import Progress
from mlops.core.task import task_of
from mlops.pipeline import figures
from mlops.pipeline.datasets import read_table
from mlops.pipeline.evaluation import evaluate
from mlops.stages import entry, parser


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("evaluate", __doc__)
    p.add_argument("--split", type=Path, default=paths.SPLIT)
    p.add_argument("--model", type=Path, default=paths.PIPELINE)
    p.add_argument("--metrics", type=Path, default=paths.METRICS)
    p.add_argument("--plots", type=Path, default=paths.EVALUATE_PLOTS, help="plot data and PNG directory")
    p.add_argument("--root", type=Path, default=Path())
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)
    params = load_params(args.params)
    contract = load_contract(args.contract)
    progress = Progress("evaluate")

    pipeline = load_pipeline(args.model)
    train, holdout = read_table(args.split / "train.parquet"), read_table(args.split / "holdout.parquet")
    with progress.step(f"scoring {len(holdout):,} holdout rows"):
        result = evaluate(pipeline, train, holdout, contract, params.evaluate, params.train.seed)
    write_json(result.metrics, args.metrics)
    pictures = []
    for name, table in result.tables.items():
        write_csv(table, args.plots / f"{name}.csv")
        figures.PLOTS[name](table, args.plots / f"{name}.png")
        pictures.append(args.plots / f"{name}.png")
    m = result.metrics
    task = task_of(contract)
    headline = ", ".join(f"{k} {m[k]:.4f}" for k in task.metric_names[:3])
    base = ", ".join(f"{k} {m['baseline'][k]:.4f}" for k in task.metric_names[:3] if k in m["baseline"])
    progress(f"holdout: {headline} (baseline: {base}) -> {args.metrics}")

    if not args.no_mlflow:
        from mlops.pipeline import tracking

        flat = {k: v for k, v in m.items() if isinstance(v, float)}
        flat.update({f"baseline_{k}": v for k, v in m["baseline"].items()})
        run_id = tracking.log_evaluation(
            args.root, params.mlflow.experiment, lineage.file_sha256(args.model), flat, pictures
        )
        progress(f"metrics added to MLflow run {run_id}" if run_id else "no MLflow run for this model here; not logged")
    progress.done()
    return 0


if __name__ == "__main__":
    entry(main)
