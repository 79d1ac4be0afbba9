"""``mlops bench ENV``: served load at 1/4/16 concurrent 1-row clients, 100-row requests, in-process."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mlops.commands.common import contract_arg, parser, site
from mlops.core import paths
from mlops.core.artifacts import load_pipeline
from mlops.core.contract import load_contract
from mlops.pipeline.datasets import read_table
from mlops.serving import bench
from mlops.serving.inference import Predictor
from mlops.serving.torchserve import ENVIRONMENTS


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("bench", "serving benchmark: 1-row requests at concurrency 1/4/16, 100-row requests, in-process")
    p.add_argument("env", choices=ENVIRONMENTS)
    p.add_argument("--seconds", type=float, default=8.0, help="per load level (default: %(default)s)")
    contract_arg(p)
    p.add_argument("--model", type=Path, default=paths.PIPELINE)
    p.add_argument("--holdout", type=Path, default=paths.HOLDOUT)
    p.add_argument("--out", type=Path, default=paths.BENCH)
    args = p.parse_args(argv)
    where = site(args, "bench")
    contract = load_contract(args.contract)
    rows = bench.sample_rows(read_table(args.holdout), contract.features)
    endpoint = where.endpoint(args.env, start=False)
    report = {
        "environment": args.env,
        "served": bench.served(endpoint, where.name, rows, args.seconds, where.progress),
        "in_process": bench.in_process(Predictor(load_pipeline(args.model), contract, "bench"), rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(bench.table(report))
    print(f"-> {args.out}")
    return 0
