"""A trained model's scoring functions as the numpy `Scorer` that `ncf.evaluation.protocol.evaluate` takes.

Every call is cut to the memory budget (`TrainConfig.memory_budget_mb`) by the model's own cost
(`Model.catalog_cost`): full-catalog scoring takes blocks of users (and of items, where one user's whole
catalog does not fit), pair scoring takes batches whose pairs and distinct users fit. A sequence model's
encoder holds [users, heads, L, L] attention floats per call, so its blocks are sized by users, not by
the catalog alone.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ncf.models.base import Model
from ncf.models.memory import DEFAULT_MEMORY_BUDGET_MB, CatalogCost, block_shape, budget_bytes


class ModelScorer:
    """The model's pair and catalog scoring, traced once, called with numpy index arrays."""

    def __init__(
        self,
        model: Model,
        memory_budget_bytes: int = budget_bytes(DEFAULT_MEMORY_BUDGET_MB),
        batch: int = 65536,
    ) -> None:
        """`memory_budget_bytes`: what one scoring call may hold; `batch`: at most this many pairs a call."""
        ids = tf.TensorSpec([None], tf.int32)
        self.model = model
        cost = model.catalog_cost()
        self.shape = block_shape(cost, model.num_items, memory_budget_bytes)
        # Pair batches: half the budget for the pairs, half for the distinct users they encode.
        half = max(1, memory_budget_bytes // 2)
        self.batch = min(batch, block_shape(CatalogCost(0, cost.per_pair), 1, half).rows)
        self.users_per_batch = block_shape(CatalogCost(0, max(cost.per_user, 1)), 1, half).rows
        self._pairs = tf.function(model.logits, input_signature=[ids, ids])
        self._state = tf.function(model.catalog_state, input_signature=[ids])
        self._block = tf.function(
            lambda state, start, stop: model.catalog_block_logits(state, start, stop, None),
            reduce_retracing=True,
        )

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Logits of aligned pairs (predicted ratings for explicit feedback), in batches within the budget."""
        out = [self._pairs(users[a:b], items[a:b]).numpy() for a, b in pair_batches(users, *self.limits)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    @property
    def limits(self) -> tuple[int, int]:
        """(pairs, runs of one user) per pair batch."""
        return self.batch, self.users_per_batch

    def catalog(self, users: np.ndarray) -> np.ndarray:
        """Logits of every item for each user, shape [len(users), num_items], in blocks of items."""
        state = self._state(users)
        step, total = self.shape.columns, self.model.num_items
        blocks = [
            self._block(state, tf.constant(a), tf.constant(min(a + step, total)))
            for a in range(0, total, step)
        ]
        return np.concatenate([block.numpy() for block in blocks], axis=1)

    def catalog_chunk_users(self) -> int:
        """Users per `catalog` call within the memory budget."""
        return self.shape.rows


def pair_batches(users: np.ndarray, max_pairs: int, max_runs: int) -> list[tuple[int, int]]:
    """[start, stop) batches of aligned pairs, each with at most `max_pairs` pairs and at most `max_runs`
    runs of one user (the distinct users of a batch are at most its runs: held-out pairs come grouped by
    user, so a batch encodes few users however many candidates each has)."""
    if not len(users):
        return []
    run = np.cumsum(np.r_[True, users[1:] != users[:-1]]) - 1  # each pair's run of one user
    batches, start = [], 0
    while start < len(users):
        stop = min(start + max_pairs, len(users))
        stop = min(stop, int(np.searchsorted(run, run[start] + max_runs, side="left")))
        batches.append((start, max(stop, start + 1)))
        start = batches[-1][1]
    return batches
