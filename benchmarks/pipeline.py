"""Pipeline benchmarks (`make bench-pipeline`, after `make demo`): writes reports/bench-pipeline.json.

1. `validate` on 1,000,008 generated rows (12 batches).
2. `make pr` (`mlops pr`) after changing one train param, in a private copy of the repository.
3. A no-op `dvc repro` (the best of three).
4. train + evaluate on 10,000, 100,000 and 1,000,000 rows: seconds and peak memory per stage, as a
   table (reports/bench-pipeline/cost.csv) and a plot (cost.png).
5. The pull-request workflow on a GitHub runner, estimated from its parts (see ``pr_workflow``).

Figures, not pass/fail: each sits beside its target in the printed table. Wall time on a busy
machine is noisy, so CPU time (the process and its children) is reported beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlops.core.config import DataParams, load_params
from mlops.core.contract import load_contract
from mlops.example.data import generate
from mlops.pipeline.datasets import read_raw, write_table
from mlops.pipeline.splitting import split
from mlops.pipeline.validation import validate_dir

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "bench-pipeline"
SIZES = (10_000, 100_000, 1_000_000)
TARGETS = {"validate_1m_rows_s": 5.0, "make_pr_one_param_s": 12.0, "noop_dvc_repro_s": 1.0, "pr_workflow_min": 5.0}
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "node_modules", ".serve", "site", "__pycache__", "mlartifacts")


TIME = shutil.which("time", path="/usr/bin:/bin")  # GNU time: the command's own peak memory


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> dict[str, Any]:
    """Run a command; its wall seconds, CPU seconds (with its children) and peak memory (MB).

    The peak comes from GNU time when it is there: a child's own high-water mark would otherwise
    start at this process's memory (Linux keeps it across fork and exec).
    """
    marker = "peak-rss-kb="
    full = [TIME, "-f", marker + "%M", *cmd] if TIME else cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    peaks = [int(line.split("=", 1)[1]) for line in out.splitlines() if line.startswith(marker)]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_mb": round((peaks[-1] if peaks else usage.ru_maxrss) / 1024, 1),
        "output": out,
    }


def private_copy(dest: Path) -> Path:
    """The repository's files (not its .git) in a new git repository, for runs that commit."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True, env=git_env())
    return dest


def fresh_clone(dest: Path) -> Path:
    """What `git clone` of this checkout gives (tracked files only: no data, cache or models)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True, env=git_env())
    return dest


def git_env() -> dict[str, str]:
    names = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com"}
    names |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    return {**os.environ, **names}


def validate_1m(params: Any, contract: Any, tmp: Path) -> dict[str, Any]:
    big = DataParams.model_validate(params.data.model_dump() | {"periods": 12, "rows_per_period": 83_334})
    raw = tmp / "raw"
    generate(big, raw)
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    report = validate_dir(raw, contract)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum((a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime) for a, b in zip(after, before, strict=True))
    assert report.success, "the generated data should validate"
    return {"rows": sum(report.rows.values()), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "raw": raw}


def make_pr(tmp: Path) -> dict[str, Any]:
    """`mlops pr` after changing one train param, in a private copy (its dvc cache and MLflow store)."""
    repo = private_copy(tmp / "repo")
    for name in ("mlflow.db", "mlartifacts"):
        if (ROOT / name).exists():
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, repo / name)
    run(["dvc", "repro", "-q"], repo)  # up to date, as after `make demo`
    subprocess.run(["git", "commit", "-qam", "repro", "--allow-empty"], cwd=repo, env=git_env(), capture_output=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    hgb = params["train"]["hist_gradient_boosting"]
    hgb["learning_rate"] = round(hgb["learning_rate"] * 1.2, 6)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["mlops", "pr", "--base", "main"], repo, git_env())
    report = (repo / "reports" / "pr" / "pr-report.md").read_text()
    stages = {
        m[0]: float(m[2])
        for m in re.findall(r"^\| (\w+) \| (ran|unchanged|restored[^|]*) \| ([\d.]+) \|$", report, re.M)
    }
    return {k: v for k, v in result.items() if k != "output"} | {"stages_s": stages}


def noop_repro() -> dict[str, float]:
    runs = [run(["dvc", "repro"], ROOT) for _ in range(3)]
    best = min(runs, key=lambda r: r["wall_s"])
    return {k: best[k] for k in ("wall_s", "cpu_s")}


def cost_vs_rows(params: Any, contract: Any, raw_1m: Path, tmp: Path) -> list[dict[str, Any]]:
    """train and evaluate (stages, no MLflow) on N of the 1M generated rows (the first of each period)."""
    frame = read_raw(raw_1m, contract)
    out = []
    for n in SIZES:
        work = tmp / f"rows-{n}"
        periods = frame[contract.time].nunique() if contract.time else 1
        sample = frame.groupby(contract.time).head(-(-n // periods)) if contract.time else frame.head(n)
        train_set, holdout = split(sample, contract, params.split)
        write_table(train_set, work / "split" / "train.parquet")
        write_table(holdout, work / "split" / "holdout.parquet")
        stage = [sys.executable, "-m"]
        common = [
            "--params",
            str(ROOT / "params.yaml"),
            "--contract",
            str(ROOT / "data" / "contract.yaml"),
            "--no-mlflow",
        ]
        files = {"--train": work / "split" / "train.parquet", "--model": work / "pipeline.joblib"}
        files |= {
            "--curves": work / "train",
            "--metrics": work / "train.json",
            "--reference": work / "reference.parquet",
        }
        train = run([*stage, "mlops.stages.train", *common, *(str(x) for kv in files.items() for x in kv)], ROOT)
        files = {"--split": work / "split", "--model": work / "pipeline.joblib", "--metrics": work / "metrics.json",
                 "--plots": work / "evaluate"}  # fmt: skip
        evaluate = run([*stage, "mlops.stages.evaluate", *common, *(str(x) for kv in files.items() for x in kv)], ROOT)
        importance_rows = json.loads((work / "metrics.json").read_text())["rows"]["importance"]
        row = {"rows": n, "train_rows": len(train_set), "holdout_rows": len(holdout)}
        row["importance_rows"] = importance_rows  # permutation importance's sample (evaluate.importance_rows)
        for name, r in (("train", train), ("evaluate", evaluate)):
            row |= {f"{name}_{k}": v for k, v in r.items() if k != "output"}
        out.append(row)
        print(f"{n:>9,} rows: train {train['wall_s']:.1f}s ({train['peak_mb']:.0f} MB), "
              f"evaluate {evaluate['wall_s']:.1f}s ({evaluate['peak_mb']:.0f} MB, "
              f"importance on {importance_rows:,} rows)")  # fmt: skip
        shutil.rmtree(work)
    return out


def plot_cost(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_ax, mem_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in ("train", "evaluate"):
        time_ax.loglog(table["rows"], table[f"{stage}_wall_s"], "o-", label=f"{stage} (wall)")
        time_ax.loglog(table["rows"], table[f"{stage}_cpu_s"], "x--", label=f"{stage} (CPU)")
        mem_ax.semilogx(table["rows"], table[f"{stage}_peak_mb"], "o-", label=stage)
    linear = table[["rows"]].assign(s=table["rows"] * table["train_cpu_s"].iloc[-1] / table["rows"].iloc[-1])
    time_ax.loglog(linear["rows"], linear["s"], ":", color="grey", label="linear")
    time_ax.set(xlabel="rows", ylabel="seconds", title="time")
    mem_ax.set(xlabel="rows", ylabel="peak memory (MB)", title="peak memory")
    time_ax.legend(fontsize=8)
    mem_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def timed_make(target: str, cwd: Path) -> dict[str, float]:
    result = run(["make", "--no-print-directory", target, "SKIP_SETUP=1"], cwd)
    return {k: result[k] for k in ("wall_s", "cpu_s")}


# Steps GitHub runs that cannot be timed here. Sources: typical durations of these actions on
# ubuntu-latest (4 vCPUs) with a warm cache; each is an estimate, written as such in the report.
HOSTED = {
    "job start (runner assigned, checkout)": 10.0,
    "actions/setup-python and actions/setup-java": 15.0,
    "restore the cached .venv (warm pip cache)": 20.0,
    "make setup with the environment restored (pip check of requirements, npm ci)": 25.0,
}


def pr_workflow(tmp: Path) -> dict[str, Any]:
    """The PR workflow's two parallel jobs, timed step by step here; hosted steps estimated.

    ``checks``: lint and the unit tests. ``reproduce``: the example data and a full `dvc repro`
    (no remote configured, so no run-cache), the report and the gate. The workflow takes the
    longer job plus the comment job. A GitHub runner has 4 vCPUs to this machine's 2; the
    measured parts are counted as they are (no speed-up assumed).
    """
    repo = fresh_clone(tmp / "fresh")
    checks = {"make lint": timed_make("lint", ROOT), "make test-unit": timed_make("test-unit", ROOT)}
    data = run(["make", "--no-print-directory", "ci-data", "SKIP_SETUP=1"], repo)
    pr = run(["mlops", "pr", "--base", "main"], repo, git_env())
    reproduce = {"make ci-data (example data)": {k: data[k] for k in ("wall_s", "cpu_s")},
                 "make pr (full dvc repro, report, gate)": {k: pr[k] for k in ("wall_s", "cpu_s")}}  # fmt: skip
    hosted = sum(HOSTED.values())
    jobs = {
        "checks": hosted + sum(s["wall_s"] for s in checks.values()),
        "reproduce": hosted + sum(s["wall_s"] for s in reproduce.values()) + 10.0,  # + artifact upload
    }
    comment = 30.0  # a job of its own: start, download the report, CML posts it
    return {
        "hosted_steps_estimated_s": HOSTED,
        "checks_measured": checks,
        "reproduce_measured": reproduce,
        "jobs_s": {k: round(v, 1) for k, v in jobs.items()},
        "comment_job_estimated_s": comment,
        "total_min": round((max(jobs.values()) + comment) / 60, 2),
    }


def main() -> int:
    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / "data" / "contract.yaml")
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"time": time.strftime("%Y-%m-%d %H:%M"), "load_average": round(os.getloadavg()[0], 1)}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        validate = validate_1m(params, contract, tmp)
        results["validate_1m"] = {k: v for k, v in validate.items() if k != "raw"}
        print(f"validate {validate['rows']:,} rows: {validate['wall_s']} s ({validate['cpu_s']} s CPU)")
        results["make_pr_one_param"] = make_pr(tmp)
        pr = results["make_pr_one_param"]
        parts = ", ".join(f"{k} {v} s" for k, v in pr["stages_s"].items())
        print(f"make pr after one train param: {pr['wall_s']} s ({pr['cpu_s']} s CPU); stages: {parts}")
        results["noop_dvc_repro"] = noop_repro()
        cost = cost_vs_rows(params, contract, validate["raw"], tmp)
        results["train_evaluate_by_rows"] = cost
        table = pd.DataFrame(cost)
        table.to_csv(OUT / "cost.csv", index=False)
        plot_cost(table, OUT / "cost.png")
        results["pr_workflow"] = pr_workflow(tmp)
    results["summary"] = {
        "validate_1m_rows_s": results["validate_1m"]["wall_s"],
        "make_pr_one_param_s": results["make_pr_one_param"]["wall_s"],
        "noop_dvc_repro_s": results["noop_dvc_repro"]["wall_s"],
        "pr_workflow_min": results["pr_workflow"]["total_min"],
    }
    out = ROOT / "reports" / "bench-pipeline.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'figure':<24} {'measured':>10} {'target':>8}")
    for key, value in results["summary"].items():
        unit = "min" if key.endswith("_min") else "s"
        print(f"{key:<24} {value:>8} {unit:<3} {'<=':>2} {TARGETS[key]} {unit}")
    print(f"-> {out.relative_to(ROOT)}, {(OUT / 'cost.png').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
