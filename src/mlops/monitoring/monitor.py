"""Monitoring: what production sees and answers, against the training reference and late labels.

Reads TorchServe's Prometheus metrics (prometheus_client's parser) and the prediction log;
drift is the population stability index plus a KS test (numbers) or a chi-square test
(categories) from scipy; metrics on late labels come from ``mlops.pipeline.evaluation``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import orjson
import pandas as pd
import requests
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from mlops.core import paths
from mlops.core.artifacts import read_json
from mlops.core.config import GateParams, MonitorParams
from mlops.core.contract import Contract
from mlops.core.errors import MlopsError, ServiceError, UserError
from mlops.core.task import Task, task_of
from mlops.pipeline import figures
from mlops.pipeline.datasets import read_table
from mlops.release import records
from mlops.release.deploy import Site
from mlops.serving.torchserve import Client, Endpoint, resolve

EPS = 1e-4


# ---- the prediction log -------------------------------------------------------------------------


def _files(location: str | Path, pattern: str) -> tuple[Any, list[str]]:
    """A folder or any fsspec URL (where a server ships its logs), and the files matching."""
    fs, root = fsspec.core.url_to_fs(str(location))
    return fs, sorted(fs.glob(f"{root.rstrip('/')}/{pattern}"))


def _lines(location: str | Path) -> Iterator[bytes]:
    """Every line of every prediction-log file at ``location``, file by file (streamed).

    Raises ServiceError when the log cannot be read at all (no such location, an unreadable
    file): the monitor then cannot observe, which is not the same as observing nothing wrong.
    """
    try:
        fs, root = fsspec.core.url_to_fs(str(location))
        if not fs.exists(root):
            raise ServiceError(f"the prediction log {location} does not exist (has the server shipped any?)")
        _, paths = _files(location, "predictions-*.jsonl*")
        for path in paths:
            with fs.open(path, "rb") as f:
                yield from f
    except (OSError, ValueError) as e:  # fsspec and the file system raise many kinds
        raise ServiceError(f"cannot read the prediction log {location}: {type(e).__name__}: {str(e)[:200]}") from e


def read_log(
    location: str | Path,
    since: float,
    until: float,
    model: str | None = None,
    version: str | None = None,
    skipped: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Logged client rows in [since, until): inputs as columns, plus time, version, id and answer columns.

    Rows of another model (by name) or another version, when those are given, and rows the
    deployment checks sent are left out; so are torn lines (a worker killed mid-write). Each kind
    left out is counted in ``skipped``. A log that cannot be read is a ServiceError (``_lines``).
    """
    counts = skipped if skipped is not None else {}

    def skip(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    records: list[dict[str, Any]] = []
    for line in _lines(location):
        try:
            r = orjson.loads(line)
            stamp = float(r["time"])
            inside = since <= stamp < until
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            skip("torn lines")
            continue
        if not inside:
            continue
        if not isinstance(r.get("inputs"), dict) or "model_version" not in r:
            skip("torn lines")
        elif r.get("traffic") is not None:
            skip("deployment-check rows")
        elif model is not None and r.get("model", model) != model:
            skip("rows of other models")
        elif version is not None and str(r["model_version"]) != version:
            skip("rows of other versions")
        else:
            records.append(r)
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records([r["inputs"] for r in records])
    frame["_time"] = [r["time"] for r in records]
    frame["_version"] = [r["model_version"] for r in records]
    frame["_id"] = [r.get("id") for r in records]
    frame["_answer"] = [r.get("outputs") for r in records]
    return frame


def readable(frame: pd.DataFrame, task: Task, skipped: dict[str, int]) -> pd.DataFrame:
    """The rows whose logged answers the task can read (all of them, unless the log is mixed)."""
    if frame.empty:
        return frame
    try:
        task.from_answers(list(frame["_answer"]))
        return frame
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        pass  # rows of another task's model under this name: find them one by one
    keep = []
    for answer in frame["_answer"]:
        try:
            task.from_answers([answer])
            keep.append(True)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            keep.append(False)
    dropped = len(keep) - sum(keep)
    skipped["answers this task cannot read"] = skipped.get("answers this task cannot read", 0) + dropped
    return frame[keep].reset_index(drop=True)


def served_outputs(frame: pd.DataFrame, task: Task) -> np.ndarray:
    """The logged answers in the task's ``outputs`` form (probabilities or values)."""
    return task.from_answers(list(frame["_answer"]))


def served_score(frame: pd.DataFrame, task: Task) -> pd.Series:
    """The score monitoring follows, per logged row."""
    return pd.Series(task.scores(served_outputs(frame, task)), index=frame.index)


# ---- drift --------------------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two distributions given as bin fractions."""
    e, a = np.clip(expected, EPS, None), np.clip(actual, EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_drift(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    ref, cur = pd.to_numeric(reference, errors="coerce").dropna(), pd.to_numeric(current, errors="coerce").dropna()
    if ref.empty or cur.empty:
        return {"psi": 0.0, "p_value": 1.0, "test": "ks"}
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(ref, edges)[0] / len(ref)
    a = np.histogram(cur, edges)[0] / len(cur)
    ks = stats.ks_2samp(ref, cur)
    return {"psi": psi(e, a), "p_value": float(ks.pvalue), "statistic": float(ks.statistic), "test": "ks"}


def categorical_drift(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    ref, cur = reference.dropna().astype(str), current.dropna().astype(str)
    if ref.empty or cur.empty:
        return {"psi": 0.0, "p_value": 1.0, "test": "chi2"}
    levels = sorted(set(ref) | set(cur))
    e = ref.value_counts().reindex(levels, fill_value=0).to_numpy()
    a = cur.value_counts().reindex(levels, fill_value=0).to_numpy()
    chi2 = stats.chi2_contingency(np.vstack([e, a]) + 0.5)
    return {
        "psi": psi(e / e.sum(), a / a.sum()),
        "p_value": float(chi2.pvalue),
        "statistic": float(chi2.statistic),
        "test": "chi2",
    }


def drift_table(
    frame: pd.DataFrame, score: pd.Series | None, reference: pd.DataFrame, contract: Contract, params: MonitorParams
) -> dict[str, dict[str, Any]]:
    """Per input and for the prediction: PSI, the test, and whether both say it drifted.

    With ``score`` None, the inputs only (two periods of data, before any model scored them).
    """
    out: dict[str, dict[str, Any]] = {}
    categorical_score = task_of(contract).categorical_score
    for name in [*contract.features, "prediction"]:
        if name == "prediction":
            if score is None:
                continue
            ref_col, cur_col, numeric = reference["score"], score, not categorical_score
        elif name in reference and name in frame:
            ref_col, cur_col, numeric = reference[name], frame[name], contract.columns[name].is_numeric
        else:
            continue
        d = numeric_drift(ref_col, cur_col) if numeric else categorical_drift(ref_col, cur_col)
        d["drifted"] = d["psi"] >= params.psi_threshold and d["p_value"] < params.p_value
        out[name] = d
    return out


# ---- Prometheus ---------------------------------------------------------------------------------


def scrape(metrics_url: str | None) -> dict[str, float]:
    """Totals of the TorchServe metrics the report uses (empty when no metrics API is configured).

    Raises ServiceError when the configured metrics API cannot be read: a server that cannot be
    seen must not look healthy.
    """
    if not metrics_url:
        return {}
    url = metrics_url.rstrip("/") + "/metrics"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except (requests.RequestException, ValueError) as e:
        raise ServiceError(f"cannot scrape {url}: {type(e).__name__}: {str(e)[:200]}") from e
    totals: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            key = sample.name.removesuffix("_total")  # the parser names counter samples <name>_total
            if key in ("MissingValues", "PredictionBucket"):
                key += ":" + (sample.labels.get("Feature") or sample.labels.get("Bucket") or "")
            totals[key] = totals.get(key, 0.0) + float(sample.value)
    return totals


def access_latencies(log_dir: Path | None, since: float) -> np.ndarray:
    """Per-request milliseconds from TorchServe's access log (local servers only)."""
    if log_dir is None or not (log_dir / "access_log.log").exists():
        return np.array([])
    out = []
    for line in (log_dir / "access_log.log").read_text(errors="replace").splitlines():
        if '"POST /predictions/' not in line:
            continue
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S"))
            if stamp >= since:
                out.append(float(line.rsplit(" ", 1)[1]))
        except (ValueError, IndexError):
            continue
    return np.array(out)


# ---- collect ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Where the monitor looks: the prediction log, the server's metrics and logs, late labels."""

    environment: str
    log_dir: str | Path
    reference: pd.DataFrame
    offline_metrics: dict[str, float]
    metrics_url: str | None = None
    server_logs: Path | None = None
    labels_dir: str | Path | None = None
    model: str | None = None  # only this model's rows of the log (None: every model's)
    version: str | None = None  # only this version's rows (None: every version's)


@dataclass
class Monitoring:
    """What the monitor observed over its window, and the thresholds that were breached."""

    environment: str
    rows: int
    breaches: list[str] = field(default_factory=list)
    service: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    windows: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[str, dict[str, float]] = field(default_factory=dict)
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # log lines left out, by reason
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _service(totals: dict[str, float], latencies: np.ndarray) -> dict[str, Any]:
    requests_total = totals.get("ts_inference_requests", 0.0)
    errors = totals.get("Requests4XX", 0.0) + totals.get("Requests5XX", 0.0)
    return {
        "requests": requests_total,
        "errors_4xx": totals.get("Requests4XX", 0.0),
        "errors_5xx": totals.get("Requests5XX", 0.0),
        "error_rate": errors / max(errors + totals.get("Requests2XX", 0.0), 1.0),
        "latency_mean_ms": totals.get("ts_inference_latency_microseconds", 0.0) / max(requests_total, 1.0) / 1000,
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else None,
        "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else None,
        "cpu_percent": totals.get("CPUUtilization"),
        "memory_used_mb": totals.get("MemoryUsed"),
        "rows_served_total": totals.get("RowsServed"),
    }


def _statistics(score: pd.Series, task: Task) -> dict[str, Any]:
    if task.categorical_score:
        return {"distribution": score.value_counts(normalize=True).round(4).to_dict()}
    q = score.quantile([0.1, 0.5, 0.9])
    return {"mean": float(score.mean()), "std": float(score.std()), "min": float(score.min()),
            "max": float(score.max()), "p10": float(q[0.1]), "p50": float(q[0.5]), "p90": float(q[0.9])}  # fmt: skip


def _windows(frame: pd.DataFrame, score: pd.Series, since: float, minutes: float, task: Task) -> list[dict[str, Any]]:
    width = minutes * 60
    index = ((frame["_time"] - since) // width).astype(int)
    out = []
    for w, part in score.groupby(index):
        row: dict[str, Any] = {"start": since + int(w) * width, "rows": len(part)}
        if not task.categorical_score:
            row |= {"mean": float(part.mean()), "p10": float(part.quantile(0.1)), "p90": float(part.quantile(0.9))}
        out.append(row)
    return out


def _missing(
    frame: pd.DataFrame, reference: pd.DataFrame, contract: Contract, params: MonitorParams
) -> dict[str, dict[str, float]]:
    out = {}
    for name in contract.features:
        served = frame[name].isna().mean() if name in frame else 1.0
        ref = reference[name].isna().mean() if name in reference else 0.0
        limit = max(contract.columns[name].max_missing, ref + params.max_missing_increase)
        out[name] = {"served": float(served), "reference": float(ref), "limit": float(limit)}
    return out


def _late_labels(frame: pd.DataFrame, labels_dir: str | Path, contract: Contract, task: Task,
                 headline: str | None, offline: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """The task's metrics on served predictions whose ground truth has landed."""
    fs, files = _files(labels_dir, "*.csv")
    if not files:
        return {}
    labels = pd.concat([pd.read_csv(fs.open(f), dtype={contract.id: str}) for f in files], ignore_index=True)
    labels = labels.drop_duplicates(contract.id, keep="last")
    joined = frame.dropna(subset=["_id"]).astype({"_id": str}).merge(labels, left_on="_id", right_on=contract.id)
    if joined.empty:
        return {"rows": 0}
    metrics = task.metrics(joined[contract.target], served_outputs(joined, task))
    out: dict[str, Any] = {"rows": len(joined), "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)}}
    if headline and headline in metrics and headline in offline:
        drop = task.worse_by(headline, metrics[headline], offline[headline])
        out |= {"headline": headline, "offline": offline[headline], "served": metrics[headline], "drop": drop}
    return out


def observe(
    sources: Sources, contract: Contract, params: MonitorParams, headline: str | None, since: float, until: float
) -> Monitoring:
    """Collect: everything the monitor looks at over [since, until)."""
    task = task_of(contract)
    skipped: dict[str, int] = {}
    frame = read_log(sources.log_dir, since, until, sources.model, sources.version, skipped)
    frame = readable(frame, task, skipped)
    m = Monitoring(sources.environment, len(frame), skipped=skipped)
    m.service = _service(scrape(sources.metrics_url), access_latencies(sources.server_logs, since))
    if frame.empty:
        return m
    score = served_score(frame, task)
    m.predictions = _statistics(score, task)
    m.windows = _windows(frame, score, since, params.window_minutes, task)
    m.missing = _missing(frame, sources.reference, contract, params)
    if len(frame) >= params.min_rows:
        m.drift = drift_table(frame, score, sources.reference, contract, params)
    if sources.labels_dir is not None and contract.id:
        m.labels = _late_labels(frame, sources.labels_dir, contract, task, headline, sources.offline_metrics)
    return m


# ---- decide -------------------------------------------------------------------------------------


def decide(m: Monitoring, params: MonitorParams) -> list[str]:
    """Every threshold the observation breaches, in words."""
    s = m.service
    breaches = []
    if s.get("error_rate", 0.0) > params.max_error_rate:
        breaches.append(f"error rate {s['error_rate']:.1%} > {params.max_error_rate:.1%}")
    p99 = s.get("latency_p99_ms")
    if p99 is not None and p99 > params.max_p99_ms:
        breaches.append(f"p99 latency {p99:.0f} ms > {params.max_p99_ms:.0f} ms")
    if not m.rows and s.get("requests"):
        breaches.append("no predictions logged in the lookback window")
    breaches += [
        f"missing values in '{name}': {v['served']:.1%} served vs {v['reference']:.1%} in training "
        f"(limit {v['limit']:.1%})"
        for name, v in m.missing.items()
        if v["served"] > v["limit"]
    ]
    breaches += [
        f"drift in '{name}': PSI {d['psi']:.2f} >= {params.psi_threshold}, {d['test']} p={d['p_value']:.1e}"
        for name, d in m.drift.items()
        if d["drifted"]
    ]
    lab = m.labels
    if "drop" in lab and lab["drop"] > params.max_metric_drop:
        breaches.append(
            f"{lab['headline']} on {lab['rows']} labelled predictions is {lab['served']:.4f}, "
            f"{lab['drop']:.4f} worse than offline {lab['offline']:.4f} (limit {params.max_metric_drop})"
        )
    return breaches


def monitor(
    sources: Sources,
    contract: Contract,
    params: MonitorParams,
    gates: GateParams,
    now: float | None = None,
    since: float | None = None,
) -> Monitoring:
    """Observe the lookback window (or from ``since``) and decide which thresholds it breaches."""
    t0 = time.perf_counter()
    gates.check_metrics(task_of(contract).metric_names, contract.task)
    until = now or time.time()
    start = max(since or 0.0, until - params.lookback_hours * 3600)
    headline = next(iter(gates.minimum), None) or next(iter(gates.maximum), None)
    m = observe(sources, contract, params, headline, start, until)
    m.breaches = decide(m, params)
    m.seconds = round(time.perf_counter() - t0, 2)
    return m


# ---- render -------------------------------------------------------------------------------------


def _cell(v: Any, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def _service_section(m: Monitoring) -> list[str]:
    s = m.service
    cells = [
        _cell(s.get("requests"), ".0f"), _cell(s.get("errors_4xx"), ".0f"), _cell(s.get("errors_5xx"), ".0f"),
        _cell(s.get("error_rate"), ".2%"), _cell(s.get("latency_mean_ms")), _cell(s.get("latency_p50_ms")),
        _cell(s.get("latency_p99_ms")), _cell(s.get("cpu_percent")), _cell(s.get("memory_used_mb"), ".0f"),
    ]  # fmt: skip
    return [
        "\n## Service\n",
        "| requests | 4xx | 5xx | error rate | mean ms | p50 ms | p99 ms | CPU % | memory MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(cells) + " |",
    ]


def _predictions_section(m: Monitoring, out_dir: Path) -> list[str]:
    lines = [f"\n## Predictions ({m.rows:,} logged rows)\n"]
    if m.skipped:
        left_out = ", ".join(f"{count:,} {kind}" for kind, count in sorted(m.skipped.items()))
        lines.append(f"Left out of the log: {left_out}.\n")
    if m.predictions:
        lines.append(
            ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.predictions.items())
        )
    if m.windows and "mean" in m.windows[0]:
        figures.trend(pd.DataFrame(m.windows), out_dir / "predictions.png")
        lines.append(f"\n![prediction trend]({out_dir.name}/predictions.png)")
    return lines


def _drift_section(m: Monitoring, out_dir: Path, threshold: float) -> list[str]:
    if not m.drift:
        return ["\nToo few logged rows for a drift verdict."] if m.rows else []
    lines = [
        "\n## Drift against the training reference\n",
        "| input | PSI | test | p-value | drifted |",
        "|---|---:|---|---:|---|",
    ]
    for name, d in sorted(m.drift.items(), key=lambda kv: -kv[1]["psi"]):
        lines.append(
            f"| {name} | {d['psi']:.3f} | {d['test']} | {d['p_value']:.1e} | {'**yes**' if d['drifted'] else 'no'} |"
        )
    figures.drift(
        pd.DataFrame([{"feature": k, "psi": v["psi"]} for k, v in m.drift.items()]), out_dir / "drift.png", threshold
    )
    return [*lines, f"\n![drift per feature]({out_dir.name}/drift.png)"]


def _missing_section(m: Monitoring) -> list[str]:
    if not m.missing:
        return []
    rows = [f"| {k} | {v['served']:.2%} | {v['reference']:.2%} | {v['limit']:.2%} |" for k, v in m.missing.items()]
    return ["\n<details><summary>Missing values per feature</summary>\n", "| feature | served | training | limit |",
            "|---|---:|---:|---:|", *rows, "\n</details>"]  # fmt: skip


def _labels_section(m: Monitoring) -> list[str]:
    lab = m.labels
    if not lab.get("rows"):
        return []
    lines = [f"\n## Late labels\n\n{lab['rows']:,} served predictions have ground truth."]
    if "headline" in lab:
        lines += [
            f"{lab['headline']}: {lab['served']:.4f} served vs {lab['offline']:.4f} offline",
            f"(drop {lab['drop']:+.4f}).",
        ]
    return lines


def render(m: Monitoring, out_dir: Path, threshold: float) -> str:
    """reports/monitor.md, with drift and prediction-trend pictures in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Monitoring `{m.environment}`\n"]
    if m.breaches:
        lines += [f"## ❌ {len(m.breaches)} threshold(s) breached\n", *[f"- {b}" for b in m.breaches]]
    else:
        lines.append("## ✅ No threshold breached")
    lines += _service_section(m) + _predictions_section(m, out_dir) + _drift_section(m, out_dir, threshold)
    lines += _missing_section(m) + _labels_section(m) + [f"\n_Computed in {m.seconds:.1f}s._"]
    return "\n".join(lines) + "\n"


# ---- an environment, end to end -----------------------------------------------------------------


def training_reference(site: Site, reference: Path | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """The training reference and offline metrics of the model production serves.

    Fetched by DVC at production's tag, or taken from the checkout when there is no tag or it
    cannot be fetched.
    """
    root = site.root
    if reference is not None:
        return read_table(reference), read_json(root / paths.METRICS)
    found = records.production_record(root)
    if found:
        tag, record = found
        try:
            data = records.read_at(root, tag, paths.REFERENCE)
            return pd.read_parquet(io.BytesIO(data)), record.get("metrics", {})
        except Exception as e:  # DVC raises many kinds; say which and fall back
            site.progress(f"production's reference not available at {tag} ({e}); using {paths.REFERENCE}")
    return read_table(root / paths.REFERENCE), read_json(root / paths.METRICS)


def serving_version(endpoint: Endpoint, name: str) -> str | None:
    """The version ``endpoint`` serves by default, or None when its server does not say."""
    try:
        return Client(endpoint, timeout=10).default_version(name)
    except MlopsError:
        return None


def recorded_version(site: Site, env: str) -> str | None:
    """The version git's record says ``env`` serves (production only), when the server is not asked."""
    found = records.production_record(site.root, site.name) if env == "production" else None
    return str(found[1].get("version")) if found and found[1].get("version") else None


def monitor_environment(
    site: Site,
    env: str,
    contract: Contract,
    log_dir: str | Path | None = None,
    labels: str | Path | None = paths.LABELS,
    reference: Path | None = None,
    since: float | None = None,
    metrics_url: str | None = None,
) -> Monitoring:
    """Monitor one environment with its own prediction log, metrics and access log by default.

    ``metrics_url`` overrides the environment's metrics API ("" for none); with it and ``log_dir``
    given, the environment's server settings (URLs, tokens) are not needed at all.
    """
    local, endpoint = None, None
    if log_dir is None or metrics_url is None:
        endpoint = resolve(env, site.serve_dir, site.runtime_dir)
        local = endpoint.local
        metrics_url = endpoint.metrics_url if metrics_url is None else metrics_url
    log_dir = log_dir or (local.home / "predictions" if local else None)
    if log_dir is None:
        raise UserError(f"remote {env}: pass --log-dir with the server's prediction log")
    ref, offline = training_reference(site, reference)
    version = serving_version(endpoint, site.name) if endpoint else recorded_version(site, env)
    sources = Sources(env, log_dir, ref, offline, metrics_url or None, local.logs if local else None, labels,
                      site.name, version)  # fmt: skip
    return monitor(sources, contract, site.params.monitor, site.params.gates, since=since)


def write_report(m: Monitoring, out: Path, threshold: float) -> None:
    """``out`` (markdown, pictures in a folder of its name) and its JSON twin."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(m, out.with_suffix(""), threshold))
    out.with_suffix(".json").write_text(json.dumps(m.to_dict(), indent=2, default=float) + "\n")
