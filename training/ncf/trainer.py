"""The training loop: compiled multi-step graph calls, validation, early stopping, checkpoints.

Per-step cost, not per-sample cost, dominates NCF on CPUs: a step driven from Python costs
milliseconds of overhead. So each epoch is batched in numpy (see `ncf.sampling`) and run
by a `tf.function` that loops over many steps in-graph, with lazy Adam updating only the
embedding rows each batch touched. An epoch is run in chunks of about `CHUNK_SECONDS`
each, so a SIGTERM (spot interruption) is noticed within seconds without paying per-step
overhead; a stopped epoch is discarded and the last completed epoch's checkpoint kept.

With several workers (`ncf.distribute`), each trains on every count-th training row with its
own negatives, gradients are summed across workers every step, and every worker computes
its share of the evaluation; all decisions (early stopping, chunk lengths, stopping on
SIGTERM) come from all-reduced numbers, so they are identical on every worker.
"""

from __future__ import annotations

import hashlib
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
from ncf.distribute import Workers
from ncf.errors import NcfError
from ncf.evaluation import HeldOut
from ncf.interruption import TrainingInterrupted
from ncf.models import NcfModel
from ncf.optim import LazyAdam
from ncf.sampling import EpochBatches, build_epoch, epoch_rng, recency_weights

Log = Callable[[str], None]
StopRequested = Callable[[], bool]
CHUNK_SECONDS = 2.0
HISTORY_ONLY = {"evaluation_seconds"}  # in history.json, but no metric line (not a SageMaker metric)
_BATCH_SPEC = tf.TensorSpec([None, None], tf.int32)
_VALUE_SPEC = tf.TensorSpec([None, None], tf.float32)


class EpochRunner(tf.Module):
    """Owns the optimizer and the compiled per-epoch function of one model."""

    def __init__(
        self, model: NcfModel, learning_rate: float, l2: float, implicit: bool, workers: Workers | None = None
    ) -> None:
        super().__init__(name="epoch_runner")
        self.model = model
        self.workers = workers or Workers()
        self.variables_in_order = list(model.embeddings.values()) + list(model.dense.values())
        self.optimizer = LazyAdam(self.variables_in_order, learning_rate)
        self.chunk_steps = 8  # steps per graph call, adapted to ~CHUNK_SECONDS while training
        self.l2 = l2
        self.implicit = implicit
        self.run_steps = tf.function(
            self._run_steps, input_signature=[_BATCH_SPEC, _BATCH_SPEC, _VALUE_SPEC, _VALUE_SPEC]
        )

    def _penalty(self, users: tf.Tensor, items: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """L2 on the embedding rows of this batch (the NCF-style per-batch regulariser)."""
        total = tf.zeros_like(weights)
        for name, table in self.model.embeddings.items():
            index = users if name.endswith("user") or name == "user_bias" else items
            total += tf.reduce_sum(tf.square(tf.gather(table, index)), axis=1)
        return self.l2 * total

    def _step(self, users: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        users, items, targets, weights = self.workers.replica_share(users, items, targets, weights)
        with tf.GradientTape() as tape:
            logits = self.model.logits(users, items)
            if self.implicit:
                losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
            else:
                losses = tf.square(logits - targets)
            weighted = tf.reduce_sum(weights * losses)
            penalty = tf.reduce_sum(weights * self._penalty(users, items, weights))
            objective = (weighted + penalty) / tf.maximum(tf.reduce_sum(weights), 1.0)
            if self.workers.replicas_in_sync > 1:
                objective /= self.workers.replicas_in_sync  # the summed gradients are then the replicas' mean
        gradients = self.workers.all_reduce_gradients(tape.gradient(objective, self.variables_in_order))
        self.optimizer.apply(gradients, self.variables_in_order)
        return weighted

    def _run_steps(
        self, users: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor
    ) -> tf.Tensor:
        """Train on each [step] row in turn; the summed weighted loss (before regularisation)."""
        total = tf.constant(0.0)
        for step in tf.range(tf.shape(users)[0]):
            total += self.workers.replica_total(
                self.workers.run(self._step, (users[step], items[step], targets[step], weights[step]))
            )
        return total


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


def full_catalog_sample(num_users: int, max_users: int, seed: int) -> np.ndarray:
    """Rows of the held-out users that full-catalog metrics use: all, or a fixed seeded sample."""
    if not max_users or num_users <= max_users:
        return np.arange(num_users)
    return np.sort(np.random.default_rng([seed, 1 << 20]).choice(num_users, size=max_users, replace=False))


def _my_heldout_rows(data: TrainingData, heldout: HeldOut, rows: np.ndarray, workers: Workers) -> np.ndarray:
    """This worker's share of held-out `rows`: with a sharded train channel, those of its own users."""
    if data.sharded:
        return rows[data.has_training_rows(heldout.users[rows])]
    return workers.shard(rows)


def _my_training_rows(data: TrainingData, values: np.ndarray, workers: Workers) -> np.ndarray:
    """This worker's share of a per-training-row array: all of it when the train channel is sharded."""
    return values if data.sharded else workers.shard(values)


def evaluate(
    scorer: ModelScorer,
    data: TrainingData,
    split: str,
    config: TrainConfig,
    workers: Workers | None = None,
) -> dict[str, float]:
    """All metrics of one held-out split ("validation" or "test"), identical on every worker.

    Each worker ranks its share of the users; per-metric sums are added up across workers.
    Full-catalog metrics use at most `config.eval_max_users` users (see `full_catalog_sample`).
    """
    workers = workers or Workers()
    heldout = data.validation if split == "validation" else data.test
    k = config.top_k
    everyone = np.arange(len(heldout.users))
    full_rows = full_catalog_sample(len(heldout.users), config.eval_max_users, config.seed)
    mine = heldout.subset(_my_heldout_rows(data, heldout, everyone, workers))
    with workers.failures_reported():
        sampled = evaluation.sampled_ranks(mine, scorer.pairs)
        full = evaluation.full_catalog_ranks(
            heldout.subset(_my_heldout_rows(data, heldout, full_rows, workers)),
            scorer.catalog,
            data.seen,
            scorer.catalog_chunk_users(),
        )
        squared_error = 0.0
        if not config.is_implicit and len(mine.users):
            squared_error = evaluation.rmse(mine, scorer.pairs) ** 2 * len(mine.users)
        sums = workers.sum(
            [
                evaluation.hit_rate(sampled, k) * len(sampled),
                evaluation.ndcg(sampled, k) * len(sampled),
                evaluation.hit_rate(full, k) * len(full),
                evaluation.ndcg(full, k) * len(full),
                squared_error,
                len(sampled),
            ]
        )
    if sums[5] != len(everyone):
        raise NcfError(
            f"{split}: {len(everyone) - int(sums[5]):,} held-out users have no training rows on any worker;"
            " a sharded train channel must hold every held-out user's rows (as prepare.py writes it)"
        )
    sampled_count, full_count = max(len(everyone), 1), max(len(full_rows), 1)
    metrics = {
        f"{split}_hr_at_{k}": float(sums[0] / sampled_count),
        f"{split}_ndcg_at_{k}": float(sums[1] / sampled_count),
        f"{split}_recall_at_{k}_full": float(sums[2] / full_count),
        f"{split}_ndcg_at_{k}_full": float(sums[3] / full_count),
    }
    if not config.is_implicit:
        metrics[f"{split}_rmse"] = float(np.sqrt(sums[4] / sampled_count))
    return metrics


@dataclass
class FitResult:
    """What a training stage produced: the model holds the best weights when it returns."""

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def validation_metrics(self) -> dict[str, float]:
        """The best epoch's validation metrics (empty for a stage that does not validate)."""
        return {k: v for k, v in self.best_metrics.items() if k.startswith("validation_")}


def _better(config: TrainConfig, score: float, best: float | None) -> bool:
    if best is None:
        return True
    return score < best if config.selection_metric == "rmse" else score > best


def weights_digests(variables: list[tf.Variable], workers: Workers) -> set[str]:
    """Short hashes of the weights, one per distinct device copy: workers that log the same single
    digest hold identical weights on every device."""
    copies = zip(*(workers.local_copies(variable) for variable in variables), strict=True)
    digests = set()
    for copy in copies:
        digest = hashlib.sha256()
        for variable in copy:
            digest.update(variable.numpy().tobytes())
        digests.add(digest.hexdigest()[:16])
    return digests


def _equal_steps(data: TrainingData, config: TrainConfig, workers: Workers) -> int:
    """Steps per epoch that fit every worker's shard: all workers must run the same number."""
    if workers.count == 1:
        return 0
    users = _my_training_rows(data, data.train_users, workers)
    can_sample = int((np.diff(data.seen.offsets)[users] < len(data.items)).sum())
    samples = workers.each(len(users) + _negatives(config) * can_sample)
    return int(-(-samples.max() // _worker_batch(config, workers)))


def _stop_and_next_chunk(workers: Workers, stop_requested: StopRequested, proposal: int) -> tuple[bool, int]:
    """Whether any worker was asked to stop, and the chief's next chunk length: agreed by all."""
    agreed = workers.sum([float(stop_requested()), proposal if workers.is_chief else 0])
    return bool(agreed[0] > 0), int(agreed[1])


def _train_epoch(
    runner: EpochRunner, batches: Any, workers: Workers, stop_requested: StopRequested
) -> float | None:
    """Run one epoch in chunks of ~CHUNK_SECONDS; its summed loss, or None when asked to stop."""
    steps = batches.users.shape[0]
    done = 0
    loss = 0.0
    while done < steps:
        chunk = min(runner.chunk_steps, steps - done)
        started = time.perf_counter()
        part = slice(done, done + chunk)
        loss += float(
            runner.run_steps(
                batches.users[part], batches.items[part], batches.targets[part], batches.weights[part]
            )
        )
        done += chunk
        rate = chunk / max(time.perf_counter() - started, 1e-3)
        proposal = int(np.clip(rate * CHUNK_SECONDS, 1, 4 * runner.chunk_steps))
        stop, runner.chunk_steps = _stop_and_next_chunk(workers, stop_requested, proposal)
        if stop and done < steps:
            return None
    return loss


def _negatives(config: TrainConfig) -> int:
    return config.num_neg if config.is_implicit else 0


def _worker_batch(config: TrainConfig, workers: Workers) -> int:
    """Each worker's share of the global batch, so `batch_size` means the same on any number of workers;
    rounded up to a multiple of its devices, which must get equal shares (the gradient exchange needs it)."""
    replicas = workers.local_replicas
    return -(-max(1, config.batch_size // workers.count) // replicas) * replicas


def epoch_batches(
    data: TrainingData, config: TrainConfig, epoch: int, workers: Workers | None = None, min_steps: int = 0
) -> EpochBatches:
    """One epoch's samples exactly as `fit` trains on them: this worker's share of the training rows,
    recency-weighted, with negatives drawn from the (seed, epoch, worker) random stream."""
    workers = workers or Workers()
    weights = recency_weights(data.train_recency, config.recency_boost, config.recency_half_life)

    def shard(values: np.ndarray) -> np.ndarray:
        return _my_training_rows(data, values, workers)

    return build_epoch(
        shard(data.train_users),
        shard(data.train_items),
        shard(data.train_targets),
        shard(weights),
        num_neg=_negatives(config),
        positives=data.seen,
        num_items=len(data.items),
        batch_size=_worker_batch(config, workers),
        rng=epoch_rng(config.seed, epoch, workers.index),
        min_steps=min_steps,
    )


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
    workers: Workers | None = None,
    stop_requested: StopRequested | None = None,
) -> FitResult:
    """Train for up to `epochs` and resume from checkpoints.

    With `select`, validate every epoch, stop early, and leave the best validation weights in
    the model. Without it (the refit on train + validation, whose validation items are now
    training data), run exactly `epochs` epochs and keep the last weights. When
    `stop_requested()` turns true (SIGTERM), raise `TrainingInterrupted` within seconds; the
    interrupted epoch is not saved. Only the chief (worker 0) writes checkpoints; every worker
    restores from the same folder (SageMaker syncs it to every host on a restart).
    """
    workers = workers or Workers()
    stop_requested = stop_requested or (lambda: False)
    with workers.scope():
        runner = EpochRunner(model, config.learning_rate, config.l2, config.is_implicit, workers)
    scorer = ModelScorer(model)
    best_weights = [tf.Variable(v, trainable=False) for v in runner.variables_in_order]
    with workers.failures_reported():
        data_fingerprint = workers.agreed_digest(data.fingerprint)
    fingerprint = f"{stage}|{sorted(config.training_identity().items())}|{data_fingerprint}"
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

    with workers.failures_reported():
        min_steps = _equal_steps(data, config, workers)
        first_epoch = int(state.epochs_done.numpy())
        if workers.sum([first_epoch])[0] != first_epoch * workers.count:
            raise NcfError(
                f"worker {workers.index} resumed {stage} after epoch {first_epoch}, another worker did not:"
                " every worker must see the chief's checkpoints (one checkpoint_s3_uri for the job)"
            )
        for epoch in range(first_epoch, epochs):
            if select and config.patience and summary["stale"] >= config.patience:
                break
            if _stop_and_next_chunk(workers, stop_requested, runner.chunk_steps)[0]:
                raise TrainingInterrupted(stage, epoch)
            started = time.perf_counter()
            batches = epoch_batches(data, config, epoch, workers, min_steps)
            loss = _train_epoch(runner, batches, workers, stop_requested)
            if loss is None:
                raise TrainingInterrupted(stage, epoch)
            totals = workers.sum([loss, float(batches.weights.sum()), batches.num_samples])
            seconds = time.perf_counter() - started
            record = {
                "epoch": epoch + 1,
                "train_loss": float(totals[0] / max(totals[1], 1.0)),
                "samples_per_sec": float(totals[2] / seconds),
                "epoch_seconds": seconds,
            }
            if select:
                evaluated = time.perf_counter()
                record.update(evaluate(scorer, data, "validation", config, workers))
                record["evaluation_seconds"] = time.perf_counter() - evaluated
            summary["history"].append(record)
            score = record.get(config.selection_key)
            if not select or _better(config, score, summary["best"]):
                summary.update(best=score, best_epoch=epoch + 1, stale=0)
                for saved, current in zip(best_weights, runner.variables_in_order, strict=True):
                    saved.assign(current)
            else:
                summary["stale"] += 1
            log(reporting.epoch_line(stage, record, epochs, config.selection_key if select else None))
            if select and workers.is_chief:
                for name, value in record.items():
                    if name not in HISTORY_ONLY:
                        log(reporting.metric_line(name, value))
            state.epochs_done.assign(epoch + 1)
            state.write_summary(summary)
            if checkpointer is not None and workers.is_chief:
                checkpointer.save()

    for saved, current in zip(best_weights, runner.variables_in_order, strict=True):
        current.assign(saved)
    if workers.distributed:
        digests = " ".join(sorted(weights_digests(runner.variables_in_order, workers)))
        copies = f"{workers.local_replicas} device(s)"
        log(f"[{stage}] weights digest {digests} on worker {workers.index} ({copies})")
    best_record = next((r for r in summary["history"] if r["epoch"] == summary["best_epoch"]), {})
    return FitResult(summary["best_epoch"], best_record, summary["history"])
