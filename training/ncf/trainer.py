"""The training loop: one compiled graph call per epoch, validation, early stopping, checkpoints.

Per-step cost, not per-sample cost, dominates NCF on CPUs: a step driven from Python costs
milliseconds of overhead. So each epoch is batched in numpy (see `ncf.sampling`) and run
by a single `tf.function` that loops over all its steps in-graph, with lazy Adam updating
only the embedding rows each batch touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ncf import evaluation, reporting
from ncf.checkpointing import Checkpointer, LoopState
from ncf.config import TrainConfig
from ncf.dataset import TrainingData
from ncf.models import NcfModel
from ncf.optim import LazyAdam
from ncf.sampling import build_epoch, epoch_rng, recency_weights

Log = Callable[[str], None]
_BATCH_SPEC = tf.TensorSpec([None, None], tf.int32)
_VALUE_SPEC = tf.TensorSpec([None, None], tf.float32)


class EpochRunner(tf.Module):
    """Owns the optimizer and the compiled per-epoch function of one model."""

    def __init__(self, model: NcfModel, learning_rate: float, l2: float, implicit: bool) -> None:
        super().__init__(name="epoch_runner")
        self.model = model
        self.variables_in_order = list(model.embeddings.values()) + list(model.dense.values())
        self.optimizer = LazyAdam(self.variables_in_order, learning_rate)
        self.l2 = l2
        self.implicit = implicit
        self.run_epoch = tf.function(
            self._run_epoch, input_signature=[_BATCH_SPEC, _BATCH_SPEC, _VALUE_SPEC, _VALUE_SPEC]
        )

    def _penalty(self, users: tf.Tensor, items: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """L2 on the embedding rows of this batch (the NCF-style per-batch regulariser)."""
        total = tf.zeros_like(weights)
        for name, table in self.model.embeddings.items():
            index = users if name.endswith("user") or name == "user_bias" else items
            total += tf.reduce_sum(tf.square(tf.gather(table, index)), axis=1)
        return self.l2 * total

    def _step(self, users: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = self.model.logits(users, items)
            if self.implicit:
                losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
            else:
                losses = tf.square(logits - targets)
            weighted = tf.reduce_sum(weights * losses)
            penalty = tf.reduce_sum(weights * self._penalty(users, items, weights))
            objective = (weighted + penalty) / tf.maximum(tf.reduce_sum(weights), 1.0)
        gradients = tape.gradient(objective, self.variables_in_order)
        self.optimizer.apply(gradients, self.variables_in_order)
        return weighted

    def _run_epoch(
        self, users: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor
    ) -> tf.Tensor:
        """Mean training loss of the epoch (before regularisation)."""
        total = tf.constant(0.0)
        for step in tf.range(tf.shape(users)[0]):
            total += self._step(users[step], items[step], targets[step], weights[step])
        return total / tf.maximum(tf.reduce_sum(weights), 1.0)


class ModelScorer:
    """The model's scoring functions, traced once, as the numpy callables evaluation takes."""

    def __init__(self, model: NcfModel, batch: int = 65536) -> None:
        ids = tf.TensorSpec([None], tf.int32)
        self.model = model
        self.batch = batch
        self._pairs = tf.function(model.logits, input_signature=[ids, ids])
        self._catalog = tf.function(model.logits_all_items, input_signature=[ids])

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Logits of aligned pairs (predicted ratings for explicit feedback), in large batches."""
        step = self.batch
        out = [
            self._pairs(users[s : s + step], items[s : s + step]).numpy() for s in range(0, len(users), step)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def catalog(self, users: np.ndarray) -> np.ndarray:
        return self._catalog(users).numpy()

    def catalog_chunk_users(self, budget_floats: int = 32_000_000) -> int:
        """Users per full-catalog call so the widest intermediate stays near 128 MB."""
        spec = self.model.spec
        width = spec.mlp_layers[1] if spec.has_mlp else 1
        return max(1, budget_floats // (spec.num_items * width))


def evaluate(scorer: ModelScorer, data: TrainingData, split: str, config: TrainConfig) -> dict[str, float]:
    """All metrics of one held-out split ("validation" or "test")."""
    heldout = data.validation if split == "validation" else data.test
    metrics = evaluation.ranking_metrics(
        split,
        heldout,
        scorer.pairs,
        scorer.catalog,
        data.seen,
        k=config.top_k,
        chunk_users=scorer.catalog_chunk_users(),
    )
    if not config.is_implicit:
        metrics[f"{split}_rmse"] = evaluation.rmse(heldout, scorer.pairs)
    return metrics


@dataclass
class FitResult:
    """What a training stage produced: the model holds the best weights when it returns."""

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def _better(config: TrainConfig, score: float, best: float | None) -> bool:
    if best is None:
        return True
    return score < best if config.selection_metric == "rmse" else score > best


def fit(
    model: NcfModel,
    data: TrainingData,
    config: TrainConfig,
    *,
    epochs: int,
    checkpoint_dir: Path | None,
    log: Log,
    stage: str,
    select: bool = True,
) -> FitResult:
    """Train for up to `epochs` and resume from checkpoints.

    With `select`, validate every epoch, stop early, and leave the best validation weights in
    the model. Without it (the refit on train + validation, whose validation items are now
    training data), run exactly `epochs` epochs and keep the last weights.
    """
    runner = EpochRunner(model, config.learning_rate, config.l2, config.is_implicit)
    scorer = ModelScorer(model)
    best_weights = [tf.Variable(v, trainable=False) for v in runner.variables_in_order]
    fingerprint = f"{stage}|{sorted(config.training_identity().items())}|{data.fingerprint}"
    state = LoopState(fingerprint)
    checkpointer = None
    if checkpoint_dir is not None:
        best = tf.Module()
        best.weights = best_weights
        checkpointer = Checkpointer(checkpoint_dir / stage, state, model=model, runner=runner, best=best)
        checkpointer.restore_latest(log)
    summary: dict[str, Any] = state.read_summary() or {
        "history": [],
        "best": None,
        "best_epoch": 0,
        "stale": 0,
    }

    num_neg = config.num_neg if config.is_implicit else 0
    sample_weights = recency_weights(data.train_recency, config.recency_boost, config.recency_half_life)
    for epoch in range(int(state.epochs_done.numpy()), epochs):
        if select and config.patience and summary["stale"] >= config.patience:
            break
        started = time.perf_counter()
        batches = build_epoch(
            data.train_users,
            data.train_items,
            data.train_targets,
            sample_weights,
            num_neg=num_neg,
            positives=data.seen,
            num_items=len(data.items),
            batch_size=config.batch_size,
            rng=epoch_rng(config.seed, epoch),
        )
        loss = float(runner.run_epoch(batches.users, batches.items, batches.targets, batches.weights))
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "samples_per_sec": batches.num_samples / seconds,
            "epoch_seconds": seconds,
        }
        if select:
            record.update(evaluate(scorer, data, "validation", config))
        summary["history"].append(record)
        score = record.get(config.selection_key)
        if not select or _better(config, score, summary["best"]):
            summary.update(best=score, best_epoch=epoch + 1, stale=0)
            for saved, current in zip(best_weights, runner.variables_in_order, strict=True):
                saved.assign(current)
        else:
            summary["stale"] += 1
        log(reporting.epoch_line(stage, record, epochs, config.selection_key if select else None))
        if select:
            for name, value in record.items():
                log(reporting.metric_line(name, value))
        state.epochs_done.assign(epoch + 1)
        state.write_summary(summary)
        if checkpointer is not None:
            checkpointer.save()

    for saved, current in zip(best_weights, runner.variables_in_order, strict=True):
        current.assign(saved)
    best_record = next((r for r in summary["history"] if r["epoch"] == summary["best_epoch"]), {})
    return FitResult(summary["best_epoch"], best_record, summary["history"])
