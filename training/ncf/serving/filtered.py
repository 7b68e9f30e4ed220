"""The filtered signatures of an export with filters (`ncf.serving.filters`).

New signatures rather than new inputs of the existing ones: TF Serving requires a request to give
exactly a signature's inputs, so a new input would break every client of `serving_default`. The
serving handler picks these signatures when a request names a filter; an export without filters has
none of them, and the handler refuses a filter request to it clearly.

- `recommend_filtered(user_id[B], k, exclude[B,N], exclude_seen, filter, filter_names[P],
  filter_values[P,V], now)` -> `item_ids[B,k]`, `scores[B,k]`, `fallback[B]`, `filter_error[B]`
- `similar_items_filtered(item_id[B], k, filter, filter_names[P], filter_values[P,V])` -> `item_ids`,
  `scores`, `known`, `filter_error`

`filter` names one declared filter, `filter_names` its `$PARAM`s and `filter_values` their values
(one row per parameter, "" pads); `now` (float64 seconds since the epoch; 0 or less: the serving
clock) is the time interaction filters count `Interactions.age_days` from (`ncf.serving.interaction_store`).
`filter_error` is "" for a valid request, else why it is refused
(an unknown filter, a missing or extra parameter, a value of the wrong type or not in the column's
vocabulary); a refused request's answer is empty, never unfiltered. The mask applies before the top-k
and before the two-stage retrieval's candidate cut, so a request gets k items whenever k items pass.
"""

from __future__ import annotations

import tensorflow as tf

from ncf.serving.interaction_store import Requesters

Recommender = tf.Module  # `ncf.serving.export.Recommender`, which imports this module

_IDS = tf.TensorSpec([None], tf.string)
_K = tf.TensorSpec([], tf.int32)
_EXCLUDE = tf.TensorSpec([None, None], tf.string)
_FLAG = tf.TensorSpec([], tf.bool)
_NAME = tf.TensorSpec([], tf.string)
_PARAM_NAMES = tf.TensorSpec([None], tf.string)
_PARAM_VALUES = tf.TensorSpec([None, None], tf.string)
NOW = tf.TensorSpec([], tf.float64)  # interaction filters' reference time; <= 0: the serving clock


def filtered_signatures(recommender: Recommender) -> dict:
    """{"recommend_filtered": ..., "similar_items_filtered": ...}; {} for an export without filters.

    Traced without autograph: their code branches in the graph explicitly (`tf.switch_case`, `tf.cond`),
    and with it, in bench_filters.py (a process that had loaded other SavedModels), the call of
    `Recommender.top_k` failed inside a converted `Recommender.scale` (TypeError: 6 arguments given)."""
    filters = recommender.filters
    if filters is None:
        return {}

    @tf.function(
        input_signature=[_IDS, _K, _EXCLUDE, _FLAG, _NAME, _PARAM_NAMES, _PARAM_VALUES, NOW], autograph=False
    )
    def recommend_filtered(
        user_id: tf.Tensor,
        k: tf.Tensor,
        exclude: tf.Tensor,
        exclude_seen: tf.Tensor,
        filter: tf.Tensor,
        filter_names: tf.Tensor,
        filter_values: tf.Tensor,
        now: tf.Tensor,
    ) -> dict:
        known, users = recommender.lookup_users(user_id)
        allowed, error = filters.evaluate(filter, filter_names, filter_values, Requesters(known, users, now))
        answer = recommender.top_k(user_id, k, exclude, exclude_seen, allowed)
        return {**answer, "filter_error": tf.fill(tf.shape(user_id), error)}

    @tf.function(input_signature=[_IDS, _K, _NAME, _PARAM_NAMES, _PARAM_VALUES], autograph=False)
    def similar_items_filtered(
        item_id: tf.Tensor,
        k: tf.Tensor,
        filter: tf.Tensor,
        filter_names: tf.Tensor,
        filter_values: tf.Tensor,
    ) -> dict:
        allowed, error = filters.evaluate(filter, filter_names, filter_values)
        answer = recommender.similar_items_among(item_id, k, allowed)
        return {**answer, "filter_error": tf.fill(tf.shape(item_id), error)}

    return {"recommend_filtered": recommend_filtered, "similar_items_filtered": similar_items_filtered}
