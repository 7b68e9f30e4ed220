"""The three channels turned into index arrays: what the training loop and evaluation consume."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncf.data.channels import ListedVocabulary, read_channel, read_vocabulary
from ncf.data.features import FeatureMatrix, ItemFeatures, encode_features
from ncf.data.heldout import HeldOut, build_heldout
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.errors import NcfError


@dataclass(frozen=True)
class TrainingData:
    """Vocabularies, training interactions as indices, and the held-out sets.

    With `sharded`, the training rows (and so `seen`) are only this worker's users, all of their
    rows (SageMaker's ShardedByS3Key over prepare.py's user-hashed files); vocabularies, item
    counts and held-out sets are still the whole dataset's, identical on every worker.
    """

    users: Vocabulary
    items: Vocabulary
    train_users: np.ndarray
    train_items: np.ndarray
    train_targets: np.ndarray
    train_recency: np.ndarray
    seen: UserItemSets
    item_counts: np.ndarray
    validation: HeldOut
    test: HeldOut
    item_features: FeatureMatrix | None = None
    sharded: bool = False
    train_moments: np.ndarray | None = None  # None: every row its own moment (no timestamps)

    @property
    def moments(self) -> np.ndarray:
        """Each training row's moment, counted from its user's latest (0): one moment, one timestamp.

        Interactions logged in the same second (a user rating a page of movies at once) have no
        order between them; the sequence model trains on them as a set (`ncf.fit.sequence_epochs`).
        """
        return self.train_recency if self.train_moments is None else self.train_moments

    @property
    def popularity(self) -> np.ndarray:
        """Each item's training interactions relative to the most popular item's, in [0, 1]."""
        counts = self.item_counts.astype(np.float32)
        return counts / max(float(counts.max(initial=0.0)), 1.0)

    def has_training_rows(self, users: np.ndarray) -> np.ndarray:
        """Which of `users` have training rows here (with `sharded`: which are this worker's users)."""
        return np.diff(self.seen.offsets)[users] > 0

    @property
    def fingerprint(self) -> str:
        """Identifies the data a checkpoint was trained on: sizes and a hash of the training pairs."""
        digest = pd.util.hash_array(self.seen.keys(len(self.items))).sum() if len(self.train_users) else 0
        sizes = f"users={len(self.users)},items={len(self.items)},train={len(self.train_users)}"
        features = "" if self.item_features is None else f",features={self.item_features.fingerprint()}"
        return f"{sizes},hash={digest}{features}"

    def with_seen_of_everyone(self, gather_rows: Callable[[np.ndarray], np.ndarray]) -> TrainingData:
        """The data with every worker's users' seen items (what the exported model excludes), collected
        by `gather_rows` (e.g. `Workers.gather_rows`) from each worker's [user, item] pairs."""
        pairs = np.stack([self.seen.row_ids(), self.seen.items], axis=1).astype(np.int64)
        everyone = gather_rows(pairs)
        seen = UserItemSets.build(
            everyone[:, 0].astype(np.int32), everyone[:, 1].astype(np.int32), len(self.users)
        )
        return dataclasses.replace(self, seen=seen)

    def with_heldout_positives(self, split: str, implicit: bool) -> TrainingData:
        """The same data with each positive of a held-out split moved into training.

        The refit trains on train + validation ("validation"); the final fit, whose model is the
        one exported, on every interaction (then "test" too). Each moved positive becomes its
        user's most recent training row, so recency weighting sees it as the newest interaction.
        With `sharded`, only this worker's users' positives join its training rows; the item
        counts take every positive, as they are the whole dataset's.

        Args:
            split: "validation" or "test".
            implicit: whether targets are 1 (implicit feedback) or the held-out ratings (explicit).

        Raises:
            NcfError: explicit feedback and a held-out positive without a rating.
        """
        heldout = self.validation if split == "validation" else self.test
        item_counts = self.item_counts + np.bincount(heldout.positives, minlength=len(self.items))
        if self.sharded:
            heldout = heldout.subset(np.flatnonzero(self.has_training_rows(heldout.users)))
        if implicit:
            targets = np.ones(len(heldout.users), np.float32)
        elif heldout.ratings is None or np.isnan(heldout.ratings).any():
            raise NcfError(f"training on {split} positives with explicit feedback needs the rating of each")
        else:
            targets = heldout.ratings
        moved = np.isin(self.train_users, heldout.users)
        recency = self.train_recency + moved
        newest = np.zeros(len(heldout.users), recency.dtype)
        moments = None if self.train_moments is None else np.concatenate([self.train_moments + moved, newest])
        users = np.concatenate([self.train_users, heldout.users])
        items = np.concatenate([self.train_items, heldout.positives])
        return dataclasses.replace(
            self,
            train_users=users,
            train_items=items,
            train_targets=np.concatenate([self.train_targets, targets]),
            train_recency=np.concatenate([recency, newest]),
            train_moments=moments,
            seen=UserItemSets.build(users, items, len(self.users)),
            item_counts=item_counts,
        )


def _training_targets(frame: pd.DataFrame, implicit: bool, source: str) -> np.ndarray:
    if implicit:
        return np.ones(len(frame), dtype=np.float32)
    if "rating" not in frame.columns:
        raise NcfError(
            f"{source}: explicit feedback needs a 'rating' column (prepare.py --feedback explicit)"
        )
    ratings = pd.to_numeric(frame["rating"], errors="coerce")
    if ratings.isna().any():
        row = int(np.flatnonzero(ratings.isna().to_numpy())[0])
        raise NcfError(
            f"{source}: row {row + 2}, column 'rating': not a number: {frame['rating'].iloc[row]!r}"
        )
    return ratings.to_numpy(np.float32)


def recency_ranks(users: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """Each training row's place among its user's rows counted from the most recent (0).

    Time is the `timestamp` column when there is one, with file order breaking ties; without
    it, file order alone (prepare.py writes each user's rows oldest first).
    """
    return _ranks_from_latest(users, _times(frame), distinct_times=False)


def moment_ranks(users: np.ndarray, frame: pd.DataFrame) -> np.ndarray | None:
    """Each row's timestamp among its user's distinct ones, from the latest (0); None without times."""
    times = _times(frame)
    return None if times is None else _ranks_from_latest(users, times, distinct_times=True)


def _times(frame: pd.DataFrame) -> np.ndarray | None:
    if "timestamp" not in frame.columns:
        return None
    return pd.to_numeric(frame["timestamp"]).to_numpy(np.int64)  # read_channel refused missing ones


def _ranks_from_latest(users: np.ndarray, times: np.ndarray | None, distinct_times: bool) -> np.ndarray:
    """Rows (or, with `distinct_times`, timestamps) of each user counted from the latest (0)."""
    order = np.arange(len(users))
    by_time = np.lexsort((order, users) if times is None else (order, times, users))
    sorted_users = users[by_time]
    new_user = np.r_[True, sorted_users[1:] != sorted_users[:-1]]
    if distinct_times:
        sorted_times = times[by_time]
        new_rank = new_user | np.r_[True, sorted_times[1:] != sorted_times[:-1]]
    else:
        new_rank = np.ones(len(users), bool)
    rank = np.cumsum(new_rank)  # global, increasing along each user's time order
    starts = np.flatnonzero(new_user)
    counts = np.diff(np.r_[starts, len(users)])
    from_latest = np.repeat(rank[starts + counts - 1], counts) - rank  # each user's last rank, minus
    ranks = np.empty(len(users), np.int32)
    ranks[by_time] = from_latest
    return ranks


def load_training_data(
    train_dir: str,
    validation_dir: str,
    test_dir: str,
    implicit: bool,
    item_features: ItemFeatures | None = None,
    vocabulary_dir: str | None = None,
    sharded: bool = False,
) -> TrainingData:
    """Read the channels and index them by vocabularies over every id that appears in any of them.

    Validation and test ids are part of the catalog (their items are real items that must
    be rankable); only the training interactions teach the model and define "seen". With
    `item_features`, the items of the features table join the catalog too: those without any
    interaction are cold-start items, represented by their features alone (popularity 0).
    With a vocabulary channel, its ids and item counts are the dataset's (they must cover the
    channels); with `sharded` (this worker's train files only) it is required.
    """
    train = read_channel(train_dir)
    validation = read_channel(validation_dir)
    test = read_channel(test_dir)
    if train.empty:
        raise NcfError(f"{train_dir}: the train channel has no rows")
    if sharded and vocabulary_dir is None:
        raise NcfError("a sharded train channel needs the vocabulary channel (prepare.py writes it)")
    listed = read_vocabulary(vocabulary_dir) if vocabulary_dir is not None else None
    user_columns = [train["user_id"], validation["user_id"], test["user_id"]]
    channel_items = [train["item_id"], validation["item_id"], test["item_id"]]
    if listed is not None:
        user_columns.append(listed.users)
        channel_items.append(listed.items)
    users = Vocabulary.from_values(*user_columns)
    items = Vocabulary.from_values(*channel_items)
    if listed is not None:
        _check_vocabulary_covers(users, items, listed, vocabulary_dir)
    if item_features is not None:
        items = Vocabulary.from_values(pd.Series(items.ids), pd.Series(item_features.item_ids, dtype=object))
    train_users = users.lookup(train["user_id"].to_numpy())
    train_items = items.lookup(train["item_id"].to_numpy())
    if listed is None:
        item_counts = np.bincount(train_items, minlength=len(items))
    else:
        item_counts = np.zeros(len(items), np.int64)
        item_counts[items.lookup(listed.items.to_numpy())] = listed.item_counts
    return TrainingData(
        users=users,
        items=items,
        train_users=train_users,
        train_items=train_items,
        train_targets=_training_targets(train, implicit, train_dir),
        train_recency=recency_ranks(train_users, train),
        train_moments=moment_ranks(train_users, train),
        seen=UserItemSets.build(train_users, train_items, len(users)),
        item_counts=item_counts.astype(np.int64),
        validation=build_heldout(validation, users, items, validation_dir),
        test=build_heldout(test, users, items, test_dir),
        item_features=_align_features(item_features, items, tuple(channel_items)),
        sharded=sharded,
    )


def _check_vocabulary_covers(
    users: Vocabulary,
    items: Vocabulary,
    listed: ListedVocabulary,
    vocabulary_dir: str,
) -> None:
    """The vocabulary channel must list every id of the channels: else it belongs to other data."""
    listed_users, listed_items = listed.users.nunique(), listed.items.nunique()
    if listed_users != len(listed.users) or listed_items != len(listed.items):
        raise NcfError(f"{vocabulary_dir}: an id is listed twice")
    if len(users) != listed_users or len(items) != listed_items:
        raise NcfError(
            f"{vocabulary_dir}: the channels have ids the vocabulary does not list"
            f" ({len(users) - listed_users:,} users, {len(items) - listed_items:,} items):"
            " it was written for other data; prepare again"
        )


def _align_features(
    features: ItemFeatures | None, items: Vocabulary, channel_items: tuple[pd.Series, ...]
) -> FeatureMatrix | None:
    """The features in vocabulary order; the items of the channels have id embeddings, the others not."""
    if features is None:
        return None
    has_id = np.zeros(len(items), dtype=bool)
    for column in channel_items:
        has_id[items.lookup(column.to_numpy())] = True
    return encode_features(features, items.ids, has_id)
