"""Turning channels into training arrays: recency order, and the refit's training set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from ncf.dataset import load_training_data, recency_ranks


def test_recency_ranks_count_from_each_users_latest_interaction() -> None:
    frame = pd.DataFrame({"timestamp": [30, 10, 20, 5, 5, 7]})
    users = np.array([0, 0, 0, 1, 1, 1])
    assert recency_ranks(users, frame).tolist() == [0, 2, 1, 2, 1, 0]  # equal times: later row is newer


def test_without_timestamps_file_order_is_time_order() -> None:
    users = np.array([1, 0, 1, 0, 1])
    assert recency_ranks(users, pd.DataFrame(index=range(5))).tolist() == [2, 1, 1, 0, 0]


def test_refit_data_moves_validation_positives_into_training(tiny_channels: Path) -> None:
    data = load_training_data(
        str(tiny_channels / "train"), str(tiny_channels / "validation"), str(tiny_channels / "test"), True
    )
    refit = data.with_validation_positives(implicit=True)
    added = len(data.validation.users)
    assert len(refit.train_users) == len(data.train_users) + added
    assert refit.train_recency[-added:].tolist() == [0] * added
    assert refit.train_recency[: len(data.train_users)].min() == 1  # every tiny user has a validation item
    for user, item in zip(data.validation.users, data.validation.positives, strict=True):
        assert item in refit.seen.items[refit.seen.offsets[user] : refit.seen.offsets[user + 1]]
    assert refit.popularity.max() == 1.0
