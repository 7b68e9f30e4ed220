"""tests/benchmarks/synthetic.py: the one generator of the default data and the benchmarks' data, small."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from benchmarks.synthetic import SyntheticSpec, generate

POPULARITY_ONLY = SyntheticSpec(users=300, items=400, interactions=9_000, min_per_user=5, seed=7)
TASTES = SyntheticSpec(
    users=60,
    items=50,
    seed=3,
    min_per_user=5,
    max_per_user=30,
    activity_mu=2.0,
    genre_weights=(0.5, 0.3, 0.2),
)


def test_popularity_only_gives_the_asked_size_and_distinct_pairs() -> None:
    data = generate(POPULARITY_ONLY)

    assert abs(len(data.users) - 9_000) <= 9_000 // 100_000
    keys = data.users * POPULARITY_ONLY.items + data.items
    assert len(np.unique(keys)) == len(keys)
    per_user = np.bincount(data.users, minlength=POPULARITY_ONLY.users)
    assert per_user.min() >= 5 and per_user.max() <= POPULARITY_ONLY.activity_cap == 400 // 8
    assert data.ratings is None and data.item_genres is None
    assert sorted(data.timestamps - data.timestamps.min()) == list(range(len(keys)))  # a permutation
    # Zipf-like: the most popular tenth of the items takes far more than a tenth of the interactions.
    counts = np.sort(np.bincount(data.items, minlength=POPULARITY_ONLY.items))[::-1]
    assert counts[:40].sum() > 0.2 * counts.sum()


def test_the_same_spec_gives_the_same_data_and_another_seed_other_data() -> None:
    first, again = generate(POPULARITY_ONLY), generate(POPULARITY_ONLY)
    other = generate(dataclasses.replace(POPULARITY_ONLY, seed=8))
    np.testing.assert_array_equal(first.items, again.items)
    np.testing.assert_array_equal(first.timestamps, again.timestamps)
    assert not np.array_equal(first.items[:500], other.items[:500])


def test_tastes_give_ratings_catalog_and_time_ordered_histories() -> None:
    data = generate(TASTES)

    assert set(np.unique(data.ratings)) <= {1, 2, 3, 4, 5}
    assert data.item_genres.shape == (50, 3) and (data.item_genres.sum(axis=1) >= 1).all()
    assert len(data.item_titles) == len(data.item_years) == 50
    assert np.all(np.diff(data.timestamps) >= 0)  # rows sorted by time
    per_user = np.bincount(data.users, minlength=60)
    assert per_user.min() >= 5 and per_user.max() <= 30
    frame = data.frame("u{:03d}", "i{:03d}")
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert not frame.duplicated(["user_id", "item_id"]).any()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"interactions": 100}, "cannot give 300 users 5 each"),
        ({"interactions": 20_000}, "do not fit 300 users of at most 50"),
        ({"max_per_user": 500}, "max_per_user 500 must lie between"),
        ({"genre_weights": (1.0,)}, "leave interactions unset"),
        ({"users": 0}, "at least one user"),
    ],
)
def test_impossible_specs_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(dataclasses.replace(POPULARITY_ONLY, **changes))
