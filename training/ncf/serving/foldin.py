"""Fold-in: a user vector for the NCF model types from a request's recent events, inside the graph.

An NCF model (MF, GMF, MLP, NeuMF) sees a user as learned rows (`NcfModel.user_rows`: the GMF/MF
vector, the MLP user embedding, MF's user bias). A request's `history` (items the model has not seen
with this user) is folded into those rows at request time, without retraining: the rows are the
maximum-a-posteriori estimate of

    sum over history items h of  -log softmax(scores of the rows)[h]
        + proximity / 2 * ||rows - start||^2 / spread

approximated by `steps` gradient steps from `start`. `start` is the user's learned rows (an unknown user
starts from the mean user rows, a neutral point); `spread` is the users' mean squared distance from that
mean, so distances are measured in units of how much users differ, and `proximity` reads as "how many
events the starting point is worth": a known user with one or two events stays close to themselves, a
long history moves the user further. The softmax runs over the whole catalog up to `candidates` items;
above that, over a fixed, evenly spaced sample of `candidates` items plus the history item itself (a
sampled softmax), so a request costs `steps` passes over at most `candidates` items on any catalog.
The objective is divided by (events + proximity) and each step is `step_size * spread` times its
gradient, so one step size suits any event count and embedding scale.

Everything is deterministic (no random sample, a fixed step count), and a row without any event keeps
its starting rows exactly: an empty history for a known user gives `serving_default`'s answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ncf.models.base import Model


@dataclass(frozen=True)
class FoldInSettings:
    """The fold-in's constants, fixed at export, chosen on validation users only: `bench_sasrec.py --parts
    foldin-tuning` trains a NeuMF (default settings) on MovieLens 100K without the benchmark's test users
    and without 151 further held-out validation users, folds in each validation user's first 1, 3, 5, 10
    events and ranks the next one (results/sasrec.json, "foldin_tuning"). Mean NDCG@10 over the four:
    the starting point alone (the mean user) 0.097; the best of 48 settings (30 steps of 0.01,
    proximity 3) 0.179; these (10 steps of 0.03, proximity 3) 0.178, within noise of it at a third of
    the cost. Proximity 30 holds the rows back (0.10-0.16); in a first, coarser grid (not kept) step
    sizes of 3 and 10 overshot (0.002-0.05).
    """

    steps: int = 10
    """Gradient steps per request: each costs about two passes over `candidates` items."""
    step_size: float = 0.03
    """Each step moves the rows by `step_size * spread` times the gradient of the normalised objective."""
    proximity: float = 3.0
    """Weight of the starting point, in events: the rows' prior precision is `proximity / spread`."""
    candidates: int = 2048
    """Items in the softmax: the whole catalog up to this size (exact), else a fixed evenly spaced sample
    (the cost per step stays that of 2,048 items on a 1M-item catalog). On the validation users a sample
    of 256 / 512 / 1,024 of the 1,642 items gave 0.171 / 0.173 / 0.177 against the exact 0.178."""


class FoldIn(tf.Module):
    """The served fold-in: the neutral starting rows, the users' spread, the softmax's item sample."""

    def __init__(self, model: Model, settings: FoldInSettings | None = None) -> None:
        """`model`: an NCF model (`ncf.models.ncf_models.NcfModel`, whose `fold_in` builds this)."""
        super().__init__(name="foldin")
        self.model = model
        self.settings = settings or FoldInSettings()
        tables = {name: model.table(name) for name in model.user_tables}
        means = {name: tf.reduce_mean(table, axis=0) for name, table in tables.items()}
        spread = sum(
            tf.reduce_mean(tf.reduce_sum(tf.square(t - means[n]), axis=1)) for n, t in tables.items()
        )
        self.mean_rows = {
            name: tf.Variable(mean, trainable=False, name=f"mean_{name}") for name, mean in means.items()
        }
        self.spread = tf.Variable(tf.maximum(spread, 1e-12), trainable=False, name="spread")
        num_items = model.spec.num_items
        self.sampled = num_items > self.settings.candidates
        sample = np.unique(
            np.linspace(0, num_items - 1, min(num_items, self.settings.candidates)).astype(np.int32)
        )
        self.sample = tf.Variable(sample, trainable=False, name="sample")

    def floats_per_user(self) -> int:
        """Floats a user's fold-in holds at its peak: a step's forward and backward pass over the softmax's
        items (about three times the model's catalog cost per item)."""
        items = min(self.model.num_items, self.settings.candidates) + 1
        return 3 * items * self.model.catalog_cost().per_pair

    def start_rows(self, users: tf.Tensor, known: tf.Tensor) -> dict[str, tf.Tensor]:
        """Each row's starting point: the known user's learned rows, else the mean user rows."""
        rows = self.model.user_rows(users)
        return {
            name: tf.where(known[:, None], row, self.mean_rows[name][None, :]) for name, row in rows.items()
        }

    def fold(
        self, start: dict[str, tf.Tensor], history: tf.Tensor, item_half: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        """The rows after `steps` gradient steps on the objective; `history` [B, N] item indices, -1 pads.

        `item_half` is the exported `mlp_item_half` (every item's), or None for models without an MLP.
        """
        if item_half is not None and self.sampled:
            item_half = tf.gather(item_half, self.sample)
        rate = self.settings.step_size * self.spread

        def step(count: tf.Tensor, rows: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
            with tf.GradientTape() as tape:
                tape.watch(rows)
                loss = self.objective(rows, start, history, item_half)
            gradients = tape.gradient(loss, rows)
            return count + 1, {name: row - rate * gradients[name] for name, row in rows.items()}

        # A graph loop, not unrolled steps: the exported graph stays small whatever `steps` is.
        _, rows = tf.while_loop(lambda count, _: count < self.settings.steps, step, (tf.constant(0), start))
        return rows

    def objective(
        self,
        rows: dict[str, tf.Tensor],
        start: dict[str, tf.Tensor],
        history: tf.Tensor,
        item_half: tf.Tensor | None,
    ) -> tf.Tensor:
        """Sum over rows of (history cross-entropy + proximity penalty) / (events + proximity)."""
        valid = history >= 0
        events = tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)
        items = self.sample if self.sampled else None
        normaliser = tf.reduce_logsumexp(self.model.catalog_logits(rows, item_half, items), axis=1)
        width = tf.shape(history)[1]
        pairs = {name: tf.repeat(row, width, axis=0) for name, row in rows.items()}
        positives = self.model.pair_logits(pairs, tf.reshape(tf.maximum(history, 0), [-1]))
        positives = tf.reshape(positives, tf.shape(history))
        if self.sampled:  # the sampled softmax: the positive itself joins the sample in the normaliser
            normalisers = tf.reduce_logsumexp(
                tf.stack([tf.broadcast_to(normaliser[:, None], tf.shape(positives)), positives]), axis=0
            )
        else:
            normalisers = normaliser[:, None]
        cross_entropy = tf.reduce_sum(tf.where(valid, normalisers - positives, 0.0), axis=1)
        distance = sum(tf.reduce_sum(tf.square(rows[n] - start[n]), axis=1) for n in rows)
        proximity = self.settings.proximity
        penalty = 0.5 * proximity * distance / self.spread
        return tf.reduce_sum((cross_entropy + penalty) / (events + proximity))
