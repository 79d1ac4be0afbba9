"""``mlops monitor ENV``: latency, errors, predictions, missing values, drift, late-label metrics.

Exit codes: 0 healthy, 1 a threshold is breached, 2 the environment cannot be observed (the
server or its metrics API is down, the prediction log or the training reference cannot be read,
bad arguments). Only 1 means "act on the model"; 2 means "fix the monitoring".
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.commands.common import contract_arg, parser, site
from mlops.core import paths
from mlops.core.contract import load_contract
from mlops.core.errors import MlopsError
from mlops.monitoring import monitor as mon
from mlops.serving.torchserve import ENVIRONMENTS

CANNOT_OBSERVE = 2


def main(argv: Sequence[str] | None = None) -> int:
    p = parser(
        "monitor", "latency, errors, predictions, missing values, drift and late-label metrics of an environment"
    )
    p.add_argument("env", choices=ENVIRONMENTS)
    contract_arg(p)
    p.add_argument("--log-dir", help="prediction log: a folder or fsspec URL (default: the local server's)")
    p.add_argument(
        "--labels", default=str(paths.LABELS), help="late ground truth, CSVs of id + target: a folder or URL"
    )
    p.add_argument(
        "--metrics-url", help="the server's metrics API ('' for none; default: the environment's configuration)"
    )
    p.add_argument("--reference", type=Path, help="training reference (default: production's, via DVC at its tag)")
    p.add_argument("--lookback-hours", type=float, help="override monitor.lookback_hours")
    p.add_argument("--since", type=float, help="only predictions logged after this Unix time")
    p.add_argument("--out", type=Path, default=paths.MONITOR_REPORT)
    args = p.parse_args(argv)
    where = site(args, "monitor")
    if args.lookback_hours:
        monitor = where.params.monitor.model_copy(update={"lookback_hours": args.lookback_hours})
        where.params = where.params.model_copy(update={"monitor": monitor})
    try:
        contract = load_contract(args.contract)
        result = mon.monitor_environment(
            where, args.env, contract, args.log_dir, args.labels, args.reference, args.since, args.metrics_url
        )
    except MlopsError as e:  # bad input or a service down: either way nothing was observed
        print(f"error: cannot observe {args.env}: {e}", file=sys.stderr)
        return CANNOT_OBSERVE
    mon.write_report(result, args.out, where.params.monitor.psi_threshold)
    where.progress(f"{result.rows:,} logged predictions in {result.seconds:.1f}s -> {args.out}")
    if result.breaches:
        for b in result.breaches:
            print(f"BREACH {b}", file=sys.stderr)
        print(f"error: {len(result.breaches)} threshold(s) breached in {args.env}", file=sys.stderr)
        return 1
    where.progress("no threshold breached")
    return 0
