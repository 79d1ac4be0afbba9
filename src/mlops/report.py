"""The pull-request report: this branch against its base and against the model in production.

DVC does the diffs (params, metrics, data files) and fetches production's model at its
promotion tag; scikit-learn scores both models on the same holdout. The report is
GitHub-flavoured markdown plus the PNGs it links, in a deterministic order.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from mlops import figures, records
from mlops.config import GateParams
from mlops.contract import Contract
from mlops.evaluation import LOWER_IS_BETTER, gate_failures, score
from mlops.features import features_and_target

HEADLINE = ("roc_auc", "f1", "accuracy", "precision", "recall", "log_loss", "rmse", "mae", "r2")


@dataclass
class StageRun:
    name: str
    outcome: str  # ran | run-cache | unchanged
    seconds: float = 0.0


@dataclass
class Repro:
    returncode: int
    stages: list[StageRun] = field(default_factory=list)
    seconds: float = 0.0
    log: str = ""


def repro(root: Path, echo: bool = True) -> Repro:
    """`dvc repro`, recording which stages ran, came from the run-cache, or were unchanged."""
    t_start = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = Repro(returncode=0)
    current: StageRun | None = None
    started = 0.0
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            print(line, end="", flush=True)
        now = time.perf_counter()
        name = line.split("'")[1] if line.count("'") >= 2 else ""
        event = None
        if line.startswith("Running stage '"):
            event = StageRun(name, "ran")
        elif line.startswith("Stage '") and "is cached" in line:
            event = StageRun(name, "run-cache")
        elif line.startswith("Stage '") and "didn't change" in line:
            event = StageRun(name, "unchanged")
        if event:
            if current:
                current.seconds = round(now - started, 1)
            current, started = event, now
            result.stages.append(event)
    result.returncode = proc.wait()
    if current:
        current.seconds = round(time.perf_counter() - started, 1)
    result.seconds = round(time.perf_counter() - t_start, 1)
    result.log = "".join(lines)
    return result


def _dvc_json(root: Path, *args: str) -> Any:
    proc = subprocess.run(["dvc", *args, "--json"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout or "{}")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and "old" not in v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def params_diff(root: Path, base: str) -> list[tuple[str, Any, Any]]:
    diff = _dvc_json(root, "params", "diff", base) or {}
    rows = [(name, change.get("old"), change.get("new")) for f in diff.values() for name, change in _flat(f).items()]
    return sorted(rows)


def metrics_diff(root: Path, base: str) -> list[tuple[str, Any, Any, Any]]:
    diff = _dvc_json(root, "metrics", "diff", base, "--all") or {}
    rows = []
    for path, metrics in diff.items():
        for name, change in _flat(metrics).items():
            short = name if Path(path).name == "metrics.json" else f"train.{name}"
            if short.split(".")[0] in ("rows", "per_class"):
                continue
            rows.append((short, change.get("old"), change.get("new"), change.get("diff")))
    order = {m: i for i, m in enumerate(HEADLINE)}
    return sorted(rows, key=lambda r: (r[0].startswith(("baseline", "train")), order.get(r[0], 99), r[0]))


@dataclass
class Production:
    tag: str
    record: dict[str, Any]
    pipeline: Any | None
    problem: str = ""


def production_model(root: Path) -> Production | None:
    """The model production serves: its latest tag's record, and the pipeline fetched with DVC there."""
    tags = records.production_tags(root)
    if not tags:
        return None
    _, tag, record = tags[-1]
    try:
        import dvc.api

        with dvc.api.open("models/pipeline.joblib", repo=str(root), rev=tag, mode="rb") as f:
            data = f.read()
        return Production(tag, record, joblib.load(io.BytesIO(data)))
    except Exception as e:  # DVC raises many kinds: not in cache, no remote, bad rev
        return Production(tag, record, None, f"could not fetch its model with DVC at {tag}: {e}")


def compare_with_production(
    candidate: dict[str, Any], production: dict[str, Any], budget: dict[str, float]
) -> tuple[list[tuple[str, float, float, float, str]], list[str]]:
    """Rows (metric, production, candidate, delta, verdict) and the budget breaches."""
    rows, breaches = [], []
    for name in [m for m in HEADLINE if m in candidate and m in production]:
        delta = candidate[name] - production[name]
        worse = delta if name in LOWER_IS_BETTER else -delta
        allowed = budget.get(name)
        verdict = ""
        if allowed is not None:
            ok = worse <= allowed + 1e-12
            verdict = f"{'ok' if ok else 'over'} (budget {allowed})"
            if not ok:
                breaches.append(
                    f"{name} {candidate[name]:.4f} is {worse:.4f} worse than production {production[name]:.4f} "
                    f"(budget {allowed})"
                )
        rows.append((name, production[name], candidate[name], delta, verdict))
    return rows, breaches


def data_diff(root: Path, base: str, raw_dir: Path, contract: Contract) -> dict[str, Any]:
    """Batches and rows added or removed vs base, per-column mean and missing-rate changes."""
    diff = _dvc_json(root, "diff", base, "--targets", str(raw_dir)) or {}
    files = {kind: sorted(Path(e["path"]).name for e in diff.get(kind, []) if not e["path"].endswith("/"))
             for kind in ("added", "deleted", "modified")}  # fmt: skip
    out: dict[str, Any] = {"files": files, "columns": [], "rows": None, "problem": ""}
    try:
        from dvc.api import DVCFileSystem

        fs = DVCFileSystem(str(root), rev=base)
        names = sorted(p for p in fs.find(str(raw_dir)) if p.endswith(".csv"))
        old = pd.concat([pd.read_csv(io.BytesIO(fs.read_bytes(p))) for p in names], ignore_index=True)
    except Exception as e:
        out["problem"] = f"base data not available: {e}"
        return out
    new = pd.concat([pd.read_csv(p) for p in sorted(raw_dir.glob("*.csv"))], ignore_index=True)
    out["rows"] = (len(old), len(new))
    for col in [c for c in contract.columns if c in old and c in new]:
        row: dict[str, Any] = {
            "column": col,
            "missing_old": old[col].isna().mean(),
            "missing_new": new[col].isna().mean(),
        }
        if contract.columns[col].is_numeric:
            row["mean_old"] = pd.to_numeric(old[col], errors="coerce").mean()
            row["mean_new"] = pd.to_numeric(new[col], errors="coerce").mean()
        out["columns"].append(row)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>\n\n{body}\n\n</details>\n"


@dataclass
class Report:
    """Everything the report shows; ``render`` turns it into markdown."""

    base: str
    failures: list[str]
    params: list[tuple[str, Any, Any]]
    metrics: list[tuple[str, Any, Any, Any]]
    production: Production | None
    vs_production: list[tuple[str, float, float, float, str]]
    validation: dict[str, Any]
    data: dict[str, Any]
    repro: Repro | None
    images: dict[str, str]

    def render(self) -> str:
        out = []
        if self.failures:
            out.append(f"## ❌ Gate failed: {self.failures[0]}\n")
            out += [f"- {f}" for f in self.failures]
            out.append("")
        else:
            out.append("## ✅ Gate passed: meets the thresholds, within the regression budget, data valid\n")
        out.append(f"### Params changed vs `{self.base}`\n")
        if self.params:
            out += ["| param | base | this branch |", "|---|---|---|"]
            out += [f"| `{n}` | {_fmt(o)} | {_fmt(v)} |" for n, o, v in self.params]
        else:
            out.append("No params changed.")
        out.append(f"\n### Metrics vs `{self.base}`\n")
        if self.metrics:
            head = ["| metric | base | this branch | Δ |", "|---|---:|---:|---:|"]
            main = [r for r in self.metrics if not r[0].startswith(("baseline.", "train."))]
            rest = [r for r in self.metrics if r not in main]
            out += head + [f"| {n} | {_fmt(o)} | {_fmt(v)} | {_fmt(d)} |" for n, o, v, d in main]
            if rest:
                body = "\n".join(head + [f"| {n} | {_fmt(o)} | {_fmt(v)} | {_fmt(d)} |" for n, o, v, d in rest])
                out.append("\n" + _details("Baseline and training metrics", body))
        else:
            out.append("No metrics to compare (the pipeline did not finish, or base has none).")
        out.append("\n### This branch vs production (same holdout)\n")
        if self.production is None:
            out.append("Nothing is in production yet: no `model/production/*` tag.")
        elif self.production.pipeline is None:
            out.append(f"Production is `{self.production.record.get('version')}` ({self.production.tag}), but "
                       f"{self.production.problem}")  # fmt: skip
        else:
            rec = self.production.record
            out.append(f"Production serves `{rec.get('version')}` ({self.production.tag}).\n")
            out += ["| metric | production | this branch | Δ | budget |", "|---|---:|---:|---:|---|"]
            out += [f"| {n} | {p:.4f} | {c:.4f} | {d:+.4f} | {v} |" for n, p, c, d, v in self.vs_production]
        if self.images:
            out.append("\n### Plots\n")
            heads = " | ".join(self.images)
            out += [f"| {heads} |", "|" + "---|" * len(self.images)]
            out.append("| " + " | ".join(f"![{k}]({v})" for k, v in self.images.items()) + " |")
        out.append("\n### Data\n")
        v = self.validation
        if v:
            out.append(
                f"Validation: {v.get('evaluated', 0) - v.get('failed', 0)}/{v.get('evaluated', 0)} expectations "
                f"passed on {sum(v.get('batches', {}).values()):,} rows in {len(v.get('batches', {}))} batches."
            )
            failed = [e for e in v.get("expectations", []) if not e["success"]]
            if failed:
                body = "\n".join(
                    f"- `{e['batch']}` {e['column'] or 'table'}: expected {e['expected']}; observed {e['observed']}"
                    for e in failed[:50]
                )
                out.append(_details(f"{len(failed)} failed expectations", body, open_=True))
        d = self.data
        files = d.get("files", {})
        changes = [
            f"{k} {', '.join(f'`{x}`' for x in files[k])}" for k in ("added", "deleted", "modified") if files.get(k)
        ]
        line = f"\nRaw data vs `{self.base}`: " + ("; ".join(changes) if changes else "no batch changed") + "."
        if d.get("rows"):
            line += f" Rows: {d['rows'][0]:,} → {d['rows'][1]:,}."
        if d.get("problem"):
            line += f" ({d['problem']})"
        out.append(line)
        moved = [c for c in d.get("columns", []) if _moved(c)]
        if d.get("columns"):
            table = ["| column | mean (base → branch) | missing (base → branch) |", "|---|---|---|"]
            for c in d["columns"]:
                mean = f"{_fmt(c.get('mean_old'))} → {_fmt(c.get('mean_new'))}" if "mean_old" in c else "—"
                table.append(f"| {c['column']} | {mean} | {c['missing_old']:.2%} → {c['missing_new']:.2%} |")
            out.append("\n" + _details(f"Per-column changes ({len(moved)} moved)", "\n".join(table)))
        if self.repro:
            rows = ["| stage | outcome | seconds |", "|---|---|---:|"]
            rows += [f"| {s.name} | {s.outcome} | {s.seconds:.1f} |" for s in self.repro.stages]
            ran = sum(s.outcome == "ran" for s in self.repro.stages)
            cached = sum(s.outcome != "ran" for s in self.repro.stages)
            out.append("\n### Pipeline\n")
            out.append(
                _details(
                    f"dvc repro: {ran} stage(s) ran, {cached} from cache, {self.repro.seconds:.1f}s", "\n".join(rows)
                )
            )
        return "\n".join(out).rstrip() + "\n"


def _moved(c: dict[str, Any]) -> bool:
    if abs(c["missing_new"] - c["missing_old"]) > 0.005:
        return True
    old, new = c.get("mean_old"), c.get("mean_new")
    return old is not None and new is not None and abs(new - old) > 0.01 * (abs(old) + 1e-9)


def build(
    root: Path,
    base: str,
    contract: Contract,
    gates: GateParams,
    out_dir: Path,
    repro_result: Repro | None,
) -> Report:
    """Collect every section; the gate's failures come first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    if repro_result is not None and repro_result.returncode != 0:
        failures.append("the pipeline failed (`dvc repro` exited non-zero)")
    validation_path = root / "reports" / "validation.json"
    validation = json.loads(validation_path.read_text()) if validation_path.exists() else {}
    if validation and not validation.get("success"):
        failures.insert(0, f"data validation failed: {validation.get('failed')} expectation(s)")
    metrics_path = root / "reports" / "metrics.json"
    candidate = json.loads(metrics_path.read_text()) if metrics_path.exists() and not failures else {}
    if candidate:
        failures += gate_failures(candidate, gates.minimum, gates.maximum)
    production = production_model(root)
    vs_production: list[tuple[str, float, float, float, str]] = []
    images: dict[str, str] = {}
    holdout_path = root / "data" / "split" / "holdout.parquet"
    if candidate and production and production.pipeline is not None and holdout_path.exists():
        holdout = pd.read_parquet(holdout_path)
        candidate_model = joblib.load(root / "models" / "pipeline.joblib")
        cand = score(candidate_model, holdout, contract)
        prod = score(production.pipeline, holdout, contract)
        vs_production, breaches = compare_with_production(cand, prod, gates.regression_budget)
        failures += breaches
        if contract.is_classification:
            X, y = features_and_target(holdout, contract)
            table = pd.DataFrame({"actual": y.astype(str), "predicted": production.pipeline.predict(X).astype(str)})
            figures.confusion(table, out_dir / "confusion-production.png")
    for name, src in (("this branch", "reports/evaluate/confusion.png"), ("loss curve", "reports/train/loss.png")):
        if (root / src).exists() and candidate:
            target = out_dir / f"{Path(src).stem}-branch.png"
            shutil.copyfile(root / src, target)
            images[name] = target.name
    if (out_dir / "confusion-production.png").exists() and vs_production:
        images["production"] = "confusion-production.png"
    base_png = subprocess.run(["git", "show", f"{base}:reports/evaluate/confusion.png"], cwd=root, capture_output=True)
    if base_png.returncode == 0 and candidate:
        (out_dir / "confusion-base.png").write_bytes(base_png.stdout)
        images["base"] = "confusion-base.png"
    order = ["this branch", "base", "production", "loss curve"]
    images = {k: images[k] for k in order if k in images}
    return Report(
        base=base,
        failures=failures,
        params=params_diff(root, base),
        metrics=metrics_diff(root, base) if candidate else [],
        production=production,
        vs_production=vs_production,
        validation=validation,
        data=data_diff(root, base, root / "data" / "raw", contract),
        repro=repro_result,
        images=images,
    )
