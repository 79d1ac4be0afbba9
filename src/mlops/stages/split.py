"""Split the validated raw data into train and holdout tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops.core import paths
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.progress import Progress
from mlops.pipeline.datasets import read_raw, write_table
from mlops.pipeline.splitting import periods, split
from mlops.stages import entry, parser


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("split", __doc__)
    p.add_argument("--raw", type=Path, default=paths.RAW)
    p.add_argument("--out", type=Path, default=paths.SPLIT, help="output directory (default: %(default)s)")
    args = p.parse_args(argv)
    params = load_params(args.params)
    contract = load_contract(args.contract)
    progress = Progress("split")
    frame = read_raw(args.raw, contract)
    train, holdout = split(frame, contract, params.split)
    write_table(train, args.out / "train.parquet")
    write_table(holdout, args.out / "holdout.parquet")
    how = "random"
    if params.split.method == "time" and contract.time:
        held = periods(holdout, contract)
        shown = ", ".join(held) if len(held) <= 4 else f"{held[0]} ... {held[-1]}"
        how = f"latest {len(held)} period(s) of '{contract.time}': {shown}"
    progress(f"{len(train):,} train rows, {len(holdout):,} holdout rows ({how}) -> {args.out}")
    return 0


if __name__ == "__main__":
    entry(main)
