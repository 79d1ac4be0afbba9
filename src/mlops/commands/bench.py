"""``mlops bench ENV``: the serving targets, TorchServe under load, `mlflow models serve`, in-process."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from mlops.commands.common import contract_arg, parser, site
from mlops.core import paths
from mlops.core.artifacts import load_pipeline
from mlops.core.contract import load_contract
from mlops.core.threads import native_threads
from mlops.pipeline.datasets import read_table
from mlops.serving import bench, loadgen
from mlops.serving.inference import Predictor
from mlops.serving.torchserve import ENVIRONMENTS


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("bench", "serving benchmark: targets, TorchServe load levels, mlflow models serve, in-process")
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--seconds", type=float, default=8.0, help="per load level (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="runs per load level; the best is kept (default: 1)")
    contract_arg(p)
    p.add_argument("--model", type=Path, default=paths.PIPELINE)
    p.add_argument("--holdout", type=Path, default=paths.HOLDOUT)
    p.add_argument("--out", type=Path, default=paths.BENCH)
    p.add_argument("--doc", type=Path, default=Path("docs/serving.md"), help="page whose benchmark table to rewrite")
    p.add_argument(
        "--mlflow-model", help="model URI for `mlflow models serve` (default: the registered model's ENV alias)"
    )
    p.add_argument("--no-mlflow", action="store_true", help="skip the `mlflow models serve` comparison")
    args = p.parse_args(argv)
    where = site(args, "bench")
    contract = load_contract(args.contract)
    rows = bench.sample_rows(read_table(args.holdout), contract.features)
    endpoint = where.endpoint(args.env, start=False)
    wrk = loadgen.wrk_path()
    report: dict[str, object] = {
        "time": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}",
        "load_generator": "wrk" if wrk else "locust (wrk is not installed: throughput is the load generator's)",
        "load_average": round(os.getloadavg()[0], 1),
        "environment": args.env,
    }
    with native_threads():
        predictor = Predictor(load_pipeline(args.model), contract, "bench")
        report["in_process"] = bench.in_process(predictor, rows)
    where.progress(f"in-process ({predictor.model.path_ if predictor.model else 'no model'}): "
                   f"{json.dumps(report['in_process'])}")  # fmt: skip
    report["served"] = bench.served(endpoint, where.name, rows, args.seconds, where.progress, args.repeat)
    if not args.no_mlflow:
        uri = args.mlflow_model or f"models:/{where.params.mlflow.registered_model}@{args.env}"
        report["mlflow"] = bench.mlflow_served(
            uri, paths.mlflow_tracking_uri(args.root), rows, args.seconds, where.progress, args.repeat
        )
    report["targets"] = bench.summary(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(bench.table(report))
    print(f"-> {args.out}")
    if bench.write_doc(args.doc, bench.markdown(report)):
        print(f"-> {args.doc} (benchmark table)")
    return 0
