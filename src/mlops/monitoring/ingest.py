"""Ingestion: landed batches are validated one by one; valid ones join data/raw.

Batches land in a folder or any fsspec URL; invalid ones go to quarantine with the reasons.
Idempotent.

Every move is copy-then-delete with an atomic rename at the destination, so an
interrupted run loses nothing and half-copies nothing; running again finishes the job.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fsspec

from mlops.core.contract import Contract
from mlops.core.errors import UserError
from mlops.pipeline.datasets import read_batch
from mlops.pipeline.validation import Validator


@dataclass
class IngestResult:
    added: list[str] = field(default_factory=list)
    quarantined: dict[str, list[str]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)


def ingest(
    landing: str,
    raw_dir: Path,
    quarantine: Path,
    contract: Contract,
    progress: Callable[[str], None] = print,
    dvc_add: bool = True,
    cwd: Path | None = None,
) -> IngestResult:
    """Move every ``*.csv`` under ``landing`` into ``raw_dir`` (valid) or ``quarantine`` (not)."""
    try:
        fs, root = fsspec.core.url_to_fs(landing)
    except (ValueError, ImportError) as e:
        raise UserError(f"landing location {landing!r}: {e}") from None
    if not fs.exists(root):
        raise UserError(f"landing location {landing!r} does not exist")
    result = IngestResult()
    validator = Validator(contract)
    for source in sorted(fs.glob(f"{root.rstrip('/')}/*.csv")):
        name = Path(source).name
        data = fs.cat_file(source)
        target = raw_dir / name
        if target.exists():
            if target.read_bytes() == data:
                result.duplicates.append(name)  # delivered again, or a run interrupted after the copy
                fs.rm(source)
                continue
            reasons = [f"{target} already holds a different batch with this name; batches are immutable"]
        else:
            try:
                frame = read_batch(io.BytesIO(data), contract, label=name)
                reasons = [c.line() for c in validator.validate_frame(frame, name) if not c.success]
            except UserError as e:
                reasons = [str(e)]
        if reasons:
            _write_atomic(
                quarantine / f"{name}.reason.json", json.dumps({"batch": name, "reasons": reasons}, indent=2).encode()
            )
            _write_atomic(quarantine / name, data)
            result.quarantined[name] = reasons
            progress(f"quarantined {name}: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""))
        else:
            _write_atomic(target, data)
            result.added.append(name)
            progress(f"added {name} ({len(frame):,} rows)")
        fs.rm(source)
    if result.added and dvc_add:
        proc = subprocess.run(["dvc", "add", "-q", str(raw_dir)], capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            raise UserError(f"dvc add {raw_dir} failed: {proc.stderr.strip()}")
    return result
