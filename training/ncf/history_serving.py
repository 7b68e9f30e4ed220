"""Real-time events at request time: the `recommend_from_history` signature of the sequence model.

A request brings a user id and the user's latest interactions that the model has not seen (raw item
ids, oldest first, "" pads the string matrix). For the sequence model (`ncf.sasrec`) they are
appended to the user's stored history (an unknown user's history is the request's alone), the
latest `max_len` items are read, and the next-item scores are ranked as `serving_default` ranks
them; the history's items are excluded like seen items. No retraining: a new user gets personal
recommendations from their first click. A row with no known item at all (an unknown user whose
history holds no catalog item) gets the popularity fallback (`fallback` true).

Output `unknown_history[B,N]` marks the history entries that are not catalog ids (ignored), so the
serving handler can report them. NCF model types have no such signature: they see a user as one
learned vector, and the handler refuses `history` for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from ncf.topk import ids_of, top_k_excluding

if TYPE_CHECKING:
    from ncf.export import Recommender

_IDS = tf.TensorSpec([None], tf.string)
_HISTORY = tf.TensorSpec([None, None], tf.string)
_K = tf.TensorSpec([], tf.int32)


def latest_items(sequences: tf.Tensor, padding: int, max_len: int) -> tf.Tensor:
    """Each row's last `max_len` non-padding entries in their order, left-padded with `padding`."""
    present = tf.cast(sequences != padding, tf.int32)
    order = tf.argsort(present, axis=1, stable=True)  # padding first, items in their order after it
    compacted = tf.gather(sequences, order, batch_dims=1)
    width = tf.shape(compacted)[1]
    filler = tf.fill([tf.shape(compacted)[0], tf.maximum(max_len - width, 0)], padding)
    return tf.concat([filler, compacted], axis=1)[:, -max_len:]


def history_signatures(recommender: Recommender) -> dict:
    """{"recommend_from_history": ...} when the recommender's model reads histories, else nothing."""
    model = recommender.model
    if not hasattr(model, "represent"):
        return {}

    @tf.function(input_signature=[_IDS, _HISTORY, _K])
    def recommend_from_history(user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict:
        known, users = recommender.lookup_users(user_id)
        padding = model.padding
        stored = tf.where(known[:, None], tf.gather(model.histories, users), padding)
        listed = tf.cast(recommender.item_index.lookup(history), tf.int32)
        recent = tf.where(listed >= 0, listed, padding)
        sequences = latest_items(tf.concat([stored, recent], axis=1), padding, model.spec.max_len)
        has_items = tf.reduce_any(sequences != padding, axis=1)
        reps = model.represent(sequences, users, known)
        scores = recommender.scale(tf.matmul(reps, model.item_table(), transpose_b=True))
        scores = tf.where(has_items[:, None], scores, recommender.popularity[None, :])
        excluded = recommender.excluded(known, users, history, exclude_seen=True)  # seen and history items
        indices, top_scores = top_k_excluding(scores, excluded, k)
        return {
            "item_ids": ids_of(indices, recommender.item_ids),
            "scores": top_scores,
            "fallback": tf.logical_not(has_items),
            "unknown_history": tf.logical_and(listed < 0, history != ""),
        }

    return {"recommend_from_history": recommend_from_history}
