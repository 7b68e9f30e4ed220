"""How a run reports itself: log lines, SageMaker metric regexes, metrics.json, history, curve.

Metric lines have the fixed form `name=value;`, one per line, so that SageMaker's
`metric_definitions` can pick them out of CloudWatch logs with the regexes from
`metric_definitions()`. This module is pure Python (no TensorFlow) so that `deploy/`
can import the regexes without pulling in the training stack.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

#: What train.py prints per epoch and at the end; `{k}` is the ranking metrics' cut-off (`top_k`).
_METRIC_TEMPLATES = (
    "epoch",
    "train_loss",
    "samples_per_sec",
    "epoch_seconds",
    "validation_hr_at_{k}",
    "validation_ndcg_at_{k}",
    "validation_recall_at_{k}_full",
    "validation_ndcg_at_{k}_full",
    "validation_rmse",
    "test_hr_at_{k}",
    "test_ndcg_at_{k}",
    "test_recall_at_{k}_full",
    "test_ndcg_at_{k}_full",
    "test_rmse",
    "best_epoch",
)

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def metric_regex(name: str) -> str:
    """The regex that captures `name`'s value from its log line (and no other metric's)."""
    return rf"\b{name}={_NUMBER};"


def metric_names(top_k: int) -> tuple[str, ...]:
    """Every metric name train.py prints in a run with this `top_k` (ncf.evaluation names them)."""
    return tuple(template.format(k=top_k) for template in _METRIC_TEMPLATES)


def metric_definitions(top_k: int) -> list[dict[str, str]]:
    """SageMaker `MetricDefinitions` for every metric train.py prints in a run with this `top_k`."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in metric_names(top_k)]


def metric_line(name: str, value: float) -> str:
    """`name=value;` with integers printed as integers and floats with 6 significant digits."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{name}={int(value)};"
    return f"{name}={value:.6g};"


def epoch_line(stage: str, record: dict[str, float], epochs: int, selection_key: str | None) -> str:
    """One human-readable progress line per epoch, CloudWatch friendly (no carriage returns)."""
    line = (
        f"[{stage}] epoch {int(record['epoch'])}/{epochs}  loss {record['train_loss']:.4f}  "
        f"{record['samples_per_sec']:,.0f} samples/s  {record['epoch_seconds']:.1f}s"
    )
    return f"{line}  {selection_key} {record[selection_key]:.4f}" if selection_key else line


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_history_csv(path: Path, history: list[dict[str, float]]) -> None:
    """Per-epoch history as CSV: one row per epoch, one column per metric."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for record in history for key in record))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def plot_training_curve(path: Path, history: list[dict[str, float]], selection_key: str) -> None:
    """Training loss and the selection metric per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], marker="o")
    loss_axis.set(title="training loss", xlabel="epoch")
    for key in sorted({k for r in history for k in r if k.startswith("validation_")}):
        values = [r.get(key, math.nan) for r in history]
        metric_axis.plot(epochs, values, marker="o", label=key, linewidth=2.5 if key == selection_key else 1)
    metric_axis.set(title="validation", xlabel="epoch")
    metric_axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
