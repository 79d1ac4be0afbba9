"""The model archive (.mar): handler, fitted pipeline, contract, the package code it needs, model config.

Self-contained: the worker imports ``mlops`` from the archive itself and installs nothing at
load. Only the handler's import closure and the modules of the pipeline's pickled classes go
in, so editing the report or the deploy code does not make a new model version. The version
is derived from the archive's content: the same model, contract and code always get the same
version, and anything else gets another.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import yaml

from mlops.core.config import ServeParams
from mlops.core.errors import UserError
from mlops.core.lineage import file_sha256

PACKAGE_DIR = Path(__file__).resolve().parents[1]


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
    dirty: bool = False  # built from uncommitted changes to git_commit
    diff_sha256: str | None = None

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


def build_archive(
    pipeline: Path, contract: Path, handler: Path, params: ServeParams, out_dir: Path, edges: list[float] | None = None
) -> tuple[Path, str]:
    """Run torch-model-archiver; return the archive path and its content version."""
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
    archive: Path,
    version: str,
    name: str,
    pipeline: Path,
    git_commit: str,
    metrics: dict[str, float],
    dirty: bool = False,
    diff_sha256: str | None = None,
) -> ArchiveInfo:
    """The record of a built archive: name, version, sha256s, build commit (and its uncommitted diff), metrics."""
    return ArchiveInfo(
        name=name,
        version=version,
        archive=archive.name,
        sha256=file_sha256(archive),
        model_sha256=file_sha256(pipeline),
        git_commit=git_commit,
        metrics=metrics,
        dirty=dirty,
        diff_sha256=diff_sha256,
    )
