"""A fake GitHub on loopback: the REST calls the workflows' tools make, and git over HTTP.

GitHub itself is the one part of the loop this machine cannot run, so the workflow tier talks to
this instead: a stdlib HTTP server on 127.0.0.1 that keeps pull requests, issues, comments (with
their authors), labels, workflow dispatches and merges in memory, serves the bare repositories
under ``git_root`` through ``git http-backend`` (so checkout fetches and tag pushes go through it,
with a token, as on github.com) and lists the artifacts the artifact doubles stored.

Tokens and permissions follow GitHub's rules closely enough to catch a workflow asking too little
or too much: the run's ``GITHUB_TOKEN`` has, per job, exactly the ``permissions:`` the workflow file
gives that job (the harness registers them per run; every double names its run and job in the
``X-Act-Run``/``X-Act-Job`` headers, which the checkout double also puts in the clone's git config);
a run for a fork's pull request gets a read-only token; a personal access token has fixed scopes.
An unknown token is 401 "Bad credentials", a missing permission 403 "Resource not accessible by
integration".
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

LEVELS = {"none": 0, "read": 1, "write": 2}
# GitHub's default for a job that declares no permissions in a workflow that declares none either
# (the "restricted" repository setting)
DEFAULT_PERMISSIONS = {"contents": "read", "metadata": "read", "packages": "read"}


@dataclass(frozen=True)
class Identity:
    """Who a token acts as: the run's token (permissions per job) or a token with fixed scopes."""

    login: str
    scopes: dict[str, str] = field(default_factory=dict)
    run_token: bool = False


class DeniedError(Exception):
    """An HTTP error answer with GitHub's wording."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def effective_permissions(workflow: dict[str, Any], job: dict[str, Any]) -> dict[str, str]:
    """A job's token permissions as GitHub computes them from the workflow file."""
    declared = job["permissions"] if "permissions" in job else workflow.get("permissions")
    if declared is None:
        return dict(DEFAULT_PERMISSIONS)
    if declared in ("read-all", "write-all"):
        level = declared.split("-")[0]
        return {k: level for k in ("actions", "contents", "issues", "pull-requests", "id-token", "metadata")}
    out = {str(k): str(v) for k, v in (declared or {}).items()}
    out.setdefault("metadata", "read")  # every token may read the repository's metadata
    return out


class FakeGitHub:
    """The fake's state and server. ``url`` is its base (server URL and API URL alike)."""

    def __init__(self, git_root: Path, artifact_store: Path):
        self.git_root = git_root
        self.artifact_store = artifact_store
        self.lock = threading.Lock()
        self.tokens: dict[str, Identity] = {}
        self.runs: dict[str, dict[str, Any]] = {}  # run id -> {"jobs": {job: permissions}, "read_only": bool}
        self.state: dict[str, Any] = {"repos": {}, "next_id": 1000, "requests": []}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeGitHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- set-up the harness does --------------------------------------------------------------

    def add_token(self, token: str, identity: Identity) -> None:
        self.tokens[token] = identity

    def register_run(self, run_id: int, jobs: dict[str, dict[str, str]], read_only: bool = False) -> None:
        """The permissions of each job of one workflow run; a fork's run gets a read-only token."""
        self.runs[str(run_id)] = {"jobs": jobs, "read_only": read_only}

    def repo(self, full: str) -> dict[str, Any]:
        return self.state["repos"].setdefault(
            full,
            {
                "default_branch": "main",
                "pulls": {},
                "issues": {},
                "comments": {},
                "commit_comments": {},
                "labels": {},
                "dispatches": [],
                "merges": [],
                "auto_merge": [],
                "assets": [],
                "next_number": 1,
            },
        )

    def open_pull(self, full: str, number: int, head_ref: str, head_sha: str, head_repo: str, author: str) -> None:
        """A pull request as GitHub holds it once someone opened it."""
        with self.lock:
            r = self.repo(full)
            r["pulls"][str(number)] = {
                "number": number,
                "node_id": f"PR_{number}",
                "state": "open",
                "title": f"pull request {number}",
                "user": {"login": author},
                "head": {"ref": head_ref, "sha": head_sha, "repo": {"full_name": head_repo}},
                "base": {"ref": "main", "repo": {"full_name": full}},
                "html_url": f"{self.url}/{full}/pull/{number}",
                "merged": False,
            }
            r["next_number"] = max(r["next_number"], number + 1)

    def snapshot(self, full: str) -> dict[str, Any]:
        """A deep copy of one repository's state (what a reviewer would see on GitHub)."""
        with self.lock:
            copy: dict[str, Any] = json.loads(json.dumps(self.repo(full)))
            return copy

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.state["requests"])

    # ---- authorisation -------------------------------------------------------------------------

    def identity(self, headers: Any) -> tuple[str, Identity] | None:
        auth = headers.get("Authorization", "")
        kind, _, value = auth.partition(" ")
        token = value.strip()
        if kind.lower() == "basic":
            try:
                token = base64.b64decode(token).decode().partition(":")[2]
            except ValueError:
                return None
        found = self.tokens.get(token)
        return (token, found) if found else None

    def authorize(self, headers: Any, scope: str, level: str) -> Identity:
        found = self.identity(headers)
        if found is None:
            raise DeniedError(401, "Bad credentials")
        _, who = found
        if who.run_token:
            run = self.runs.get(headers.get("X-Act-Run", ""))
            job = headers.get("X-Act-Job", "")
            if run is None or job not in run["jobs"]:
                raise DeniedError(403, f"Resource not accessible by integration (unknown job {job!r})")
            granted = run["jobs"][job].get(scope, "none")
            if run["read_only"] and granted == "write":
                granted = "read"  # pull requests from forks get a read-only token
        else:
            granted = who.scopes.get(scope, "none")
        if LEVELS[granted] < LEVELS[level]:
            raise DeniedError(403, "Resource not accessible by integration")
        return who


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-github/1"
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeGitHub:
        return self.server.fake  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the state's request log says enough

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ---- plumbing ------------------------------------------------------------------------------

    def _body_bytes(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self) -> dict[str, Any]:
        raw = self._body_bytes()
        return json.loads(raw) if raw else {}

    def _reply(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        path = unquote(url.path).removeprefix("/api/v3")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        git = re.fullmatch(r"/([\w.-]+)/([\w.-]+?)(?:\.git)?/(info/refs|git-upload-pack|git-receive-pack)", path)
        try:
            if git:
                self._git(method, f"{git[1]}/{git[2]}", git[3], url.query)
                return
            body = self._json_body() if method in ("POST", "PATCH", "PUT") else {}
            with self.fake.lock:
                who = {"run": self.headers.get("X-Act-Run"), "job": self.headers.get("X-Act-Job")}
                self.fake.state["requests"].append({"method": method, "path": path, **who})
                code, out = self._route(method, path, query, body)
            self._reply(code, out)
        except DeniedError as e:
            extra = {"WWW-Authenticate": 'Basic realm="GitHub"'} if git and e.code == 401 else None
            self._reply(e.code, {"message": e.message}, extra)

    # ---- git over HTTP -----------------------------------------------------------------------

    def _git(self, method: str, full: str, rest: str, query: str) -> None:
        service = parse_qs(query).get("service", [rest])[0]
        write = service == "git-receive-pack"
        who = self.fake.authorize(self.headers, "contents", "write" if write else "read")
        repo_dir = self.fake.git_root / f"{full}.git"
        if not repo_dir.is_dir():
            raise DeniedError(404, "Repository not found.")
        body = self._body_bytes() if method == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.fake.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{full}.git/{rest}",
            "REQUEST_METHOD": method,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": who.login,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode(errors="replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers[key] = value.strip()
        with self.fake.lock:
            caller = {"run": self.headers.get("X-Act-Run"), "job": self.headers.get("X-Act-Job"), "login": who.login}
            self.fake.state["requests"].append({"method": method, "path": f"/{full}.git {service}", **caller})
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    # ---- REST ------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, q: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        fake = self.fake
        if re.fullmatch(r"/users/[^/]+", path):
            login = path.rsplit("/", 1)[1]
            return 200, {"login": login, "id": 1, "type": "Bot" if login.endswith("[bot]") else "User"}
        if path == "/graphql" and method == "POST":
            who = fake.authorize(self.headers, "pull-requests", "write")
            if "enablePullRequestAutoMerge" in body.get("query", ""):
                for r in fake.state["repos"].values():
                    r["auto_merge"].append({"by": who.login, **body.get("variables", {})})
                # what GitHub answers when the base branch has no protection rules
                return 422, {"message": "Pull request is in clean status"}
            return 200, {"data": {}}
        m = re.fullmatch(r"/repos/([\w.-]+/[\w.-]+)(/.*)?", path)
        if not m:
            return 404, {"message": f"Not Found: {method} {path}"}
        full, rest = m[1], m[2] or ""
        r = fake.repo(full)
        html = f"{fake.url}/{full}"
        for handler in (self._repo_and_pulls, self._issues, self._labels_and_actions):
            answer = handler(method, rest, q, body, r, full, html)
            if answer is not None:
                return answer
        return 404, {"message": f"Not Found: {method} {path}"}

    def _repo_and_pulls(
        self, method: str, rest: str, q: dict[str, str], body: dict[str, Any], r: dict[str, Any], full: str, html: str
    ) -> tuple[int, Any] | None:
        fake = self.fake
        if rest == "" and method == "GET":
            fake.authorize(self.headers, "metadata", "read")
            return 200, {"full_name": full, "default_branch": r["default_branch"], "html_url": html}
        m = re.fullmatch(r"/commits/([0-9a-f]{7,40})/pulls", rest)
        if m and method == "GET":
            fake.authorize(self.headers, "contents", "read")
            fake.authorize(self.headers, "pull-requests", "read")
            return 200, [p for p in r["pulls"].values() if p["head"]["sha"].startswith(m[1])]
        if rest == "/pulls" and method == "GET":
            fake.authorize(self.headers, "pull-requests", "read")
            state = q.get("state", "open")
            return 200, [p for p in r["pulls"].values() if state == "all" or p["state"] == state]
        if rest == "/pulls" and method == "POST":
            who = fake.authorize(self.headers, "pull-requests", "write")
            for k in ("head", "base"):
                if not body.get(k):
                    return 422, {"message": "Validation Failed", "errors": [{"field": k, "code": "missing_field"}]}
            sha = _rev(fake.git_root / f"{full}.git", f"refs/heads/{body['head']}")
            if sha is None:
                return 422, {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]}
            if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in r["pulls"].values()):
                return 422, {"message": f"Validation Failed: A pull request already exists for {body['head']}."}
            n = r["next_number"]
            r["next_number"] += 1
            pr = {
                "number": n, "node_id": f"PR_{n}", "state": "open", "title": body.get("title", ""),
                "body": body.get("body"), "user": {"login": who.login},
                "head": {"ref": body["head"], "sha": sha, "repo": {"full_name": full}},
                "base": {"ref": body["base"], "repo": {"full_name": full}},
                "html_url": f"{html}/pull/{n}", "merged": False,
            }  # fmt: skip
            r["pulls"][str(n)] = pr
            return 201, pr
        m = re.fullmatch(r"/pulls/(\d+)", rest)
        if m and method == "GET":
            fake.authorize(self.headers, "pull-requests", "read")
            return (200, r["pulls"][m[1]]) if m[1] in r["pulls"] else (404, {"message": "Not Found"})
        m = re.fullmatch(r"/pulls/(\d+)/merge", rest)
        if m and method == "PUT":
            who = fake.authorize(self.headers, "contents", "write")
            r["merges"].append({"number": int(m[1]), "by": who.login, **body})
            r["pulls"][m[1]].update(state="closed", merged=True)
            return 200, {"merged": True, "message": "Pull Request successfully merged"}
        if re.fullmatch(r"/branches/[^/]+/protection", rest):
            return 404, {"message": "Branch not protected"}
        m = re.fullmatch(r"/actions/runs/(\d+)/artifacts", rest)
        if m and method == "GET":
            fake.authorize(self.headers, "actions", "read")
            run = fake.artifact_store / full / m[1]
            names = sorted(p.name for p in run.iterdir()) if run.is_dir() else []
            return 200, {"total_count": len(names), "artifacts": [{"name": n} for n in names]}
        if rest == "/_assets" and method == "POST":  # CML's asset server, so publishing is observable
            r["assets"].append(body)
            return 201, {"url": f"{fake.url}/assets/{body.get('sha256', '')}"}
        return None

    def _issues(
        self, method: str, rest: str, q: dict[str, str], body: dict[str, Any], r: dict[str, Any], full: str, html: str
    ) -> tuple[int, Any] | None:
        fake = self.fake
        if rest == "/issues" and method == "GET":
            fake.authorize(self.headers, "issues", "read")
            labels = set(filter(None, q.get("labels", "").split(",")))
            state = q.get("state", "open")
            out = [
                i
                for i in r["issues"].values()
                if (state == "all" or i["state"] == state) and labels <= {lab["name"] for lab in i["labels"]}
            ]
            return 200, sorted(out, key=lambda i: -i["number"])
        if rest == "/issues" and method == "POST":
            who = fake.authorize(self.headers, "issues", "write")
            if not body.get("title"):
                return 422, {"message": "Validation Failed"}
            n = r["next_number"]
            r["next_number"] += 1
            issue = {
                "number": n, "state": "open", "title": body["title"], "body": body.get("body", ""),
                "user": {"login": who.login}, "labels": [{"name": lab} for lab in body.get("labels", [])],
                "html_url": f"{html}/issues/{n}",
            }  # fmt: skip
            r["issues"][str(n)] = issue
            return 201, issue
        m = re.fullmatch(r"/issues/(\d+)/comments", rest)
        if m:
            n = m[1]
            if n not in r["pulls"] and n not in r["issues"]:
                return 404, {"message": "Not Found"}
            scope = "pull-requests" if n in r["pulls"] else "issues"
            who = fake.authorize(self.headers, scope, "write" if method == "POST" else "read")
            if method == "GET":
                return 200, [c for c in r["comments"].values() if c["issue"] == int(n)]
            cid = _new_id(fake)
            c = {
                "id": cid, "issue": int(n), "body": body["body"], "user": {"login": who.login}, "edits": [],
                "html_url": f"{html}/{'pull' if scope == 'pull-requests' else 'issues'}/{n}#issuecomment-{cid}",
            }  # fmt: skip
            r["comments"][str(cid)] = c
            return 201, c
        m = re.fullmatch(r"/issues/comments/(\d+)", rest)
        if m and method == "PATCH":
            c = r["comments"].get(m[1])
            if not c:
                return 404, {"message": "Not Found"}
            scope = "pull-requests" if str(c["issue"]) in r["pulls"] else "issues"
            who = fake.authorize(self.headers, scope, "write")
            c["edits"].append({"by": who.login, "previous": c["body"]})
            c["body"] = body["body"]
            return 200, c
        m = re.fullmatch(r"/commits/([0-9a-f]{7,40})/comments", rest)
        if m:
            who = fake.authorize(self.headers, "contents", "write" if method == "POST" else "read")
            listing = r["commit_comments"].setdefault(m[1], [])
            if method == "GET":
                return 200, listing
            cid = _new_id(fake)
            c = {"id": cid, "body": body["body"], "user": {"login": who.login},
                 "html_url": f"{html}/commit/{m[1]}#commitcomment-{cid}"}  # fmt: skip
            listing.append(c)
            return 201, c
        return None

    def _labels_and_actions(
        self, method: str, rest: str, q: dict[str, str], body: dict[str, Any], r: dict[str, Any], full: str, html: str
    ) -> tuple[int, Any] | None:
        fake = self.fake
        if rest == "/labels" and method == "POST":
            fake.authorize(self.headers, "issues", "write")
            if body["name"] in r["labels"]:
                return 422, {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Label", "code": "already_exists"}],
                }
            r["labels"][body["name"]] = body
            return 201, body
        m = re.fullmatch(r"/labels/([^/]+)", rest)
        if m and method == "PATCH":
            fake.authorize(self.headers, "issues", "write")
            r["labels"].setdefault(m[1], {}).update(body)
            return 200, r["labels"][m[1]]
        m = re.fullmatch(r"/actions/workflows/([^/]+)", rest)
        if m and method == "GET":
            fake.authorize(self.headers, "actions", "read")
            return 200, {"id": 1, "name": m[1], "path": f".github/workflows/{m[1]}", "state": "active"}
        m = re.fullmatch(r"/actions/workflows/([^/]+)/dispatches", rest)
        if m and method == "POST":
            who = fake.authorize(self.headers, "actions", "write")
            if not body.get("ref"):
                return 422, {"message": "Invalid request: ref is required"}
            r["dispatches"].append({"workflow": m[1], "by": who.login, **body})
            return 204, None
        return None


def _new_id(fake: FakeGitHub) -> int:
    fake.state["next_id"] += 1
    return int(fake.state["next_id"])


def _rev(repo: Path, ref: str) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=repo, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None
