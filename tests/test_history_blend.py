"""The short-history blend of the sequence model's export (`ncf.serving.history_blend`): the item
neighbours, the mixture, which rows it touches, its settings, and the served SavedModel's variables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ncf.data.vocab import UserItemSets
from ncf.errors import NcfError
from ncf.serving import history_blend
from ncf.serving.history_blend import (
    BlendSettings,
    HistoryBlend,
    item_neighbours,
    mixture_logits,
    query_blocks,
)
from ncf.train_settings import load_config

NUM_ITEMS = 7


def random_seen(seed: int = 0, users: int = 30) -> UserItemSets:
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(users) for i in range(NUM_ITEMS) if rng.random() < 0.35]
    array = np.array(pairs, dtype=np.int32)
    return UserItemSets.build(array[:, 0], array[:, 1], users)


def brute_force_cosines(seen: UserItemSets) -> np.ndarray:
    matrix = np.zeros((seen.num_users, NUM_ITEMS), np.float64)
    matrix[seen.row_ids(), seen.items] = 1.0
    counts = matrix.sum(axis=0)
    cosines = (matrix.T @ matrix) / np.sqrt(np.maximum(counts, 1))[:, None] / np.sqrt(np.maximum(counts, 1))
    np.fill_diagonal(cosines, 0.0)
    return cosines


def test_neighbours_are_each_items_most_similar_others_by_cosine() -> None:
    seen = random_seen()
    ids, cosines = item_neighbours(seen, NUM_ITEMS, 3)
    expected = brute_force_cosines(seen)
    assert ids.shape == cosines.shape == (NUM_ITEMS, 3)
    for item in range(NUM_ITEMS):
        assert item not in ids[item][cosines[item] > 0]
        np.testing.assert_allclose(cosines[item], np.sort(expected[item])[::-1][:3], rtol=1e-5)
        np.testing.assert_allclose(expected[item, ids[item]], cosines[item], rtol=1e-5)


def test_small_blocks_give_the_same_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = random_seen(seed=1)
    whole = item_neighbours(seen, NUM_ITEMS, NUM_ITEMS)
    monkeypatch.setattr(history_blend, "_BLOCK_PATHS", 5)
    blocked = item_neighbours(seen, NUM_ITEMS, NUM_ITEMS)
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-6)


def test_query_blocks_respect_both_budgets_and_cover_every_row() -> None:
    blocks = query_blocks(np.array([3.0, 3.0, 10.0, 1.0, 1.0, 1.0]), max_paths=6, max_rows=2)
    assert blocks == [(0, 2), (2, 3), (3, 5), (5, 6)]


def test_items_without_co_occurrence_get_no_neighbour() -> None:
    seen = UserItemSets.build(np.array([0, 0, 1], np.int32), np.array([0, 1, 2], np.int32), 2)
    ids, cosines = item_neighbours(seen, 3, 2)
    assert cosines[2].tolist() == [0.0, 0.0]
    assert ids[0, 0] == 1 and cosines[0, 0] == pytest.approx(1.0)


def test_the_mixture_is_the_weighted_sum_of_the_two_distributions() -> None:
    logits = tf.constant([[2.0, 0.5, -1.0, 0.0]])
    knn = tf.constant([[0.0, 3.0, 1.0, 0.0]])
    mixed = mixture_logits(logits, knn, tf.constant(0.25))
    expected = 0.75 * tf.nn.softmax(logits) + 0.25 * knn / 4.0
    np.testing.assert_allclose(tf.nn.softmax(mixed).numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        mixture_logits(logits, knn, tf.constant(0.0)).numpy(), logits.numpy(), rtol=1e-5
    )


def test_only_short_histories_with_neighbours_are_blended() -> None:
    seen = UserItemSets.build(np.array([0, 0, 1, 1], np.int32), np.array([0, 1, 1, 2], np.int32), 2)
    blend = HistoryBlend(seen, 4, BlendSettings(weight=0.5, max_events=3, neighbours=2))
    pad = 4
    sequences = tf.constant([[pad, pad, pad, 0], [pad, 0, 1, 2], [pad, pad, pad, pad], [pad, pad, pad, 3]])
    logits = tf.constant(np.random.default_rng(0).normal(size=(4, 4)), tf.float32)
    served = blend.apply(logits, sequences, pad).numpy()
    np.testing.assert_array_equal(served[1:], logits.numpy()[1:])  # too long / empty / no neighbours
    knn = np.array([0.0, 0.5, 0.0, 0.0])  # item 0's only neighbour: item 1, cosine 1 / sqrt(1 * 2)
    expected = 0.5 * tf.nn.softmax(logits[0]).numpy() + 0.5 * knn / knn.sum()
    np.testing.assert_allclose(tf.nn.softmax(served[0]).numpy(), expected, rtol=1e-5)
    blend.weight.assign(0.0)
    np.testing.assert_array_equal(blend.apply(logits, sequences, pad).numpy(), logits.numpy())


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--history-blend-weight", "1.0", "history_blend_weight: must be in [0, 1)"),
        ("--history-blend-weight", "-0.1", "history_blend_weight: must be in [0, 1)"),
        ("--history-blend-max-events", "-1", "history_blend_max_events: must not be negative"),
        ("--history-blend-neighbours", "-1", "history_blend_neighbours: must not be negative"),
    ],
)
def test_blend_settings_out_of_range_are_refused_by_name(flag: str, value: str, message: str) -> None:
    paths = ["--train", "t", "--validation", "v", "--test", "x", "--model-dir", "m"]
    with pytest.raises(NcfError, match=message.replace("[", r"\[").replace(")", r"\)")):
        load_config([*paths, "--model-type", "sasrec", flag, value], {})


def test_the_export_serves_the_configured_blend(sasrec_run: Path) -> None:
    """train.py's sasrec export holds the blend with the defaults as variables; a short history's answer
    changes with the weight, a history at the threshold does not."""
    loaded = tf.saved_model.load(str(sasrec_run / "model" / "1"))
    config = load_config(["--train", "t", "--validation", "v", "--test", "x", "--model-dir", "m"], {})
    blend = loaded.history_blend
    assert float(blend.weight.numpy()) == pytest.approx(config.history_blend_weight)
    assert int(blend.max_events.numpy()) == config.history_blend_max_events
    items = loaded.item_ids.numpy().astype(str)
    recommend = loaded.signatures["recommend_from_history"]

    def answer(events: int, weight: float) -> np.ndarray:
        blend.weight.assign(weight)
        history = tf.constant([list(items[:events])])
        return recommend(user_id=tf.constant(["new"]), history=history, k=tf.constant(5))["scores"].numpy()

    blend.max_events.assign(3)  # the catalog's first items as a history below and at the threshold
    short, long = 1, 3
    assert not np.allclose(answer(short, 0.0), answer(short, 0.9))
    np.testing.assert_array_equal(answer(long, 0.0), answer(long, 0.9))
