"""The model archive (.mar): handler, fitted pipeline, contract, this package, model config.

Self-contained: the worker imports ``mlops`` from the archive itself and installs
nothing at load. The version is derived from the archive's content, so the same model,
contract and code always get the same version, and anything else gets another.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from mlops.config import ServeParams
from mlops.errors import UserError
from mlops.lineage import file_sha256

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ArchiveInfo:
    """What models/package.json records about an archive."""

    name: str
    version: str
    archive: str
    sha256: str
    model_sha256: str
    git_commit: str
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def model_config(params: ServeParams) -> dict[str, object]:
    """TorchServe's per-model config (model-config.yaml inside the archive)."""
    return {
        "minWorkers": params.workers,
        "maxWorkers": params.workers,
        "batchSize": params.batch_size,
        "maxBatchDelay": params.max_batch_delay_ms,
        "responseTimeout": params.response_timeout_s,
        "mlops": {"policy": {"max_rows": params.max_rows, "unknown_category": params.unknown_category}},
    }


def content_version(files: dict[str, bytes]) -> str:
    """A short hash over names and bytes: the archive's version."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:12]


def build_archive(
    pipeline: Path, contract: Path, handler: Path, params: ServeParams, out_dir: Path, edges: list[float] | None = None
) -> tuple[Path, str]:
    """Run torch-model-archiver; return the archive path and its content version."""
    for path in (pipeline, contract, handler):
        if not path.exists():
            raise UserError(f"{path}: not found (run `dvc repro` first)")
    config_text = yaml.safe_dump(model_config(params), sort_keys=True)
    files = {
        "pipeline.joblib": pipeline.read_bytes(),
        "contract.yaml": contract.read_bytes(),
        "handler.py": handler.read_bytes(),
        "model-config.yaml": config_text.encode(),
        "telemetry.json": json.dumps({"score_edges": edges or []}).encode(),
    }
    files.update({f"mlops/{p.relative_to(PACKAGE_DIR)}": p.read_bytes() for p in _package_files()})
    version = content_version(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "extra"
        for name, data in files.items():
            if name in ("handler.py", "model-config.yaml"):
                continue
            (extra / name).parent.mkdir(parents=True, exist_ok=True)
            (extra / name).write_bytes(data)
        config = Path(tmp) / "model-config.yaml"
        config.write_text(config_text)
        archiver = Path(sys.executable).with_name("torch-model-archiver")
        cmd = [
            str(archiver if archiver.exists() else "torch-model-archiver"),
            "--model-name", params.model_name,
            "--version", version,
            "--handler", str(handler),
            "--extra-files", str(extra),
            "--config-file", str(config),
            "--export-path", tmp,
            "--force",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"torch-model-archiver failed: {proc.stderr.strip() or proc.stdout.strip()}")
        target = out_dir / f"{params.model_name}.mar"
        shutil.move(str(Path(tmp) / f"{params.model_name}.mar"), target)
    return target, version


def archive_info(
    archive: Path, version: str, name: str, pipeline: Path, git_commit: str, metrics: dict[str, float]
) -> ArchiveInfo:
    return ArchiveInfo(
        name=name,
        version=version,
        archive=archive.name,
        sha256=file_sha256(archive),
        model_sha256=file_sha256(pipeline),
        git_commit=git_commit,
        metrics=metrics,
    )
