"""One continuous-training round, played locally with the same commands CI runs.

Drifted batches land and are served by production; the monitor flags them; a retraining
branch ingests them and reproduces the pipeline; the PR report compares the candidate with
production on the recent holdout; the branch is merged and deployed through staging.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.errors import UserError


def _run(cmd: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise UserError(f"`{' '.join(cmd)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def play(root: Path, periods: int, drift: float, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the round; return what happened (also printed step by step)."""
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], root).stdout.strip():
        raise UserError("the working tree has uncommitted changes; commit or stash them before `make cycle`")
    base = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], root).stdout.strip()
    status = json.loads(_run(["mlops", "status", "--json"], root).stdout)
    serving = next((r for r in status if r["environment"] == "production" and r.get("state") == "up"), None)
    if not serving or serving.get("version") in (None, "none"):
        raise UserError("production serves nothing; run `make demo` first")
    result: dict[str, Any] = {"production_before": serving["version"]}
    say(f"1/6 production serves {serving['version']}; {periods} new period(s) arrive with drift {drift}")
    landed = []
    for _ in range(periods):
        out = _run(["mlops", "data", "--next", "--drift", str(drift), "--drift-start", "1"], root).stdout
        landed.append(out.split("[data] ")[1].split(" ")[0])
    since = time.time()
    labels = root / "data" / "labels"
    for path in landed:
        _run(["mlops", "serve", "replay", "production", "--batch", path, "--labels-to", str(labels)], root)
    say(f"2/6 served {', '.join(Path(p).name for p in landed)} through production; their labels landed in {labels}")
    monitored = _run(["mlops", "monitor", "production", "--since", str(since)], root, check=False)
    breaches = [line.removeprefix("BREACH ") for line in monitored.stderr.splitlines() if line.startswith("BREACH")]
    result["monitor_breaches"] = breaches
    say(
        f"3/6 monitor: {len(breaches)} breach(es)"
        + (f", e.g. {breaches[0]}" if breaches else "")
        + " (reports/monitor.md)"
    )
    branch = f"retrain/{time.strftime('%Y%m%d-%H%M%S')}"
    _run(["git", "checkout", "-q", "-b", branch], root)
    _run(["mlops", "ingest"], root)
    _run(["git", "add", "data/raw.dvc"], root)
    _run(["git", "commit", "-q", "-m", f"Ingest {len(landed)} new period(s)"], root)
    pr = _run(["mlops", "pr", "--base", base], root, check=False)
    report = (root / "reports" / "pr" / "pr-report.md").read_text()
    result["gate_passed"] = pr.returncode == 0
    say(f"4/6 branch {branch}: ingested, retrained; PR report: {report.splitlines()[0].lstrip('# ')}")
    if pr.returncode != 0:
        say("    the gate failed: the branch stays unmerged for a person to look at (reports/pr/pr-report.md)")
        return result
    _run(["git", "add", "-A", "dvc.lock", "reports", "models/package.json"], root)
    _run(["git", "commit", "-q", "-m", "Retrain: results"], root)
    _run(["git", "checkout", "-q", base], root)
    _run(["git", "merge", "-q", "--no-ff", branch, "-m", f"Merge {branch}"], root)
    _run(["dvc", "checkout", "-q"], root)
    say(f"5/6 merged {branch} into {base}")
    _run(["mlops", "deploy", "staging"], root)
    _run(["mlops", "promote", "production"], root)
    after = json.loads(_run(["mlops", "status", "--json"], root).stdout)
    result["production_after"] = next(r["version"] for r in after if r["environment"] == "production")
    say(f"6/6 staging and production now serve {result['production_after']} (was {result['production_before']})")
    return result
