"""Two-stage top-k for large catalogs: retrieve candidates by a dot product, rank them with the model.

Scoring every item with the full model costs O(items) MLP evaluations per user (50 ms at 1M items).
Every model type except the MLP tower alone has a dot-product part, `user_vector . item_vector`:

- MF: `p_u . q_i + b_u + b_i` is one dot product of augmented vectors `[p_u, 1, b_u] . [q_i, b_i, 1]`;
- GMF: `h . (p_u * q_i) = (h * p_u) . q_i`, the output layer folded into the user side;
- NeuMF: its GMF half, `(h_gmf * p_u) . q_i`, plus the MLP tower's item main effect (its mean over
  a sample of users, `mlp_item_effect`) as one more column: the MLP is not a dot product, but much of
  it is a property of the item alone, and the GMF half by itself may carry little of the score.

Export stores every item's vector as one matrix (and every user's vector, so a request is a gather).
Serving multiplies the user's vector with the matrix, masks the seen/excluded items, keeps the top N
(`retrieval_candidates`) and scores only those N with the exact model (`NcfModel.logits`) before the
final top-k. For MF and GMF the dot product plus the global bias *is* the model's logit, so there is
no rerank and the answer is exact. A NeuMF's candidate matrix is stored as bfloat16: at one user per
request the product is bound by memory bandwidth, half the bytes halve its time, and the exact rerank
removes the rounding from the answer. The MLP tower alone has no dot-product part and stays
exhaustive (see `choose`).

Catalogs below `retrieval_min_items` keep exhaustive scoring: there the full model is already within
a real-time budget (~1 ms at 10k items) and exact. The choice is recorded in metrics.json and in the
SavedModel (`Recommender.retrieval_metadata`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

from ncf.models.ncf_models import NcfModel
from ncf.serving.topk import UNDEFINED, top_k_excluding

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
    the MLP tower alone and the sequence model (whose exhaustive scoring is one dot product per item);
    otherwise a dot-product retrieval, reranked by the full model for NeuMF."""

    def chosen(mode: str, n: int, reason: str) -> RetrievalChoice:
        return RetrievalChoice(mode, n, num_items, reason)

    if candidates == 0:
        return chosen(EXHAUSTIVE, 0, "retrieval_candidates is 0")
    if model_type == "mlp":
        return chosen(EXHAUSTIVE, 0, "the MLP tower has no dot-product part to retrieve with")
    if model_type == "sasrec":
        return chosen(EXHAUSTIVE, 0, "sasrec's exhaustive scoring is already one dot product per item")
    if num_items < min_items:
        return chosen(EXHAUSTIVE, 0, f"{num_items} items < retrieval_min_items {min_items}")
    if model_type in ("mf", "gmf"):
        return chosen(DOT_PRODUCT, 0, f"{model_type} is a dot product: one matmul, exact, no rerank")
    return chosen(TWO_STAGE, candidates, f"{num_items} items >= retrieval_min_items {min_items}")


def dot_product_part(model: NcfModel) -> tuple[tf.Tensor, tf.Tensor]:
    """(user vectors [users, d], item vectors [items, d]) of the model's dot-product part.

    For MF and GMF, `user . item + bias` equals `model.logits`. For NeuMF it is the GMF half plus the MLP
    tower's item main effect (`mlp_item_effect`) as one more column, against a constant 1 for every user.
    """
    spec = model.spec
    if not spec.has_gmf:
        raise ValueError(f"{spec.model_type} has no dot-product part")
    users = user_vectors(model, {name: model.table(name) for name in model.user_tables})
    items = model.table("gmf_item")
    if spec.model_type == "mf":
        return users, tf.concat([items, model.table("item_bias"), tf.ones((spec.num_items, 1))], axis=1)
    if not spec.has_mlp:
        return users, items
    return users, tf.concat([items, mlp_item_effect(model)[:, None]], axis=1)


def user_vectors(model: NcfModel, rows: dict[str, tf.Tensor]) -> tf.Tensor:
    """The dot-product part's user side of user rows (`NcfModel.user_rows`), [batch, d]: the GMF vector,
    and for MF `[p, 1, b]`, for NeuMF `[h * p, 1]` (the 1 meets the item's MLP main effect)."""
    gmf = rows["gmf_user"]
    ones = tf.ones_like(gmf[:, :1])
    if model.spec.model_type == "mf":  # MF has no output layer: the plain dot product
        return tf.concat([gmf, ones, rows["user_bias"]], axis=1)
    gmf = gmf * model.dense["head"][: model.spec.factors, 0]
    return tf.concat([gmf, ones], axis=1) if model.spec.has_mlp else gmf


def gmf_vectors(model: NcfModel) -> tuple[tf.Tensor, tf.Tensor]:
    """(users, items) whose dot product is the GMF part of the logit: `h . (p * q) = (h * p) . q`."""
    users, items = model.table("gmf_user"), model.table("gmf_item")
    if model.spec.model_type == "mf":  # MF has no output layer: the plain dot product
        return users, items
    return users * model.dense["head"][: model.spec.factors, 0], items


def mlp_item_effect(model: NcfModel, sample_users: int = 64, chunk: int = 4) -> tf.Tensor:
    """Each item's MLP-tower part of the logit, averaged over an evenly spaced sample of users: [items].

    NeuMF's MLP tower is not a dot product, but much of what it learns is a property of the item alone
    (popularity, broad appeal). Its mean over users is the best item-only (additive) approximation of it,
    so adding it to the GMF dot product makes the retrieval score track the full model; without it, the
    candidates follow the GMF half only, which may carry little of the score (see README).
    """
    users = np.unique(np.linspace(0, model.spec.num_users - 1, sample_users).astype(np.int32))
    gmf_users, gmf_items = gmf_vectors(model)
    item_half, total = model.mlp_item_half(), tf.zeros((model.spec.num_items,))
    for start in range(0, len(users), chunk):
        batch = tf.constant(users[start : start + chunk])
        gmf = tf.matmul(tf.gather(gmf_users, batch), gmf_items, transpose_b=True)
        mlp = model.logits_all_items(batch, item_half) - gmf - model.dense["bias"]
        total += tf.reduce_sum(mlp, axis=0)
    return total / len(users)


class TwoStageTopK(tf.Module):
    """The served retrieval stage: precomputed user and item vectors, and the top-k through them."""

    def __init__(self, model: NcfModel, choice: RetrievalChoice, implicit: bool) -> None:
        super().__init__(name="retrieval")
        if choice.mode == EXHAUSTIVE:
            raise ValueError("an exhaustive export has no retrieval stage")
        self.model = model
        self.implicit = implicit
        self.rerank = choice.mode == TWO_STAGE
        self.candidates = choice.candidates
        users, items = dot_product_part(model)
        dtype = tf.bfloat16 if self.rerank else tf.float32
        self.user_vectors = tf.Variable(tf.cast(users, dtype), trainable=False, name="user_vectors")
        self.item_vectors = tf.Variable(tf.cast(items, dtype), trainable=False, name="item_vectors")

    def scale(self, logits: tf.Tensor) -> tf.Tensor:
        """The served score of a logit: a probability for implicit feedback, the rating otherwise."""
        return tf.sigmoid(logits) if self.implicit else logits

    def dot_scores(self, vectors: tf.Tensor) -> tf.Tensor:
        """The dot-product part of every item for each user vector, [B, items] (bfloat16 for NeuMF)."""
        return tf.matmul(tf.cast(vectors, self.item_vectors.dtype), self.item_vectors, transpose_b=True)

    def top_k(
        self,
        users: tf.Tensor,
        known: tf.Tensor,
        popularity: tf.Tensor,
        excluded: tf.Tensor | None,
        k: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """What `top_k_excluding` answers for the exhaustive scores, through the retrieval stage.

        Rows whose user is unknown (`known` false) rank by `popularity`, exactly as the exhaustive path
        does; `excluded` are (row, item) coordinates that never come back.
        """
        vectors = tf.gather(self.user_vectors, users)
        return self.top_k_of_rows(
            vectors, lambda: self.model.user_rows(users), known, popularity, excluded, k
        )

    def top_k_of_rows(
        self,
        vectors: tf.Tensor,
        rows: Callable[[], dict[str, tf.Tensor]],
        known: tf.Tensor,
        popularity: tf.Tensor,
        excluded: tf.Tensor | None,
        k: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """`top_k` for users given by their retrieval `vectors` and (for the rerank) their model `rows`:
        stored users, or users folded in at request time (`ncf.serving.foldin`)."""
        if not self.rerank:
            logits = self.dot_scores(vectors) + self.model.dense["bias"]
            return top_k_excluding(tf.where(known[:, None], self.scale(logits), popularity), excluded, k)
        answer = self.two_stage(vectors, rows(), excluded, k)
        # The popularity answer costs a pass over the catalog: only when a row needs it.
        return tf.cond(
            tf.reduce_all(known),
            lambda: answer,
            lambda: _fallback_rows(answer, known, popularity, excluded, k),
        )

    def two_stage(
        self, vectors: tf.Tensor, rows: dict[str, tf.Tensor], excluded: tf.Tensor | None, k: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Top-N of the dot product (excluded items masked), then the exact model's top-k of those N."""
        candidates, _ = top_k_excluding(self.dot_scores(vectors), excluded, tf.maximum(k, self.candidates))
        items = tf.maximum(candidates, 0)
        width = tf.shape(items)[1]
        pair_rows = {name: tf.repeat(row, width, axis=0) for name, row in rows.items()}
        logits = tf.reshape(self.model.pair_logits(pair_rows, tf.reshape(items, [-1])), tf.shape(items))
        exact = tf.where(candidates >= 0, self.scale(logits), UNDEFINED)
        position, scores = top_k_excluding(exact, None, k)
        chosen = tf.gather(candidates, tf.maximum(position, 0), batch_dims=1)
        return tf.where(position >= 0, chosen, -1), scores


def _fallback_rows(
    answer: tuple[tf.Tensor, tf.Tensor],
    known: tf.Tensor,
    popularity: tf.Tensor,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`answer` with the rows of unknown users replaced by the most popular non-excluded items."""
    rows = tf.tile(popularity[None, :], [tf.shape(known)[0], 1])
    popular, popular_scores = top_k_excluding(rows, excluded, k)
    return (
        tf.where(known[:, None], answer[0], popular),
        tf.where(known[:, None], answer[1], popular_scores),
    )
