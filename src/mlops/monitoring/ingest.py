"""Ingestion: landed batches are validated one by one; valid ones join data/raw.

Batches land in a folder or any fsspec URL. Only regular files with safe names are read
(``2025-07.csv``; no symlink, no hidden or dash-led name, no path characters); anything else
is left where it is and reported. A batch is identified by its content (sha256) whatever its
name: the same bytes under another name are a duplicate. Ids must be unique across every batch
(the new one and all of data/raw). Invalid batches go to quarantine under a content-addressed
name (``<sha256 prefix>-<name>``) beside a reason file, so nothing there is ever overwritten.

A run is a transaction. Valid batches are copied into data/raw under a journal
(``data/.raw.ingest.json``, written before the first copy), then ``dvc add`` runs, and only
then are the landed files deleted and the journal removed. If ``dvc add`` fails, the copies
are removed again and the batches stay in landing. If the run is killed, the next run finds
the journal and finishes it first. Either a batch is in data/raw with data/raw.dvc updated,
or it is still where it landed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from mlops.core.contract import Contract
from mlops.core.errors import ServiceError, UserError
from mlops.pipeline.datasets import read_batch
from mlops.pipeline.validation import Validator, id_values

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\.csv")


@dataclass
class IngestResult:
    """What a run did: batches added, quarantined (with reasons), dropped as duplicates, left alone."""

    added: list[str] = field(default_factory=list)
    quarantined: dict[str, list[str]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # left in landing, unread: why
    finished: list[str] = field(default_factory=list)  # added by an interrupted run, finished by this one


def _shown(name: str) -> str:
    return repr(name) if len(name) <= 80 else f"{name[:80]!r}... ({len(name):,} characters)"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, and durably (a crash right after finds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- what may be read from landing -------------------------------------------------------------


@dataclass(frozen=True)
class Landed:
    """A landed file that may be read: its name and where it is."""

    name: str
    path: str


def _entries(fs: Any, root: str, result: IngestResult, progress: Callable[[str], None]) -> list[Landed]:
    """The ``*.csv`` regular files with safe names directly under ``root``; the rest is reported."""
    out = []
    for info in sorted(fs.ls(root, detail=True), key=lambda i: str(i["name"])):
        name = Path(str(info["name"])).name
        if not name.endswith(".csv"):
            continue  # not a batch: not ours to judge
        reason = None
        if info.get("islink"):
            reason = "a symbolic link (only regular files are read)"
        elif info.get("type") != "file":
            reason = f"not a regular file ({info.get('type')})"
        elif not SAFE_NAME.fullmatch(name):
            reason = "not a safe batch name (letters, digits, '_', '.', '-'; not starting with '.' or '-')"
        if reason:
            result.skipped[name] = reason
            progress(f"skipped {_shown(name)}: {reason}; left in the landing place")
            continue
        out.append(Landed(name, str(info["name"])))
    return out


def _read(fs: Any, entry: Landed) -> bytes | None:
    """The bytes of a landed regular file, never through a symlink (None if it is not one now)."""
    if not isinstance(fs, LocalFileSystem):
        data: bytes = fs.cat_file(entry.path)
        return data
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # replaced by a symlink, or gone, since it was listed
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


# ---- the journal ----------------------------------------------------------------------------------


class Journal:
    """The batches a run copied into data/raw and has yet to commit (``dvc add``, clean landing)."""

    def __init__(self, raw_dir: Path):
        self.path = raw_dir.parent / f".{raw_dir.name}.ingest.json"
        self.landing = ""
        self.dvc_add = True
        self.added: list[dict[str, str]] = []

    def load(self) -> bool:
        """Read an interrupted run's journal; False when there is none."""
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return False
        except (json.JSONDecodeError, OSError) as e:
            raise UserError(f"{self.path}: unreadable ingest journal ({e}); inspect it, then remove it") from None
        self.landing, self.dvc_add, self.added = state["landing"], state["dvc_add"], state["added"]
        return True

    def save(self) -> None:
        """Write the journal durably (before the copy it announces)."""
        state = {"landing": self.landing, "dvc_add": self.dvc_add, "added": self.added}
        _write_atomic(self.path, json.dumps(state, indent=2).encode())

    def remove(self) -> None:
        """The run is committed (or rolled back): no journal."""
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def _exclusive(raw_dir: Path) -> Iterator[None]:
    """One ingest at a time per data/raw."""
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    with (raw_dir.parent / f".{raw_dir.name}.ingest.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another ingest into {raw_dir} is running; try again when it is done") from None
        yield


def _commit(journal: Journal, fs: Any, raw_dir: Path, cwd: Path | None) -> None:
    """``dvc add`` data/raw, then delete the landed originals; on a DVC failure, undo the copies."""
    if journal.dvc_add:
        proc = subprocess.run(["dvc", "add", str(raw_dir)], capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            for entry in journal.added:  # the original is still in landing: nothing is lost
                if fs.exists(entry["source"]):
                    (raw_dir / entry["name"]).unlink(missing_ok=True)
            journal.remove()
            raise ServiceError(
                f"dvc add {raw_dir} failed: {(proc.stderr or proc.stdout).strip()[-500:]}\n"
                "The batches stay in the landing place; fix DVC (`dvc doctor`) and run the ingest again."
            )
    for entry in journal.added:
        if fs.exists(entry["source"]):
            fs.rm(entry["source"])
    journal.remove()


def _finish(
    journal: Journal, raw_dir: Path, cwd: Path | None, result: IngestResult, say: Callable[[str], None]
) -> None:
    """Complete an interrupted run from its journal: every copy in place, ``dvc add``, clean landing."""
    fs, _ = fsspec.core.url_to_fs(journal.landing)
    for entry in journal.added:
        target = raw_dir / entry["name"]
        if target.exists() and _sha256(target.read_bytes()) == entry["sha256"]:
            continue
        data = _read(fs, Landed(entry["name"], entry["source"])) if fs.exists(entry["source"]) else None
        if data is None or _sha256(data) != entry["sha256"]:
            raise UserError(
                f"{journal.path}: {entry['name']} is neither in {raw_dir} nor unchanged in the landing place; "
                "inspect both, then remove the journal"
            )
        _write_atomic(target, data)
    say(f"finishing an interrupted ingest: {', '.join(e['name'] for e in journal.added)}")
    _commit(journal, fs, raw_dir, cwd)
    result.finished = [e["name"] for e in journal.added]


# ---- the run -------------------------------------------------------------------------------------


def _raw_state(raw_dir: Path, contract: Contract) -> tuple[dict[str, str], pd.Series]:
    """The batches already in data/raw by content hash, and all their ids."""
    hashes: dict[str, str] = {}
    ids = []
    if raw_dir.is_dir():
        for path in sorted(raw_dir.glob("*.csv")):
            if path.is_file() and not path.is_symlink():
                hashes[_sha256(path.read_bytes())] = path.name
                with contextlib.suppress(UserError):
                    ids.append(id_values(read_batch(path, contract), contract))
    return hashes, (pd.concat(ids, ignore_index=True) if ids else pd.Series([], dtype=object))


def _quarantine(quarantine: Path, name: str, sha: str, data: bytes, reasons: list[str]) -> Path:
    """Content-addressed: two different batches of the same name never overwrite each other."""
    target = quarantine / f"{sha[:16]}-{name}"
    if not target.exists():
        reason = {"batch": name, "sha256": sha, "reasons": reasons}
        _write_atomic(target.with_name(f"{target.name}.reason.json"), json.dumps(reason, indent=2).encode())
        _write_atomic(target, data)
    return target


def ingest(
    landing: str,
    raw_dir: Path,
    quarantine: Path,
    contract: Contract,
    progress: Callable[[str], None] = print,
    dvc_add: bool = True,
    cwd: Path | None = None,
) -> IngestResult:
    """Move every safe ``*.csv`` under ``landing`` into ``raw_dir`` (valid) or ``quarantine`` (not)."""
    try:
        fs, root = fsspec.core.url_to_fs(landing)
    except (ValueError, ImportError) as e:
        raise UserError(f"landing location {landing!r}: {e}") from None
    if not fs.exists(root):
        raise UserError(f"landing location {landing!r} does not exist")
    result = IngestResult()
    with _exclusive(raw_dir):
        journal = Journal(raw_dir)
        if journal.load():
            _finish(journal, raw_dir, cwd, result, progress)
        journal = Journal(raw_dir)
        journal.landing, journal.dvc_add = landing, dvc_add
        validator = Validator(contract)
        hashes, ids = _raw_state(raw_dir, contract)
        for entry in _entries(fs, root, result, progress):
            data = _read(fs, entry)
            if data is None:
                result.skipped[entry.name] = "not a regular file when read"
                progress(f"skipped {_shown(entry.name)}: not a regular file when read; left in the landing place")
                continue
            sha = _sha256(data)
            if sha in hashes:  # delivered again, under this name or another
                result.duplicates.append(entry.name)
                progress(f"{entry.name}: the same bytes as {raw_dir / hashes[sha]}; dropped from the landing place")
                fs.rm(entry.path)
                continue
            target = raw_dir / entry.name
            frame, together = None, ids
            if target.exists():
                reasons = [f"{target} already holds a different batch with this name; batches are immutable"]
            else:
                try:
                    frame = read_batch(io.BytesIO(data), contract, label=entry.name)
                    checks = validator.validate_frame(frame, entry.name)
                    together = pd.concat([ids, id_values(frame, contract)], ignore_index=True)
                    checks += validator.validate_ids(together, f"{entry.name} with {raw_dir}")
                    reasons = [c.line() for c in checks if not c.success]
                except UserError as e:
                    reasons = [str(e)]
            if reasons or frame is None:
                where = _quarantine(quarantine, entry.name, sha, data, reasons)
                fs.rm(entry.path)
                result.quarantined[entry.name] = reasons
                more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
                progress(f"quarantined {entry.name} as {where.name}: {reasons[0]}{more}")
                continue
            journal.added.append({"name": entry.name, "sha256": sha, "source": entry.path})
            journal.save()  # before the copy: a crash after it finds the journal
            _write_atomic(target, data)
            hashes[sha] = entry.name
            ids = together
            result.added.append(entry.name)
            progress(f"added {entry.name} ({len(frame):,} rows)")
        if journal.added:
            _commit(journal, fs, raw_dir, cwd)
    return result
