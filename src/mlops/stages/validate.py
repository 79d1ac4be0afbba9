"""Validate the raw batches against the data contract with Great Expectations."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mlops.core import paths
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.errors import UserError
from mlops.core.progress import Progress
from mlops.pipeline.validation import validate_dir
from mlops.stages import entry, parser


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("validate", __doc__)
    p.add_argument("--raw", type=Path, default=paths.RAW, help="batch directory (default: %(default)s)")
    p.add_argument("--report", type=Path, default=paths.VALIDATION, help="(default: %(default)s)")
    args = p.parse_args(argv)
    load_params(args.params)  # a broken params.yaml fails here, before any work
    contract = load_contract(args.contract)
    progress = Progress("validate")
    report = validate_dir(args.raw, contract, progress)
    if not report.checks:
        raise UserError("the suite evaluated zero expectations; refusing to call that a pass")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    rows = sum(report.rows.values())
    if not report.success:
        for check in report.failures:
            print(f"FAILED {check.line()}", file=sys.stderr)
        print(
            f"error: {len(report.failures)} of {len(report.checks)} expectations failed on {rows:,} rows; "
            f"details in {args.report}",
            file=sys.stderr,
        )
        return 1
    progress(f"all {len(report.checks)} expectations passed on {rows:,} rows in {len(report.rows)} batches")
    progress.done()
    return 0


if __name__ == "__main__":
    entry(main)
