"""The actions/upload-artifact (v4+) and actions/download-artifact (v4+) doubles: a folder store.

act's own artifact server does not work with these versions, so the workflow tier keeps
artifacts in ``$ACT_ARTIFACT_STORE/<owner>/<repo>/<run id>/<name>/{files/..., meta.json}``.
The rules kept from the real actions: a second upload of one name in a run fails (409) unless
``overwrite``; hidden files are left out unless ``include-hidden-files``; files are stored
relative to the least common ancestor of the paths; ``if-no-files-found``; ``retention-days``
0-90; ``run-id`` and ``repository`` are honoured only with a ``github-token`` (which the fake
GitHub checks for ``actions: read``), otherwise the download reads the current run.

Inputs arrive as ``INPUT_*`` variables, as the composite actions pass them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

BAD_NAME = set('"<>|*?\r\n\\/:')


def inp(name: str, default: str = "") -> str:
    return os.environ.get("INPUT_" + name.upper().replace("-", "_"), default).strip() or default


def truthy(name: str) -> bool:
    value = inp(name, "false").lower()
    if value not in ("true", "false"):
        die(f"Input does not meet YAML 1.2 'Core Schema' specification: {name}")
    return value == "true"


def die(message: str) -> None:
    print(f"::error::{message}", flush=True)
    sys.exit(1)


def output(key: str, value: str) -> None:
    with Path(os.environ["GITHUB_OUTPUT"]).open("a") as f:
        f.write(f"{key}={value}\n")


def run_dir(repository: str, run_id: str) -> Path:
    if not run_id.isdigit():
        die(f"invalid run id {run_id!r}")
    return Path(os.environ["ACT_ARTIFACT_STORE"]) / repository / run_id


def literal_root(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def hidden(path: Path, root: Path) -> bool:
    rel = path.relative_to(root.parent) if root.parent != root else path
    return any(p.startswith(".") and p not in (".", "..") for p in rel.parts)


def collect(patterns: list[str], include_hidden: bool) -> dict[str, Path]:
    """Files to upload, by their path inside the artifact (relative to the least common ancestor)."""
    files: set[Path] = set()
    roots: list[Path] = []
    excludes = [p[1:] for p in patterns if p.startswith("!")]
    for pattern in (p for p in patterns if not p.startswith("!")):
        root = literal_root(pattern).absolute()
        anchor = Path(pattern).anchor or "."
        for hit in Path(anchor).glob(
            str(Path(pattern).relative_to(anchor)) if Path(pattern).is_absolute() else pattern
        ):
            found = hit.absolute()
            for f in [found] if found.is_file() else [p for p in found.rglob("*") if p.is_file()]:
                if not include_hidden and hidden(f, root):
                    continue
                if any(
                    fnmatch.fnmatch(os.path.relpath(f), ex) or f.is_relative_to(Path(ex).absolute()) for ex in excludes
                ):
                    continue
                files.add(f)
                roots.append(found if found.is_dir() else found.parent)
    if not files:
        return {}
    lca = Path(os.path.commonpath([str(r) for r in roots]))
    return {str(f.relative_to(lca)): f for f in sorted(files)}


def upload() -> None:
    name = inp("name", "artifact")
    patterns = [line.strip() for line in inp("path").splitlines() if line.strip()]
    if not patterns:
        die("Input required and not supplied: path")
    behaviour = inp("if-no-files-found", "warn")
    if behaviour not in ("warn", "error", "ignore"):
        die(f"Unrecognized if-no-files-found input. Provided: {behaviour}. Available options: warn,error,ignore")
    retention = inp("retention-days", "0")
    if not retention.isdigit() or int(retention) > 90:
        die(f"Invalid retention, minimum value is 1, maximum is 90: {retention}")
    if BAD_NAME & set(name):
        die(f"The artifact name is not valid: {name}")
    files = collect(patterns, truthy("include-hidden-files"))
    if not files:
        message = f"No files were found with the provided path: {' '.join(patterns)}. No artifacts will be uploaded."
        if behaviour == "error":
            die(message)
        if behaviour == "warn":
            print(f"::warning::{message}")
        return
    target = run_dir(os.environ["GITHUB_REPOSITORY"], os.environ["GITHUB_RUN_ID"]) / name
    if target.exists():
        if not truthy("overwrite"):
            die(
                "Failed to CreateArtifact: Received non-retryable error: Failed request: (409) Conflict: "
                "an artifact with this name already exists on the workflow run"
            )
        shutil.rmtree(target)
    digest = hashlib.sha256()
    for rel, src in files.items():
        dst = target / "files" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)  # the real action follows symlinks and stores plain files
        digest.update(rel.encode() + b"\0" + src.read_bytes())
    meta = {"name": name, "files": sorted(files), "digest": digest.hexdigest(), "job": os.environ.get("GITHUB_JOB")}
    (target / "meta.json").write_text(json.dumps(meta))
    print(f"Artifact {name} has been successfully uploaded ({len(files)} files)")
    output("artifact-digest", meta["digest"])


def authorize(repository: str, run_id: str, token: str) -> None:
    """The real action lists the other run's artifacts through the REST API with the token."""
    request = urllib.request.Request(
        f"{os.environ['GITHUB_API_URL']}/repos/{repository}/actions/runs/{run_id}/artifacts"
    )
    request.add_header("Authorization", f"token {token}")
    request.add_header("X-Act-Run", os.environ.get("GITHUB_RUN_ID", ""))
    request.add_header("X-Act-Job", os.environ.get("GITHUB_JOB", ""))
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as e:
        die(f"Unable to download artifact(s): {json.loads(e.read() or b'{}').get('message', e.reason)} ({e.code})")


def download() -> None:
    name, pattern = inp("name"), inp("pattern")
    path = Path(inp("path") or os.environ["GITHUB_WORKSPACE"]).expanduser().absolute()
    repository, run_id = os.environ["GITHUB_REPOSITORY"], os.environ["GITHUB_RUN_ID"]
    token = inp("github-token")
    if token:  # only then does the real action read `repository` and `run-id`
        repository, run_id = inp("repository", repository), inp("run-id", run_id)
        authorize(repository, run_id, token)
    run = run_dir(repository, run_id)
    available = sorted(p.name for p in run.iterdir()) if run.is_dir() else []
    if name:
        if name not in available:
            die(f"Unable to download artifact(s): Artifact not found for name: {name}")
        chosen, single = [name], True
    else:
        chosen = [n for n in available if not pattern or fnmatch.fnmatchcase(n, pattern)]
        single = False
    for n in chosen:
        dest = path if single or truthy("merge-multiple") else path / n
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run / n / "files", dest, dirs_exist_ok=True)
        print(f"Artifact download completed successfully: {n} -> {dest}")
    output("download-path", str(path))


if __name__ == "__main__":
    {"upload": upload, "download": download}[sys.argv[1]]()
