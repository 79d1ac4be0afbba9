"""Deployment records: a ledger per environment, and GTO tags in git for what each stage serves.

Git is the source of truth for production. The records are written in GTO's tag format, so
``gto show`` and ``gto history`` (and DVC Studio) read this repository's registry:

- ``<name>@vX.Y.Z`` registers an archive as a version of the model (semver is a counter:
  each new archive content gets the next patch number), on the commit it was deployed from;
- ``<name>#<stage>#N`` assigns a stage (``staging``, ``production``) to a version; N counts
  every assignment of the model. A rollback is one more assignment.

Each tag is annotated; its message is a summary line and the record as JSON (the same facts
the ledger holds). Production's old tags, ``model/production/<n>``, are still read for history.

The ledger (``deployments.jsonl`` in the environment's runtime directory) records every move
twice: its intent before the switch and its outcome after. Lines are appended with fsync; a
reader skips a torn line (a write cut short by a crash) and reports it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.core import paths
from mlops.core.errors import ServiceError, UserError
from mlops.core.lineage import git

LEGACY_PRODUCTION_TAG = "model/production/"
MOVES = ("deploy", "promote", "rollback")  # actions that change what an environment serves
SERVING = (*MOVES, "unchanged")  # entries that say what an environment serves


def now() -> str:
    """The time of a record: ISO 8601, UTC, to the microsecond (records are ordered by it)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _instant(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Deployment:
    """One record: what moved where, from which commit, with which checks and records.

    ``phase`` is ``intent`` (written before the switch), ``done`` (after it) or ``abandoned`` (the
    record could not be written, nothing switched); ``previous`` is
    the version it replaced; ``registry_version`` is the GTO version (``vX.Y.Z``).
    """

    environment: str
    action: str  # deploy | promote | rollback | unchanged | rejected
    version: str
    sha256: str
    model_sha256: str
    git_commit: str
    metrics: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    mlflow_run: str | None = None
    mlflow_version: str | None = None
    dirty: bool = False  # deployed from a tree with uncommitted changes to git_commit (see diff_sha256)
    diff_sha256: str | None = None
    time: str = field(default_factory=now)
    phase: str = "done"
    previous: str | None = None
    registry_version: str | None = None
    note: str | None = None
    model: str | None = None  # the model's name: one server may serve several (None: written before it was kept)

    def to_dict(self) -> dict[str, Any]:
        """The entry as one JSON object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        """An entry from its JSON object; unknown keys are ignored, missing optional ones defaulted.

        Raises KeyError or TypeError when a required field is missing or the object is not one.
        """
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def instant(self) -> datetime:
        """When it was written, as a comparable time."""
        return _instant(self.time)

    def same_move(self, other: Deployment | None) -> bool:
        """True when ``other`` records the same move (intent and outcome share version and time)."""
        return other is not None and other.version == self.version and other.time == self.time


class Ledger:
    """An environment's append-only deployment history (JSON lines), read for one model.

    An environment's server may serve several models, each moved from its own repository: the
    ledger keeps them all, and ``model`` names the one read (lines without a name are everyone's).
    """

    def __init__(self, path: Path, model: str | None = None):
        self.path = path
        self.model = model
        self.problems: list[str] = []

    def append(self, entry: Deployment) -> None:
        """Add one entry at the end, durably (fsync) and in one write.

        A torn last line (no newline) is closed first, so the new entry stays on its own line.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry.to_dict(), sort_keys=True) + "\n").encode()
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new directory entry must survive a crash too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def entries(self) -> list[Deployment]:
        """Every readable entry, oldest first; unreadable lines are skipped and listed in ``problems``."""
        self.problems = []
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = Deployment.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
                what = "a torn last line" if last else "an unreadable line"
                self.problems.append(f"{self.path}: skipped {what} (line {number}, {len(line)} bytes)")
                continue
            if self.model is None or entry.model in (None, self.model):
                out.append(entry)
        return out

    def moves(self) -> list[Deployment]:
        """Entries that say what the environment serves (moves, intended or done; unchanged), oldest first.

        A move whose intent was abandoned (its record could not be written) is left out.
        """
        entries = self.entries()
        abandoned = {(e.version, e.time) for e in entries if e.phase == "abandoned"}
        return [e for e in entries if e.action in SERVING and (e.version, e.time) not in abandoned]

    def serving(self) -> Deployment | None:
        """The newest entry that says what the environment serves (a move, intended or done, or unchanged)."""
        found = self.moves()
        return found[-1] if found else None

    def latest(self, version: str) -> Deployment | None:
        """The newest completed record of a version."""
        found = [e for e in self.entries() if e.version == version and e.action in SERVING and e.phase == "done"]
        return found[-1] if found else None

    def passed(self, sha256: str) -> bool:
        """True when an archive with this sha256 was deployed, promoted or found serving here."""
        return any(
            e.sha256 == sha256 and e.action in ("deploy", "promote", "unchanged") and e.phase == "done"
            for e in self.entries()
        )


# ---- git tags in GTO's format ---------------------------------------------------------------------


@dataclass(frozen=True)
class Tag:
    """One annotated tag of the registry: its name, commit, time, and the record in its message."""

    name: str
    commit: str
    time: int
    record: dict[str, Any]
    stage: str | None = None  # assignments only
    counter: int = 0  # GTO's N in name#stage#N; the n of a legacy production tag
    registry_version: str | None = None  # registrations only
    legacy: bool = False

    def deployment(self) -> Deployment | None:
        """The record as a deployment, or None when the message holds none."""
        try:
            return Deployment.from_dict(self.record)
        except (KeyError, TypeError):
            return None


def _json_in(message: str) -> dict[str, Any] | None:
    start = message.find("{")
    if start < 0:
        return None
    try:
        found = json.loads(message[start:])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


_FORMAT = "%(refname:short)%00%(*objectname)%00%(taggerdate:unix)%00%(contents)%00%1e"


def _annotated_tags(root: Path, *patterns: str) -> list[tuple[str, str, int, str]]:
    """(name, commit, tagger time, message) of annotated tags matching ``patterns``."""
    out = git(root, "for-each-ref", f"--format={_FORMAT}", *patterns, check=False)
    found = []
    for chunk in out.stdout.split("\x00\x1e\n"):
        parts = chunk.split("\x00")
        if len(parts) != 4 or not parts[1]:  # a lightweight tag has no tagger and no peeled commit
            continue
        name, commit, when, message = parts
        try:
            found.append((name, commit, int(when), message))
        except ValueError:
            continue
    return found


def _legacy_production(found: list[tuple[str, str, int, str]]) -> list[Tag]:
    tags = []
    for name, commit, when, message in found:
        record = _json_in(message)
        number = name.removeprefix(LEGACY_PRODUCTION_TAG)
        if not name.startswith(LEGACY_PRODUCTION_TAG) or record is None or not number.isdigit():
            continue
        tags.append(Tag(name, commit, when, record, "production", int(number), legacy=True))
    return sorted(tags, key=lambda t: t.counter)


def _gto_tags(found: list[tuple[str, str, int, str]]) -> list[tuple[dict[str, Any], tuple[str, str, int, str]]]:
    from gto.tag import parse_name  # GTO's own parser of its tag names

    out = []
    for tag in found:
        parsed = parse_name(tag[0], raise_on_fail=False)
        if parsed and parsed.get("action") is not None:
            out.append((parsed, tag))
    return out


class Registry:
    """One model's records in git: GTO registrations and stage assignments (and legacy production tags).

    Reads every tag once (one git call) and again after it writes.
    """

    def __init__(self, root: Path, name: str):
        from gto.constants import assert_fullname_is_valid, name_to_tag

        try:
            assert_fullname_is_valid(name)
        except Exception:
            raise UserError(
                f"serve.model_name {name[:80]!r} cannot name a model in git tags (GTO): use letters, numbers, "
                "'_', '-' and '/', at least 2 characters, starting and ending with a letter or number"
            ) from None
        self.root = root
        self.name = name
        self.tag_prefix = name_to_tag(name)
        self._tags: tuple[list[Tag], list[Tag]] | None = None

    def _load(self) -> tuple[list[Tag], list[Tag]]:
        """(registrations, assignments) of this model, legacy production tags first among assignments."""
        if self._tags is None:
            patterns = (f"refs/tags/{self.tag_prefix}@*", f"refs/tags/{self.tag_prefix}#*")
            found = _annotated_tags(self.root, *patterns, f"refs/tags/{LEGACY_PRODUCTION_TAG}*")
            registrations, assignments = [], []
            for parsed, (name, commit, when, message) in _gto_tags(found):
                if parsed.get("name") != self.name:
                    continue
                action = str(parsed["action"].value)
                if action == "register" and "version" in parsed:
                    record = _json_in(message) or {}
                    registrations.append(Tag(name, commit, when, record, registry_version=parsed["version"]))
                elif action == "assign" and "stage" in parsed and "counter" in parsed:
                    record = _json_in(message) or {}
                    assignments.append(Tag(name, commit, when, record, parsed["stage"], parsed["counter"]))
            legacy = _legacy_production(found)
            self._tags = registrations, legacy + sorted(assignments, key=lambda t: t.counter)
        return self._tags

    def versions(self) -> dict[str, Tag]:
        """Registration tags by the archive version their record names."""
        return {t.record["archive_version"]: t for t in self._load()[0] if "archive_version" in t.record}

    def registered_at(self, commit: str) -> Tag | None:
        """The registration of this model on ``commit``, if any (GTO allows one per commit)."""
        return next((t for t in self._load()[0] if t.commit == commit), None)

    def assignments(self, stage: str) -> list[Tag]:
        """Every assignment of ``stage``, oldest first (legacy production tags before GTO's)."""
        return [t for t in self._load()[1] if t.stage == stage]

    def current(self, stage: str) -> Tag | None:
        """The newest assignment of ``stage``: what git says it serves."""
        found = self.assignments(stage)
        return found[-1] if found else None

    def check_recordable(self, entry: Deployment, commit: str) -> None:
        """Raise UserError when ``entry``'s archive cannot be registered on ``commit``.

        A version is registered on the commit whose dvc.lock names its archive: a commit whose
        ``models/package.json`` names another archive, or that already registers another version
        (GTO allows one per commit), cannot register this one.
        """
        if entry.version in self.versions():
            return
        advice = "commit dvc.lock and models/package.json, then deploy from that commit (--commit)"
        committed = committed_archive(self.root, commit)
        if entry.action in ("deploy", "promote") and committed not in (None, entry.version):
            raise UserError(
                f"commit {commit[:12]} records archive {committed} (models/package.json), not {entry.version}; {advice}"
            )
        other = self.registered_at(commit)
        if other is not None:
            raise UserError(
                f"commit {commit[:12]} already registers {self.name} {other.registry_version} (archive "
                f"{other.record.get('archive_version', '?')}), not {entry.version}; {advice}"
            )

    def record(self, stage: str, entry: Deployment, commit: str, summary: str) -> list[str]:
        """Assign ``stage`` to the entry's archive (registering it on ``commit`` first if new); the tags made.

        ``entry.registry_version`` is set to the GTO version.
        """
        import gto.api as api  # GTO reads every tag; only the moves need it

        self.check_recordable(entry, commit)
        self._tags = None  # what gets written is read again
        made = []
        known = self.versions().get(entry.version)
        try:
            if known is None:
                facts = {
                    "archive_version": entry.version,
                    "sha256": entry.sha256,
                    "model_sha256": entry.model_sha256,
                    "metrics": entry.metrics,
                    "git_commit": commit,
                }
                event = api.register(
                    self.root,
                    self.name,
                    ref=commit,
                    message=f"register {self.name} archive {entry.version}\n\n{json.dumps(facts, indent=2)}\n",
                    push=False,
                )
                entry.registry_version = str(event.version)
                made.append(str(event.tag))
            else:
                entry.registry_version = known.registry_version
            self._after_last_assignment()
            message = f"{summary}\n\n{json.dumps(entry.to_dict(), indent=2, sort_keys=True)}\n"
            event = api.assign(
                self.root, self.name, stage, version=entry.registry_version, message=message, force=True, push=False
            )
            made.append(str(event.tag))
        except Exception as e:
            if isinstance(e, UserError):
                raise
            self.delete(made)
            raise ServiceError(f"git: recording {self.name} {entry.version} in {stage} failed: {e}") from None
        return made

    def _after_last_assignment(self) -> None:
        """Wait, if needed, until the clock is past the second of the newest assignment tag.

        GTO orders assignments by their tag time, to the second: two in one second would make
        ``gto show`` pick either. Moves are never that close in use; tests are.
        """
        self._tags = None
        times = [t.time for t in self._load()[1] if not t.legacy]
        if times:
            wait_past(max(times))

    def push(self, remote: str, tags: list[str]) -> None:
        """Push ``tags`` to ``remote`` atomically (all or none); ServiceError if refused."""
        if not tags:
            return
        proc = git(self.root, "push", "--atomic", remote, *(f"refs/tags/{t}" for t in tags), check=False)
        if proc.returncode != 0:
            raise ServiceError(f"git push {remote} {' '.join(tags)}: {proc.stderr.strip()[:500]}")

    def delete(self, tags: list[str]) -> None:
        """Delete local tags (undoing a record that could not be pushed)."""
        for tag in tags:
            git(self.root, "tag", "-d", tag, check=False)
        self._tags = None


def wait_past(second: int) -> None:
    """Sleep until the wall clock is past ``second`` (a unix time)."""
    delay = second + 1 - time.time()
    if delay > 0:
        time.sleep(delay + 0.01)


def production_tags(root: Path, name: str | None = None) -> list[Tag]:
    """Every production assignment, oldest first: legacy ``model/production/<n>`` tags, then GTO's.

    ``name`` limits GTO's tags to one model; without it every model's count (ordered by time).
    """
    if name is not None:
        return Registry(root, name).assignments("production")
    found = _annotated_tags(root, "refs/tags/*#production#*", f"refs/tags/{LEGACY_PRODUCTION_TAG}*")
    gto = []
    for parsed, (tag, commit, when, message) in _gto_tags(found):
        if parsed.get("stage") == "production" and "counter" in parsed and str(parsed["action"].value) == "assign":
            gto.append(Tag(tag, commit, when, _json_in(message) or {}, "production", parsed["counter"]))
    return _legacy_production(found) + sorted(gto, key=lambda t: (t.time, t.counter))


def production_record(root: Path, name: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """The newest production record in git (tag name and record), or None before the first promotion.

    The tag points at a commit whose dvc.lock names the model production serves, so
    ``read_at(root, tag, path)`` fetches its files.
    """
    tags = production_tags(root, name)
    return (tags[-1].name, tags[-1].record) if tags else None


def read_at(root: Path, rev: str, path: Path) -> bytes:
    """A DVC-tracked (or git) file's bytes as of ``rev``, fetched by DVC from cache or remote."""
    import dvc.api  # slow to import; only the report and the monitor need it

    with dvc.api.open(str(path), repo=str(root), rev=rev, mode="rb") as f:
        data: bytes = f.read()
    return data


def committed_archive(root: Path, commit: str) -> str | None:
    """The archive version ``models/package.json`` names at ``commit``, or None when it has none."""
    proc = git(root, "show", f"{commit}:./{paths.PACKAGE.as_posix()}", check=False)
    if proc.returncode != 0:
        return None
    try:
        return str(json.loads(proc.stdout)["version"])
    except (ValueError, KeyError, TypeError):
        return None


def resolve_commit(root: Path, rev: str) -> str:
    """The full sha of ``rev`` (a commit, branch or tag); UserError when git does not know it."""
    proc = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if proc.returncode != 0:
        raise UserError(f"--commit {rev[:80]!r}: not a commit of the repository at {root}")
    return proc.stdout.strip()


def tag_commit(root: Path, tag: str) -> str:
    """The commit a tag points at."""
    return git(root, "rev-list", "-n", "1", tag).stdout.strip()


def commit_exists(root: Path, commit: str) -> bool:
    """True when the repository has this commit."""
    return git(root, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


def descends_from(root: Path, ancestor: str, commit: str) -> bool:
    """True when ``commit`` has ``ancestor`` in its history (or is it)."""
    return git(root, "merge-base", "--is-ancestor", ancestor, commit, check=False).returncode == 0
