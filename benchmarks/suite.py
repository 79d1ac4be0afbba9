"""The test suite's time (`make bench-suite`): writes reports/bench-suite.json.

`make test` is two tiers, run one after the other: the unit tier (`make test-unit`, workers as
many as the cores up to 4) and the rest (`make test-slow`: integration, end-to-end and workflow
tests on two workers). Each is timed here as `make test` runs it, with its test counts: a tier
with a failure or an error makes its time no figure for the target, and the benchmark says so
and exits 1. Setting up `.venv` on a fresh machine comes on top (`.ci/run` on a fresh clone
shows the whole).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from pipeline import ROOT, run

TARGETS = {"unit_tier_s": 60.0, "make_test_min": 15.0}
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def tier(target: str) -> dict[str, Any]:
    """One tier as `make test` runs it: wall and CPU seconds, and pytest's counts from its last line."""
    result = run(["make", "--no-print-directory", target, "SKIP_SETUP=1"], ROOT, check=False)
    summary = [line for line in result["output"].splitlines() if re.match(r"^=+ .*\d+ (passed|failed)", line)]
    counts = {kind.rstrip("s"): int(n) for n, kind in COUNTS.findall(summary[-1])} if summary else {}
    return {"wall_s": result["wall_s"], "cpu_s": result["cpu_s"], "counts": counts}


def main() -> int:
    results: dict[str, Any] = {"time": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count()}
    for name, target in (("unit", "test-unit"), ("slow", "test-slow")):
        results[name] = tier(target)
        r = results[name]
        print(f"make {target}: {r['wall_s']} s ({r['cpu_s']} s CPU), {r['counts'] or 'no pytest summary'}")
    # green: tests passed and none failed or errored (no summary at all: make or pytest broke first)
    green = all(
        results[t]["counts"].get("passed") and not (results[t]["counts"].keys() & {"failed", "error"})
        for t in ("unit", "slow")
    )
    results["summary"] = {
        "unit_tier_s": results["unit"]["wall_s"],
        "make_test_min": round((results["unit"]["wall_s"] + results["slow"]["wall_s"]) / 60, 2),
        "green": green,
    }
    out = ROOT / "reports" / "bench-suite.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'figure':<16} {'measured':>10} {'target':>8}")
    for key, target in TARGETS.items():
        unit = "min" if key.endswith("_min") else "s"
        print(f"{key:<16} {results['summary'][key]:>8} {unit:<3} <= {target} {unit}")
    print(f"-> {out.relative_to(ROOT)}")
    if not green:
        print("a tier failed or ran no test: its time is not a figure for the target")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
