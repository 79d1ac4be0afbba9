"""The model archive (.mar): handler, fitted pipeline, contract, the package code it needs, model config.

Self-contained: the worker imports ``mlops`` from the archive itself and installs nothing at
load. Only the handler's import closure and the modules of the pipeline's pickled classes go
in, so editing the report or the deploy code does not make a new model version. The version
is derived from the archive's content: the same model, contract and code always get the same
version, and anything else gets another.

Byte-reproducible: torch-model-archiver lays the files out and writes the manifest, and the
zip is written here with sorted entries, one fixed timestamp (``SOURCE_DATE_EPOCH``, else the
zip format's epoch), fixed permissions, no compression (deflate output depends on the zlib
build) and a manifest whose ``createdOn`` is that same fixed time. The same inputs give the
same bytes, and so the same sha256, on any machine.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import yaml

from mlops.core.config import ServeParams
from mlops.core.errors import UserError
from mlops.core.lineage import file_sha256

PACKAGE_DIR = Path(__file__).resolve().parents[1]
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z: the earliest time a zip entry can hold
MANIFEST = "MAR-INF/MANIFEST.json"


@dataclass(frozen=True)
class ArchiveInfo:
    """What models/package.json records about an archive.

    Only facts of the archive itself: the record changes exactly when the archive does (the
    commit a deployment comes from is recorded by the deployment, not here).
    """

    name: str
    version: str
    archive: str
    sha256: str
    model_sha256: str
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        """The record as written to ``models/package.json``."""
        return asdict(self)


def _module_file(module: str) -> Path | None:
    """The source file of an ``mlops`` module (a package's ``__init__.py``), if it exists."""
    base = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(source: Path) -> set[str]:
    """Every ``mlops`` module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mlops"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlops":
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if _module_file(f"{node.module}.{a.name}")}
    return found


def import_closure(entries: list[Path], modules: frozenset[str] | set[str] = frozenset()) -> list[Path]:
    """The ``mlops`` source files that ``entries`` (files) and ``modules`` need, transitively.

    Every enclosing package's ``__init__.py`` is included: this is what a served model imports.
    """
    todo = set(modules)
    for entry in entries:
        todo |= _imported_modules(entry)
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # a module imports its packages first
            name = ".".join(parts[:i])
            if name in seen:
                continue
            seen.add(name)
            path = _module_file(name)
            if path is not None:
                files.add(path)
                todo |= _imported_modules(path)
    return sorted(files)


def pickled_modules(pipeline: object) -> set[str]:
    """The ``mlops`` modules whose classes a fitted pipeline holds (unpickling imports them)."""
    objects = [pipeline]
    get_params = getattr(pipeline, "get_params", None)
    if get_params is not None:
        objects += list(get_params(deep=True).values())
    return {type(o).__module__ for o in objects if type(o).__module__.split(".")[0] == "mlops"}


def serving_files(handler: Path, pipeline: object) -> list[Path]:
    """The package files the archive carries: the handler's import closure and the model's classes."""
    return import_closure([handler], pickled_modules(pipeline))


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


def archive_files(
    pipeline: Path, contract: Path, handler: Path, params: ServeParams, edges: list[float] | None = None
) -> dict[str, bytes]:
    """Every file the archive holds, by name: model, contract, handler, configs, the code it needs."""
    for path in (pipeline, contract, handler):
        if not path.exists():
            raise UserError(f"{path}: not found (run `dvc repro` first)")
    files = {
        "pipeline.joblib": pipeline.read_bytes(),
        "contract.yaml": contract.read_bytes(),
        "handler.py": handler.read_bytes(),
        "model-config.yaml": yaml.safe_dump(model_config(params), sort_keys=True).encode(),
        "telemetry.json": json.dumps({"score_edges": edges or []}).encode(),
    }
    model = joblib.load(pipeline)
    files.update({f"mlops/{p.relative_to(PACKAGE_DIR)}": p.read_bytes() for p in serving_files(handler, model)})
    return files


def build_time() -> int:
    """The archive's timestamp: ``SOURCE_DATE_EPOCH`` when set (reproducible-builds.org), else 1980-01-01.

    Not the commit time: the archive is built before its inputs are committed (PR CI runs
    ``dvc repro`` and then the lock is committed), so a commit time would differ between that
    build and any rebuild of the same inputs.
    """
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or not raw.strip():
        return ZIP_EPOCH
    try:
        value = int(raw)
    except ValueError:
        raise UserError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds, got {raw[:80]!r} ({len(raw)} characters)"
        ) from None
    return max(value, ZIP_EPOCH)


def reproducible_zip(tree: Path, target: Path, when: int) -> None:
    """Zip every file under ``tree`` into ``target``: sorted names, one timestamp, mode 644, stored.

    The manifest's ``createdOn`` (torch-model-archiver writes the wall clock) becomes ``when``.
    Written to a temporary name and renamed, so ``target`` is never half-written.
    """
    date_time = time.gmtime(when)[:6]
    manifest = tree / MANIFEST
    if manifest.exists():
        data = json.loads(manifest.read_text())
        data["createdOn"] = time.strftime("%d/%m/%Y %H:%M:%S", time.gmtime(when))
        manifest.write_text(json.dumps(data, indent=2))
    files = sorted((p.relative_to(tree).as_posix(), p) for p in tree.rglob("*") if p.is_file())
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(partial, "w") as z:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, so the mode below is read as one
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            z.writestr(info, path.read_bytes())
    partial.replace(target)


def build_archive(
    pipeline: Path, contract: Path, handler: Path, params: ServeParams, out_dir: Path, edges: list[float] | None = None
) -> tuple[Path, str]:
    """Lay the archive out with torch-model-archiver, zip it reproducibly; return its path and version."""
    files = archive_files(pipeline, contract, handler, params, edges)
    config_text = files["model-config.yaml"].decode()
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
        export = Path(tmp) / "export"
        export.mkdir()
        archiver = Path(sys.executable).with_name("torch-model-archiver")
        cmd = [
            str(archiver if archiver.exists() else "torch-model-archiver"),
            "--model-name", params.model_name,
            "--version", version,
            "--handler", str(handler),
            "--extra-files", str(extra),
            "--config-file", str(config),
            "--export-path", str(export),
            "--archive-format", "no-archive",
            "--force",
        ]  # fmt: skip
        # the archiver stages files in $TMPDIR/<model name>: a private TMPDIR keeps two builds apart
        env = dict(os.environ, TMPDIR=tmp)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise UserError(f"torch-model-archiver failed: {proc.stderr.strip() or proc.stdout.strip()}")
        target = out_dir / f"{params.model_name}.mar"
        reproducible_zip(export / params.model_name, target, build_time())
    return target, version


def archive_info(archive: Path, version: str, name: str, pipeline: Path, metrics: dict[str, float]) -> ArchiveInfo:
    """The record of a built archive: name, version, sha256s and metrics."""
    return ArchiveInfo(
        name=name,
        version=version,
        archive=archive.name,
        sha256=file_sha256(archive),
        model_sha256=file_sha256(pipeline),
        metrics=metrics,
    )
