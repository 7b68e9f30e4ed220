"""One training stage: run epochs, validate, stop early, keep the best weights, checkpoint, resume.

The pieces it drives each have a module of their own: the model's epoch source builds each epoch's
samples (`ncf.fit.pair_epochs` for the NCF types, `ncf.fit.sequence_epochs` for SASRec), the next epoch's
while the current one trains (`ncf.fit.prefetch`), its step loop
(`ncf.fit.step_loop`) runs them in compiled chunks; the model chooses both (`ncf.models.base.Model`).
`ncf.evaluation.protocol` scores validation (through `ncf.evaluation.scoring`), `ncf.fit.checkpointing`
saves and restores. With several workers (`ncf.fit.distribute`) every decision here (early stopping,
stopping on SIGTERM, resuming) comes from all-reduced numbers, so it is identical on every worker.
See the README's "How it trains" for the why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from ncf import reporting
from ncf.data.training_data import TrainingData
from ncf.errors import NcfError
from ncf.evaluation import protocol
from ncf.evaluation.protocol import EvaluationProtocol
from ncf.evaluation.scoring import ModelScorer
from ncf.fit.checkpointing import Checkpointer, LoopState
from ncf.fit.distribute import Workers
from ncf.fit.interruption import TrainingInterrupted
from ncf.fit.prefetch import PrefetchedEpochs
from ncf.fit.step_loop import StopRequested
from ncf.models.base import EpochSource, Model
from ncf.models.memory import budget_bytes
from ncf.train_settings import TrainConfig

Log = Callable[[str], None]
HISTORY_ONLY = {"evaluation_seconds"}  # in history.json, but no metric line (not a SageMaker metric)


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


@dataclass
class LoopSummary:
    """The loop's bookkeeping that checkpoints with the model: history and the best epoch so far."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int = 0
    stale: int = 0

    def result(self) -> FitResult:
        best_record = next((r for r in self.history if r["epoch"] == self.best_epoch), {})
        return FitResult(self.best_epoch, best_record, self.history)


def evaluate_split(
    scorer: protocol.Scorer,
    data: TrainingData,
    split: str,
    config: TrainConfig,
    workers: Workers | None = None,
) -> dict[str, float]:
    """`ncf.evaluation.protocol.evaluate` on one held-out split, each worker scoring its share of the users.

    With a sharded train channel a worker's share is its own users (it holds their training
    rows); otherwise every count-th user. The sums are added up over workers, so the metrics are
    identical on every worker.
    """
    workers = workers or Workers()
    heldout = data.validation if split == "validation" else data.test

    def mine(rows: np.ndarray) -> np.ndarray:
        return rows[data.has_training_rows(heldout.users[rows])] if data.sharded else workers.shard(rows)

    with workers.failures_reported():
        return protocol.evaluate(
            scorer,
            heldout,
            data.seen,
            EvaluationProtocol.of(config),
            split,
            mine=mine,
            sum_across=workers.sum,
        )


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


class _FitLoop:
    """The state of one stage's epoch loop, and its steps."""

    def __init__(
        self,
        model: Model,
        data: TrainingData,
        config: TrainConfig,
        stage: str,
        select: bool,
        workers: Workers,
    ) -> None:
        self.data, self.config, self.stage, self.select, self.workers = data, config, stage, select, workers
        with workers.scope():
            self.runner = model.step_loop(config, workers)
        self.scorer = ModelScorer(model, budget_bytes(config.memory_budget_mb))
        self.best_weights = [tf.Variable(v, trainable=False) for v in self.runner.variables_in_order]
        with workers.failures_reported():
            data_fingerprint = workers.agreed_digest(data.fingerprint)
        self.state = LoopState(f"{stage}|{sorted(config.training_identity().items())}|{data_fingerprint}")
        self.summary = LoopSummary()
        self.checkpointer: Checkpointer | None = None

    def restore(self, checkpoint_dir: Path | None, log: Log) -> None:
        """Resume from the stage's newest checkpoint in `checkpoint_dir`, if there is one."""
        if checkpoint_dir is None:
            return
        best = tf.Module()
        best.weights = self.best_weights
        self.checkpointer = Checkpointer(
            checkpoint_dir / self.stage, self.state, model=self.runner.model, runner=self.runner, best=best
        )
        self.checkpointer.restore_latest(log)
        self.summary = LoopSummary(**self.state.read_summary())

    @property
    def epochs_done(self) -> int:
        return int(self.state.epochs_done.numpy())

    def check_resumed_alike(self) -> None:
        """Every worker must resume after the same epoch (they all restore the chief's checkpoints)."""
        done, workers = self.epochs_done, self.workers
        if workers.sum([done])[0] != done * workers.count:
            raise NcfError(
                f"worker {workers.index} resumed {self.stage} after epoch {done}, another worker did not:"
                " every worker must see the chief's checkpoints (one checkpoint_s3_uri for the job)"
            )

    def out_of_patience(self) -> bool:
        return bool(self.select and self.config.patience and self.summary.stale >= self.config.patience)

    def train_epoch(self, epoch: int, source: EpochSource, stop_requested: StopRequested) -> dict[str, float]:
        """Train one epoch; its history record (loss, speed, validation metrics when selecting)."""
        if self.runner.stop_agreed(stop_requested):
            raise TrainingInterrupted(self.stage, epoch)
        started = time.perf_counter()
        batches = source.batches(epoch)
        loss = self.runner.train_epoch(batches, stop_requested)
        if loss is None:
            raise TrainingInterrupted(self.stage, epoch)
        totals = self.workers.sum([loss, float(batches.weights.sum()), batches.num_samples])
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "train_loss": float(totals[0] / max(totals[1], 1.0)),
            "samples_per_sec": float(totals[2] / seconds),
            "epoch_seconds": seconds,
        }
        if self.select:
            evaluated = time.perf_counter()
            record.update(evaluate_split(self.scorer, self.data, "validation", self.config, self.workers))
            record["evaluation_seconds"] = time.perf_counter() - evaluated
        return record

    def keep(self, record: dict[str, float]) -> None:
        """Add the epoch to the history; keep its weights when it is the best so far (or not selecting)."""
        summary = self.summary
        summary.history.append(record)
        score = record.get(self.config.selection_key)
        if not self.select or _better(self.config, score, summary.best):
            summary.best, summary.best_epoch, summary.stale = score, int(record["epoch"]), 0
            for saved, current in zip(self.best_weights, self.runner.variables_in_order, strict=True):
                saved.assign(current)
        else:
            summary.stale += 1
        self.state.epochs_done.assign(int(record["epoch"]))
        self.state.write_summary(dataclasses.asdict(summary))
        if self.checkpointer is not None and self.workers.is_chief:
            self.checkpointer.save()

    def report(self, record: dict[str, float], epochs: int, log: Log) -> None:
        """The epoch's progress line and, when selecting, its metric lines (chief only)."""
        key = self.config.selection_key if self.select else None
        log(reporting.epoch_line(self.stage, record, epochs, key))
        if self.select and self.workers.is_chief:
            for name, value in record.items():
                if name not in HISTORY_ONLY:
                    log(reporting.metric_line(name, value))

    def finish(self, log: Log) -> FitResult:
        """Put the best weights back into the model and say what the stage produced."""
        for saved, current in zip(self.best_weights, self.runner.variables_in_order, strict=True):
            current.assign(saved)
        if self.workers.distributed:
            digests = " ".join(sorted(weights_digests(self.runner.variables_in_order, self.workers)))
            copies = f"{self.workers.local_replicas} device(s)"
            log(f"[{self.stage}] weights digest {digests} on worker {self.workers.index} ({copies})")
        return self.summary.result()


def _better(config: TrainConfig, score: float | None, best: float | None) -> bool:
    """Whether `score` beats `best`. A NaN score (a diverged epoch) beats nothing but an empty
    slot, and any real score beats a NaN best: NaN compares false, so it would otherwise stay best."""
    if score is None or math.isnan(score):
        return best is None
    if best is None or math.isnan(best):
        return True
    return score < best if config.selection_metric == "rmse" else score > best


def fit(
    model: Model,
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
    """Train one stage for up to `epochs`, resuming from its checkpoints.

    Args:
        model: trained in place; holds the stage's kept weights on return.
        data: the stage's training data (and held-out splits).
        config: the run's settings.
        epochs: the most epochs to run (counting those a checkpoint already holds).
        checkpoint_dir: checkpoint every epoch under `checkpoint_dir/stage` and resume from there (the
            chief writes; every worker restores from the same folder); None: no checkpoints.
        log: where progress and metric lines go.
        stage: the stage's name, in log lines and as its checkpoint folder.
        select: validate every epoch, stop after `patience` epochs without improvement, keep the best
            validation weights. Without it (the refit and final fit, which train on the validation
            items), run exactly `epochs` epochs and keep the last weights.
        workers: the job's workers (default: one process).
        stop_requested: turns true on SIGTERM.

    Returns:
        The kept epoch, its record and the whole history.

    Raises:
        TrainingInterrupted: within seconds of `stop_requested()` turning true; the running epoch is
            discarded, the last completed one is checkpointed.
        NcfError: checkpoints of other settings or data, workers that resumed differently, lost workers.
    """
    workers = workers or Workers()
    stop_requested = stop_requested or (lambda: False)
    loop = _FitLoop(model, data, config, stage, select, workers)
    loop.restore(checkpoint_dir, log)
    with (
        workers.failures_reported(),
        PrefetchedEpochs(model.epoch_source(data, config, workers), epochs) as source,
    ):
        loop.check_resumed_alike()
        for epoch in range(loop.epochs_done, epochs):
            if loop.out_of_patience():
                break
            record = loop.train_epoch(epoch, source, stop_requested)
            loop.keep(record)
            loop.report(record, epochs, log)
    return loop.finish(log)
