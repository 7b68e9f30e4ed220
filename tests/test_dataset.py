"""Turning channels into training arrays: recency order, and the refit's training set."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ncf.data.training_data import TrainingData, load_training_data, moment_ranks, recency_ranks
from ncf.errors import NcfError


def test_recency_ranks_count_from_each_users_latest_interaction() -> None:
    frame = pd.DataFrame({"timestamp": [30, 10, 20, 5, 5, 7]})
    users = np.array([0, 0, 0, 1, 1, 1])
    assert recency_ranks(users, frame).tolist() == [0, 2, 1, 2, 1, 0]  # equal times: later row is newer


def test_without_timestamps_file_order_is_time_order() -> None:
    users = np.array([1, 0, 1, 0, 1])
    assert recency_ranks(users, pd.DataFrame(index=range(5))).tolist() == [2, 1, 1, 0, 0]
    assert moment_ranks(users, pd.DataFrame(index=range(5))) is None  # every row is its own moment


def test_moments_group_a_users_interactions_of_one_timestamp() -> None:
    frame = pd.DataFrame({"timestamp": [30, 10, 30, 5, 5, 7, 10]})
    users = np.array([0, 0, 0, 1, 1, 1, 0])
    assert moment_ranks(users, frame).tolist() == [0, 1, 0, 1, 1, 0, 1]


def test_refit_data_moves_validation_positives_into_training(tiny_channels: Path) -> None:
    data = load_training_data(
        str(tiny_channels / "train"), str(tiny_channels / "validation"), str(tiny_channels / "test"), True
    )
    refit = data.with_heldout_positives("validation", implicit=True)
    added = len(data.validation.users)
    assert len(refit.train_users) == len(data.train_users) + added
    assert refit.train_recency[-added:].tolist() == [0] * added
    assert refit.train_recency[: len(data.train_users)].min() == 1  # every tiny user has a validation item
    assert refit.moments[-added:].tolist() == [0] * added  # a held-out positive: its own newest moment
    assert refit.moments[: len(data.train_users)].tolist() == (data.moments + 1).tolist()
    for user, item in zip(data.validation.users, data.validation.positives, strict=True):
        assert item in refit.seen.items[refit.seen.offsets[user] : refit.seen.offsets[user + 1]]
    assert refit.popularity.max() == 1.0


def load(channels: Path, **options: object) -> TrainingData:
    folders = [str(channels / name) for name in ("train", "validation", "test")]
    return load_training_data(*folders, True, **options)


def test_the_vocabulary_channel_indexes_exactly_as_the_channels_do(tiny_channels: Path) -> None:
    plain = load(tiny_channels)
    listed = load(tiny_channels, vocabulary_dir=str(tiny_channels / "vocabulary"))
    np.testing.assert_array_equal(listed.users.ids, plain.users.ids)
    np.testing.assert_array_equal(listed.items.ids, plain.items.ids)
    np.testing.assert_array_equal(listed.item_counts, plain.item_counts)
    assert listed.fingerprint == plain.fingerprint


def test_a_vocabulary_of_other_data_is_refused(tiny_channels: Path, tmp_path: Path) -> None:
    other = tmp_path / "vocabulary"
    other.mkdir()
    users = pd.read_csv(tiny_channels / "vocabulary" / "users.csv", dtype=str)
    users.iloc[1:].to_csv(other / "users.csv", index=False)  # one user missing
    shutil.copy(tiny_channels / "vocabulary" / "items.csv", other / "items.csv")
    with pytest.raises(NcfError, match=r"ids the vocabulary does not list \(1 users, 0 items\)"):
        load(tiny_channels, vocabulary_dir=str(other))
    with pytest.raises(NcfError, match="a sharded train channel needs the vocabulary channel"):
        load(tiny_channels, sharded=True)


def one_workers_share(channels: Path, tmp_path: Path, keep: set[str]) -> TrainingData:
    """The data as a worker of a sharded job sees it: its users' train rows, everything else whole."""
    own = tmp_path / "train"
    own.mkdir()
    train = pd.read_csv(channels / "train" / "part-00000.csv", dtype=str)
    train[train["user_id"].isin(keep)].to_csv(own / "part-00000.csv", index=False)
    folders = [str(own), str(channels / "validation"), str(channels / "test")]
    return load_training_data(*folders, True, vocabulary_dir=str(channels / "vocabulary"), sharded=True)


def test_a_sharded_worker_refits_on_its_own_users_with_global_popularity(
    tiny_channels: Path, tmp_path: Path
) -> None:
    whole = load(tiny_channels)
    mine = {f"u{k}" for k in range(0, 60, 3)}
    share = one_workers_share(tiny_channels, tmp_path, mine)
    own_users = share.users.lookup(np.array(sorted(mine), dtype=object))
    assert set(np.unique(share.train_users)) == set(own_users)
    np.testing.assert_array_equal(share.popularity, whole.popularity)

    refit, whole_refit = (
        share.with_heldout_positives("validation", True),
        whole.with_heldout_positives("validation", True),
    )
    added = refit.train_users[len(share.train_users) :]
    assert sorted(added) == sorted(own_users)  # only this worker's users' validation positives
    np.testing.assert_array_equal(refit.popularity, whole_refit.popularity)


def test_seen_items_of_every_worker_are_collected(tiny_channels: Path, tmp_path: Path) -> None:
    """With the rows' times (the export's interaction log and recent popularity need every worker's)."""
    whole = load(tiny_channels)
    mine = {f"u{k}" for k in range(0, 60, 2)}
    share = one_workers_share(tiny_channels, tmp_path, mine)
    no_events = np.zeros(len(whole.train_users), np.int64)
    other_rows = np.stack([whole.train_users, whole.train_items, whole.train_times, no_events], axis=1)
    other_rows = other_rows[
        ~np.isin(other_rows[:, 0], share.users.lookup(np.array(sorted(mine), dtype=object)))
    ].astype(np.int64)

    def gather(rows: np.ndarray) -> np.ndarray:  # what Workers.gather_rows returns with one other worker
        return np.concatenate([rows, other_rows])

    everyone = share.with_seen_of_everyone(gather)
    np.testing.assert_array_equal(everyone.seen.offsets, whole.seen.offsets)
    np.testing.assert_array_equal(everyone.seen.items, whole.seen.items)
    log, whole_log = everyone.interaction_log(), whole.interaction_log()
    np.testing.assert_array_equal(log.offsets, whole_log.offsets)
    assert sorted(zip(log.items, log.seconds, strict=True)) == sorted(
        zip(whole_log.items, whole_log.seconds, strict=True)
    )
    np.testing.assert_allclose(everyone.popularity_within(1), whole.popularity_within(1))
