"""Real-time events at request time: the `recommend_from_history` signature of every export.

A request brings a user id and the user's latest interactions that the model has not seen (raw item
ids, oldest first, "" pads the string matrix). For the sequence model (`ncf.models.sasrec`) they are
appended to the user's stored history (an unknown user's history is the request's alone), the
latest `max_len` items are read, and the next-item scores are ranked as `serving_default` ranks
them (a short history's scores blended with item-to-item similarity, `ncf.serving.history_blend`); the
history's items are excluded like seen items. No retraining: a new user gets personal
recommendations from their first click. A row with no known item at all (an unknown user whose
history holds no catalog item) gets the popularity fallback (`fallback` true).

Output `unknown_history[B,N]` marks the history entries that are not catalog ids (ignored), so the
serving handler can report them. The NCF model types see a user as learned rows: the history is folded
into them by a few gradient steps inside the graph (`ncf.serving.foldin`), then ranked as `serving_default`
ranks; a known user with an empty history gets exactly `serving_default`'s answer.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from ncf.serving.topk import ids_of

# The served module (`ncf.serving.export.Recommender`, which imports this module): named by its base
# class here so that the two modules do not import each other.
Recommender = tf.Module

_IDS = tf.TensorSpec([None], tf.string)
_HISTORY = tf.TensorSpec([None, None], tf.string)
_K = tf.TensorSpec([], tf.int32)
_NAME = tf.TensorSpec([], tf.string)
_PARAM_NAMES = tf.TensorSpec([None], tf.string)
_PARAM_VALUES = tf.TensorSpec([None, None], tf.string)


def latest_items(sequences: tf.Tensor, padding: int, max_len: int) -> tf.Tensor:
    """Each row's last `max_len` non-padding entries in their order, left-padded with `padding`."""
    present = tf.cast(sequences != padding, tf.int32)
    order = tf.argsort(present, axis=1, stable=True)  # padding first, items in their order after it
    compacted = tf.gather(sequences, order, batch_dims=1)
    width = tf.shape(compacted)[1]
    filler = tf.fill([tf.shape(compacted)[0], tf.maximum(max_len - width, 0)], padding)
    return tf.concat([filler, compacted], axis=1)[:, -max_len:]


def history_signatures(recommender: Recommender) -> dict:
    """{"recommend_from_history": ...} as the model builds it (`Model.history_signature`): the sequence
    model reads the history (`sequence_signature`), the NCF types fold it in (`foldin_signature`); {} for
    a model that cannot read a history. An export with filters also gets `recommend_from_history_filtered`
    (the same answer among the items that pass a filter; inputs and `filter_error` as in
    `ncf.serving.filtered`)."""
    model = recommender.model
    signature = model.history_signature(recommender)
    if signature is None:
        return {}
    if recommender.filters is None:
        return {"recommend_from_history": signature}
    filtered = model.history_signature(recommender, recommender.filters)
    return {"recommend_from_history": signature, "recommend_from_history_filtered": filtered}


def _signature(answer: Callable, filters: tf.Module | None) -> tf.types.experimental.GenericFunction:
    """`answer(user_id, history, k, allowed)` as `recommend_from_history`, or, with `filters`
    (`ncf.serving.filters.FilterSet`), as `recommend_from_history_filtered`."""
    if filters is None:

        @tf.function(input_signature=[_IDS, _HISTORY, _K])
        def recommend_from_history(user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict:
            return answer(user_id, history, k, None)

        return recommend_from_history

    @tf.function(input_signature=[_IDS, _HISTORY, _K, _NAME, _PARAM_NAMES, _PARAM_VALUES], autograph=False)
    def recommend_from_history_filtered(
        user_id: tf.Tensor,
        history: tf.Tensor,
        k: tf.Tensor,
        filter: tf.Tensor,
        filter_names: tf.Tensor,
        filter_values: tf.Tensor,
    ) -> dict:
        allowed, error = filters.evaluate(filter, filter_names, filter_values)
        return {**answer(user_id, history, k, allowed), "filter_error": tf.fill(tf.shape(user_id), error)}

    return recommend_from_history_filtered


def sequence_signature(
    recommender: Recommender, filters: tf.Module | None = None
) -> tf.types.experimental.GenericFunction:
    """The stored history plus the request's, read by the sequence model (`ncf.models.sasrec`)."""
    model = recommender.model

    def answer(user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor, allowed: tf.Tensor | None) -> dict:
        known, users = recommender.lookup_users(user_id)
        padding = model.padding
        stored = tf.where(known[:, None], tf.gather(model.histories, users), padding)
        listed = tf.cast(recommender.item_index.lookup(history), tf.int32)
        recent = tf.where(listed >= 0, listed, padding)
        sequences = latest_items(tf.concat([stored, recent], axis=1), padding, model.spec.max_len)
        has_items = tf.reduce_any(sequences != padding, axis=1)
        reps = model.represent(sequences, users, known)
        logits = tf.matmul(reps, model.item_table(), transpose_b=True)
        if recommender.history_blend is not None:  # short histories: + item-to-item similarity
            logits = recommender.history_blend.apply(logits, sequences, padding)
        excluded = recommender.excluded(known, users, history, exclude_seen=True)  # seen and history items
        indices, top_scores = recommender.ranked(logits, has_items, excluded, k, allowed)
        return _answer(recommender, indices, top_scores, has_items, listed, history)

    return _signature(answer, filters)


def foldin_signature(
    recommender: Recommender, filters: tf.Module | None = None
) -> tf.types.experimental.GenericFunction:
    """The NCF types: the history folded into the user's rows (`ncf.serving.foldin`), then ranked as
    `serving_default` ranks (exhaustively or through the export's retrieval stage)."""
    foldin = recommender.foldin

    def answer(user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor, allowed: tf.Tensor | None) -> dict:
        known, users = recommender.lookup_users(user_id)
        listed = tf.cast(recommender.item_index.lookup(history), tf.int32)
        personal = tf.logical_or(known, tf.reduce_any(listed >= 0, axis=1))
        rows = foldin.fold(foldin.start_rows(users, known), listed, recommender.mlp_item_half)
        excluded = recommender.excluded(known, users, history, exclude_seen=True)  # seen and history items
        indices, top_scores = _top_k_of_rows(recommender, rows, personal, excluded, k, allowed)
        return _answer(recommender, indices, top_scores, personal, listed, history)

    return _signature(answer, filters)


def _top_k_of_rows(
    recommender: Recommender,
    rows: dict[str, tf.Tensor],
    personal: tf.Tensor,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
    allowed: tf.Tensor | None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-k item indices and served scores of NCF user rows (`NcfModel.user_rows`), ranked as the
    export ranks (exhaustively or through its retrieval stage) among the items `allowed` keeps; rows with
    `personal` false get the most popular items."""
    model, retrieval = recommender.model, recommender.retrieval
    if retrieval is not None:
        vectors = model.retrieval_user_vectors(rows)
        popularity = recommender.popularity
        return retrieval.top_k_of_rows(vectors, lambda: rows, personal, popularity, excluded, k, allowed)
    logits = model.catalog_logits(rows, recommender.mlp_item_half)
    return recommender.ranked(logits, personal, excluded, k, allowed)


def _answer(
    recommender: Recommender,
    indices: tf.Tensor,
    scores: tf.Tensor,
    personal: tf.Tensor,
    listed: tf.Tensor,
    history: tf.Tensor,
) -> dict:
    """The signature's outputs; `personal` false rows got the popularity fallback."""
    return {
        "item_ids": ids_of(indices, recommender.item_ids),
        "scores": scores,
        "fallback": tf.logical_not(personal),
        "unknown_history": tf.logical_and(listed < 0, history != ""),
    }
