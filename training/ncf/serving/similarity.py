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
  Export stores unit vectors [N, d]; a query batch costs one [B, d] x [d, N] product, O(B N d), computed
  in blocks of queries x rows with a running top-k (`ncf.serving.blocked`), so a call holds at most the
  export's memory budget whatever B and N (a [1,000 x 1M] score matrix alone would be 4 GB).
- `jaccard`: |A & B| / |A | B| of the 0/1 interaction vectors (the users of two items, the items of two
  users), in [0, 1].
- `pearson`: correlation of the same 0/1 vectors over the whole population (the phi coefficient),
  (n C - a b) / sqrt(a (n - a) b (n - b)) with C shared interactions, a and b the two counts and n the
  vector length (number of users for items, of items for users), in [-1, 1].
  Both come from co-occurrence counts computed per query batch from the sparse interaction matrix, stored
  in both orientations (two CSR copies, O(nnz) int32 each). A dense item-item matrix would cost
  O(N^2) memory (2.9 GB for 27k items), so nothing quadratic is precomputed. For query items Q the
  counts take O(sum over q in Q, u in users(q) of |items(u)|) time plus a dense [B, N] count row; the
  paths q -> u -> j are gathered a bounded number at a time and the queries are taken in blocks whose
  count rows fit the memory budget, so neither a popular query nor a large batch grows a call's memory.

Undefined similarities (Jaccard of two empty vectors, Pearson with a constant vector) are never
returned; the query itself is always excluded. Everything here runs inside the exported tf.functions.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from ncf.choices import SIMILARITY_MEASURES as MEASURES
from ncf.data.vocab import UserItemSets
from ncf.models.base import Model
from ncf.models.memory import CatalogCost, block_shape
from ncf.serving.blocked import blocked_top_k
from ncf.serving.topk import UNDEFINED


def model_vectors(model: Model, side: str) -> tf.Tensor:
    """Unit representations of every item (`side="item"`) or user (`side="user"`), shape [N, d]: the
    model's own (`Model.similarity_vectors`; the NCF types: their towers' vectors as described above,
    the sequence model: item embeddings, and each user's representation of their stored history)."""
    return model.similarity_vectors(side)


def co_counts(
    queries: tf.Tensor, own: tf.RaggedTensor, other: tf.RaggedTensor, size: int, max_paths: int | None = None
) -> tf.Tensor:
    """Shared interactions of each query with every row of its side, shape [B, size], float32.

    `own[q]` lists what q interacted with (for an item: its users), `other[x]` what those interacted
    with in turn (a user's items); each path q -> x -> j adds one to count[q, j]. The paths are gathered
    about `max_paths` at a time (a whole `other` row at least), all at once when None.
    """
    reached = tf.gather(own, queries)
    via, owner = reached.flat_values, reached.value_rowids()
    shape = tf.stack([tf.shape(queries, out_type=tf.int64)[0], tf.constant(size, tf.int64)])
    if max_paths is None:
        return tf.scatter_nd(*_paths(via, owner, other), shape)
    ends = tf.cumsum(tf.gather(other.row_lengths(), via))  # paths through via[0..i]

    def step(begin: tf.Tensor, counts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        done = tf.where(begin > 0, tf.gather(ends, tf.maximum(begin - 1, 0)), tf.constant(0, tf.int64))
        end = tf.searchsorted(ends, tf.reshape(done + max_paths, [1]), side="right", out_type=tf.int32)[0]
        end = tf.maximum(end, begin + 1)
        return end, tf.tensor_scatter_nd_add(counts, *_paths(via[begin:end], owner[begin:end], other))

    count = tf.shape(via)[0]
    zeros = tf.zeros(shape, tf.float32)
    _, counts = tf.while_loop(lambda begin, _: begin < count, step, (0, zeros), parallel_iterations=1)
    return counts


def _paths(via: tf.Tensor, owner: tf.Tensor, other: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(coordinates [P, 2], ones [P]) of the paths owner -> via -> other[via]: one (query row, j) each."""
    paths = tf.gather(other, via)
    rows = tf.gather(owner, paths.value_rowids())
    coordinates = tf.stack([rows, tf.cast(paths.flat_values, tf.int64)], axis=1)
    return coordinates, tf.ones_like(rows, tf.float32)


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


def own_pairs(queries: tf.Tensor) -> tf.Tensor:
    """The (row, column) coordinates of each query itself, [B, 2]: never its own most similar row."""
    batch = tf.shape(queries, out_type=tf.int64)[0]
    return tf.stack([tf.range(batch), tf.cast(queries, tf.int64)], axis=1)


def others_k(k: tf.Tensor, size: int) -> tf.Tensor:
    """k clamped to the other rows: k' = min(k, N - 1)."""
    return tf.minimum(k, max(size - 1, 0))


def transpose(sets: UserItemSets, num_columns: int) -> UserItemSets:
    """The same interactions indexed the other way round (item -> users from user -> items)."""
    return UserItemSets.build(sets.items, sets.row_ids(), num_columns)


class SimilarityIndex(tf.Module):
    """What one side (items or users) needs at serving time to find its rows' nearest rows.

    Build it with `embeddings` (cosine) or `interactions` (jaccard, pearson); `top_k` runs in the graph.
    """

    def __init__(self, measure: str, size: int, name: str, memory_budget_bytes: int) -> None:
        """`memory_budget_bytes`: what one block of a query's work may hold (`ncf.serving.blocked`)."""
        if measure not in MEASURES:
            raise ValueError(f"unknown similarity measure {measure!r} (use one of {', '.join(MEASURES)})")
        super().__init__(name=name)
        self.measure = measure
        self.size = size
        self.memory_budget_bytes = memory_budget_bytes
        self.length = 0
        self.unit_vectors: tf.Variable | None = None
        self.own: tuple[tf.Variable, tf.Variable] | None = None
        self.other: tuple[tf.Variable, tf.Variable] | None = None

    @classmethod
    def embeddings(cls, unit_vectors: tf.Tensor, name: str, memory_budget_bytes: int) -> SimilarityIndex:
        index = cls("cosine", int(unit_vectors.shape[0]), name, memory_budget_bytes)
        index.unit_vectors = tf.Variable(unit_vectors, trainable=False, name="unit_vectors")
        return index

    @classmethod
    def interactions(
        cls, measure: str, own: UserItemSets, other: UserItemSets, name: str, memory_budget_bytes: int
    ) -> SimilarityIndex:
        """`own`: this side's rows -> what they interacted with; `other`: the reverse orientation."""
        index = cls(measure, own.num_users, name, memory_budget_bytes)
        index.length = other.num_users
        index.own = _csr_variables(own, "own")
        index.other = _csr_variables(other, "other")
        return index

    def top_k(
        self, queries: tf.Tensor, k: tf.Tensor, allowed: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(indices [B, k'], scores [B, k']) of the most similar rows to each query row index, among the
        rows a filter's mask `allowed` keeps (all when None): k' = min(k, N - 1), the query itself never,
        undefined similarities as index -1 and score 0."""
        state, scores, cost, budget = self._cosine() if self.unit_vectors is not None else self._co_counted()
        return blocked_top_k(
            lambda start, stop: state(queries[start:stop]),
            scores,
            tf.shape(queries)[0],
            self.size,
            block_shape(cost, self.size, budget),
            own_pairs(queries),
            others_k(k, self.size),
            allowed,
        )

    def _cosine(self) -> tuple[Callable, Callable, CatalogCost, int]:
        """(state of queries, scores of a block, cost, budget) of the cosine: query vectors x row vectors."""
        vectors = self.unit_vectors

        def scores(queried: tf.Tensor, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
            return tf.matmul(queried, vectors[start:stop], transpose_b=True)

        cost = CatalogCost(per_user=int(vectors.shape[1]), per_pair=_FLOATS_PER_PAIR)
        return (lambda queries: tf.gather(vectors, queries)), scores, cost, self.memory_budget_bytes

    def _co_counted(self) -> tuple[Callable, Callable, CatalogCost, int]:
        """(state of queries, scores of a block, cost, budget) of Jaccard and Pearson: each block of queries
        holds its dense co-counts [queries, N] (half the budget; the paths gathered to count them, the
        other half)."""
        own = tf.RaggedTensor.from_row_splits(self.own[1], self.own[0], validate=False)
        other = tf.RaggedTensor.from_row_splits(self.other[1], self.other[0], validate=False)
        sizes = tf.cast(own.row_lengths(), tf.float32)
        half = self.memory_budget_bytes // 2
        max_paths = max(1, half // _BYTES_PER_PATH)

        def state(queries: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return co_counts(queries, own, other, self.size, max_paths), tf.gather(sizes, queries)

        def scores(counted: tuple[tf.Tensor, tf.Tensor], start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
            counts, query_sizes = counted[0][:, start:stop], counted[1]
            if self.measure == "jaccard":
                return jaccard(counts, query_sizes, sizes[start:stop])
            return pearson(counts, query_sizes, sizes[start:stop], self.length)

        per_pair = _FLOATS_PER_PAIR + (0 if self.measure == "jaccard" else _PEARSON_FLOATS_PER_PAIR)
        return state, scores, CatalogCost(per_user=self.size, per_pair=per_pair), half


# Floats per (query, row) a block holds beside its scores: a filter's mask, the exclusion's copy, top-k.
_FLOATS_PER_PAIR = 4
# Pearson's float64 intermediates (the counts, the spread, the numerator, the correlation): 2 floats each.
_PEARSON_FLOATS_PER_PAIR = 8
# What gathering one co-occurrence path holds: its (row, column) int64 coordinates, the row ids, a one.
_BYTES_PER_PATH = 48


def _csr_variables(sets: UserItemSets, name: str) -> tuple[tf.Variable, tf.Variable]:
    offsets = tf.Variable(sets.offsets.astype("int64"), trainable=False, name=f"{name}_offsets")
    values = tf.Variable(sets.items.astype("int32"), trainable=False, name=f"{name}_values")
    return offsets, values


def build_indexes(
    measure: str, model: Model, seen: UserItemSets, num_items: int, memory_budget_bytes: int
) -> tuple[SimilarityIndex, SimilarityIndex]:
    """(items, users) indexes for `measure`, from the model (cosine) or its training interactions; a call
    holds at most about `memory_budget_bytes` per block of queries."""
    if measure == "cosine":
        return (
            SimilarityIndex.embeddings(model_vectors(model, "item"), "similar_items", memory_budget_bytes),
            SimilarityIndex.embeddings(model_vectors(model, "user"), "similar_users", memory_budget_bytes),
        )
    by_item = transpose(seen, num_items)
    return (
        SimilarityIndex.interactions(measure, by_item, seen, "similar_items", memory_budget_bytes),
        SimilarityIndex.interactions(measure, seen, by_item, "similar_users", memory_budget_bytes),
    )
