"""Build the TorchServe model archive (models/<name>.mar) and record its version and sha256."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops import lineage
from mlops.artifacts import read_json, write_json
from mlops.config import load_params
from mlops.contract import load_contract
from mlops.datasets import read_table
from mlops.packaging import archive_info, build_archive
from mlops.progress import Progress
from mlops.stages import parser, run
from mlops.training import score_edges


def _main(argv: Sequence[str] | None = None) -> int:
    p = parser("package", __doc__)
    p.add_argument("--model", type=Path, default=Path("models/pipeline.joblib"))
    p.add_argument("--reference", type=Path, default=Path("models/reference.parquet"))
    p.add_argument("--handler", type=Path, default=Path("serve/handler.py"))
    p.add_argument("--metrics", type=Path, default=Path("reports/metrics.json"))
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument("--record", type=Path, default=Path("models/package.json"))
    p.add_argument("--root", type=Path, default=Path())
    args = p.parse_args(argv)
    params = load_params(args.params)
    progress = Progress("package")
    with progress.step("torch-model-archiver"):
        edges = score_edges(read_table(args.reference), load_contract(args.contract).task)
        archive, version = build_archive(args.model, Path(args.contract), args.handler, params.serve, args.out, edges)
    metrics = {k: v for k, v in read_json(args.metrics).items() if isinstance(v, float)}
    info = archive_info(archive, version, params.serve.model_name, args.model, lineage.git_commit(args.root), metrics)
    write_json(info.to_dict(), args.record)
    progress(f"{archive} version {version} sha256 {info.sha256[:16]}... ({archive.stat().st_size / 1e6:.1f} MB)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
