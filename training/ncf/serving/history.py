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

from ncf.models.memory import BlockShape, block_shape
from ncf.serving.blocked import blocked_top_k
from ncf.serving.filtered import NOW
from ncf.serving.interaction_store import Requesters
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


def _signature(
    answer: Callable, filters: tf.Module | None, lookup: Callable
) -> tf.types.experimental.GenericFunction:
    """`answer(user_id, history, k, allowed)` as `recommend_from_history`, or, with `filters`
    (`ncf.serving.filters.FilterSet`), as `recommend_from_history_filtered`, whose interaction filters
    read the stored interactions of the users `lookup(user_id)` finds (the request's history items
    need no event type: they are excluded from the answer whatever a filter says of them)."""
    if filters is None:

        @tf.function(input_signature=[_IDS, _HISTORY, _K])
        def recommend_from_history(user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict:
            return answer(user_id, history, k, None)

        return recommend_from_history

    @tf.function(
        input_signature=[_IDS, _HISTORY, _K, _NAME, _PARAM_NAMES, _PARAM_VALUES, NOW], autograph=False
    )
    def recommend_from_history_filtered(
        user_id: tf.Tensor,
        history: tf.Tensor,
        k: tf.Tensor,
        filter: tf.Tensor,
        filter_names: tf.Tensor,
        filter_values: tf.Tensor,
        now: tf.Tensor,
    ) -> dict:
        known, users = lookup(user_id)
        requesters = Requesters(known, users, now)
        allowed, error = filters.evaluate(filter, filter_names, filter_values, requesters)
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
        excluded = recommender.excluded(known, users, history, exclude_seen=True)  # seen and history items
        if recommender.history_blend is None:

            def state(start: tf.Tensor, stop: tf.Tensor) -> dict[str, tf.Tensor]:
                return model.sequence_state(sequences[start:stop], users[start:stop], known[start:stop])

            indices, top_scores = recommender.ranked(state, has_items, excluded, k, allowed)
        else:  # short histories: + item-to-item similarity
            indices, top_scores = _blended_top_k(
                recommender, sequences, users, known, has_items, excluded, k, allowed
            )
        return _answer(recommender, indices, top_scores, has_items, listed, history)

    return _signature(answer, filters, recommender.lookup_users)


# Floats per (row, item) of the blend: the model's logits, the item-kNN scores, the mixture, the scaled copy.
_BLEND_FLOATS_PER_ITEM = 4


def _blended_top_k(
    recommender: Recommender,
    sequences: tf.Tensor,
    users: tf.Tensor,
    known: tf.Tensor,
    personal: tf.Tensor,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
    allowed: tf.Tensor | None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The top-k of the sequence model's scores blended with item-to-item similarity
    (`ncf.serving.history_blend`). The blend is a mixture of each row's softmax over the whole catalog,
    so a row's every item is scored at once: blocks of rows, as many as fit the memory budget with
    their [rows, items] blend (at least one)."""
    model, blend, num_items = recommender.model, recommender.history_blend, recommender.num_items

    def state(start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
        rows = model.sequence_state(sequences[start:stop], users[start:stop], known[start:stop])
        logits = model.catalog_block_logits(rows, tf.constant(0), tf.constant(num_items), None)
        blended = recommender.scale(blend.apply(logits, sequences[start:stop], model.padding))
        return tf.where(personal[start:stop, None], blended, recommender.popularity[None, :])

    cost = model.catalog_cost().plus(per_user=_BLEND_FLOATS_PER_ITEM * num_items)
    rows = block_shape(cost, num_items, recommender.memory_budget_bytes).rows
    return blocked_top_k(
        state,
        lambda scores, start, stop: scores[:, start:stop],
        tf.shape(personal)[0],
        num_items,
        BlockShape(rows, num_items),
        excluded,
        k,
        allowed,
    )


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

        def folded(start: tf.Tensor, stop: tf.Tensor) -> dict[str, tf.Tensor]:
            """The rows [start, stop) after the fold-in: one block of users at a time."""
            begin = foldin.start_rows(users[start:stop], known[start:stop])
            return foldin.fold(begin, listed[start:stop], recommender.mlp_item_half)

        excluded = recommender.excluded(known, users, history, exclude_seen=True)  # seen and history items
        indices, top_scores = _top_k_of_rows(recommender, folded, personal, excluded, k, allowed)
        return _answer(recommender, indices, top_scores, personal, listed, history)

    return _signature(answer, filters, recommender.lookup_users)


def _top_k_of_rows(
    recommender: Recommender,
    rows_of: Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]],
    personal: tf.Tensor,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
    allowed: tf.Tensor | None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Top-k item indices and served scores of NCF user rows (`NcfModel.user_rows`; those of users
    [start, stop) are `rows_of(start, stop)`), ranked as the export ranks (exhaustively or through its
    retrieval stage) among the items `allowed` keeps; rows with `personal` false get the most popular
    items. The fold-in's gradient steps count in the memory of each block of users."""
    model, retrieval, extra = recommender.model, recommender.retrieval, recommender.foldin.floats_per_user()
    if retrieval is None:
        return recommender.ranked(rows_of, personal, excluded, k, allowed, extra_per_user=extra)

    def state(start: tf.Tensor, stop: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        rows = rows_of(start, stop)
        return model.retrieval_user_vectors(rows), rows

    popularity = recommender.popularity
    return retrieval.top_k_of_rows(state, personal, popularity, excluded, k, allowed, extra_per_user=extra)


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
