"""Build the TorchServe model archive (models/<name>.mar) and record its version and sha256.

Before it builds anything, it checks the compiled scorer the archive will serve with against
scikit-learn on the monitoring reference (a sample of training rows): a difference stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mlops.core import paths
from mlops.core.artifacts import load_pipeline, read_json, write_json
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.progress import Progress
from mlops.core.task import task_of
from mlops.core.threads import native_threads
from mlops.pipeline.compiled import compile_pipeline, verify
from mlops.pipeline.datasets import read_table
from mlops.release.packaging import archive_info, build_archive
from mlops.stages import entry, parser


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("package", __doc__)
    p.add_argument("--model", type=Path, default=paths.PIPELINE)
    p.add_argument("--reference", type=Path, default=paths.REFERENCE)
    p.add_argument("--handler", type=Path, default=paths.HANDLER)
    p.add_argument("--metrics", type=Path, default=paths.METRICS)
    p.add_argument("--out", type=Path, default=paths.MODELS)
    p.add_argument("--record", type=Path, default=paths.PACKAGE)
    args = p.parse_args(argv)
    params = load_params(args.params)
    progress = Progress("package")
    contract = load_contract(args.contract)
    reference = read_table(args.reference)
    with progress.step("checking the compiled scorer against scikit-learn"), native_threads():
        model = compile_pipeline(load_pipeline(args.model), contract.features)
        checked = verify(model, contract.features, reference)
    progress(f"{checked:,} rows scored the same ({model.path_})")
    with progress.step("torch-model-archiver"):
        edges = task_of(contract).score_edges(reference["score"])
        archive, version = build_archive(args.model, args.contract, args.handler, params.serve, args.out, edges)
    metrics = {k: v for k, v in read_json(args.metrics).items() if isinstance(v, float)}
    info = archive_info(archive, version, params.serve.model_name, args.model, metrics)
    write_json(info.to_dict(), args.record)
    progress(f"{archive} version {version} sha256 {info.sha256[:16]}... ({archive.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    entry(main)
