"""Short histories: the sequence model's next-item scores blended with item-to-item similarity.

From a few events a sequence model has little to read, while "items often consumed together with
these" (item-kNN: the sum of the cosine similarities, over the training users, of each item to the
history's items) is already strong. For a history shorter than `max_events` items (the stored history
plus the request's, so a known user with a long history is never blended), the served next-item
distribution is the mixture

    p = (1 - weight) * softmax(model logits) + weight * knn / sum(knn)

returned in the model's logit space (`log p + logsumexp(logits)`, so with weight 0 the scores are the
logits). Rows whose history items have no neighbour at all keep the model's logits.

The similarities are learned from the export's own interactions (each user's seen items): every item's
`neighbours` most similar other items by cosine of their user sets, `|U(i) & U(j)| / sqrt(|U(i)| |U(j)|)`,
kept as an [items, neighbours] table (8 bytes per entry), so a request costs `events x neighbours`
gathers whatever the catalog size, and nothing quadratic is stored. The weight and the threshold are
variables of the SavedModel (`history_blend.weight`, `history_blend.max_events`): the record of what
the export serves, readable from the loaded model. How their defaults were chosen on validation users:
`TrainConfig.history_blend_weight`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ncf.data.vocab import UserItemSets
from ncf.serving.similarity import co_counts, transpose

# Bounds of one block of query items while the neighbours are computed: cells of the dense [queries,
# items] co-occurrence counts (64 MB), and user-item paths gathered for them (~30 bytes each).
_BLOCK_CELLS = 1 << 24
_BLOCK_PATHS = 1 << 22


@dataclass(frozen=True)
class BlendSettings:
    """What a sequence model's export blends (`TrainConfig.history_blend_*`, which validates them)."""

    weight: float
    """Weight of the item-kNN distribution, in [0, 1)."""
    max_events: int
    """Histories with fewer items than this are blended."""
    neighbours: int
    """Most similar items kept per item."""

    @property
    def enabled(self) -> bool:
        return self.weight > 0 and self.max_events > 0 and self.neighbours > 0


def item_neighbours(seen: UserItemSets, num_items: int, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids [items, m], cosines [items, m]) of each item's m = min(`neighbours`, items - 1) most similar
    other items by cosine of their user sets, best first; slots without a co-occurring item have cosine
    0 (and id 0), so they add nothing."""
    width = min(neighbours, max(num_items - 1, 0))
    by_item = transpose(seen, num_items)
    own = tf.RaggedTensor.from_row_splits(by_item.items, by_item.offsets, validate=False)
    other = tf.RaggedTensor.from_row_splits(seen.items, seen.offsets, validate=False)
    norms = np.sqrt(np.maximum(np.diff(by_item.offsets), 1)).astype(np.float32)
    user_sizes = np.diff(seen.offsets)
    paths = np.bincount(seen.items, weights=user_sizes[seen.row_ids()], minlength=num_items)
    ids = np.zeros((num_items, width), np.int32)
    cosines = np.zeros((num_items, width), np.float32)
    for start, stop in query_blocks(paths, _BLOCK_PATHS, max(1, _BLOCK_CELLS // max(num_items, 1))):
        queries = tf.range(start, stop)
        counts = co_counts(queries, own, other, num_items).numpy()
        counts[np.arange(stop - start), np.arange(start, stop)] = 0.0  # an item is not its own neighbour
        top = tf.math.top_k(counts / norms[start:stop, None] / norms[None, :], k=width)
        ids[start:stop] = top.indices.numpy()
        cosines[start:stop] = top.values.numpy()
    return np.where(cosines > 0, ids, 0), cosines


def query_blocks(paths: np.ndarray, max_paths: float, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges of rows, each with at most `max_rows` rows and at most
    `max_paths` summed `paths` (a single row over the budget is a block of its own)."""
    blocks, start, total = [], 0, 0.0
    for row, cost in enumerate(paths):
        if row > start and (total + cost > max_paths or row - start >= max_rows):
            blocks.append((start, row))
            start, total = row, 0.0
        total += cost
    if len(paths) > start:
        blocks.append((start, len(paths)))
    return blocks


def mixture_logits(logits: tf.Tensor, knn: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """`log((1 - weight) softmax(logits) + weight knn / sum(knn)) + logsumexp(logits)`, row by row:
    the blend in the logits' own scale (weight 0 gives `logits` back). `knn` [B, N] is non-negative with
    a positive sum in every row; `weight` is in [0, 1)."""
    scale = tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    model_part = tf.math.log1p(-weight) + logits - scale
    share = knn / tf.reduce_sum(knn, axis=1, keepdims=True)
    knn_part = tf.math.log(weight) + tf.math.log(share)  # -inf where an item has no similarity
    return tf.reduce_logsumexp(tf.stack([model_part, knn_part]), axis=0) + scale


class HistoryBlend(tf.Module):
    """The served blend: the neighbour table, the weight and the event threshold."""

    def __init__(self, seen: UserItemSets, num_items: int, settings: BlendSettings) -> None:
        """`seen`: the export's users' items, the data the similarities are learned from."""
        super().__init__(name="history_blend")
        ids, cosines = item_neighbours(seen, num_items, settings.neighbours)
        self.neighbour_ids = tf.Variable(ids, trainable=False, name="neighbour_ids")
        self.neighbour_cosines = tf.Variable(cosines, trainable=False, name="neighbour_cosines")
        self.weight = tf.Variable(settings.weight, trainable=False, dtype=tf.float32, name="weight")
        self.max_events = tf.Variable(settings.max_events, trainable=False, dtype=tf.int32, name="max_events")
        self.num_items = num_items

    def knn_scores(self, items: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
        """[B, N]: each item's summed cosine to the `present` entries of `items` [B, L]."""
        ids = tf.gather(self.neighbour_ids, tf.where(present, items, 0))  # [B, L, m]
        cosines = tf.gather(self.neighbour_cosines, tf.where(present, items, 0))
        cosines *= tf.cast(present, tf.float32)[..., None]
        rows = tf.broadcast_to(tf.range(tf.shape(ids, out_type=tf.int32)[0])[:, None, None], tf.shape(ids))
        coordinates = tf.reshape(tf.stack([rows, ids], axis=-1), [-1, 2])
        shape = tf.stack([tf.shape(items)[0], self.num_items])
        return tf.scatter_nd(coordinates, tf.reshape(cosines, [-1]), shape)

    def apply(self, logits: tf.Tensor, sequences: tf.Tensor, padding: int) -> tf.Tensor:
        """`logits` [B, N] of the sequences [B, L] (left-padded with `padding`), blended for the rows with
        fewer than `max_events` items whose items have neighbours; the other rows unchanged."""
        present = sequences != padding
        events = tf.reduce_sum(tf.cast(present, tf.int32), axis=1)
        recent = tf.minimum(self.max_events, tf.shape(sequences)[1])  # all a blended row can hold
        knn = self.knn_scores(sequences[:, -recent:], present[:, -recent:])
        has_neighbours = tf.reduce_sum(knn, axis=1) > 0
        blended = (events > 0) & (events < self.max_events) & has_neighbours & (self.weight > 0)
        safe_knn = tf.where(has_neighbours[:, None], knn, 1.0)  # rows left as they are: any positive sum
        return tf.where(blended[:, None], mixture_logits(logits, safe_knn, self.weight), logits)
