"""Monitoring: what production sees and answers, against the training reference and late labels.

Reads TorchServe's Prometheus metrics (prometheus_client's parser) and the prediction log;
drift is the population stability index plus a KS test (numbers) or a chi-square test
(categories) from scipy; metrics on late labels come from ``mlops.evaluation``.
"""

from __future__ import annotations

import time
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

from mlops import figures
from mlops.config import GateParams, MonitorParams
from mlops.contract import Contract
from mlops.evaluation import LOWER_IS_BETTER, classification_metrics, regression_metrics

EPS = 1e-4


# ---- the prediction log -------------------------------------------------------------------------


def _files(location: str | Path, pattern: str) -> tuple[Any, list[str]]:
    """A folder or any fsspec URL (where a server ships its logs), and the files matching."""
    fs, root = fsspec.core.url_to_fs(str(location))
    return fs, sorted(fs.glob(f"{root.rstrip('/')}/{pattern}"))


def read_log(location: str | Path, since: float, until: float) -> pd.DataFrame:
    """Logged rows in [since, until): inputs as columns, plus request_id, time, version, id, score columns."""
    records: list[dict[str, Any]] = []
    fs, paths = _files(location, "predictions-*.jsonl*")
    for path in paths:
        with fs.open(path, "rb") as f:
            for line in f:
                r = orjson.loads(line)
                if since <= r["time"] < until:
                    records.append(r)
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records([r["inputs"] for r in records])
    frame["_time"] = [r["time"] for r in records]
    frame["_version"] = [r["model_version"] for r in records]
    frame["_id"] = [r.get("id") for r in records]
    outputs = [r["outputs"] for r in records]
    frame["_prediction"] = [o["prediction"] for o in outputs]
    if "probabilities" in outputs[0]:
        classes = list(outputs[0]["probabilities"])
        for c in classes:
            frame[f"_p_{c}"] = [o["probabilities"][c] for o in outputs]
    return frame


def served_score(frame: pd.DataFrame, task: str) -> pd.Series:
    if task == "binary":
        positive = [c for c in frame.columns if c.startswith("_p_")][1]
        return frame[positive].astype(float)
    if task == "multiclass":
        return frame["_prediction"].astype(str)
    return frame["_prediction"].astype(float)


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
    frame: pd.DataFrame, score: pd.Series, reference: pd.DataFrame, contract: Contract, params: MonitorParams
) -> dict[str, dict[str, Any]]:
    """Per input and for the prediction: PSI, the test, and whether both say it drifted."""
    out: dict[str, dict[str, Any]] = {}
    for name in [*contract.features, "prediction"]:
        if name == "prediction":
            ref_col, cur_col, numeric = reference["score"], score, contract.task != "multiclass"
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
    """Totals of the TorchServe metrics the report uses (empty when unreachable)."""
    if not metrics_url:
        return {}
    try:
        text = requests.get(metrics_url.rstrip("/") + "/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
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


# ---- the report ---------------------------------------------------------------------------------


@dataclass
class Monitoring:
    environment: str
    rows: int
    breaches: list[str] = field(default_factory=list)
    service: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, Any] = field(default_factory=dict)
    windows: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[str, dict[str, float]] = field(default_factory=dict)
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def monitor(
    environment: str,
    contract: Contract,
    params: MonitorParams,
    gates: GateParams,
    log_dir: str | Path,
    reference: pd.DataFrame,
    offline_metrics: dict[str, float],
    metrics_url: str | None = None,
    server_logs: Path | None = None,
    labels_dir: str | Path | None = None,
    now: float | None = None,
    since: float | None = None,
) -> Monitoring:
    t0 = time.perf_counter()
    until = now or time.time()
    since = max(since or 0.0, until - params.lookback_hours * 3600)
    frame = read_log(log_dir, since, until)
    m = Monitoring(environment, len(frame))

    totals = scrape(metrics_url)
    requests_total = totals.get("ts_inference_requests", 0.0)
    errors = totals.get("Requests4XX", 0.0) + totals.get("Requests5XX", 0.0)
    latencies = access_latencies(server_logs, since)
    m.service = {
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
    if m.service["error_rate"] > params.max_error_rate:
        m.breaches.append(f"error rate {m.service['error_rate']:.1%} > {params.max_error_rate:.1%}")
    p99 = m.service["latency_p99_ms"]
    if p99 is not None and p99 > params.max_p99_ms:
        m.breaches.append(f"p99 latency {p99:.0f} ms > {params.max_p99_ms:.0f} ms")
    if frame.empty:
        m.breaches.append("no predictions logged in the lookback window") if requests_total else None
        m.seconds = round(time.perf_counter() - t0, 2)
        return m

    score = served_score(frame, contract.task)
    if contract.task == "multiclass":
        m.predictions = {"distribution": score.value_counts(normalize=True).round(4).to_dict()}
    else:
        m.predictions = {
            "mean": float(score.mean()), "std": float(score.std()), "min": float(score.min()),
            "max": float(score.max()), "p10": float(score.quantile(0.1)), "p50": float(score.quantile(0.5)),
            "p90": float(score.quantile(0.9)),
        }  # fmt: skip
    window = params.window_minutes * 60
    frame["_window"] = ((frame["_time"] - since) // window).astype(int)
    for w, part in frame.groupby("_window"):
        s = served_score(part, contract.task)
        row: dict[str, Any] = {"start": since + int(w) * window, "rows": len(part)}
        row |= (
            {"mean": float(s.mean()), "p10": float(s.quantile(0.1)), "p90": float(s.quantile(0.9))}
            if contract.task != "multiclass"
            else {}
        )
        m.windows.append(row)

    for name in contract.features:
        served = frame[name].isna().mean() if name in frame else 1.0
        ref = reference[name].isna().mean() if name in reference else 0.0
        limit = max(contract.columns[name].max_missing, ref + params.max_missing_increase)
        m.missing[name] = {"served": float(served), "reference": float(ref), "limit": float(limit)}
        if served > limit:
            m.breaches.append(
                f"missing values in '{name}': {served:.1%} served vs {ref:.1%} in training (limit {limit:.1%})"
            )

    if len(frame) >= params.min_rows:
        m.drift = drift_table(frame, score, reference, contract, params)
        m.breaches += [
            f"drift in '{name}': PSI {d['psi']:.2f} >= {params.psi_threshold}, {d['test']} p={d['p_value']:.1e}"
            for name, d in m.drift.items()
            if d["drifted"]
        ]

    if labels_dir is not None and contract.id:
        m.labels = _late_labels(frame, labels_dir, contract, gates, params, offline_metrics, m.breaches)
    m.seconds = round(time.perf_counter() - t0, 2)
    return m


def _late_labels(
    frame: pd.DataFrame,
    labels_dir: str | Path,
    contract: Contract,
    gates: GateParams,
    params: MonitorParams,
    offline: dict[str, float],
    breaches: list[str],
) -> dict[str, Any]:
    fs, files = _files(labels_dir, "*.csv")
    if not files:
        return {}
    labels = pd.concat([pd.read_csv(fs.open(f), dtype={contract.id: str}) for f in files], ignore_index=True)
    labels = labels.drop_duplicates(contract.id, keep="last")
    joined = (
        frame.dropna(subset=["_id"])
        .astype({"_id": str})
        .merge(labels, left_on="_id", right_on=contract.id, how="inner")
    )
    if joined.empty:
        return {"rows": 0}
    y = joined[contract.target]
    if contract.is_classification:
        classes = [c.removeprefix("_p_") for c in joined.columns if c.startswith("_p_")]
        proba = joined[[f"_p_{c}" for c in classes]].to_numpy()
        typed = [type(contract.classes[0])(c) for c in classes]
        metrics = classification_metrics(y, proba, typed, contract)
    else:
        metrics = regression_metrics(y, joined["_prediction"].astype(float).to_numpy())
    headline = next(iter(gates.minimum), None) or next(iter(gates.maximum), None)
    out: dict[str, Any] = {"rows": len(joined), "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)}}
    if headline and headline in metrics and headline in offline:
        drop = offline[headline] - metrics[headline]
        if headline in LOWER_IS_BETTER:
            drop = -drop
        out |= {"headline": headline, "offline": offline[headline], "served": metrics[headline], "drop": drop}
        if drop > params.max_metric_drop:
            breaches.append(
                f"{headline} on {len(joined)} labelled predictions is {metrics[headline]:.4f}, "
                f"{drop:.4f} worse than offline {offline[headline]:.4f} (limit {params.max_metric_drop})"
            )
    return out


def render(m: Monitoring, out_dir: Path, threshold: float) -> str:
    """reports/monitor.md, with drift and prediction-trend pictures beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Monitoring `{m.environment}`\n"]
    if m.breaches:
        lines.append(f"## ❌ {len(m.breaches)} threshold(s) breached\n")
        lines += [f"- {b}" for b in m.breaches]
    else:
        lines.append("## ✅ No threshold breached")
    s = m.service
    lines += ["\n## Service\n", "| requests | 4xx | 5xx | error rate | mean ms | p50 ms | p99 ms | CPU % | memory MB |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip

    def f(v: Any, fmt: str = ".1f") -> str:
        return "—" if v is None else format(v, fmt)

    lines.append(
        f"| {f(s.get('requests'), '.0f')} | {f(s.get('errors_4xx'), '.0f')} | {f(s.get('errors_5xx'), '.0f')} | "
        f"{f(s.get('error_rate'), '.2%')} | {f(s.get('latency_mean_ms'))} | {f(s.get('latency_p50_ms'))} | "
        f"{f(s.get('latency_p99_ms'))} | {f(s.get('cpu_percent'))} | {f(s.get('memory_used_mb'), '.0f')} |"
    )
    lines.append(f"\n## Predictions ({m.rows:,} logged rows)\n")
    if m.predictions:
        lines.append(
            ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.predictions.items())
        )
    if m.windows and "mean" in m.windows[0]:
        figures.trend(pd.DataFrame(m.windows), out_dir / "predictions.png")
        lines.append(f"\n![prediction trend]({out_dir.name}/predictions.png)")
    if m.drift:
        lines += [
            "\n## Drift against the training reference\n",
            "| input | PSI | test | p-value | drifted |",
            "|---|---:|---|---:|---|",
        ]
        for name, d in sorted(m.drift.items(), key=lambda kv: -kv[1]["psi"]):
            flag = "**yes**" if d["drifted"] else "no"
            lines.append(f"| {name} | {d['psi']:.3f} | {d['test']} | {d['p_value']:.1e} | {flag} |")
        table = pd.DataFrame([{"feature": k, "psi": v["psi"]} for k, v in m.drift.items()])
        figures.drift(table, out_dir / "drift.png", threshold)
        lines.append(f"\n![drift per feature]({out_dir.name}/drift.png)")
    elif m.rows:
        lines.append("\nToo few logged rows for a drift verdict.")
    if m.missing:
        lines += [
            "\n<details><summary>Missing values per feature</summary>\n",
            "| feature | served | training | limit |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {k} | {v['served']:.2%} | {v['reference']:.2%} | {v['limit']:.2%} |" for k, v in m.missing.items()
        ]
        lines.append("\n</details>")
    if m.labels.get("rows"):
        lab = m.labels
        lines.append(f"\n## Late labels\n\n{lab['rows']:,} served predictions have ground truth.")
        if "headline" in lab:
            lines.append(f"{lab['headline']}: {lab['served']:.4f} served vs {lab['offline']:.4f} offline")
            lines.append(f"(drop {lab['drop']:+.4f}).")
    lines.append(f"\n_Computed in {m.seconds:.1f}s._")
    return "\n".join(lines) + "\n"
