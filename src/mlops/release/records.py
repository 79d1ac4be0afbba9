"""Deployment records: a ledger per environment, and annotated git tags for production.

Git is the source of truth for production: every promotion and rollback adds a tag
``model/production/<n>`` (history is append-only). The ledger (``deployments.jsonl`` in
the environment's runtime directory) records every deployment with its checks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.core.lineage import git

PRODUCTION_TAG = "model/production/"


@dataclass
class Deployment:
    """One ledger entry: what moved where, with which checks and records."""

    environment: str
    action: str  # deploy | promote | rollback | rejected
    version: str
    sha256: str
    model_sha256: str
    git_commit: str
    metrics: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    mlflow_run: str | None = None
    mlflow_version: str | None = None
    dirty: bool = False  # built from uncommitted changes to git_commit (see diff_sha256)
    diff_sha256: str | None = None
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The entry as one JSON object."""
        return asdict(self)


class Ledger:
    """An environment's append-only deployment history (JSON lines)."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, entry: Deployment) -> None:
        """Add one entry at the end."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")

    def entries(self) -> list[Deployment]:
        """Every entry, oldest first."""
        if not self.path.exists():
            return []
        return [Deployment(**json.loads(line)) for line in self.path.read_text().splitlines() if line.strip()]

    def latest(self, version: str) -> Deployment | None:
        """The newest successful record of a version."""
        found = [e for e in self.entries() if e.version == version and e.action != "rejected"]
        return found[-1] if found else None

    def passed(self, sha256: str) -> bool:
        """True when an archive with this sha256 was deployed or promoted here."""
        return any(e.sha256 == sha256 and e.action in ("deploy", "promote") for e in self.entries())

    def previous(self, current: str, registered: set[str]) -> str | None:
        """The newest version served before ``current`` that the server still has."""
        for e in reversed(self.entries()):
            if e.action != "rejected" and e.version != current and e.version in registered:
                return e.version
        return None


def production_tags(root: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """(n, tag, record) for every production tag, oldest first.

    A tag points at the commit checked out when production changed (main, in CD): its
    dvc.lock names the model production serves, so `dvc.api.open(..., rev=tag)` fetches it.
    """
    out = git(root, "tag", "-l", f"{PRODUCTION_TAG}*", "--format=%(refname:short)%00%(contents)%00", check=False)
    tags = []
    for chunk in out.stdout.split("\0\n"):
        if "\0" not in chunk:
            continue
        name, _, message = chunk.partition("\0")
        try:
            n = int(name.strip().removeprefix(PRODUCTION_TAG))
            record = json.loads(message[message.index("{") :])
        except (ValueError, json.JSONDecodeError):
            continue
        tags.append((n, name.strip(), record))
    return sorted(tags)


def production_record(root: Path) -> tuple[str, dict[str, Any]] | None:
    """The newest production tag and its record, or None before the first promotion."""
    tags = production_tags(root)
    return (tags[-1][1], tags[-1][2]) if tags else None


def read_at(root: Path, rev: str, path: Path) -> bytes:
    """A DVC-tracked (or git) file's bytes as of ``rev``, fetched by DVC from cache or remote."""
    import dvc.api  # slow to import; only the report and the monitor need it

    with dvc.api.open(str(path), repo=str(root), rev=rev, mode="rb") as f:
        data: bytes = f.read()
    return data


def add_production_tag(root: Path, summary: str, record: dict[str, Any]) -> str:
    """Tag HEAD (the deployed checkout) with the record; the archive's own commit is in the record."""
    existing = production_tags(root)
    name = f"{PRODUCTION_TAG}{existing[-1][0] + 1 if existing else 1}"
    message = f"{summary}\n\n{json.dumps(record, indent=2, sort_keys=True)}\n"
    git(root, "tag", "-a", name, "-m", message, "HEAD")
    return name


def tag_commit(root: Path, tag: str) -> str:
    """The commit a tag points at."""
    return git(root, "rev-list", "-n", "1", tag).stdout.strip()


def commit_exists(root: Path, commit: str) -> bool:
    """True when the repository has this commit."""
    return git(root, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def descends_from(root: Path, ancestor: str, commit: str) -> bool:
    """True when ``commit`` has ``ancestor`` in its history (or is it)."""
    return git(root, "merge-base", "--is-ancestor", ancestor, commit, check=False).returncode == 0
