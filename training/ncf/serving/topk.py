"""The one top-k of every exported answer: each row's k best columns, some of them excluded.

Recommendations exclude the user's seen items and the request's `exclude` list; similar items
and users exclude the query itself. Both come here, so a change to how ties, exclusions or a
short catalog are handled applies to every signature at once.
"""

from __future__ import annotations

import tensorflow as tf

UNDEFINED = float("-inf")  # a score that is never returned: excluded, or not defined for that pair


def top_k_excluding(
    scores: tf.Tensor, excluded: tf.Tensor | None, k: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The k best columns of each row of `scores`, leaving out the `excluded` ones.

    Args:
        scores: float32 [B, N]; `UNDEFINED` where a column must never be returned.
        excluded: int64 [M, 2] (row, column) coordinates to leave out, or None.
        k: int32 scalar; clipped to [0, N].

    Returns:
        (indices [B, k'], scores [B, k']), best first, with k' = min(k, N). Where a row has fewer than
        k' eligible columns, the rest are index -1 and score 0.
    """
    values, indices = best_columns(scores, excluded, k)
    return answered(values, indices)


def best_columns(scores: tf.Tensor, excluded: tf.Tensor | None, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(values [B, k'], indices [B, k']) of each row's k best columns, the `excluded` ones made
    `UNDEFINED` first; undefined values are kept as they are (`answered` turns them into -1 and 0)."""
    if excluded is not None:
        fill = tf.fill(tf.shape(excluded)[:1], tf.constant(UNDEFINED, scores.dtype))
        scores = tf.tensor_scatter_nd_update(scores, excluded, fill)
    top = tf.math.top_k(scores, k=tf.clip_by_value(k, 0, tf.shape(scores)[1]))
    return top.values, top.indices


def answered(values: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`top_k_excluding`'s answer of ranked (values, indices): index -1 and score 0 where undefined."""
    defined = values > UNDEFINED
    return tf.where(defined, indices, -1), tf.where(defined, values, tf.zeros_like(values))


def allowed_only(scores: tf.Tensor, allowed: tf.Tensor | None) -> tf.Tensor:
    """`scores` [B, N] (or [N]) with the columns a filter's mask `allowed` [N] drops made `UNDEFINED`."""
    if allowed is None:
        return scores
    return tf.where(allowed, scores, tf.constant(UNDEFINED, scores.dtype))


def ids_of(indices: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """Raw string ids of `top_k_excluding`'s indices; "" where the index is -1."""
    return tf.where(indices >= 0, tf.gather(ids, tf.maximum(indices, 0)), "")
