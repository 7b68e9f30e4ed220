"""The leave-one-out split: time order, train-only users, filters, and the negative sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ncf.data.splitting import SplitOptions, sample_negatives, split_interactions, stable_sort
from ncf.errors import NcfError


def frame(rows: list[tuple], columns: str = "user_id,item_id,rating,timestamp") -> pd.DataFrame:
    names = columns.split(",")
    data = pd.DataFrame(rows, columns=names)
    for name in ("user_id", "item_id"):
        data[name] = data[name].astype(str)
    if "rating" in names:
        data["rating"] = data["rating"].astype("float64")
    if "timestamp" in names:
        data["timestamp"] = data["timestamp"].astype("int64")
    return data


def catalog_rows(n_items: int = 12) -> list[tuple]:
    """A background user who touched every item, so the catalog holds items i0..i<n-1>."""
    return [("bg", f"i{k}", 3.0, 1) for k in range(n_items)]


def held_out(split_frame: pd.DataFrame, user: str) -> pd.DataFrame:
    return split_frame[split_frame["user_id"] == user]


def test_latest_goes_to_test_and_the_one_before_to_validation() -> None:
    rows = [("u", "i3", 4, 30), ("u", "i1", 5, 10), ("u", "i4", 1, 40), ("u", "i2", 2, 20), *catalog_rows()]
    split = split_interactions(frame(rows), SplitOptions(eval_negatives=3))
    assert held_out(split.test, "u")["item_id"].iloc[0] == "i4"
    assert held_out(split.validation, "u")["item_id"].iloc[0] == "i3"
    train = held_out(split.train, "u")
    assert train["item_id"].tolist() == ["i1", "i2"]  # time order within the user
    assert train["timestamp"].tolist() == [10, 20]


def test_timestamp_ties_are_broken_by_file_order() -> None:
    rows = [("u", "i1", 1, 5), ("u", "i2", 1, 9), ("u", "i3", 1, 9), ("u", "i4", 1, 9), *catalog_rows()]
    split = split_interactions(frame(rows), SplitOptions(eval_negatives=3))
    assert held_out(split.test, "u")["item_id"].iloc[0] == "i4"
    assert held_out(split.validation, "u")["item_id"].iloc[0] == "i3"


def test_without_timestamps_the_file_order_decides() -> None:
    rows = [("u", "i9"), ("u", "i1"), ("u", "i5"), *[(r[0], r[1]) for r in catalog_rows()]]
    split = split_interactions(frame(rows, "user_id,item_id"), SplitOptions(eval_negatives=3))
    assert held_out(split.test, "u")["item_id"].iloc[0] == "i5"
    assert held_out(split.validation, "u")["item_id"].iloc[0] == "i1"
    assert list(split.train.columns) == ["user_id", "item_id"]


def test_users_with_fewer_than_three_interactions_stay_in_train() -> None:
    rows = [
        ("short", "i1", 1, 1),
        ("short", "i2", 1, 2),
        ("u", "i1", 1, 1),
        ("u", "i2", 1, 2),
        ("u", "i3", 1, 3),
    ]
    split = split_interactions(frame(rows + catalog_rows()), SplitOptions(eval_negatives=3))
    assert "short" not in set(split.test["user_id"]) | set(split.validation["user_id"])
    assert held_out(split.train, "short")["item_id"].tolist() == ["i1", "i2"]
    # the background user saw every item: no room for negatives
    assert split.counts["train_only_users"] == {"fewer_than_3_interactions": 1, "too_few_unseen_items": 1}
    assert set(split.test["user_id"]) == {"u"}


def make_random_frame(n_users: int = 50, n_items: int = 80, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(3, 30)), replace=False)
        rows += [
            (f"u{user}", f"i{item}", float(rng.integers(1, 6)), int(rng.integers(0, 1000))) for item in items
        ]
    return frame(rows)


def test_negatives_are_distinct_unseen_catalog_items_after_the_positive() -> None:
    data = make_random_frame()
    split = split_interactions(data, SplitOptions(eval_negatives=20))
    seen = data.groupby("user_id")["item_id"].agg(set)
    catalog = set(data["item_id"])
    for channel in (split.validation, split.test):
        assert len(channel) == 21 * split.counts["test_users"]
        for user, group in channel.groupby("user_id", sort=False):
            assert group["label"].tolist() == [1] + [0] * 20
            negatives = group["item_id"].iloc[1:]
            assert negatives.is_unique
            assert not set(negatives) & seen[user]
            assert set(negatives) <= catalog
    # rows of a user are contiguous
    users = split.test["user_id"].to_numpy()
    assert (pd.Series(users).ne(pd.Series(users).shift()).sum()) == split.counts["test_users"]


def test_counts_add_up() -> None:
    split = split_interactions(make_random_frame(), SplitOptions(eval_negatives=5))
    counts = split.counts
    assert counts["rows_read"] == counts["rows_kept"] + sum(counts["rows_dropped"].values())
    assert counts["rows_kept"] == counts["train_rows"] + 2 * counts["test_users"]
    assert counts["validation_rows"] == counts["test_rows"] == 6 * counts["test_users"]


def test_same_seed_same_split_other_seed_other_negatives() -> None:
    data = make_random_frame()
    first = split_interactions(data, SplitOptions(seed=7, eval_negatives=10))
    again = split_interactions(data, SplitOptions(seed=7, eval_negatives=10))
    other = split_interactions(data, SplitOptions(seed=8, eval_negatives=10))
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    pd.testing.assert_frame_equal(first.train, other.train)
    assert not first.test["item_id"].equals(other.test["item_id"])
    # validation and test negatives are drawn independently
    assert not first.validation["item_id"].iloc[1:11].equals(first.test["item_id"].iloc[1:11])


def test_explicit_keeps_ratings_and_implicit_drops_them() -> None:
    rows = [("u", "i1", 5, 1), ("u", "i2", 2, 2), ("u", "i3", 4, 3), *catalog_rows()]
    explicit = split_interactions(frame(rows), SplitOptions(feedback="explicit", eval_negatives=3))
    assert list(explicit.train.columns) == ["user_id", "item_id", "rating", "timestamp"]
    test = held_out(explicit.test, "u")
    assert list(test.columns) == ["user_id", "item_id", "label", "rating", "timestamp"]
    assert test["rating"].iloc[0] == 4.0
    assert (test["timestamp"] == 3).all()  # the held-out interaction's time, on each of its user's rows
    assert test["rating"].iloc[1:].isna().all()
    implicit = split_interactions(frame(rows), SplitOptions(eval_negatives=3))
    assert list(implicit.train.columns) == ["user_id", "item_id", "timestamp"]
    assert list(implicit.test.columns) == ["user_id", "item_id", "label", "timestamp"]


def test_event_types_travel_with_train_and_held_out_rows() -> None:
    rows = [("u", "i1", 5, 1), ("u", "i2", 2, 2), ("u", "i3", 4, 3), *catalog_rows()]
    data = frame(rows)
    data["event_type"] = ["view", "cart", "purchase", *(["view"] * (len(data) - 3))]
    split = split_interactions(data, SplitOptions(eval_negatives=3))
    assert list(split.train.columns) == ["user_id", "item_id", "timestamp", "event_type"]
    assert split.train.loc[split.train["user_id"] == "u", "event_type"].tolist() == ["view"]
    assert set(held_out(split.validation, "u")["event_type"]) == {"cart"}
    assert set(held_out(split.test, "u")["event_type"]) == {"purchase"}


def test_rating_threshold_drops_low_ratings_but_they_stay_seen() -> None:
    rows = [("u", "i1", 5, 1), ("u", "low", 1, 2), ("u", "i2", 4, 3), ("u", "i3", 4, 4)]
    rows += [(f"bg{k}", item, 5.0, 1) for k in range(2) for item in ("low", *(f"i{j}" for j in range(6)))]
    split = split_interactions(frame(rows), SplitOptions(rating_threshold=4, eval_negatives=4))
    assert split.counts["rows_dropped"]["below_rating_threshold"] == 1
    assert "low" not in set(held_out(split.train, "u")["item_id"])
    negatives = set(held_out(split.test, "u")["item_id"].iloc[1:]) | set(
        held_out(split.validation, "u")["item_id"]
    )
    assert "low" not in negatives  # the user did interact with it


def test_duplicate_pairs_keep_the_latest() -> None:
    rows = [("u", "i1", 1, 50), ("u", "i2", 2, 1), ("u", "i1", 5, 10), ("u", "i3", 3, 20), *catalog_rows()]
    split = split_interactions(frame(rows), SplitOptions(feedback="explicit", eval_negatives=3))
    assert split.counts["rows_dropped"]["duplicate_user_item"] == 1
    test = held_out(split.test, "u")
    assert (test["item_id"].iloc[0], test["rating"].iloc[0]) == ("i1", 1.0)  # the row at t=50


def test_min_interaction_filters_iterate_until_stable() -> None:
    # Items "rare" and "x" have 2 interactions each; dropping them leaves user "b" with 1 interaction,
    # below 3: only a second pass drops "b".
    rows = [("a", "rare", 1, 1), ("b", "rare", 1, 1), ("b", "x", 1, 2), ("b", "y", 1, 3)]
    rows += [(u, i, 1, 1) for u in ("c", "d", "e") for i in ("y", "z", "w")]
    rows += [("c", "x", 1, 2), ("a", "y", 1, 2), ("a", "z", 1, 3), ("a", "w", 1, 4)]
    options = SplitOptions(min_user_interactions=3, min_item_interactions=3, eval_negatives=0)
    split = split_interactions(frame(rows), options)
    kept = pd.concat([split.train, split.validation, split.test])
    assert set(kept["item_id"]) == {"y", "z", "w"}
    assert set(kept["user_id"]) == {"a", "c", "d", "e"}
    assert split.counts["rows_dropped"]["min_interactions"] == 5
    assert split.counts["users"] == 4
    assert split.counts["items"] == 3


def test_users_who_saw_almost_everything_stay_in_train() -> None:
    rows = [("greedy", f"i{k}", 1, k) for k in range(10)] + [
        ("u", "i0", 1, 1),
        ("u", "i1", 1, 2),
        ("u", "i2", 1, 3),
    ]
    split = split_interactions(frame(rows), SplitOptions(eval_negatives=5))
    assert split.counts["train_only_users"]["too_few_unseen_items"] == 1
    assert set(split.test["user_id"]) == {"u"}


def test_catalog_too_small_for_the_negatives() -> None:
    rows = [("u", "a", 1, 1), ("u", "b", 1, 2), ("u", "c", 1, 3)]
    with pytest.raises(NcfError, match=r"only 3 items left.*lower --eval-negatives \(at most 2\)"):
        split_interactions(frame(rows), SplitOptions())


@pytest.mark.parametrize(
    ("columns", "options", "message"),
    [
        ("user_id,item_id", SplitOptions(feedback="explicit"), "no rating column"),
        (
            "user_id,item_id,rating",
            SplitOptions(feedback="explicit", rating_threshold=3),
            "implicit feedback only",
        ),
        ("user_id,item_id", SplitOptions(rating_threshold=3), "needs ratings"),
        (
            "user_id,item_id",
            SplitOptions(min_user_interactions=0),
            "--min-user-interactions must be at least 1",
        ),
        ("user_id,item_id", SplitOptions(eval_negatives=-1), "--eval-negatives must be 0 or more"),
    ],
)
def test_option_errors(columns: str, options: SplitOptions, message: str) -> None:
    rows = [("u", "a", 1.0)[: len(columns.split(","))]]
    with pytest.raises(NcfError, match=message):
        split_interactions(frame(rows, columns), options)


def test_everything_filtered_out_is_an_error() -> None:
    with pytest.raises(NcfError, match="no interactions left after filtering"):
        split_interactions(frame([("u", "a", 1, 1)]), SplitOptions(min_user_interactions=2))


def sampler_input(n_users: int, n_items: int, seen_items: list[int]) -> np.ndarray:
    return np.sort((np.arange(n_users)[:, None] * n_items + np.array(seen_items)[None, :]).ravel())


@pytest.mark.parametrize("count", [3, 10], ids=["rejection", "catalog-ranking"])
def test_sampler_is_uniform_over_unseen_items(count: int) -> None:
    n_users, n_items, seen = 3000, 30, [0, 1, 2, 3, 4]
    negatives = sample_negatives(
        np.arange(n_users), sampler_input(n_users, n_items, seen), n_items, count, np.random.default_rng(0)
    )
    assert negatives.shape == (n_users, count)
    assert all(len(set(row)) == count for row in negatives.tolist())
    frequency = np.bincount(negatives.ravel(), minlength=n_items)
    assert frequency[seen].sum() == 0
    expected = n_users * count / (n_items - len(seen))
    assert np.all(np.abs(frequency[len(seen) :] - expected) < 0.15 * expected)


def test_sampler_with_a_large_catalog_and_a_heavy_user() -> None:
    n_items = 5000
    heavy = list(range(0, n_items - 150))  # 150 unseen items: the catalog-ranking path
    seen_keys = np.sort(np.concatenate([sampler_input(1, n_items, heavy), 1 * n_items + np.arange(10)]))
    negatives = sample_negatives(np.array([0, 1]), seen_keys, n_items, 99, np.random.default_rng(3))
    assert set(negatives[0]) <= set(range(n_items - 150, n_items))
    assert len(set(negatives[0])) == len(set(negatives[1])) == 99
    assert min(negatives[1]) >= 10


def test_stable_sort_matches_a_stable_argsort_and_survives_huge_values() -> None:
    rng = np.random.default_rng(0)
    for values in (rng.integers(0, 50, 1000), rng.integers(-(2**62), 2**62, 1000)):
        values[::7] = values[0]  # ties
        sorted_values, positions = stable_sort(values)
        expected = np.argsort(values, kind="stable")
        np.testing.assert_array_equal(positions, expected)
        np.testing.assert_array_equal(sorted_values, values[expected])
