"""One continuous-training round of the example, played locally with the library CI's commands use.

Drifted batches land and are served by production; the monitor flags them; a retraining
branch ingests them and reproduces the pipeline; the PR report compares the candidate with
production on the recent holdout; the branch is merged and deployed through staging.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from mlops.core import paths
from mlops.core.contract import load_contract
from mlops.core.errors import ServiceError, UserError
from mlops.core.lineage import git, git_dirty
from mlops.example import data as example_data
from mlops.monitoring import monitor as mon
from mlops.monitoring.ingest import ingest
from mlops.release import deploy, report, repro
from mlops.release.deploy import Context, Site
from mlops.serving.replay import replay
from mlops.serving.torchserve import Client


def _dvc(site: Site, *args: str) -> None:
    proc = subprocess.run(["dvc", *args], cwd=site.root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"`dvc {' '.join(args)}` failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def _serving(site: Site, env: str) -> str | None:
    row = next(r for r in deploy.status(site) if r["environment"] == env)
    return None if row.get("state") != "up" or row.get("version") in (None, "none") else str(row["version"])


def play(site: Site, periods: int, drift: float) -> dict[str, Any]:
    """Run the round; return what happened (also said step by step through ``site.progress``)."""
    root, say = site.root, site.progress
    if site.params.data is None:
        raise UserError(
            "`mlops cycle` plays a round with the example data only (params.yaml has no `data:` section); "
            "with your own data, new batches come in through `mlops ingest` and a pull request"
        )
    if git_dirty(root):
        raise UserError("the working tree has uncommitted changes; commit or stash them before `make cycle`")
    base = git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    before = _serving(site, "production")
    if before is None:
        raise UserError("production serves nothing; run `make demo` first")
    result: dict[str, Any] = {"production_before": before}
    say(f"1/6 production serves {before}; {periods} new period(s) arrive with drift {drift}")
    contract = load_contract(root / paths.CONTRACT)
    drifted = site.params.data.model_copy(update={"drift": drift, "drift_start": 1})
    landing, raw = root / paths.LANDING, root / paths.RAW
    landed = [example_data.land_next(drifted, raw, landing) for _ in range(periods)]
    since = time.time()
    client = Client(site.endpoint("production", start=False))
    replay(client, site.name, contract, landed, labels_to=root / paths.LABELS, progress=lambda _: None)
    say(f"2/6 served {', '.join(p.name for p in landed)} through production; their labels landed in {paths.LABELS}")
    monitored = mon.monitor_environment(site, "production", contract, labels=root / paths.LABELS, since=since)
    mon.write_report(monitored, root / paths.MONITOR_REPORT, site.params.monitor.psi_threshold)
    result["monitor_breaches"] = monitored.breaches
    first = f", e.g. {monitored.breaches[0]}" if monitored.breaches else ""
    say(f"3/6 monitor: {len(monitored.breaches)} breach(es){first} ({paths.MONITOR_REPORT})")

    branch = f"retrain/{time.strftime('%Y%m%d-%H%M%S')}"
    git(root, "checkout", "-q", "-b", branch)
    ingest(str(landing), raw, root / paths.QUARANTINE, contract, progress=lambda _: None, cwd=root)
    git(root, "add", str(paths.RAW_DVC))
    git(root, "commit", "-q", "-m", f"Ingest {len(landed)} new period(s)")
    ran = repro.run(root, echo=False)
    failures = report.write(root, base, contract, site.params.gates, root / paths.PR_REPORT, ran)
    result["gate_passed"] = not failures
    verdict = (root / paths.PR_REPORT).read_text().splitlines()[0].lstrip("# ")
    say(f"4/6 branch {branch}: ingested, retrained; PR report: {verdict}")
    if failures:
        say(f"    the gate failed: the branch stays unmerged for a person to look at ({paths.PR_REPORT})")
        return result
    git(root, "add", "-A", "dvc.lock", str(paths.REPORTS), str(paths.PACKAGE))
    git(root, "commit", "-q", "-m", "Retrain: results")
    git(root, "checkout", "-q", base)
    git(root, "merge", "-q", "--no-ff", branch, "-m", f"Merge {branch}")
    _dvc(site, "checkout", "-q")
    say(f"5/6 merged {branch} into {base}")
    package = root / paths.PACKAGE
    ctx = Context.load(site, contract, package, root / paths.PIPELINE, root / paths.HOLDOUT)
    deploy.deploy_staging(ctx)
    deploy.promote_production(ctx)
    result["production_after"] = _serving(site, "production")
    say(f"6/6 staging and production now serve {result['production_after']} (was {before})")
    return result
