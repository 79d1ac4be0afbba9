"""``mlops ingest``: validate landed batches; add valid ones to data/raw, quarantine the rest."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mlops.core import paths
from mlops.core.contract import load_contract
from mlops.core.progress import Progress
from mlops.monitoring.ingest import ingest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlops ingest", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--landing", default=str(paths.LANDING), help="a folder or fsspec URL, e.g. s3://bucket/landing")
    p.add_argument("--raw", type=Path, default=paths.RAW)
    p.add_argument("--quarantine", type=Path, default=paths.QUARANTINE)
    p.add_argument("--contract", type=Path, default=paths.CONTRACT)
    p.add_argument("--no-dvc", action="store_true", help="do not `dvc add` data/raw afterwards")
    args = p.parse_args(argv)
    progress = Progress("ingest")
    result = ingest(args.landing, args.raw, args.quarantine, load_contract(args.contract), progress, not args.no_dvc)
    finished = f"; finished an interrupted run that added {len(result.finished)}" if result.finished else ""
    progress(
        f"{len(result.added)} added, {len(result.quarantined)} quarantined in {args.quarantine}, "
        f"{len(result.duplicates)} already present, {len(result.skipped)} left unread in the landing place" + finished
    )
    return 0
