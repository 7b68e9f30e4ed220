"""A trained model's scoring functions as the numpy `Scorer` that `ncf.evaluation.protocol.evaluate` takes."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ncf.models.base import Model


class ModelScorer:
    """The model's pair and catalog scoring, traced once, called with numpy index arrays."""

    def __init__(self, model: Model, batch: int = 65536) -> None:
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
        """Logits of every item for each user, shape [len(users), num_items]."""
        return self._catalog(users).numpy()

    def catalog_chunk_users(self, budget_floats: int = 32_000_000) -> int:
        """Users per full-catalog call so the widest intermediate stays near 128 MB."""
        width = self.model.catalog_floats_per_item()
        return max(1, budget_floats // (self.model.num_items * width))
