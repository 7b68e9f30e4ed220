"""Similar items and similar users: cosine over learned embeddings, Jaccard and Pearson over interactions.

The exported model answers "the k items most like item X" and "the k users most like user U". One of
three measures is chosen at export (`train.py --similarity`), the same for both sides:

- `cosine` (default): cosine of the model's own representations (`model_vectors`). Each tower's vectors
  are taken in the space the model reads them in (GMF: the embedding scaled element-wise by the GMF part
  of the output layer, because the score is `p_u . (h * q_i)`; MLP: the embedding projected by its half of
  the first layer, because that projection is all the MLP sees of it; MF: the plain embedding, biases left
  out since they carry popularity, not taste). Two items with equal vectors get equal scores from every
  user, and dimensions the model ignores add no noise. For NeuMF the GMF and MLP vectors are normalised
  separately and concatenated with weight 1/sqrt(2) each, so the cosine is the mean of the two towers'
  cosines: neither tower dominates through a larger norm or more dimensions.
  Export stores unit vectors [N, d]; a query batch costs one [B, d] x [d, N] product, O(B N d).
- `jaccard`: |A & B| / |A | B| of the 0/1 interaction vectors (the users of two items, the items of two
  users), in [0, 1].
- `pearson`: correlation of the same 0/1 vectors over the whole population (the phi coefficient),
  (n C - a b) / sqrt(a (n - a) b (n - b)) with C shared interactions, a and b the two counts and n the
  vector length (number of users for items, of items for users), in [-1, 1].
  Both come from co-occurrence counts computed per query batch from the sparse interaction matrix, stored
  in both orientations (two CSR copies, O(nnz) int32 each). A dense item-item matrix would cost
  O(N^2) memory (2.9 GB for 27k items), so nothing quadratic is precomputed. For query items Q the
  counts take O(sum over q in Q, u in users(q) of |items(u)|) to gather plus O(B N) for the dense
  [B, N] count row; for MovieLens 100K that is at most ~10^5 entries per popular query item.

Undefined similarities (Jaccard of two empty vectors, Pearson with a constant vector) are never
returned; the query itself is always excluded. Everything here runs inside the exported tf.functions.
"""

from __future__ import annotations

import tensorflow as tf

from ncf.choices import SIMILARITY_MEASURES as MEASURES
from ncf.data.vocab import UserItemSets
from ncf.models.base import Model
from ncf.serving.topk import UNDEFINED, allowed_only, top_k_excluding


def model_vectors(model: Model, side: str) -> tf.Tensor:
    """Unit representations of every item (`side="item"`) or user (`side="user"`), shape [N, d]: the
    model's own (`Model.similarity_vectors`; the NCF types: their towers' vectors as described above,
    the sequence model: item embeddings, and each user's representation of their stored history)."""
    return model.similarity_vectors(side)


def cosine_scores(queries: tf.Tensor, unit_vectors: tf.Tensor) -> tf.Tensor:
    """Cosine of each query row with every row, shape [B, N]."""
    return tf.matmul(tf.gather(unit_vectors, queries), unit_vectors, transpose_b=True)


def co_counts(queries: tf.Tensor, own: tf.RaggedTensor, other: tf.RaggedTensor, size: int) -> tf.Tensor:
    """Shared interactions of each query with every row of its side, shape [B, size], float32.

    `own[q]` lists what q interacted with (for an item: its users), `other[x]` what those interacted
    with in turn (a user's items); each path q -> x -> j adds one to count[q, j].
    """
    reached = tf.gather(own, queries)
    paths = tf.gather(other, reached.flat_values)
    rows = tf.gather(reached.value_rowids(), paths.value_rowids())
    coordinates = tf.stack([rows, tf.cast(paths.flat_values, tf.int64)], axis=1)
    shape = tf.stack([tf.shape(queries, out_type=tf.int64)[0], tf.constant(size, tf.int64)])
    return tf.scatter_nd(coordinates, tf.ones_like(rows, tf.float32), shape)


def jaccard(counts: tf.Tensor, query_sizes: tf.Tensor, sizes: tf.Tensor) -> tf.Tensor:
    """|A & B| / |A | B| from shared counts [B, N] and set sizes [B], [N]; -inf where both sets are empty."""
    union = query_sizes[:, None] + sizes[None, :] - counts
    return tf.where(union > 0, counts / tf.maximum(union, 1.0), UNDEFINED)


def pearson(counts: tf.Tensor, query_sizes: tf.Tensor, sizes: tf.Tensor, length: int) -> tf.Tensor:
    """Correlation of 0/1 vectors of `length` entries; -inf where one of them is constant.

    Computed in float64: n C and a b are large and close, float32 would cancel away the difference.
    """
    n = tf.constant(float(length), tf.float64)
    c = tf.cast(counts, tf.float64)
    a = tf.cast(query_sizes, tf.float64)[:, None]
    b = tf.cast(sizes, tf.float64)[None, :]
    spread = a * (n - a) * b * (n - b)
    r = (n * c - a * b) / tf.sqrt(tf.maximum(spread, 1.0))
    return tf.where(spread > 0, tf.cast(r, tf.float32), UNDEFINED)


def top_k_others(scores: tf.Tensor, queries: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The k best rows of each query except itself: (indices [B, k'], scores [B, k']).

    k' = min(k, N - 1). Positions without a defined similarity come back as index -1 and score 0.
    """
    batch = tf.shape(queries, out_type=tf.int64)[0]
    own = tf.stack([tf.range(batch), tf.cast(queries, tf.int64)], axis=1)
    return top_k_excluding(scores, own, tf.minimum(k, tf.maximum(tf.shape(scores)[1] - 1, 0)))


def transpose(sets: UserItemSets, num_columns: int) -> UserItemSets:
    """The same interactions indexed the other way round (item -> users from user -> items)."""
    return UserItemSets.build(sets.items, sets.row_ids(), num_columns)


class SimilarityIndex(tf.Module):
    """What one side (items or users) needs at serving time to find its rows' nearest rows.

    Build it with `embeddings` (cosine) or `interactions` (jaccard, pearson); `top_k` runs in the graph.
    """

    def __init__(self, measure: str, size: int, name: str) -> None:
        if measure not in MEASURES:
            raise ValueError(f"unknown similarity measure {measure!r} (use one of {', '.join(MEASURES)})")
        super().__init__(name=name)
        self.measure = measure
        self.size = size
        self.length = 0
        self.unit_vectors: tf.Variable | None = None
        self.own: tuple[tf.Variable, tf.Variable] | None = None
        self.other: tuple[tf.Variable, tf.Variable] | None = None

    @classmethod
    def embeddings(cls, unit_vectors: tf.Tensor, name: str) -> SimilarityIndex:
        index = cls("cosine", int(unit_vectors.shape[0]), name)
        index.unit_vectors = tf.Variable(unit_vectors, trainable=False, name="unit_vectors")
        return index

    @classmethod
    def interactions(cls, measure: str, own: UserItemSets, other: UserItemSets, name: str) -> SimilarityIndex:
        """`own`: this side's rows -> what they interacted with; `other`: the reverse orientation."""
        index = cls(measure, own.num_users, name)
        index.length = other.num_users
        index.own = _csr_variables(own, "own")
        index.other = _csr_variables(other, "other")
        return index

    def top_k(
        self, queries: tf.Tensor, k: tf.Tensor, allowed: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(indices [B, k'], scores [B, k']) of the most similar rows to each query row index, among the
        rows a filter's mask `allowed` keeps (all when None)."""
        if self.unit_vectors is not None:
            return top_k_others(allowed_only(cosine_scores(queries, self.unit_vectors), allowed), queries, k)
        own = tf.RaggedTensor.from_row_splits(self.own[1], self.own[0], validate=False)
        other = tf.RaggedTensor.from_row_splits(self.other[1], self.other[0], validate=False)
        counts = co_counts(queries, own, other, self.size)
        sizes = tf.cast(own.row_lengths(), tf.float32)
        query_sizes = tf.gather(sizes, queries)
        if self.measure == "jaccard":
            scores = jaccard(counts, query_sizes, sizes)
        else:
            scores = pearson(counts, query_sizes, sizes, self.length)
        return top_k_others(allowed_only(scores, allowed), queries, k)


def _csr_variables(sets: UserItemSets, name: str) -> tuple[tf.Variable, tf.Variable]:
    offsets = tf.Variable(sets.offsets.astype("int64"), trainable=False, name=f"{name}_offsets")
    values = tf.Variable(sets.items.astype("int32"), trainable=False, name=f"{name}_values")
    return offsets, values


def build_indexes(
    measure: str, model: Model, seen: UserItemSets, num_items: int
) -> tuple[SimilarityIndex, SimilarityIndex]:
    """(items, users) indexes for `measure`, from the model (cosine) or its training interactions."""
    if measure == "cosine":
        return (
            SimilarityIndex.embeddings(model_vectors(model, "item"), "similar_items"),
            SimilarityIndex.embeddings(model_vectors(model, "user"), "similar_users"),
        )
    by_item = transpose(seen, num_items)
    return (
        SimilarityIndex.interactions(measure, by_item, seen, "similar_items"),
        SimilarityIndex.interactions(measure, seen, by_item, "similar_users"),
    )
