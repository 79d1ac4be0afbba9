"""The pictures people would rather look at, as PNG files for reports (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # no software/date metadata: the same figure gives the same bytes
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


def loss_curve(curve: pd.DataFrame, path: Path) -> None:
    """Training (and validation) loss per iteration, as a PNG."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for col in ("train_loss", "validation_loss"):
        if col in curve:
            ax.plot(curve["iteration"], curve[col], marker="." if len(curve) < 3 else None, label=col.replace("_", " "))
    ax.set(xlabel="iteration", ylabel="loss", title="Training loss")
    ax.legend()
    _save(fig, path)


def confusion(table: pd.DataFrame, path: Path) -> None:
    """A confusion matrix (actual vs predicted counts) from a table of both, as a PNG."""
    labels = sorted(set(table["actual"]) | set(table["predicted"]))
    matrix = pd.crosstab(table["actual"], table["predicted"]).reindex(index=labels, columns=labels, fill_value=0)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    values = matrix.to_numpy()
    ax.imshow(values, cmap="Blues")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > values.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix")
    _save(fig, path)


def curve(table: pd.DataFrame, x: str, y: str, title: str, path: Path, diagonal: bool = False) -> None:
    """A curve of ``y`` against ``x`` on the unit square (ROC, precision-recall), as a PNG."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(table[x], table[y])
    if diagonal:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel=x, ylabel=y, title=title, xlim=(0, 1), ylim=(0, 1.02))
    _save(fig, path)


def importance(table: pd.DataFrame, path: Path) -> None:
    """The 15 most important features as horizontal bars, as a PNG."""
    top = table.head(15).iloc[::-1]
    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(top) + 1.2))
    ax.barh(top["feature"], top["importance"])
    ax.set(xlabel="permutation importance (holdout)", title="Feature importance")
    _save(fig, path)


def predicted_vs_actual(table: pd.DataFrame, path: Path) -> None:
    """Predicted against actual values and residuals side by side, as a PNG."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.8))
    a.scatter(table["actual"], table["predicted"], s=6, alpha=0.5)
    lo, hi = table[["actual", "predicted"]].min().min(), table[["actual", "predicted"]].max().max()
    a.plot([lo, hi], [lo, hi], linestyle="--", color="grey")
    a.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    b.scatter(table["predicted"], table["residual"], s=6, alpha=0.5)
    b.axhline(0, linestyle="--", color="grey")
    b.set(xlabel="predicted", ylabel="residual", title="Residuals")
    _save(fig, path)


# What `evaluate` draws for each plot table a task produces (`Task.plot_tables` + importance).
PLOTS = {
    "confusion": confusion,
    "roc": lambda table, path: curve(table, "fpr", "tpr", "ROC curve", path, diagonal=True),
    "prc": lambda table, path: curve(table, "recall", "precision", "Precision-recall curve", path),
    "importance": importance,
    "predictions": predicted_vs_actual,
}


def drift(table: pd.DataFrame, path: Path, threshold: float = 0.2) -> None:
    """The population stability index per input, drifted ones in red, as a PNG."""
    top = table.sort_values("psi").tail(20)
    fig, ax = plt.subplots(figsize=(5.5, 0.3 * len(top) + 1.2))
    ax.barh(top["feature"], top["psi"], color=["tab:red" if v >= threshold else "tab:blue" for v in top["psi"]])
    ax.axvline(threshold, linestyle="--", color="grey")
    ax.set(xlabel="population stability index vs training", title="Drift per input")
    _save(fig, path)


def trend(windows: pd.DataFrame, path: Path) -> None:
    """The served score's mean and p10-p90 band per window over time, as a PNG."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = pd.to_datetime(windows["start"], unit="s")
    ax.plot(x, windows["mean"], marker=".", label="mean")
    ax.fill_between(x, windows["p10"], windows["p90"], alpha=0.25, label="p10-p90")
    ax.set(xlabel="window start (UTC)", ylabel="served score", title="Predictions over time")
    ax.legend()
    fig.autofmt_xdate()
    _save(fig, path)
