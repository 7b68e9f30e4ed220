"""Training negatives: never a user's positive, fresh every epoch, reproducible, nothing dropped."""

from __future__ import annotations

import numpy as np
import pytest
from ncf.data.vocab import UserItemSets
from ncf.fit import pair_sampling as sampling
from ncf.fit.pair_sampling import build_epoch, epoch_rng, recency_weights, sample_negatives

USERS = np.array([0, 0, 0, 1, 1, 2], dtype=np.int32)
ITEMS = np.array([0, 1, 2, 2, 3, 5], dtype=np.int32)
NUM_ITEMS = 6
SEEN = UserItemSets.build(USERS, ITEMS, num_users=3)


def epoch(seed: int, index: int, batch_size: int = 4, num_neg: int = 3):
    return build_epoch(
        USERS,
        ITEMS,
        np.ones(len(USERS), np.float32),
        np.ones(len(USERS), np.float32),
        num_neg=num_neg,
        positives=SEEN,
        num_items=NUM_ITEMS,
        batch_size=batch_size,
        rng=epoch_rng(seed, index),
    )


def test_negatives_are_never_the_users_positives() -> None:
    users, items = sample_negatives(np.repeat(USERS, 50), 4, SEEN, NUM_ITEMS, np.random.default_rng(0))
    positives = {(u, i) for u, i in zip(USERS, ITEMS, strict=True)}
    assert len(users) == len(USERS) * 50 * 4
    assert not {(u, i) for u, i in zip(users, items, strict=True)} & positives
    # Every unseen item of user 0 shows up: the draw is uniform over the rest of the catalog.
    assert set(items[users == 0]) == {3, 4, 5}


def test_epoch_holds_every_positive_and_its_negatives_padded_to_whole_batches() -> None:
    batches = epoch(seed=1, index=0)
    assert batches.users.shape == batches.items.shape == batches.weights.shape
    assert batches.users.shape[1] == 4
    assert batches.num_samples == len(USERS) * 4
    real = batches.weights.reshape(-1) == 1
    targets = batches.targets.reshape(-1)[real]
    assert targets.sum() == len(USERS)
    pairs = set(zip(batches.users.reshape(-1)[real], batches.items.reshape(-1)[real], strict=True))
    assert {(u, i) for u, i in zip(USERS, ITEMS, strict=True)} <= pairs


def test_negatives_are_redrawn_each_epoch_and_reproducible() -> None:
    first, again, second = epoch(7, 0), epoch(7, 0), epoch(7, 1)
    np.testing.assert_array_equal(first.items, again.items)
    assert not np.array_equal(first.items, second.items)


def test_explicit_feedback_uses_the_rows_alone() -> None:
    ratings = np.array([5, 4, 3, 2, 1, 5], np.float32)
    batches = build_epoch(
        USERS,
        ITEMS,
        ratings,
        np.ones(len(USERS), np.float32),
        num_neg=0,
        positives=SEEN,
        num_items=NUM_ITEMS,
        batch_size=4,
        rng=epoch_rng(0, 0),
    )
    assert batches.num_samples == len(USERS)
    assert sorted(batches.targets.reshape(-1)[batches.weights.reshape(-1) == 1]) == sorted(ratings)


def test_a_user_who_has_seen_everything_gets_no_negatives() -> None:
    users = np.array([0, 0, 1], np.int32)
    items = np.array([0, 1, 0], np.int32)
    seen = UserItemSets.build(users, items, num_users=2)
    batches = build_epoch(
        users,
        items,
        np.ones(3, np.float32),
        np.ones(3, np.float32),
        num_neg=2,
        positives=seen,
        num_items=2,
        batch_size=8,
        rng=epoch_rng(0, 0),
    )
    real = batches.weights.reshape(-1) == 1
    assert batches.num_samples == 3 + 2
    assert set(batches.users.reshape(-1)[real][batches.targets.reshape(-1)[real] == 0]) == {1}


def test_negatives_carry_the_weight_of_their_positive() -> None:
    weights = np.array([1, 2, 3, 4, 5, 6], np.float32)
    batches = build_epoch(
        USERS,
        ITEMS,
        np.ones(6, np.float32),
        weights,
        num_neg=2,
        positives=SEEN,
        num_items=NUM_ITEMS,
        batch_size=5,
        rng=epoch_rng(0, 0),
    )
    flat_weights = batches.weights.reshape(-1)
    assert batches.num_samples == 18
    assert flat_weights.sum() == 3 * weights.sum()
    assert (flat_weights == 0).sum() == batches.weights.size - 18


def test_recent_interactions_weigh_more_and_the_boost_halves() -> None:
    weights = recency_weights(np.array([0, 5, 10, 1000]), boost=4.0, half_life=5.0)
    np.testing.assert_allclose(weights, [5.0, 3.0, 2.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(recency_weights(np.array([0, 3]), boost=0.0, half_life=5.0), [1.0, 1.0])


def test_dense_and_searched_membership_draw_the_same_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    users = np.repeat(USERS, 20)
    dense = sample_negatives(users, 3, SEEN, NUM_ITEMS, np.random.default_rng(5))
    monkeypatch.setattr(sampling, "DENSE_MEMBERSHIP_LIMIT", 0)  # force the binary-search path
    searched = sample_negatives(users, 3, SEEN, NUM_ITEMS, np.random.default_rng(5))
    np.testing.assert_array_equal(dense[1], searched[1])
