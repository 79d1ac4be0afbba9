#!/usr/bin/env python3
"""The CML 0.20.6 double: ``cml comment create|update`` and ``cml pr create`` against the fake GitHub.

The argument rules, repository and token discovery and git effects follow iterative/cml v0.20.6
(bin/cml.js, bin/cml/comment/create.js, bin/cml/pr/create.js, src/cml.js, src/commenttarget.js,
src/watermark.js, src/drivers/github.js):

* the repository is ``--repo`` (a URL: a bare ``owner/repo`` is "Invalid URL"), else
  ``git config --get remote.origin.url``, which fails outside a git repository: CML does this in
  its constructor, before any command;
* the token is ``--token``/``--driver-token``, else ``REPO_TOKEN``, ``repo_token``, ``GITHUB_TOKEN``...;
* options are strict (an unknown one is an error) and read ``CML_<CMD>_<OPTION>`` variables too;
* ``comment update`` edits the last comment carrying the watermark title, whoever wrote it;
  ``--publish`` (the default) uploads every local file an image, link or definition points to;
* ``pr create`` commits the changed files matching its globs on ``--branch`` (default
  ``<target>-cml-pr-<sha8>``), adds ``[skip ci]`` without ``--message`` unless a merge mode is
  given, and ``--merge/--rebase/--squash`` turn on auto-merge, which, when GitHub refuses it
  ("clean status"), merges the pull request right away.

On purpose different: API calls go to ``$GITHUB_API_URL`` (the fake), images are "published" to
the fake (``POST /repos/o/r/_assets``) so a test sees what would have gone public, and the
remote keeps the fake's http scheme when CML adds its token to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

ENV = os.environ


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)  # CML: logger.error(err); process.exit(1)
    sys.exit(1)


def git(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        fail(f"Command failed: git {' '.join(args)}\n{proc.stderr.strip()}")
    return proc.stdout.strip()


# ---- arguments (yargs, strict) ------------------------------------------------------------------

GLOBAL = {"log": "str", "driver": "str", "repo": "str", "driver-token": "str", "token": "str:driver-token"}
COMMENT = {
    "target": "str", "pr": "bool", "commit-sha": "str", "head-sha": "str:commit-sha", "watch": "bool",
    "trigger-file": "str", "publish": "bool", "publish-url": "str", "publish-native": "bool",
    "native": "bool:publish-native", "update": "bool", "rm-watermark": "bool", "watermark-title": "str",
}  # fmt: skip
PR = {
    "md": "bool", "skip-ci": "bool", "merge": "bool", "auto-merge": "bool:merge", "rebase": "bool", "squash": "bool",
    "branch": "str", "target-branch": "str", "title": "str", "body": "str", "message": "str", "remote": "str",
    "user-email": "str", "user-name": "str",
}  # fmt: skip


def parse(argv: list[str], spec: dict[str, str], env_prefix: str) -> tuple[dict[str, Any], list[str]]:
    spec = {**GLOBAL, **spec}
    opts: dict[str, Any] = {}
    for key, kind in spec.items():  # yargs .env(): CML_COMMENT_TARGET...; CML_REPO etc. for the globals
        name = kind.split(":")[1] if ":" in kind else key
        suffix = key.upper().replace("-", "_")
        for var in (f"{env_prefix}_{suffix}", *([f"CML_{suffix}"] if key in GLOBAL else [])):
            if var in ENV:
                opts.setdefault(name, ENV[var] not in ("false", "0", "") if kind.startswith("bool") else ENV[var])
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            negated = key.startswith("no-") and spec.get(key[3:], "").startswith("bool")
            key = key[3:] if negated else key
            if key not in spec:
                fail(f"Unknown argument: {key}")
            kind = spec[key]
            name = kind.split(":")[1] if ":" in kind else key
            if kind.startswith("bool"):
                opts[name] = (not negated) if not eq else value not in ("false", "0")
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        fail(f"Not enough arguments following: {key}")
                    value = argv[i]
                opts[name] = value
        else:
            positional.append(arg)
        i += 1
    return opts, positional


# ---- the CML object -------------------------------------------------------------------------------


class CML:
    def __init__(self, opts: dict[str, Any]):
        repo = opts.get("repo")
        if not repo:
            # src/cml.js gitRemoteUrl(): execSync('git config --get remote.origin.url'); throws outside a repo
            proc = subprocess.run(["git", "config", "--get", "remote.origin.url"], capture_output=True, text=True)
            if proc.returncode != 0:
                fail("Command failed: git config --get remote.origin.url\n" + proc.stderr.strip())
            repo = proc.stdout.strip()
        url = urlparse(repo)
        if not url.scheme or not url.netloc:
            fail(f"Invalid URL: {repo}")  # new URL(repo) throws TypeError [ERR_INVALID_URL]
        parts = url.path.strip("/").removesuffix(".git").split("/")
        if len(parts) != 2:
            fail(f"cannot find the repository in {repo!r}")
        self.slug = "/".join(parts)
        self.repo_url = f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}/{self.slug}"
        names = ("REPO_TOKEN", "repo_token", "GITHUB_TOKEN", "GITLAB_TOKEN", "BITBUCKET_TOKEN")
        self.token = opts.get("driver-token") or next((ENV[v] for v in names if ENV.get(v)), None)
        if not self.token:
            fail("token not found")
        if opts.get("driver", "github") != "github":
            fail(f"the double models the github driver only, not {opts['driver']}")
        self.api = ENV["GITHUB_API_URL"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.api}{path}" if path.startswith("/graphql") else f"{self.api}/repos/{self.slug}{path}"
        request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
        for key, value in (
            ("Authorization", f"token {self.token}"),
            ("Content-Type", "application/json"),
            ("X-Act-Run", ENV.get("GITHUB_RUN_ID", "")),
            ("X-Act-Job", ENV.get("GITHUB_JOB", "")),
        ):
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = response.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as e:
            raise RuntimeError(json.loads(e.read() or b"{}").get("message", str(e))) from None

    def event(self) -> dict[str, Any]:
        try:
            event: dict[str, Any] = json.loads(Path(ENV["GITHUB_EVENT_PATH"]).read_text())
        except (KeyError, OSError, ValueError):
            return {}
        return event

    @property
    def sha(self) -> str | None:
        if ENV.get("GITHUB_EVENT_NAME") == "pull_request":
            return str(self.event()["pull_request"]["head"]["sha"])
        return ENV.get("GITHUB_SHA")

    @property
    def pr(self) -> int | None:
        if ENV.get("GITHUB_EVENT_NAME") in ("pull_request", "pull_request_target"):
            return int(self.event()["pull_request"]["number"])
        return None

    def trigger_sha(self) -> str:
        return self.sha or git("rev-parse", "HEAD")

    def branch(self) -> str:
        ref = ENV.get("GITHUB_HEAD_REF") or ENV.get("GITHUB_REF")
        return re.sub(r"refs/(head|tag)s/", "", ref) if ref else git("branch", "--show-current")


# ---- cml comment create|update -----------------------------------------------------------------


def watermark(label: str, sha: str) -> tuple[str, re.Pattern[str]]:
    label = label.replace("{workflow}", ENV.get("GITHUB_WORKFLOW", "")).replace("{run}", ENV.get("GITHUB_RUN_ID", ""))
    title = f"CML watermark {label}".strip()
    for ch in ("_", "*", "[", "<"):
        title = title.replace(ch, "\\" + ch)
    text = f'![](https://cml.dev/watermark.png#{sha} "{title}")'
    pattern = re.compile(r"!\[\]\(https://cml\.dev/watermark\.png#[0-9a-fA-F]+ \"" + re.escape(title) + r"\"\)")
    return text, pattern


def target_of(cml: CML, target: str) -> tuple[str, str]:
    lowered = target.lower()
    if lowered == "commit":
        return "commit", str(cml.sha)
    if lowered in ("pr", "auto"):
        if cml.pr:
            return "pr", str(cml.pr)
        prs = [p for p in cml.call("GET", f"/commits/{cml.sha}/pulls") if p["state"] == "open"]
        if prs:
            return "pr", str(prs[0]["number"])
        if lowered == "auto":
            return "commit", str(cml.sha)
        fail(f'PR for commit sha "{cml.sha}" not found')
    if "/" not in target:
        fail(f'Failed to parse comment --target="{target}"')
    kind, ident = target.split("/", 1)
    if kind.lower() not in ("commit", "pr", "issue"):
        fail(f'unsupported comment target "{target}"')
    return kind.lower(), ident


# inline links and images, and link reference definitions: what remark's visit(['definition',
# 'image', 'link']) finds in the reports these workflows post
LINKS = re.compile(r"(!?\[[^\]]*\]\(\s*<?)([^)\s>]+)(>?(?:\s+\"[^\"]*\")?\s*\))|^(\s*\[[^\]]+\]:\s*)(\S+)", re.M)


def publish(cml: CML, report: str, md_file: Path) -> str:
    """Upload every local file the markdown points to (as CML's --publish does) and link the copy."""

    def replace(m: re.Match[str]) -> str:
        target = m[2] or m[5]
        title = m[3] or ""
        if "CML watermark" in title or target.startswith(("http://", "https://")):
            return m[0]
        path = (md_file.parent / target).resolve()  # path.resolve(dirname(markdownFile), node.url)
        if not path.is_file():
            return m[0]  # ENOENT: left alone
        data = path.read_bytes()
        answer = cml.call("POST", "/_assets", {"path": str(path), "sha256": hashlib.sha256(data).hexdigest()})
        return f"{m[1]}{answer['url']}{title}" if m[2] else f"{m[4]}{answer['url']}"

    return LINKS.sub(replace, report)


def comment(argv: list[str], update: bool) -> None:
    opts, positional = parse(argv, COMMENT, "CML_COMMENT")
    if len(positional) != 1:
        fail("Not enough non-option arguments: got 0, need at least 1" if not positional else "Too many arguments")
    if opts.get("pr") and (opts.get("target") or opts.get("commit-sha")):
        fail("Arguments pr and target are mutually exclusive")
    if opts.get("rm-watermark") and opts.get("watermark-title"):
        fail("Arguments rm-watermark and watermark-title are mutually exclusive")
    update = update or bool(opts.get("update"))
    cml = CML(opts)
    if opts.get("rm-watermark") and update:
        fail("watermarks are mandatory for updatable comments")
    md = Path(positional[0])
    report = md.read_text()  # ENOENT: CML exits 1 (without --watch)
    mark, mark_re = watermark(opts.get("watermark-title", ""), opts.get("commit-sha") or cml.trigger_sha())
    if not opts.get("rm-watermark"):
        report = f"{report}\n\n{mark}"
    try:
        if opts.get("publish", True):
            report = publish(cml, report, md)
        target = "auto"
        if opts.get("commit-sha"):
            target = f"commit/{opts['commit-sha']}"
        elif opts.get("pr"):
            target = "pr"
        elif opts.get("target"):
            target = opts["target"]
        kind, ident = target_of(cml, target)
        if kind == "commit":
            listing, patch = f"/commits/{ident}/comments", "/comments/{}"
        else:  # pull request and issue comments are both issue comments on GitHub
            listing, patch = f"/issues/{ident}/comments", "/issues/comments/{}"
        if update:  # the last comment with this watermark, whoever wrote it (CML does not check)
            found = [c for c in cml.call("GET", listing) if mark_re.search(c["body"])]
            if found:
                print(cml.call("PATCH", patch.format(found[-1]["id"]), {"body": report})["html_url"])
                return
        print(cml.call("POST", listing, {"body": report})["html_url"])
    except RuntimeError as e:
        fail(str(e))


# ---- cml pr create ------------------------------------------------------------------------------


def pr_create(argv: list[str]) -> None:
    opts, globs = parse(argv, PR, "CML_PR")
    modes = [m for m in ("merge", "rebase", "squash") if opts.get(m)]
    if len(modes) > 1:
        fail(f"Arguments {modes[0]} and {modes[1]} are mutually exclusive")
    cml = CML(opts)
    remote = opts.get("remote", "origin")
    # ci(): drop checkout's credential, set the identity, put the token into the remote's URL
    server = cml.repo_url.removesuffix(f"/{cml.slug}")
    git("config", "--unset-all", f"http.{server}/.extraheader", check=False)
    git("config", "user.name", opts.get("user-name", "Olivaw[bot]"))
    git("config", "user.email", opts.get("user-email", "olivaw@iterative.ai"))
    scheme, _, host = server.partition("://")
    git("remote", "set-url", remote, f"{scheme}://token:{cml.token}@{host}/{cml.slug}.git")

    changed = {line[3:].split(" -> ")[-1].strip('"') for line in git("status", "--porcelain", "-uall").splitlines()}
    if not changed and globs:
        print("warn: No changed files matched by glob path. Nothing to do.", file=sys.stderr)
        return
    prefix = git("rev-parse", "--show-prefix")
    expanded: list[str] = []
    for pattern in globs:  # globby with dot: true and expandDirectories
        for hit_path in sorted(Path().glob(pattern)):
            expanded += [str(p) for p in hit_path.rglob("*") if p.is_file()] if hit_path.is_dir() else [str(hit_path)]
    paths = [p for p in expanded if prefix + p in changed]
    if not paths and globs:
        print("warn: Input files are not affected. Nothing to do.", file=sys.stderr)
        return
    sha = cml.trigger_sha()
    target = cml.branch()
    url = git("config", "--get", f"remote.{remote}.url")
    if opts.get("target-branch"):
        if subprocess.run(
            ["git", "ls-remote", "--exit-code", url, opts["target-branch"]], capture_output=True
        ).returncode:
            fail("The target branch does not exist.")
        target = opts["target-branch"]
    source = opts.get("branch") or f"{target}-cml-pr-{sha[:8]}"
    try:
        if source in git("ls-remote", url, source):
            print(f"::warning::Branch {source} already exists", file=sys.stderr)
            for p in cml.call("GET", "/pulls?state=open"):
                if source.endswith(p["head"]["ref"]) and target.endswith(p["base"]["ref"]):
                    print(f"[CML's Pull Request]({p['html_url']})" if opts.get("md") else p["html_url"])
                    return
        else:
            git("fetch", remote, sha)
            if paths:
                git("checkout", "-B", target, sha)
            git("checkout", "-b", source)
            if paths:
                git("add", *paths)
                message = opts.get("message") or f"CML PR for {sha[:8]}"
                if opts.get("skip-ci") or (not opts.get("message") and not modes):
                    message += " [skip ci]"
                git("commit", "-m", message)
            git("push", "--set-upstream", remote, source)
        pr = cml.call("POST", "/pulls", {
            "head": source, "base": target, "title": opts.get("title") or f"CML PR for {target} {sha[:8]}",
            "body": opts.get("body") or f"\nAutomated commits for {cml.repo_url}/commit/{sha} created by CML.\n      ",
        })  # fmt: skip
        if modes:  # auto-merge; when GitHub refuses it, CML merges right away
            try:
                variables = {"pullRequestId": pr["node_id"], "mergeMethod": modes[0]}
                cml.call(
                    "POST", "/graphql", {"query": "mutation { enablePullRequestAutoMerge }", "variables": variables}
                )
            except RuntimeError as e:
                refusals = ("Can't enable auto-merge", "Protected branch rules not configured", "clean status")
                if not any(s in str(e) for s in refusals):
                    raise
                print(f"warn: Failed to enable auto-merge ({e}). Trying to merge immediately...", file=sys.stderr)
                cml.call("PUT", f"/pulls/{pr['number']}/merge", {"merge_method": modes[0]})
    except RuntimeError as e:
        fail(str(e))
    print(f"[CML's Pull Request]({pr['html_url']})" if opts.get("md") else pr["html_url"])


def main(argv: list[str]) -> None:
    if argv[:2] in (["comment", "create"], ["comment", "update"]):
        comment(argv[2:], update=argv[1] == "update")
    elif argv[:2] == ["pr", "create"]:
        pr_create(argv[2:])
    elif argv[:1] == ["--version"]:
        print("0.20.6")
    else:
        fail(f"the CML double models comment create|update and pr create, not {' '.join(argv[:2])}")


if __name__ == "__main__":
    main(sys.argv[1:])
