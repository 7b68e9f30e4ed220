"""The epoch source: each epoch's training samples for this worker, exactly as the step loop consumes them.

Each worker trains on its share of the training rows (every count-th row, or its own files with
a sharded train channel), recency-weighted, with negatives drawn from the (seed, epoch, worker)
random stream, so a resumed run draws the same samples as an uninterrupted one. All workers run
the same number of steps per epoch (the gradient exchange needs every worker at every step).
"""

from __future__ import annotations

import numpy as np

from ncf.data.training_data import TrainingData
from ncf.fit.distribute import Workers
from ncf.fit.pair_sampling import EpochBatches, build_epoch, epoch_rng, recency_weights
from ncf.train_settings import TrainConfig


def my_training_rows(data: TrainingData, values: np.ndarray, workers: Workers) -> np.ndarray:
    """This worker's share of a per-training-row array: all of it when the train channel is sharded."""
    return values if data.sharded else workers.shard(values)


class EpochSource:
    """Builds this worker's epochs of one training stage.

    Args:
        data: the stage's training data.
        config: batch size, negatives, recency weighting and seed.
        workers: the job's workers (default: one).
    """

    def __init__(self, data: TrainingData, config: TrainConfig, workers: Workers | None = None) -> None:
        self.data = data
        self.workers = workers or Workers()
        self.seed = config.seed
        self.num_neg = config.num_neg if config.is_implicit else 0
        replicas = self.workers.local_replicas
        # Each worker's share of the global batch, so `batch_size` means the same on any number of
        # workers; a multiple of its devices, which must get equal shares.
        self.batch_size = -(-max(1, config.batch_size // self.workers.count) // replicas) * replicas
        weights = recency_weights(data.train_recency, config.recency_boost, config.recency_half_life)
        self.users, self.items, self.targets, self.weights = (
            my_training_rows(data, values, self.workers)
            for values in (data.train_users, data.train_items, data.train_targets, weights)
        )
        self.min_steps = self._equal_steps()

    def _equal_steps(self) -> int:
        """Steps per epoch that fit every worker's share: all workers must run the same number."""
        workers = self.workers
        if workers.count == 1:
            return 0
        can_sample = int((np.diff(self.data.seen.offsets)[self.users] < len(self.data.items)).sum())
        samples = workers.each(len(self.users) + self.num_neg * can_sample)
        return int(-(-samples.max() // self.batch_size))

    def batches(self, epoch: int) -> EpochBatches:
        """Epoch `epoch`'s samples (0-based), shaped [steps, batch]."""
        return build_epoch(
            self.users,
            self.items,
            self.targets,
            self.weights,
            num_neg=self.num_neg,
            positives=self.data.seen,
            num_items=len(self.data.items),
            batch_size=self.batch_size,
            rng=epoch_rng(self.seed, epoch, self.workers.index),
            min_steps=self.min_steps,
        )
