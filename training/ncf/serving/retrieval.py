"""Two-stage top-k for large catalogs: retrieve candidates by a dot product, rank them with the model.

Scoring every item with the full model costs O(items) MLP evaluations per user (50 ms at 1M items).
Every model type except the MLP tower alone has a dot-product part, `user_vector . item_vector`:

- MF: `p_u . q_i + b_u + b_i` is one dot product of augmented vectors `[p_u, 1, b_u] . [q_i, b_i, 1]`;
- GMF: `h . (p_u * q_i) = (h * p_u) . q_i`, the output layer folded into the user side;
- NeuMF: its GMF half, `(h_gmf * p_u) . q_i`, plus the MLP tower's item main effect (its mean over
  a sample of users, `ncf.models.ncf_models.mlp_item_effect`) as one more column: the MLP is not a dot
  product, but much of it is a property of the item alone, and the GMF half by itself may carry little of
  the score.

Export stores every item's vector as one matrix (and every user's vector, so a request is a gather).
Serving multiplies the user's vector with the matrix, masks the seen/excluded items, keeps the top N
(`retrieval_candidates`) and scores only those N with the exact model (`NcfModel.logits`) before the
final top-k. For MF and GMF the dot product plus the global bias *is* the model's logit, so there is
no rerank and the answer is exact. A NeuMF's candidate matrix is stored as bfloat16: at one user per
request the product is bound by memory bandwidth, half the bytes halve its time, and the exact rerank
removes the rounding from the answer. The MLP tower alone has no dot-product part and stays
exhaustive (see `choose`). Each model type says what its score has of a dot product
(`ncf.models.base.Model.dot_product`) and provides the vectors (`Model.retrieval_vectors`).

Catalogs below `retrieval_min_items` keep exhaustive scoring: there the full model is already within
a real-time budget (~1 ms at 10k items) and exact. The choice is recorded in metrics.json and in the
SavedModel (`Recommender.retrieval_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import tensorflow as tf

from ncf.models.base import EXACT_DOT_PRODUCT, NO_DOT_PRODUCT, Model
from ncf.models.memory import BlockShape, CatalogCost, block_shape
from ncf.models.registry import model_class
from ncf.serving.blocked import columns_top_k, map_row_blocks, row_block_of, rows_of
from ncf.serving.topk import UNDEFINED, allowed_only, top_k_excluding

EXHAUSTIVE, DOT_PRODUCT, TWO_STAGE = "exhaustive", "dot_product", "two_stage"


@dataclass(frozen=True)
class RetrievalChoice:
    """How an exported model finds its top-k, and why."""

    mode: str  # EXHAUSTIVE, DOT_PRODUCT (exact, no rerank) or TWO_STAGE (retrieve N, rerank)
    candidates: int  # N of the two-stage mode; 0 otherwise
    num_items: int
    reason: str

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def choose(model_type: str, num_items: int, candidates: int, min_items: int) -> RetrievalChoice:
    """The top-k strategy of an export: exhaustive below `min_items` items, for `candidates == 0` and for
    a model type without a dot-product part (the MLP tower alone, and the sequence model, whose exhaustive
    scoring is one dot product per item); otherwise a dot-product retrieval, reranked by the full model
    where the dot product is only part of the score (NeuMF)."""

    def chosen(mode: str, n: int, reason: str) -> RetrievalChoice:
        return RetrievalChoice(mode, n, num_items, reason)

    if candidates == 0:
        return chosen(EXHAUSTIVE, 0, "retrieval_candidates is 0")
    part = model_class(model_type).dot_product(model_type)
    if part.kind == NO_DOT_PRODUCT:
        return chosen(EXHAUSTIVE, 0, part.reason)
    if num_items < min_items:
        return chosen(EXHAUSTIVE, 0, f"{num_items} items < retrieval_min_items {min_items}")
    if part.kind == EXACT_DOT_PRODUCT:
        return chosen(DOT_PRODUCT, 0, part.reason)
    return chosen(TWO_STAGE, candidates, f"{num_items} items >= retrieval_min_items {min_items}")


class TwoStageTopK(tf.Module):
    """The served retrieval stage: precomputed user and item vectors, and the top-k through them."""

    def __init__(
        self, model: Model, choice: RetrievalChoice, implicit: bool, memory_budget_bytes: int
    ) -> None:
        """`memory_budget_bytes`: what one block of users x items may hold (`ncf.serving.blocked`)."""
        super().__init__(name="retrieval")
        if choice.mode == EXHAUSTIVE:
            raise ValueError("an exhaustive export has no retrieval stage")
        self.model = model
        self.implicit = implicit
        self.rerank = choice.mode == TWO_STAGE
        self.candidates = choice.candidates
        self.memory_budget_bytes = memory_budget_bytes
        users, items = model.retrieval_vectors()
        dtype = tf.bfloat16 if self.rerank else tf.float32
        self.user_vectors = tf.Variable(tf.cast(users, dtype), trainable=False, name="user_vectors")
        self.item_vectors = tf.Variable(tf.cast(items, dtype), trainable=False, name="item_vectors")
        self.num_items = int(items.shape[0])

    def scale(self, logits: tf.Tensor) -> tf.Tensor:
        """The served score of a logit: a probability for implicit feedback, the rating otherwise."""
        return tf.sigmoid(logits) if self.implicit else logits

    def dot_scores(self, vectors: tf.Tensor, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
        """The dot-product part of items [start, stop) for each user vector, [B, stop - start] (bfloat16
        for NeuMF)."""
        items = self.item_vectors[start:stop]
        return tf.matmul(tf.cast(vectors, self.item_vectors.dtype), items, transpose_b=True)

    def top_k(
        self,
        users: tf.Tensor,
        known: tf.Tensor,
        popularity: tf.Tensor,
        excluded: tf.Tensor | None,
        k: tf.Tensor,
        allowed: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """What `top_k_excluding` answers for the exhaustive scores, through the retrieval stage.

        Rows whose user is unknown (`known` false) rank by `popularity`, exactly as the exhaustive path
        does; `excluded` are (row, item) coordinates that never come back; only items a filter's mask
        `allowed` ([items], or [B, items] per user; all when None) keeps are candidates.
        """

        def state(start: tf.Tensor, stop: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
            block = users[start:stop]
            return tf.gather(self.user_vectors, block), self.model.user_rows(block)

        return self.top_k_of_rows(state, known, popularity, excluded, k, allowed)

    def top_k_of_rows(
        self,
        state_of_rows: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, dict[str, tf.Tensor]]],
        known: tf.Tensor,
        popularity: tf.Tensor,
        excluded: tf.Tensor | None,
        k: tf.Tensor,
        allowed: tf.Tensor | None = None,
        extra_per_user: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """`top_k` for users whose (retrieval vectors, model rows for the rerank) of rows [start, stop) are
        `state_of_rows(start, stop)`: stored users, or users folded in at request time
        (`ncf.serving.foldin`, whose steps add `extra_per_user` floats per user). One block of users at a
        time, each scored against the catalog in blocks within the memory budget."""
        popularity = allowed_only(popularity, allowed)
        rerank = self.model.catalog_cost().per_pair * max(self.candidates, 1)
        cost = CatalogCost(per_user=extra_per_user + rerank, per_pair=_FLOATS_PER_PAIR)
        shape = block_shape(cost, self.num_items, self.memory_budget_bytes)

        def answer(start: tf.Tensor, stop: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            vectors, rows = state_of_rows(start, stop)
            block_excluded = rows_of(excluded, start, stop)
            block_known = known[start:stop]
            block_allowed = row_block_of(allowed, start, stop)
            block_popularity = row_block_of(popularity, start, stop)
            if not self.rerank:
                return self.exact_dot_product(
                    vectors, block_known, block_popularity, block_excluded, k, block_allowed, shape
                )
            top = self.two_stage(vectors, rows, block_excluded, k, block_allowed, shape.columns)
            # The popularity answer costs a pass over the catalog: only when a row needs it.
            return tf.cond(
                tf.reduce_all(block_known),
                lambda: top,
                lambda: _fallback_rows(top, block_known, block_popularity, block_excluded, k, shape.columns),
            )

        return map_row_blocks(answer, tf.shape(known)[0], shape.rows, (tf.int32, tf.float32))

    def exact_dot_product(
        self,
        vectors: tf.Tensor,
        known: tf.Tensor,
        popularity: tf.Tensor,
        excluded: tf.Tensor | None,
        k: tf.Tensor,
        allowed: tf.Tensor | None,
        shape: BlockShape,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """MF and GMF: the dot product plus the global bias is the logit; no rerank."""

        def scores(start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
            logits = self.dot_scores(vectors, start, stop) + self.model.dense["bias"]
            popular = popularity_rows(popularity, tf.shape(known)[0], start, stop)
            return tf.where(known[:, None], self.scale(logits), popular)

        return columns_top_k(scores, tf.shape(known)[0], self.num_items, shape.columns, excluded, k, allowed)

    def two_stage(
        self,
        vectors: tf.Tensor,
        rows: dict[str, tf.Tensor],
        excluded: tf.Tensor | None,
        k: tf.Tensor,
        allowed: tf.Tensor | None = None,
        columns_per_block: int | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Top-N of the dot product (excluded and filtered-out items masked before the cut, so a filter
        never starves the answer; `columns_per_block` items at a time), then the exact model's top-k of
        those N."""
        candidates, _ = columns_top_k(
            lambda start, stop: self.dot_scores(vectors, start, stop),
            tf.shape(vectors)[0],
            self.num_items,
            columns_per_block or self.num_items,
            excluded,
            tf.maximum(k, self.candidates),
            allowed,
        )
        items = tf.maximum(candidates, 0)
        width = tf.shape(items)[1]
        pair_rows = {name: tf.repeat(row, width, axis=0) for name, row in rows.items()}
        logits = tf.reshape(self.model.pair_logits(pair_rows, tf.reshape(items, [-1])), tf.shape(items))
        exact = tf.where(candidates >= 0, self.scale(logits), UNDEFINED)
        position, scores = top_k_excluding(exact, None, k)
        chosen = tf.gather(candidates, tf.maximum(position, 0), batch_dims=1)
        return tf.where(position >= 0, chosen, -1), scores


# Floats per (user, item) of the dot-product stage: the bfloat16 product, its float32 copy, a filter's mask.
_FLOATS_PER_PAIR = 4


def popularity_rows(popularity: tf.Tensor, rows: tf.Tensor, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
    """Popularity of items [start, stop) for each of `rows` rows: `popularity` is [items], or [rows, items]
    after a per-user filter mask (interaction filters)."""
    if popularity.shape.rank == 1:
        return tf.tile(popularity[None, start:stop], tf.stack([rows, 1]))
    return popularity[:, start:stop]


def _fallback_rows(
    answer: tuple[tf.Tensor, tf.Tensor],
    known: tf.Tensor,
    popularity: tf.Tensor,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
    columns_per_block: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`answer` with the rows of unknown users replaced by the most popular non-excluded items."""
    rows = tf.shape(known)[0]
    popular, popular_scores = columns_top_k(
        lambda start, stop: popularity_rows(popularity, rows, start, stop),
        rows,
        int(popularity.shape[-1]),
        columns_per_block,
        excluded,
        k,
    )
    return (
        tf.where(known[:, None], answer[0], popular),
        tf.where(known[:, None], answer[1], popular_scores),
    )
