"""The pull-request report: this branch against its base and against the model in production.

Collect, decide, render: ``collect`` gathers facts into dataclasses (DVC does the params,
metrics and data diffs and fetches production's model at its promotion tag; the task scores
both models on the same holdout), ``decide`` turns them into the gate's failures, and
``render`` writes GitHub-flavoured markdown that links the PNGs beside it, in a fixed order.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from mlops.core import lineage, paths
from mlops.core.artifacts import flatten
from mlops.core.config import GateParams
from mlops.core.contract import Contract
from mlops.core.task import Task, task_of
from mlops.pipeline import figures
from mlops.pipeline.compiled import compile_pipeline
from mlops.pipeline.evaluation import gate_failures
from mlops.pipeline.features import features_and_target
from mlops.release import records
from mlops.release.repro import Repro

# ---- collect -------------------------------------------------------------------------------------


@dataclass
class Change:
    """A param or metric that differs between base and this branch."""

    name: str
    old: Any
    new: Any
    delta: Any = None


@dataclass
class Comparison:
    """One metric of this branch against production on the same holdout."""

    metric: str
    production: float
    candidate: float
    budget: float | None
    worse_by: float

    @property
    def over_budget(self) -> bool:
        """True when the candidate is worse than production by more than the budget."""
        return self.budget is not None and self.worse_by > self.budget + 1e-12


@dataclass
class Production:
    """What production serves (its newest tag) and, if DVC could fetch it, its model."""

    tag: str
    record: dict[str, Any]
    pipeline: Any | None
    problem: str = ""
    source: str = ""  # where the model came from when not from DVC at the tag


@dataclass
class ColumnChange:
    """One column's missing rate and mean, base against this branch."""

    column: str
    missing_old: float
    missing_new: float
    mean_old: float | None = None
    mean_new: float | None = None

    @property
    def moved(self) -> bool:
        """True when the missing rate moved by over half a point or the mean by over 1%."""
        if abs(self.missing_new - self.missing_old) > 0.005:
            return True
        old, new = self.mean_old, self.mean_new
        return old is not None and new is not None and abs(new - old) > 0.01 * (abs(old) + 1e-9)


@dataclass
class DataDiff:
    """Batches added, deleted or modified vs base; rows; per-column means and missing rates."""

    files: dict[str, list[str]] = field(default_factory=dict)
    rows: tuple[int, int] | None = None
    columns: list[ColumnChange] = field(default_factory=list)
    problem: str = ""


@dataclass
class Facts:
    """Everything the report shows, gathered once."""

    base: str
    repro: Repro | None
    validation: dict[str, Any]
    candidate: dict[str, Any]
    params: list[Change]
    metrics: list[Change]
    production: Production | None
    vs_production: list[Comparison]
    data: DataDiff
    images: dict[str, str]
    notes: list[str] = field(default_factory=list)  # what the caller knows and the reader must (CI's data source)
    build: dict[str, Any] = field(default_factory=dict)  # the checkout: commit, dirty, diff hash


def _dvc_json(root: Path, *args: str) -> Any:
    """What ``dvc <args> --json`` prints, from DVC's Python API (a ``dvc`` process costs a second).

    ``params diff REV``, ``metrics diff REV --all`` and ``diff REV --targets PATH``; None on failure.
    """
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            if args[:2] == ("params", "diff"):
                return repo.params.diff(a_rev=args[2]).get("diff", {})
            if args[:2] == ("metrics", "diff"):
                return repo.metrics.diff(a_rev=args[2], all="--all" in args).get("diff", {})
            if args[0] == "diff":
                targets = [args[args.index("--targets") + 1]] if "--targets" in args else None
                diff = repo.diff(args[1], None, targets)
                return {kind: sorted(({"path": e["path"]} for e in entries), key=str) for kind, entries in diff.items()}
    except Exception:  # DVC raises many kinds (bad revision, no cache): the report shows what it has
        return None
    raise ValueError(f"unsupported dvc command: {args}")


def _is_change(value: Any) -> bool:
    return isinstance(value, dict) and "old" in value


def params_diff(root: Path, base: str) -> list[Change]:
    """Params that differ from ``base`` (``dvc params diff``)."""
    diff = _dvc_json(root, "params", "diff", base) or {}
    rows = [
        Change(name, change.get("old"), change.get("new"))
        for per_file in diff.values()
        for name, change in flatten(per_file, leaf=_is_change).items()
    ]
    return sorted(rows, key=lambda c: c.name)


def metrics_diff(root: Path, base: str, task: Task) -> list[Change]:
    """Metrics vs ``base`` (``dvc metrics diff --all``): headline first, baseline and training last."""
    diff = _dvc_json(root, "metrics", "diff", base, "--all") or {}
    rows = []
    for path, metrics in diff.items():
        for name, change in flatten(metrics, leaf=_is_change).items():
            short = name if Path(path).name == paths.METRICS.name else f"train.{name}"
            if short.split(".")[0] in ("rows", "per_class"):
                continue
            rows.append(Change(short, change.get("old"), change.get("new"), change.get("diff")))
    order = {m: i for i, m in enumerate(task.metric_names)}
    return sorted(rows, key=lambda r: (r.name.startswith(("baseline", "train")), order.get(r.name, 99), r.name))


def production_model(root: Path) -> Production | None:
    """The model production serves: its newest tag's record, and the pipeline DVC fetches there."""
    found = records.production_record(root)
    if found is None:
        return None
    tag, record = found
    try:
        data = records.read_at(root, tag, paths.PIPELINE)
    except Exception as e:  # DVC raises many kinds: not in cache, no remote, bad rev
        # a build deployed before it was committed (`make demo` right after `mlops init`): the tag's
        # commit holds no lock for it, but this checkout holds the very archive production serves
        built = _read_json(root / paths.PACKAGE)
        if record.get("version") and built.get("version") == record["version"] and (root / paths.PIPELINE).exists():
            here = "this checkout's build: the same archive, its outputs not yet committed"
            return Production(tag, record, joblib.load(root / paths.PIPELINE), source=here)
        return Production(tag, record, None, f"could not fetch its model with DVC at {tag}: {e}")
    return Production(tag, record, joblib.load(io.BytesIO(data)))


def compare_with_production(
    candidate: dict[str, Any], production: dict[str, Any], budget: dict[str, float], task: Task
) -> list[Comparison]:
    """This branch against production, metric by metric, with the regression budget."""
    return [
        Comparison(
            name,
            production[name],
            candidate[name],
            budget.get(name),
            task.worse_by(name, candidate[name], production[name]),
        )
        for name in task.metric_names
        if name in candidate and name in production
    ]


def data_diff(root: Path, base: str, raw_dir: Path, contract: Contract) -> DataDiff:
    """Batches and rows added or removed vs ``base``, per-column mean and missing-rate changes."""
    diff = _dvc_json(root, "diff", base, "--targets", str(raw_dir)) or {}
    out = DataDiff(
        files={
            kind: sorted(Path(e["path"]).name for e in diff.get(kind, []) if not e["path"].endswith("/"))
            for kind in ("added", "deleted", "modified")
        }
    )
    try:
        from dvc.api import DVCFileSystem

        fs = DVCFileSystem(str(root), rev=base)
        names = sorted(p for p in fs.find(str(raw_dir)) if p.endswith(".csv"))
        old = pd.concat([pd.read_csv(io.BytesIO(fs.read_bytes(p))) for p in names], ignore_index=True)
    except Exception as e:  # no base data: say so, show the rest
        out.problem = f"base data not available: {e}"
        return out
    new = pd.concat([pd.read_csv(p) for p in sorted(raw_dir.glob("*.csv"))], ignore_index=True)
    out.rows = (len(old), len(new))
    for col in [c for c in contract.columns if c in old and c in new]:
        change = ColumnChange(col, float(old[col].isna().mean()), float(new[col].isna().mean()))
        if contract.columns[col].is_numeric:
            change.mean_old = float(pd.to_numeric(old[col], errors="coerce").mean())
            change.mean_new = float(pd.to_numeric(new[col], errors="coerce").mean())
        out.columns.append(change)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _pictures(
    root: Path, base: str, out_dir: Path, production: Production | None, contract: Contract
) -> dict[str, str]:
    """Confusion matrices of this branch, base and production, and the loss curve, beside the report."""
    images: dict[str, str] = {}
    for name, src in (
        ("this branch", paths.EVALUATE_PLOTS / "confusion.png"),
        ("loss curve", paths.TRAIN_PLOTS / "loss.png"),
    ):
        if (root / src).exists():
            target = out_dir / f"{src.stem}-branch.png"
            shutil.copyfile(root / src, target)
            images[name] = target.name
    base_png = subprocess.run(
        ["git", "show", f"{base}:{paths.EVALUATE_PLOTS / 'confusion.png'}"], cwd=root, capture_output=True
    )
    if base_png.returncode == 0:
        (out_dir / "confusion-base.png").write_bytes(base_png.stdout)
        images["base"] = "confusion-base.png"
    holdout_path = root / paths.HOLDOUT
    if production and production.pipeline is not None and holdout_path.exists():
        holdout = pd.read_parquet(holdout_path)
        X, y = features_and_target(holdout, contract)
        model = compile_pipeline(production.pipeline, contract.features)
        task = task_of(contract).for_model(production.pipeline)
        tables = task.plot_tables(y, task.outputs(model, X), 10)
        if "confusion" in tables:
            figures.confusion(tables["confusion"], out_dir / "confusion-production.png")
            images["production"] = "confusion-production.png"
    order = ["this branch", "base", "production", "loss curve"]
    return {k: images[k] for k in order if k in images}


def collect(
    root: Path, base: str, contract: Contract, gates: GateParams, out_dir: Path, repro_result: Repro | None
) -> Facts:
    """Gather every fact the report shows; pictures are written to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    task = task_of(contract)
    validation = _read_json(root / paths.VALIDATION)
    pipeline_ok = (repro_result is None or repro_result.returncode == 0) and validation.get("success", True)
    candidate = _read_json(root / paths.METRICS) if pipeline_ok else {}
    production = production_model(root)
    vs_production: list[Comparison] = []
    holdout_path = root / paths.HOLDOUT
    if candidate and production and production.pipeline is not None and holdout_path.exists():
        from mlops.pipeline.evaluation import score

        holdout = pd.read_parquet(holdout_path)
        mine = score(joblib.load(root / paths.PIPELINE), holdout, contract)
        theirs = score(production.pipeline, holdout, contract)
        vs_production = compare_with_production(mine, theirs, gates.regression_budget, task)
    return Facts(
        base=base,
        repro=repro_result,
        validation=validation,
        candidate=candidate,
        params=params_diff(root, base),
        metrics=metrics_diff(root, base, task) if candidate else [],
        production=production,
        vs_production=vs_production,
        data=data_diff(root, base, root / paths.RAW, contract),
        images=_pictures(root, base, out_dir, production, contract) if candidate else {},
        build=dataclasses.asdict(lineage.source(root)),
    )


# ---- decide --------------------------------------------------------------------------------------


def decide(facts: Facts, gates: GateParams) -> list[str]:
    """The gate: one line per reason this branch must not merge (empty: it may)."""
    failures: list[str] = []
    if facts.validation and not facts.validation.get("success"):
        failures.append(f"data validation failed: {facts.validation.get('failed')} expectation(s)")
    if facts.repro is not None and facts.repro.returncode != 0:
        failures.append("the pipeline failed (`dvc repro` exited non-zero)")
    if facts.candidate:
        failures += gate_failures(facts.candidate, gates.minimum, gates.maximum)
    failures += [
        f"{c.metric} {c.candidate:.4f} is {c.worse_by:.4f} worse than production {c.production:.4f} (budget {c.budget})"
        for c in facts.vs_production
        if c.over_budget
    ]
    return failures


# ---- render --------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>\n\n{body}\n\n</details>\n"


def _verdict(failures: list[str], facts: Facts) -> list[str]:
    if failures:
        return [f"## ❌ Gate failed: {failures[0]}\n", *[f"- {f}" for f in failures], ""]
    p = facts.production
    if p is None:
        versus = "nothing in production to compare with yet"
    elif facts.vs_production:
        versus = "within the regression budget"
    else:  # said in the verdict: a budget that was never checked must not read as met
        why = p.problem or "its model could not be scored on this holdout"
        versus = f"⚠️ NOT compared with production ({why[:300]})"
    return [f"## ✅ Gate passed: meets the thresholds, {versus}, data valid\n"]


def _build(f: Facts) -> list[str]:
    b = f.build
    if not b.get("dirty"):
        return []
    return [
        f"> ⚠️ This model was built from uncommitted changes to `{str(b.get('commit'))[:12]}` "
        f"(diff sha256 `{str(b.get('diff_sha256'))[:12]}`): production refuses to promote from such a checkout. "
        "Commit and rebuild.\n"
    ]


def _params(f: Facts) -> list[str]:
    out = [f"### Params changed vs `{f.base}`\n"]
    if not f.params:
        return [*out, "No params changed."]
    rows = [f"| `{c.name}` | {_fmt(c.old)} | {_fmt(c.new)} |" for c in f.params]
    return [*out, "| param | base | this branch |", "|---|---|---|", *rows]


def _metrics(f: Facts) -> list[str]:
    out = [f"\n### Metrics vs `{f.base}`\n"]
    if not f.metrics:
        return [*out, "No metrics to compare (the pipeline did not finish, or base has none)."]
    head = ["| metric | base | this branch | Δ |", "|---|---:|---:|---:|"]
    main = [c for c in f.metrics if not c.name.startswith(("baseline.", "train."))]
    rest = [c for c in f.metrics if c not in main]
    out += head + [f"| {c.name} | {_fmt(c.old)} | {_fmt(c.new)} | {_fmt(c.delta)} |" for c in main]
    if rest:
        body = head + [f"| {c.name} | {_fmt(c.old)} | {_fmt(c.new)} | {_fmt(c.delta)} |" for c in rest]
        out.append("\n" + _details("Baseline and training metrics", "\n".join(body)))
    return out


def _production(f: Facts) -> list[str]:
    out = ["\n### This branch vs production (same holdout)\n"]
    p = f.production
    if p is None:
        return [*out, "Nothing is in production yet: no production record in git (`gto show`)."]
    if p.pipeline is None:
        return [*out, f"Production is `{p.record.get('version')}` ({p.tag}), but {p.problem}"]
    out += [f"Production serves `{p.record.get('version')}` ({p.tag}{'; ' + p.source if p.source else ''}).\n"]
    out += ["| metric | production | this branch | Δ | budget |", "|---|---:|---:|---:|---|"]
    for c in f.vs_production:
        budget = "" if c.budget is None else f"{'over' if c.over_budget else 'ok'} (budget {c.budget})"
        out.append(
            f"| {c.metric} | {c.production:.4f} | {c.candidate:.4f} | {c.candidate - c.production:+.4f} | {budget} |"
        )
    return out


def _plots(f: Facts) -> list[str]:
    if not f.images:
        return []
    return [
        "\n### Plots\n",
        f"| {' | '.join(f.images)} |",
        "|" + "---|" * len(f.images),
        "| " + " | ".join(f"![{k}]({v})" for k, v in f.images.items()) + " |",
    ]


def _data(f: Facts) -> list[str]:
    out = ["\n### Data\n"]
    v = f.validation
    if v:
        batches = v.get("batches", {})
        out.append(
            f"Validation: {v.get('evaluated', 0) - v.get('failed', 0)}/{v.get('evaluated', 0)} expectations "
            f"passed on {sum(batches.values()):,} rows in {len(batches)} batches."
        )
        failed = [e for e in v.get("expectations", []) if not e["success"]]
        if failed:
            body = "\n".join(
                f"- `{e['batch']}` {e['column'] or 'table'}: expected {e['expected']}; observed {e['observed']}"
                for e in failed[:50]
            )
            out.append(_details(f"{len(failed)} failed expectations", body, open_=True))
    d = f.data
    changes = [
        f"{k} {', '.join(f'`{x}`' for x in d.files[k])}" for k in ("added", "deleted", "modified") if d.files.get(k)
    ]
    line = f"\nRaw data vs `{f.base}`: " + ("; ".join(changes) if changes else "no batch changed") + "."
    if d.rows:
        line += f" Rows: {d.rows[0]:,} → {d.rows[1]:,}."
    if d.problem:
        line += f" ({d.problem})"
    out.append(line)
    if d.columns:
        table = ["| column | mean (base → branch) | missing (base → branch) |", "|---|---|---|"]
        for c in d.columns:
            mean = f"{_fmt(c.mean_old)} → {_fmt(c.mean_new)}" if c.mean_old is not None else "—"
            table.append(f"| {c.column} | {mean} | {c.missing_old:.2%} → {c.missing_new:.2%} |")
        moved = sum(c.moved for c in d.columns)
        out.append("\n" + _details(f"Per-column changes ({moved} moved)", "\n".join(table)))
    return out


def _pipeline(f: Facts) -> list[str]:
    if not f.repro:
        return []
    rows = ["| stage | outcome | seconds |", "|---|---|---:|"]
    rows += [f"| {s.name} | {s.outcome} | {s.seconds:.1f} |" for s in f.repro.stages]
    ran = sum(s.outcome == "ran" for s in f.repro.stages)
    summary = f"dvc repro: {ran} stage(s) ran, {len(f.repro.stages) - ran} from cache, {f.repro.seconds:.1f}s"
    return ["\n### Pipeline\n", _details(summary, "\n".join(rows))]


def render(facts: Facts, failures: list[str]) -> str:
    """The report as markdown: the verdict first, then each section in a fixed order."""
    sections = (_build, _params, _metrics, _production, _plots, _data, _pipeline)
    lines = _verdict(failures, facts) + [f"> ⚠️ {note}\n" for note in facts.notes]
    for section in sections:
        lines += section(facts)
    return "\n".join(lines).rstrip() + "\n"


def write(
    root: Path,
    base: str,
    contract: Contract,
    gates: GateParams,
    out: Path,
    repro_result: Repro | None,
    notes: list[str] | None = None,
) -> list[str]:
    """Collect, decide and render the report to ``out`` (pictures beside it); return the gate's failures.

    ``notes`` are shown under the verdict (for example, that CI had no DVC remote).
    """
    gates.check_metrics(task_of(contract).metric_names, contract.task)
    facts = collect(root, base, contract, gates, out.parent, repro_result)
    facts.notes = list(notes or [])
    failures = decide(facts, gates)
    out.write_text(render(facts, failures))
    return failures
