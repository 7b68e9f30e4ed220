"""How the sequence model (`ncf.models.sasrec`) trains: its epoch source and its step, in the shared fit loop.

Each user's time-ordered training items are cut into windows of `max_len` next-item predictions
(the newest window first, then the ones before it, so long histories are not thrown away; the oldest
window starts at the user's first item, so short contexts train too). Every epoch, a user's
interactions of one timestamp are put in a random order (`shuffle_ties`: same-second events have no
order to learn). A step takes `batch_size // max_len` windows, so `batch_size` stays "predictions per
step". Every position predicts the next item, with one of three objectives (`sequence_loss`):

- `softmax`: cross-entropy over the whole catalog (gSASRec; Klenitskiy & Vasilev 2023 find it much
  stronger than BCE); one [positions, items] product per step, cheap up to tens of thousands of items.
- `sampled_softmax`: cross-entropy over the positive and `num_neg` uniformly drawn items shared by
  the step (for large catalogs); a negative equal to the positive is masked out.
- `bce`: the original SASRec loss, the positive against the same sampled negatives, each a binary label;
  the negatives' losses are averaged, so positive and negatives weigh the same (as with SASRec's one
  negative per positive; summed over 256 negatives, validation NDCG@10 on MovieLens 100K was 0.24).

The step loop, lazy Adam, checkpoints and SIGTERM handling are `ncf.fit.step_loop`'s: only the
per-step inputs and the objective differ. Each epoch's windows, negatives and dropout seeds come
from the (seed, epoch) random stream, so a resumed run trains exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ncf.data.training_data import TrainingData
from ncf.errors import NcfError
from ncf.fit.distribute import Workers
from ncf.fit.pair_sampling import epoch_rng
from ncf.fit.step_loop import EpochRunner
from ncf.models.base import Model
from ncf.train_settings import TrainConfig

_INT3 = tf.TensorSpec([None, None, None], tf.int32)
_INT2 = tf.TensorSpec([None, None], tf.int32)


@dataclass(frozen=True)
class SequenceBatches:
    """One epoch of windows shaped [steps, windows, max_len]; padded positions have weight 0."""

    users: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    negatives: np.ndarray  # [steps, num_neg]
    dropout_seeds: np.ndarray  # [steps, 2]
    num_samples: int

    def step_inputs(self) -> tuple[np.ndarray, ...]:
        """The arrays `SequenceRunner.run_steps` takes, each indexed by step first."""
        return self.users, self.inputs, self.targets, self.negatives, self.dropout_seeds


def training_windows(
    users: np.ndarray,
    items: np.ndarray,
    num_users: int,
    pad: int,
    max_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users [W], inputs [W, L], targets [W, L]) of every window of rows sorted by user, oldest first."""
    counts = np.bincount(users, minlength=num_users)
    starts = np.cumsum(counts) - counts
    per_user = np.where(counts >= 2, -(-(counts - 1) // max_len), 0)
    owners = np.repeat(np.arange(len(counts)), per_user)
    nth = np.arange(len(owners)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    ends = starts[owners] + counts[owners] - 1 - max_len * nth
    target_rows = ends[:, None] - (max_len - 1) + np.arange(max_len)[None, :]
    valid = target_rows >= (starts[owners] + 1)[:, None]
    targets = np.where(valid, items[np.maximum(target_rows, 0)], pad)
    inputs = np.where(valid, items[np.maximum(target_rows - 1, 0)], pad)
    return owners.astype(np.int32), inputs.astype(np.int32), targets.astype(np.int32)


class SequenceSource:
    """Builds the epochs of one training stage of the sequence model (one process, one device)."""

    def __init__(self, data: TrainingData, config: TrainConfig, workers: Workers | None = None) -> None:
        if workers is not None and (workers.count > 1 or workers.local_replicas > 1):
            raise NcfError("model_type sasrec trains on one device of one instance; run it with one worker")
        self.seed = config.seed
        self.num_items = len(data.items)
        self.num_neg = 0 if config.sequence_loss == "softmax" else config.num_neg
        self.per_step = max(1, config.batch_size // config.max_len)
        self.max_len = config.max_len
        self.num_users = len(data.users)
        self.shuffle_ties = config.shuffle_ties
        self.rows = (data.train_users, data.train_items.astype(np.int32), data.moments.astype(np.int64))
        self.windows = self._windows(None)  # time order, ties in file order
        if not len(self.windows[0]):
            raise NcfError("model_type sasrec needs users with at least two training interactions")

    def _windows(self, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every window, from rows in time order; with `rng`, rows of one moment in a random order."""
        users, items, moments = self.rows
        ties = rng.random(len(users)) if rng is not None else np.arange(len(users))
        order = np.lexsort((ties, -moments, users))
        return training_windows(users[order], items[order], self.num_users, self.num_items, self.max_len)

    def batches(self, epoch: int) -> SequenceBatches:
        """Epoch `epoch`'s windows (0-based), shuffled, shaped [steps, windows, max_len]."""
        rng = epoch_rng(self.seed, epoch)
        users, inputs, targets = self._windows(rng) if self.shuffle_ties else self.windows
        order = rng.permutation(len(users))
        steps = -(-len(order) // self.per_step)
        padded = np.full(steps * self.per_step - len(order), -1)
        rows = np.concatenate([order, padded]).reshape(steps, self.per_step)

        def take(values: np.ndarray, fill: int) -> np.ndarray:
            return np.where((rows >= 0)[..., None] if values.ndim > 1 else rows >= 0, values[rows], fill)

        targets = take(targets, self.num_items).astype(np.int32)
        weights = (targets != self.num_items).astype(np.float32)
        return SequenceBatches(
            users=take(users, 0).astype(np.int32),
            inputs=take(inputs, self.num_items).astype(np.int32),
            targets=targets,
            weights=weights,
            negatives=rng.integers(0, self.num_items, (steps, self.num_neg), dtype=np.int32),
            dropout_seeds=rng.integers(0, 2**31 - 1, (steps, 2), dtype=np.int32),
            num_samples=int(weights.sum()),
        )


class SequenceRunner(EpochRunner):
    """`EpochRunner` with the sequence model's step: next-item prediction at every position."""

    INPUT_SIGNATURE = (_INT2, _INT3, _INT3, _INT2, _INT2)

    def __init__(self, model: Model, config: TrainConfig, workers: Workers | None = None) -> None:
        """`model`: the sequence model (`ncf.models.sasrec.SasRecModel`, whose `step_loop` builds this)."""
        self.loss = config.sequence_loss
        super().__init__(model, config.learning_rate, config.l2, True, workers)

    def _step(
        self, users: tf.Tensor, inputs: tf.Tensor, targets: tf.Tensor, negatives: tf.Tensor, seed: tf.Tensor
    ) -> tf.Tensor:
        model = self.model
        where = tf.where(targets != model.padding)
        with tf.GradientTape() as tape:
            hidden = model.encode(inputs, dropout_seed=seed)
            if model.spec.user_embedding:
                hidden += model.user_vectors(users)[:, None, :]
            states = tf.gather_nd(hidden, where)
            positives = tf.gather_nd(targets, where)
            losses = self._losses(states, positives, negatives)
            total = tf.reduce_sum(losses)
            penalty = self.l2 * tf.reduce_sum(tf.square(tf.gather(model.embeddings["item"], positives)))
            objective = (total + penalty) / tf.maximum(tf.cast(tf.size(losses), tf.float32), 1.0)
        gradients = tape.gradient(objective, self.variables_in_order)
        self.optimizer.apply(gradients, self.variables_in_order)
        return total

    def _losses(self, states: tf.Tensor, positives: tf.Tensor, negatives: tf.Tensor) -> tf.Tensor:
        """Per-position loss of predicting `positives` from `states` [M, d] under the configured objective."""
        table = self.model.embeddings["item"]
        if self.loss == "softmax":
            logits = tf.matmul(states, self.model.item_table(), transpose_b=True)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
        positive = tf.reduce_sum(states * tf.gather(table, positives), axis=1)
        sampled = tf.matmul(states, tf.gather(table, negatives), transpose_b=True)
        sampled = tf.where(negatives[None, :] == positives[:, None], -1e9, sampled)
        if self.loss == "sampled_softmax":
            logits = tf.concat([positive[:, None], sampled], axis=1)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.zeros_like(positives), logits=logits
            )
        valid = tf.cast(sampled > -1e8, tf.float32)
        negative = tf.reduce_sum(tf.nn.softplus(sampled) * valid, axis=1) / tf.maximum(
            tf.reduce_sum(valid, 1), 1.0
        )
        return tf.nn.softplus(-positive) + negative  # the positive and its negatives weigh the same
