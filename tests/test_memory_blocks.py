"""Memory bounded by design: scoring in blocks answers exactly what one pass answers.

A tiny memory budget forces many blocks (one user per block, a few items per block); the answers of
evaluation, of every exported top-k (exclusions, filters, fold-in, two-stage retrieval, the sequence
model) and of similar items/users must equal those of a budget that takes each request in one pass: the
same ids in the same order, the scores to float rounding (a block's smaller matrix products may round
the last bit otherwise). The blocked top-k itself, on given scores, is exact, ties included.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from filter_fixtures import EVENT_TYPES, item_features
from ncf.data.heldout import HeldOut
from ncf.data.interaction_log import SECONDS_PER_DAY, InteractionLog
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.evaluation.protocol import EvaluationProtocol, evaluate
from ncf.evaluation.scoring import ModelScorer, pair_batches
from ncf.models.memory import BlockShape, CatalogCost, block_shape, budget_bytes
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.models.sasrec import SasRecModel, SequenceSpec
from ncf.serving.blocked import blocked_top_k
from ncf.serving.export import Recommender
from ncf.serving.filter_checks import InteractionColumns, ItemAttributes, check_filters
from ncf.serving.filters import FilterSet
from ncf.serving.interaction_store import InteractionStore
from ncf.serving.retrieval import choose
from ncf.serving.similarity import co_counts, transpose
from ncf.serving.topk import top_k_excluding

NUM_USERS, NUM_ITEMS = 12, 90
USERS = Vocabulary.from_values(pd.Series([f"u{i}" for i in range(NUM_USERS)]))
ITEMS = Vocabulary.from_values(pd.Series([f"i{j}" for j in range(NUM_ITEMS)]))
RNG = np.random.default_rng(5)
SEEN = UserItemSets.build(
    np.repeat(np.arange(NUM_USERS), 6), RNG.integers(0, NUM_ITEMS, NUM_USERS * 6), NUM_USERS
)
POPULARITY = RNG.dirichlet(np.ones(NUM_ITEMS)).astype(np.float32)
ATTRIBUTES = ItemAttributes.from_features(item_features(list(ITEMS.ids.astype(str)), seed=2), ITEMS.ids)
# Each seen pair is an interaction of some event type, up to 60 days old; an interaction filter makes the
# mask per user ([users, items]), which the blocks must cut by rows as well as by columns.
LOG = InteractionLog.build(
    SEEN.row_ids(),
    SEEN.items,
    1_700_000_000 - RNG.integers(0, 60 * SECONDS_PER_DAY, len(SEEN.items)),
    RNG.integers(0, len(EVENT_TYPES), len(SEEN.items)).astype(np.int16),
    NUM_USERS,
    EVENT_TYPES,
)
FILTERS = {
    "recent": "INCLUDE ItemID WHERE Items.year >= $YEAR",
    "recent_unbought": "INCLUDE ItemID WHERE Items.year >= $YEAR"
    ' | EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase")',
}
WHOLE = budget_bytes(256)  # every request below in one pass
TINY = 2048  # one user per block and a few items per block


# -- the block shape and the blocked top-k -----------------------------------------------------------


def test_block_shape_takes_whole_rows_while_they_fit_then_columns() -> None:
    cost = CatalogCost(per_user=10, per_pair=2)  # a whole row of 100 columns: 210 floats
    assert block_shape(cost, 100, 4 * 420) == BlockShape(rows=2, columns=100)
    assert block_shape(cost, 100, 4 * 110) == BlockShape(rows=1, columns=50)
    assert block_shape(cost, 100, 4) == BlockShape(rows=1, columns=1)  # at least one of each
    with pytest.raises(ValueError, match="positive budget"):
        block_shape(CatalogCost(0, 0), 100, 4096)


@pytest.mark.parametrize("shape", [BlockShape(3, 100), BlockShape(1, 7), BlockShape(4, 9), BlockShape(50, 1)])
@pytest.mark.parametrize("k", [0, 4, 200])
def test_blocked_top_k_equals_one_pass_with_ties_exclusions_and_a_filter(shape: BlockShape, k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 6, (10, 37)).astype(np.float32)  # many ties: the lower index must come first
    scores[2, :] = -np.inf  # a row with nothing defined
    excluded = tf.constant(np.stack([rng.integers(0, 10, 60), rng.integers(0, 37, 60)], axis=1), tf.int64)
    allowed = tf.constant(rng.random(37) < 0.8)
    table = tf.constant(scores)
    expected = top_k_excluding(tf.where(allowed, table, -np.inf), excluded, tf.constant(k))
    got = blocked_top_k(
        lambda start, stop: table[start:stop],
        lambda rows, start, stop: rows[:, start:stop],
        tf.constant(10),
        37,
        shape,
        excluded,
        tf.constant(k),
        allowed,
    )
    for one, other in zip(expected, got, strict=True):
        np.testing.assert_array_equal(one.numpy(), other.numpy())


def test_pair_batches_bound_pairs_and_users() -> None:
    users = np.repeat([4, 1, 7, 7, 2], [3, 5, 1, 1, 4])  # runs: 4, 1, 7 (twice in a row), 2
    batches = pair_batches(users, max_pairs=4, max_runs=2)
    assert batches[0][0] == 0 and batches[-1][1] == len(users)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(batches))
    for start, stop in batches:
        assert stop - start <= 4 and len(np.unique(users[start:stop])) <= 2
    assert pair_batches(np.array([], int), 4, 2) == []


@pytest.mark.parametrize("max_paths", [1, 5, 40])
def test_co_counts_gathered_in_chunks_equal_all_at_once(max_paths: int) -> None:
    by_item = transpose(SEEN, NUM_ITEMS)

    def ragged(sets: UserItemSets) -> tf.RaggedTensor:
        return tf.RaggedTensor.from_row_splits(sets.items.astype(np.int32), sets.offsets.astype(np.int64))

    queries = tf.constant([0, 5, 5, 89, 17])
    whole = co_counts(queries, ragged(by_item), ragged(SEEN), NUM_ITEMS)
    chunked = co_counts(queries, ragged(by_item), ragged(SEEN), NUM_ITEMS, max_paths)
    np.testing.assert_array_equal(whole.numpy(), chunked.numpy())


# -- every exported signature ------------------------------------------------------------------------


def neumf() -> NcfModel:
    return NcfModel(ModelSpec("neumf", NUM_USERS, NUM_ITEMS, 4, (8, 4)), seed=3, init_stddev=0.5)


def mf() -> NcfModel:
    return NcfModel(ModelSpec("mf", NUM_USERS, NUM_ITEMS, 4, (8, 4)), seed=2, init_stddev=0.5)


def sasrec() -> SasRecModel:
    spec = SequenceSpec(
        NUM_USERS, NUM_ITEMS, 8, max_len=6, blocks=1, heads=2, dropout=0.0, user_embedding=True
    )
    histories = RNG.integers(0, NUM_ITEMS + 1, (NUM_USERS, 6)).astype(np.int32)
    return SasRecModel(spec, histories, seed=4)


def export(model, budget: int, candidates: int = 0, similarity: str = "cosine") -> Recommender:
    choice = choose(model.model_type, NUM_ITEMS, candidates, min_items=0)
    columns = InteractionColumns(EVENT_TYPES, has_times=True)
    filters = FilterSet(
        check_filters(FILTERS, ATTRIBUTES, columns), ATTRIBUTES, InteractionStore(LOG, NUM_ITEMS), EVENT_TYPES
    )
    return Recommender(
        model,
        USERS,
        ITEMS,
        SEEN,
        POPULARITY,
        True,
        similarity,
        choice,
        filters=filters,
        memory_budget_bytes=budget,
    )


USER_IDS = tf.constant([*USERS.ids.astype(str), "stranger"])  # known users and one unknown
K = tf.constant(7)
HISTORY = tf.constant([["i3", "i4", ""]] * NUM_USERS + [["i5", "", ""]])
FILTERED = {
    "filter": tf.constant("recent"),
    "filter_names": tf.constant(["YEAR"]),
    "filter_values": tf.constant([["1990"]]),
}
# Seen items allowed, so the interaction filter decides which of them may come back.
PER_USER = {**FILTERED, "filter": tf.constant("recent_unbought"), "now": tf.constant(0.0, tf.float64)}
REQUESTS = {  # each signature's request: known and unknown users, exclusions, a filter, a history's events
    "serving_default": {"user_id": USER_IDS, "k": K},
    "recommend_excluding": {"user_id": USER_IDS, "k": K, "exclude": tf.constant([["i1", "i2"]] * 13)},
    "score": {"user_id": USER_IDS, "item_id": tf.constant(ITEMS.ids[: NUM_USERS + 1].astype(str))},
    "recommend_filtered": {
        "user_id": USER_IDS,
        "k": K,
        "exclude": tf.constant([["i1"]] * 13),
        "exclude_seen": tf.constant(False),
        **PER_USER,
    },
    "recommend_from_history": {"user_id": USER_IDS, "history": HISTORY, "k": K},
    "recommend_from_history_filtered": {"user_id": USER_IDS, "history": HISTORY, "k": K, **PER_USER},
    "similar_items": {"item_id": tf.constant(["i0", "i7", "nope"]), "k": K},
    "similar_items_filtered": {"item_id": tf.constant(["i0", "i7"]), "k": K, **FILTERED},
    "similar_users": {"user_id": tf.constant(["u0", "u3"]), "k": K},
}


def answers(rec: Recommender, names: tuple[str, ...], eagerly: bool = False) -> dict[str, np.ndarray]:
    """The answers of the signatures `names` to their `REQUESTS`, traced (as exported) or run eagerly (the
    one-pass reference, without the seconds each trace costs)."""
    signatures = rec.signatures()
    tf.config.run_functions_eagerly(eagerly)
    try:
        calls = {name: signatures[name](**REQUESTS[name]) for name in names}
    finally:
        tf.config.run_functions_eagerly(False)
    return {f"{name}.{key}": value.numpy() for name, out in calls.items() for key, value in out.items()}


@pytest.mark.parametrize(
    ("build", "candidates", "similarity", "names"),
    [
        (
            neumf,
            0,
            "jaccard",
            ("recommend_excluding", "recommend_filtered", "score", "similar_items_filtered"),
        ),
        (neumf, 0, "cosine", ("recommend_from_history", "similar_users")),
        (neumf, 10, "pearson", ("serving_default", "recommend_from_history_filtered", "similar_items")),
        (mf, 10, "cosine", ("serving_default", "recommend_filtered")),
        (sasrec, 0, "cosine", ("serving_default", "recommend_from_history", "score", "similar_users")),
    ],
    ids=["neumf-exhaustive-jaccard", "neumf-foldin", "neumf-two-stage-pearson", "mf-dot-product", "sasrec"],
)
def test_signatures_answer_in_blocks_what_they_answer_in_one_pass(
    build: Callable, candidates: int, similarity: str, names: tuple[str, ...]
) -> None:
    model = build()
    blocked = export(model, TINY, candidates, similarity)
    whole = answers(export(model, WHOLE, candidates, similarity), names, eagerly=True)
    got = answers(blocked, names)
    assert set(got) == set(whole)
    for name, value in whole.items():
        if value.dtype.kind == "f":  # the same arithmetic on smaller matrices, other kernels: to the last bit
            np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
        else:  # ids, fallback and known flags, filter errors: exactly
            np.testing.assert_array_equal(got[name], value, err_msg=name)


# -- evaluation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [neumf, sasrec], ids=["neumf", "sasrec"])
def test_evaluation_in_blocks_gives_the_same_metrics(build) -> None:
    model = build()
    users = np.arange(NUM_USERS)
    candidates = np.stack([RNG.permutation(NUM_ITEMS)[:20] for _ in users])
    heldout = HeldOut(users, candidates, None)
    protocol = EvaluationProtocol(k=5)
    whole, tiny = ModelScorer(model, WHOLE), ModelScorer(model, TINY)
    assert whole.catalog_chunk_users() >= NUM_USERS and tiny.catalog_chunk_users() == 1
    assert (
        tiny.shape.columns < NUM_ITEMS and len(pair_batches(np.repeat(users, 20), *tiny.limits)) >= NUM_USERS
    )
    np.testing.assert_allclose(tiny.catalog(users), whole.catalog(users), rtol=1e-6, atol=1e-7)
    assert evaluate(tiny, heldout, SEEN, protocol, "test") == evaluate(whole, heldout, SEEN, protocol, "test")


def test_sasrec_evaluation_at_ml_1m_size_takes_users_in_blocks_within_the_budget() -> None:
    """6,040 users of ML-1M with the default encoder (L 200, 2 heads, d 32): ~1.9 GB of attention floats
    at once if they went into one call; the default budget takes them ~100 at a time."""
    spec = SequenceSpec(6040, 3706, 32, max_len=200, blocks=2, heads=2, dropout=0.2, user_embedding=False)
    model = SasRecModel(spec, np.zeros((6040, 200), np.int32), seed=0)
    scorer = ModelScorer(model)
    cost = model.catalog_cost()
    rows = scorer.catalog_chunk_users()
    assert 1 < rows < 6040
    assert rows * (cost.per_user + 3706 * cost.per_pair) * 4 <= budget_bytes(256)
