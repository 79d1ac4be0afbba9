"""``mlops pr`` (dvc repro, the report, the gate) and ``mlops report`` (the report and gate only)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlops.commands.common import contract_arg, parser
from mlops.core import paths
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.release import repro


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    p = parser(name, description)
    p.add_argument("--base", default="main", help="git revision to compare with (default: %(default)s)")
    contract_arg(p)
    p.add_argument("--out", type=Path, default=paths.PR_REPORT, help="(default: %(default)s)")
    p.add_argument("--note", action="append", default=[], help="a line to show under the verdict (repeatable)")
    return p


def _report(args: argparse.Namespace, ran: repro.Repro | None) -> int:
    from mlops.release import report  # scikit-learn, DVC, matplotlib: see pr_main

    gates = load_params(args.params).gates
    failures = report.write(args.root, args.base, load_contract(args.contract), gates, args.out, ran, args.note)
    kb = sum(p.stat().st_size for p in args.out.parent.iterdir() if p.is_file()) / 1024
    print(f"report: {args.out} ({kb:.0f} KB with its pictures)")
    if failures:
        print(f"gate failed: {'; '.join(failures)}", file=sys.stderr)
        return 1
    print("gate passed")
    return 0


def report_main(argv: Sequence[str] | None = None) -> int:
    args = _parser("report", "write the PR report against --base and production; exit 1 if the gate fails").parse_args(
        argv
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return _report(args, None)


def pr_main(argv: Sequence[str] | None = None) -> int:
    args = _parser("pr", "what the PR workflow runs: dvc repro, the report, the gate").parse_args(argv)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(repro.run, args.root)  # `dvc repro` works in its own processes
        importlib.import_module("mlops.release.report")  # meanwhile its libraries load (about a second)

        result = running.result()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    return _report(args, result)
