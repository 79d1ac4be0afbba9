#!/usr/bin/env python3
"""The GitHub CLI double: the ``gh`` calls the workflows and the Makefile make, against the fake GitHub.

Rules kept from gh 2.x: the token is ``GH_TOKEN``, else ``GITHUB_TOKEN`` (neither: exit 4 with
gh's message); the repository is ``-R/--repo``, else ``GH_REPO``, else the git remote of the
current directory (upstream, github, origin; outside a repository: gh's error); ``--jq`` needs
``--json`` (except for ``gh api``) and is evaluated by jq, as gh's gojq would; unknown flags are
errors. gh's GraphQL calls (issue list/create/comment) are mapped to the REST endpoints with the
same permission needs. Every request names the run and job (``X-Act-Run``/``X-Act-Job``) so the
fake GitHub can apply the job's ``permissions:``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

ENV = os.environ


def die(message: str, code: int = 1) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(code)


def token() -> str:
    found = ENV.get("GH_TOKEN") or ENV.get("GITHUB_TOKEN")
    if not found:
        die(
            "gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable. Example:\n"
            "  env:\n    GH_TOKEN: ${{ github.token }}",
            4,
        )
    return found


def repository(opts: dict[str, Any]) -> str:
    given = opts.get("repo") or ENV.get("GH_REPO")
    if given:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", given):
            die(f'expected the "[HOST/]OWNER/REPO" format, got "{given}"')
        return str(given)
    proc = subprocess.run(["git", "remote", "-v"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        die(f"failed to run git: {proc.stderr.strip()}")
    for name in ("upstream", "github", "origin"):
        m = re.search(rf"^{name}\s+\S*?/([\w.-]+)/([\w.-]+?)(?:\.git)?\s", proc.stdout, re.M)
        if m:
            return f"{m[1]}/{m[2]}"
    die("none of the git remotes configured for this repository point to a known GitHub host.")


def call(method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        ENV["GITHUB_API_URL"] + path, method=method, data=None if body is None else json.dumps(body).encode()
    )
    request.add_header("Authorization", f"token {token()}")
    request.add_header("Content-Type", "application/json")
    request.add_header("X-Act-Run", ENV.get("GITHUB_RUN_ID", ""))
    request.add_header("X-Act-Job", ENV.get("GITHUB_JOB", ""))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = response.read()
            return json.loads(data) if data else None
    except urllib.error.HTTPError as e:
        message = json.loads(e.read() or b"{}").get("message", "")
        die(f"HTTP {e.code}: {message} ({ENV['GITHUB_API_URL']}{path})")


def parse(argv: list[str], flags: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """flags: long name -> 'str' | 'bool' | 'list'; a short alias maps to its long name ('-R': 'repo')."""
    opts: dict[str, Any] = {}
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        key, eq, value = arg.partition("=")
        key = flags.get(key, key.lstrip("-")) if not key.startswith("--") else key[2:]
        kind = flags.get(key)
        if kind is None or kind not in ("str", "bool", "list"):
            die(f"unknown flag: {arg}\n\nUsage: gh ...")
        if kind == "bool":
            opts[key] = True
            continue
        if not eq:
            value = next(args, None)  # type: ignore[arg-type]
            if value is None:
                die(f"flag needs an argument: {arg}")
        if kind == "list":
            opts.setdefault(key, []).extend(value.split(","))
        else:
            opts[key] = value
    return opts, positional


def jq(data: Any, expression: str) -> None:
    """gh's --jq: strings print raw, null prints an empty line (go-gh's jsonScalarToString)."""
    proc = subprocess.run(["jq", "-r", expression], input=json.dumps(data), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        die(f"failed to parse jq expression: {proc.stderr.strip()}")
    print("\n".join("" if line == "null" else line for line in proc.stdout.splitlines()))


def emit(data: Any, opts: dict[str, Any]) -> None:
    if "jq" in opts and "json" not in opts:
        die("cannot use `--jq` without specifying `--json`")
    fields = opts["json"]
    data = [{k: v for k, v in d.items() if k in fields} for d in data] if isinstance(data, list) else data
    if "jq" in opts:
        jq(data, opts["jq"])
    else:
        print(json.dumps(data, indent=2))


def body_of(opts: dict[str, Any]) -> str:
    if "body-file" in opts:
        if opts["body-file"] == "-":
            return sys.stdin.read()
        try:
            return Path(opts["body-file"]).read_text()
        except OSError:
            die(f"open {opts['body-file']}: no such file or directory")
    return str(opts.get("body", ""))


COMMON = {"repo": "str", "-R": "repo"}


def issue_list(argv: list[str]) -> None:
    opts, _ = parse(argv, {**COMMON, "label": "list", "-l": "label", "state": "str", "-s": "state",
                           "json": "list", "jq": "str", "-q": "jq", "limit": "str", "-L": "limit"})  # fmt: skip
    query = f"?state={opts.get('state', 'open')}" + (f"&labels={','.join(opts['label'])}" if opts.get("label") else "")
    issues = call("GET", f"/repos/{repository(opts)}/issues{query}")[: int(opts.get("limit", 30))]
    if "json" in opts or "jq" in opts:
        emit(issues, opts)
    else:
        for i in issues:
            print(f"#{i['number']}\t{i['title']}")


def issue_comment(argv: list[str]) -> None:
    opts, positional = parse(argv, {**COMMON, "body": "str", "-b": "body", "body-file": "str", "-F": "body-file"})
    if len(positional) != 1 or not re.fullmatch(r"#?\d+|https?://\S+/issues/\d+", positional[0]):
        die(f"invalid issue format: {positional!r}")
    if "body" not in opts and "body-file" not in opts:
        die("--body or --body-file required when not running interactively")
    number = re.findall(r"\d+", positional[0])[-1]
    print(call("POST", f"/repos/{repository(opts)}/issues/{number}/comments", {"body": body_of(opts)})["html_url"])


def issue_create(argv: list[str]) -> None:
    opts, positional = parse(argv, {**COMMON, "title": "str", "-t": "title", "body": "str", "-b": "body",
                                    "body-file": "str", "-F": "body-file", "label": "list", "-l": "label"})  # fmt: skip
    if positional:
        die(f"unknown arguments {positional}")
    if not opts.get("title") or ("body" not in opts and "body-file" not in opts):
        die("must provide `--title` and `--body` (or `--fill` or `--template`) when not running interactively")
    issue = {"title": opts["title"], "body": body_of(opts), "labels": opts.get("label", [])}
    print(call("POST", f"/repos/{repository(opts)}/issues", issue)["html_url"])


def label_create(argv: list[str]) -> None:
    opts, positional = parse(argv, {**COMMON, "force": "bool", "-f": "force", "color": "str", "-c": "color",
                                    "description": "str", "-d": "description"})  # fmt: skip
    if len(positional) != 1:
        die("accepts 1 arg(s)")
    repo = repository(opts)
    label = {"name": positional[0], "color": opts.get("color", "ededed"), "description": opts.get("description", "")}
    request = urllib.request.Request(
        f"{ENV['GITHUB_API_URL']}/repos/{repo}/labels", method="POST", data=json.dumps(label).encode()
    )
    for key, value in (("Authorization", f"token {token()}"), ("X-Act-Run", ENV.get("GITHUB_RUN_ID", "")),
                       ("X-Act-Job", ENV.get("GITHUB_JOB", ""))):  # fmt: skip
        request.add_header(key, value)
    try:
        urllib.request.urlopen(request, timeout=10).read()
    except urllib.error.HTTPError as e:
        if e.code == 422 and opts.get("force"):
            call("PATCH", f"/repos/{repo}/labels/{positional[0]}", label)
        else:
            die(f"HTTP {e.code}: {'label already exists' if e.code == 422 else e.reason}")


def workflow_run(argv: list[str]) -> None:
    opts, positional = parse(argv, {**COMMON, "ref": "str", "-r": "ref", "field": "list", "-F": "field",
                                    "raw-field": "list", "-f": "raw-field", "json": "bool"})  # fmt: skip
    if len(positional) != 1:
        die("workflow ID, name, or filename required when not running interactively")
    repo = repository(opts)
    workflow = call("GET", f"/repos/{repo}/actions/workflows/{positional[0]}")
    ref = opts.get("ref") or call("GET", f"/repos/{repo}")["default_branch"]
    inputs = dict(kv.split("=", 1) for kv in opts.get("raw-field", []) + opts.get("field", []))
    call("POST", f"/repos/{repo}/actions/workflows/{workflow['path'].rsplit('/', 1)[-1]}/dispatches",
         {"ref": ref, "inputs": inputs})  # fmt: skip
    print(f"✓ Created workflow_dispatch event for {positional[0]} at {ref}")


def api(argv: list[str]) -> None:
    opts, positional = parse(argv, {"method": "str", "-X": "method", "jq": "str", "-q": "jq", "header": "list",
                                    "-H": "header", "paginate": "bool", "field": "list", "-F": "field",
                                    "raw-field": "list", "-f": "raw-field"})  # fmt: skip
    if len(positional) != 1:
        die("accepts 1 arg(s)")
    endpoint = positional[0].lstrip("/")
    if "{owner}" in endpoint or "{repo}" in endpoint:
        owner, name = repository({}).split("/")
        endpoint = endpoint.replace("{owner}", owner).replace("{repo}", name)
    fields = opts.get("raw-field", []) + opts.get("field", [])
    method = opts.get("method") or ("POST" if fields else "GET")
    body = dict(kv.split("=", 1) for kv in fields) if fields else None
    data = call(method, f"/{endpoint}", body)
    if "jq" in opts:
        jq(data, opts["jq"])
    elif data is not None:
        print(json.dumps(data))


COMMANDS = {
    ("issue", "list"): issue_list,
    ("issue", "comment"): issue_comment,
    ("issue", "create"): issue_create,
    ("label", "create"): label_create,
    ("workflow", "run"): workflow_run,
}


def main(argv: list[str]) -> None:
    if argv[:1] != ["--version"]:
        token()  # gh asks for authentication before anything else
    if argv[:1] == ["api"]:
        api(argv[1:])
    elif tuple(argv[:2]) in COMMANDS:
        COMMANDS[argv[0], argv[1]](argv[2:])
    elif argv[:1] == ["--version"]:
        print("gh version 2.0.0 (test double)")
    else:
        die(f"gh double: unsupported command: {' '.join(argv[:2])}")


if __name__ == "__main__":
    main(sys.argv[1:])
