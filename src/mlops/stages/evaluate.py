"""Score the trained pipeline on the holdout against a trivial baseline; write metrics and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops import figures, lineage
from mlops.artifacts import load_pipeline, write_csv, write_json
from mlops.config import load_params
from mlops.contract import load_contract
from mlops.datasets import read_table
from mlops.evaluation import evaluate
from mlops.progress import Progress
from mlops.stages import parser, run


def _main(argv: Sequence[str] | None = None) -> int:
    p = parser("evaluate", __doc__)
    p.add_argument("--split", type=Path, default=Path("data/split"))
    p.add_argument("--model", type=Path, default=Path("models/pipeline.joblib"))
    p.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    p.add_argument("--plots", type=Path, default=Path("reports/evaluate"), help="plot data and PNG directory")
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
        png = args.plots / f"{name}.png"
        if name == "confusion":
            figures.confusion(table, png)
        elif name == "roc":
            figures.curve(table, "fpr", "tpr", "ROC curve", png, diagonal=True)
        elif name == "prc":
            figures.curve(table, "recall", "precision", "Precision-recall curve", png)
        elif name == "importance":
            figures.importance(table, png)
        elif name == "predictions":
            figures.predicted_vs_actual(table, png)
        pictures.append(png)

    m = result.metrics
    headline = ", ".join(f"{k} {m[k]:.4f}" for k in ("roc_auc", "f1", "accuracy", "rmse", "r2") if k in m)
    base = ", ".join(f"{k} {v:.4f}" for k, v in m["baseline"].items() if k in ("accuracy", "rmse", "roc_auc"))
    progress(f"holdout: {headline} (baseline: {base}) -> {args.metrics}")

    if not args.no_mlflow:
        from mlops import tracking

        flat = {k: v for k, v in m.items() if isinstance(v, float)}
        flat.update({f"baseline_{k}": v for k, v in m["baseline"].items()})
        run_id = tracking.log_evaluation(
            args.root, params.mlflow.experiment, lineage.file_sha256(args.model), flat, pictures
        )
        progress(f"metrics added to MLflow run {run_id}" if run_id else "no MLflow run for this model here; not logged")
    progress.done()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
