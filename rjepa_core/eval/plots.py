"""Report figures as PNG (SPEC F15), drawn with matplotlib's Agg backend (no display needed).

    >>> paths = plot_report(report, "/tmp/report")     # {"jepa_loss": Path(...png), "accuracy": ..., ...}

Each figure is written atomically: a crash never leaves a truncated PNG that looks complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rjepa_core.io import atomic_path

PNG_FILES = {
    "jepa_loss": "jepa_loss_by_correctness.png",
    "accuracy": "accuracy_by_method.png",
    "training": "training_curves.png",
}


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _figure()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_jepa_loss(report: dict[str, Any], path: Path) -> Path | None:
    """Histograms of the JEPA-loss of correct vs incorrect candidates."""
    values = report.get("jepa_loss_values") or {}
    ok, bad = values.get("correct") or [], values.get("incorrect") or []
    if not ok and not bad:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    both = ok + bad
    lo, hi = min(both), max(both)
    bins = 30 if hi > lo else 1
    for vals, name, color in ((ok, "correct", "tab:green"), (bad, "incorrect", "tab:red")):
        if vals:
            ax.hist(
                vals,
                bins=bins,
                range=(lo, hi if hi > lo else lo + 1e-6),
                alpha=0.55,
                color=color,
                label=f"{name} (n={len(vals)})",
                density=True,
            )
    auroc = report.get("auroc_jepa")
    title = "JEPA-loss by chain correctness"
    ax.set_title(title + (f" (AUROC {auroc:.3f})" if isinstance(auroc, float) else ""))
    ax.set_xlabel("JEPA-loss (lower = more lawful)")
    ax.set_ylabel("density")
    ax.legend()
    return _save(fig, path)


def plot_accuracy(report: dict[str, Any], path: Path) -> Path | None:
    """Accuracy per method with 95 % bootstrap error bars, one group of bars per K."""
    methods = report.get("methods") or {}
    ks = report.get("ks") or [report.get("k")]
    if not methods:
        return None
    import numpy as np

    plt = _figure()
    names = list(methods)
    width = 0.8 / max(len(ks), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 3.8))
    x = np.arange(len(names))
    for j, k in enumerate(ks):
        acc, err_lo, err_hi = [], [], []
        for n in names:
            m = methods[n].get(f"k={k}") or {}
            a = m.get("accuracy", float("nan"))
            lo, hi = m.get("ci95") or [a, a]
            acc.append(a)
            err_lo.append(max(a - lo, 0.0))
            err_hi.append(max(hi - a, 0.0))
        ax.bar(x + (j - (len(ks) - 1) / 2) * width, acc, width, yerr=[err_lo, err_hi], capsize=3, label=f"K={k}")
        oracle = (report.get("oracle") or {}).get(f"k={k}")
        if oracle is not None:
            ax.axhline(oracle, ls="--", lw=0.8, color=f"C{j}", alpha=0.7)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (95 % CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Accuracy by selection method (dashed: oracle pass@K)")
    ax.legend()
    return _save(fig, path)


def plot_training(report: dict[str, Any], path: Path) -> Path | None:
    """Training and validation loss against the step, when the report carries a history."""
    rows = report.get("history") or []
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind") == "train" and "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("kind") == "val" and "val_loss" in r]
    if not train and not val:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if train:
        ax.plot(*zip(*train, strict=True), lw=1, label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", lw=1.5, label="val JEPA-loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("R-JEPA training")
    ax.legend()
    return _save(fig, path)


def plot_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """All figures the report has data for; returns {name: path}."""
    out_dir = Path(out_dir)
    makers = {"jepa_loss": plot_jepa_loss, "accuracy": plot_accuracy, "training": plot_training}
    out = {}
    for name, fn in makers.items():
        path = fn(report, out_dir / PNG_FILES[name])
        if path is not None:
            out[name] = path
    return out
