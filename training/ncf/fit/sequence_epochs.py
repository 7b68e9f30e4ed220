"""How the sequence model (`ncf.models.sasrec`) trains: its epoch source and its step, in the shared fit loop.

Each user's time-ordered training items are cut into windows of the model's length, and the windows
are packed end to end into rows of that many slots (`ncf.fit.sequence_packing`): a slot attends only
to the earlier slots of its own window, and the loss is taken at real slots only, so an epoch costs in
proportion to the training events, not to users x `max_len`. Every epoch, a user's interactions of one
timestamp are put in a random order (`shuffle_ties`: same-second events have no order to learn), and
the windows are packed in a new random order. A step takes `batch_size // length` rows, so
`batch_size` is the slots (next-item predictions, but for the few empty slots at row ends) per step.
Every real slot predicts the next item, with one of three objectives (`sequence_loss`; `auto` picks
`softmax` up to `softmax_max_items` items and `sampled_softmax` above, `ncf.models.sasrec_settings`):

- `softmax`: cross-entropy over the whole catalog (gSASRec; Klenitskiy & Vasilev 2023 find it much
  stronger than BCE); one [predictions, items] product per step: its cost grows with the catalog.
- `sampled_softmax`: cross-entropy over the positive and `num_neg` items shared by the step, drawn in
  proportion to (training count + 1) ** NEGATIVE_POWER; each negative's logit is lowered by the log of
  its expected count in the sample (logQ) and a negative equal to the positive is masked out, so the
  sampled normaliser estimates the full softmax's (the positive's own term is exact) and the loss and
  its gradient estimate the full softmax's. Cost grows with `num_neg`, not with the catalog.
- `bce`: the original SASRec loss, the positive against uniformly drawn negatives shared by the step,
  each a binary label; the negatives' losses are averaged, so positive and negatives weigh the same
  (summed over 256 negatives, validation NDCG@10 on MovieLens 100K was 0.24).

The step loop, lazy Adam, checkpoints and SIGTERM handling are `ncf.fit.step_loop`'s: only the
per-step inputs and the objective differ. Each epoch's packing, negatives and dropout seeds come from
the (seed, epoch) random stream, so a resumed run trains exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ncf.data.training_data import TrainingData
from ncf.errors import NcfError
from ncf.fit.distribute import Workers
from ncf.fit.pair_sampling import epoch_rng
from ncf.fit.precision import compute_dtype
from ncf.fit.sequence_packing import PackedRows, Windows, cut_windows, model_length, pack
from ncf.fit.step_loop import EpochRunner
from ncf.models.base import Model
from ncf.train_settings import TrainConfig

_INT3 = tf.TensorSpec([None, None, None], tf.int32)
_INT2 = tf.TensorSpec([None, None], tf.int32)
_FLOAT2 = tf.TensorSpec([None, None], tf.float32)
NEGATIVE_POWER = 0.75  # sampled softmax: negatives drawn by count ** 0.75 (word2vec's smoothing)
_MASKED = -1e9


@dataclass(frozen=True)
class SequenceBatches:
    """One epoch of packed rows shaped [steps, rows, length]; empty slots have weight 0.

    `negatives` [steps, num_neg] are each step's shared negatives, `negative_log_q` their log expected
    count in the sample (sampled softmax only; zeros otherwise).
    """

    users: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    segments: np.ndarray
    weights: np.ndarray
    negatives: np.ndarray
    negative_log_q: np.ndarray
    dropout_seeds: np.ndarray  # [steps, 2]
    num_samples: int

    def step_inputs(self) -> tuple[np.ndarray, ...]:
        """The arrays `SequenceRunner.run_steps` takes, each indexed by step first."""
        return (
            self.users,
            self.inputs,
            self.targets,
            self.segments,
            self.negatives,
            self.negative_log_q,
            self.dropout_seeds,
        )


def resolved_loss(config: TrainConfig, num_items: int) -> str:
    """The objective a run trains with: `auto` is the full softmax up to `softmax_max_items` items."""
    if config.sequence_loss != "auto":
        return config.sequence_loss
    return "softmax" if num_items <= config.softmax_max_items else "sampled_softmax"


def sequence_length(data: TrainingData, config: TrainConfig) -> int:
    """The slots the model reads: `max_len_quantile` of the users' training lengths, capped by `max_len`."""
    counts = np.bincount(data.train_users, minlength=len(data.users))
    return model_length(counts, config.max_len, config.max_len_quantile)


def sampling_log_q(item_counts: np.ndarray, num_neg: int) -> np.ndarray:
    """log of each item's expected count among `num_neg` draws by (count + 1) ** NEGATIVE_POWER; the
    padding index (last) gets 0."""
    weights = (item_counts.astype(np.float64) + 1.0) ** NEGATIVE_POWER
    return np.r_[np.log(num_neg * weights / weights.sum()), 0.0].astype(np.float32)


class SequenceSource:
    """Builds the epochs of one training stage of the sequence model (one process, one device)."""

    def __init__(self, data: TrainingData, config: TrainConfig, workers: Workers | None = None) -> None:
        if workers is not None and (workers.count > 1 or workers.local_replicas > 1):
            raise NcfError("model_type sasrec trains on one device of one instance; run it with one worker")
        self.seed = config.seed
        self.num_items = len(data.items)
        self.loss = resolved_loss(config, self.num_items)
        self.num_neg = 0 if self.loss == "softmax" else config.num_neg
        self.length = sequence_length(data, config)
        self.rows_per_step = max(1, config.batch_size // self.length)
        self.num_users = len(data.users)
        self.shuffle_ties = config.shuffle_ties
        self.rows = (data.train_users, data.train_items.astype(np.int32), data.moments.astype(np.int64))
        counts = np.bincount(data.train_items, minlength=self.num_items)
        self.log_q = sampling_log_q(counts, self.num_neg) if self.loss == "sampled_softmax" else None
        self.ordered_items, self.windows = self._windows(None)  # time order, ties in file order
        if not len(self.windows.lengths):
            raise NcfError("model_type sasrec needs users with at least two training interactions")

    def _windows(self, rng: np.random.Generator | None) -> tuple[np.ndarray, Windows]:
        """(items in user-then-time order, their windows); with `rng`, one moment's rows in a random order."""
        users, items, moments = self.rows
        ties = rng.random(len(users)) if rng is not None else np.arange(len(users))
        order = np.lexsort((ties, -moments, users))
        return items[order], cut_windows(users[order], self.num_users, self.length)

    def packed(self, epoch: int) -> tuple[PackedRows, np.random.Generator]:
        """Epoch `epoch`'s windows packed in a random order, and the epoch's random stream to go on with."""
        rng = epoch_rng(self.seed, epoch)
        items, windows = self._windows(rng) if self.shuffle_ties else (self.ordered_items, self.windows)
        order = rng.permutation(len(windows.lengths))
        return pack(windows, items, self.length, self.num_items, order), rng

    def batches(self, epoch: int) -> SequenceBatches:
        """Epoch `epoch`'s packed rows (0-based), shaped [steps, rows, length]."""
        packed, rng = self.packed(epoch)
        per_step = self.rows_per_step
        steps = -(-len(packed.inputs) // per_step)
        filler = steps * per_step - len(packed.inputs)

        def stepped(values: np.ndarray, fill: int) -> np.ndarray:
            padded = np.concatenate([values, np.full((filler, self.length), fill, values.dtype)])
            return padded.reshape(steps, per_step, self.length)

        targets = stepped(packed.targets, self.num_items)
        weights = (targets != self.num_items).astype(np.float32)
        negatives, negative_log_q = self._negatives(rng, steps)
        return SequenceBatches(
            users=stepped(packed.users, 0),
            inputs=stepped(packed.inputs, self.num_items),
            targets=targets,
            segments=stepped(packed.segments, -1),
            weights=weights,
            negatives=negatives,
            negative_log_q=negative_log_q,
            dropout_seeds=rng.integers(0, 2**31 - 1, (steps, 2), dtype=np.int32),
            num_samples=int(weights.sum()),
        )

    def _negatives(self, rng: np.random.Generator, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Each step's shared negatives with their log expected counts in the sample (logQ)."""
        if self.log_q is None:  # uniform (bce) or none (softmax): no correction
            negatives = rng.integers(0, self.num_items, (steps, self.num_neg), dtype=np.int32)
            return negatives, np.zeros(negatives.shape, np.float32)
        cdf = np.cumsum(np.exp(self.log_q[:-1].astype(np.float64)))
        draws = rng.random((steps, self.num_neg)) * cdf[-1]
        negatives = np.minimum(np.searchsorted(cdf, draws, side="right"), self.num_items - 1).astype(np.int32)
        return negatives, self.log_q[negatives]


class SequenceRunner(EpochRunner):
    """`EpochRunner` with the sequence model's step: next-item prediction at every real slot."""

    INPUT_SIGNATURE = (_INT3, _INT3, _INT3, _INT3, _INT2, _FLOAT2, _INT2)

    def __init__(self, model: Model, config: TrainConfig, workers: Workers | None = None) -> None:
        """`model`: the sequence model (`ncf.models.sasrec.SasRecModel`, whose `step_loop` builds this)."""
        self.loss = resolved_loss(config, model.spec.num_items)
        self.compute_dtype = compute_dtype(config.mixed_precision)
        super().__init__(model, config.learning_rate, config.l2, True, workers)

    def _step(
        self,
        users: tf.Tensor,
        inputs: tf.Tensor,
        targets: tf.Tensor,
        segments: tf.Tensor,
        negatives: tf.Tensor,
        negative_log_q: tf.Tensor,
        seed: tf.Tensor,
    ) -> tf.Tensor:
        model = self.model
        where = tf.where(targets != model.padding)
        with tf.GradientTape() as tape:
            hidden = model.encode(inputs, dropout_seed=seed, segments=segments, dtype=self.compute_dtype)
            if model.spec.user_embedding:
                hidden += model.user_vectors(users)
            states = tf.gather_nd(hidden, where)
            positives = tf.gather_nd(targets, where)
            losses = self._losses(states, positives, negatives, negative_log_q)
            total = tf.reduce_sum(losses)
            penalty = self.l2 * tf.reduce_sum(tf.square(tf.gather(model.embeddings["item"], positives)))
            objective = (total + penalty) / tf.maximum(tf.cast(tf.size(losses), tf.float32), 1.0)
        gradients = tape.gradient(objective, self.variables_in_order)
        self.optimizer.apply(gradients, self.variables_in_order)
        return total

    def _losses(
        self,
        states: tf.Tensor,
        positives: tf.Tensor,
        negatives: tf.Tensor,
        negative_log_q: tf.Tensor,
    ) -> tf.Tensor:
        """Per-prediction loss of `positives` from `states` [M, d] under the configured objective;
        `negative_log_q`: the negatives' log expected counts (sampled softmax: taken off their logits)."""
        model = self.model
        if self.loss == "softmax":
            logits = model.item_scores(states, model.item_table(), self.compute_dtype)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
        table = model.embeddings["item"]
        positive = model.pair_scores(states, tf.gather(table, positives))
        sampled = model.item_scores(states, tf.gather(table, negatives), self.compute_dtype)
        if self.loss == "sampled_softmax":
            sampled -= negative_log_q[None, :]
        sampled = tf.where(negatives[None, :] == positives[:, None], _MASKED, sampled)
        if self.loss == "sampled_softmax":
            logits = tf.concat([positive[:, None], sampled], axis=1)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.zeros_like(positives), logits=logits
            )
        valid = tf.cast(sampled > _MASKED / 10, tf.float32)
        negative = tf.reduce_sum(tf.nn.softplus(sampled) * valid, axis=1) / tf.maximum(
            tf.reduce_sum(valid, 1), 1.0
        )
        return tf.nn.softplus(-positive) + negative  # the positive and its negatives weigh the same
