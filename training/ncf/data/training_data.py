"""The three channels turned into index arrays: what the training loop and evaluation consume."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncf.data.channels import ListedVocabulary, read_channel, read_vocabulary
from ncf.data.features import FeatureMatrix, ItemFeatures, encode_features
from ncf.data.heldout import HeldOut, build_heldout, event_codes
from ncf.data.interaction_log import InteractionLog, recent_popularity
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
    # Each training row's timestamp (seconds) and event type code (into `event_types`): None when the
    # channels lack them. What the export stores for interaction filters and the recent popularity.
    train_times: np.ndarray | None = None
    train_events: np.ndarray | None = None
    event_types: tuple[str, ...] = ()
    # With `sharded`, after `with_seen_of_everyone`: every worker's rows [n, 4] (user, item, time, event).
    everyone: np.ndarray | None = None

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

    def popularity_within(self, days: int) -> np.ndarray:
        """`popularity` over the last `days` days of the rows (0: all of them); NcfError without times."""
        if days == 0:
            return self.popularity
        _, items, times, _ = self._rows()
        return recent_popularity(items, times, len(self.items), days)

    def interaction_log(self) -> InteractionLog:
        """Every user's rows with their times and event types, as the export stores them."""
        users, items, times, events = self._rows()
        return InteractionLog.build(users, items, times, events, len(self.users), self.event_types)

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(users, items, times, events) of the rows: this worker's, or every worker's once gathered."""
        if self.everyone is None:
            return self.train_users, self.train_items, self.train_times, self.train_events
        rows = self.everyone
        times = None if self.train_times is None else rows[:, 2]
        return rows[:, 0], rows[:, 1], times, None if self.train_events is None else rows[:, 3]

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
        """The data with every worker's users' seen items (what the exported model excludes) and rows
        (`everyone`: their times and event types, for the export), collected by `gather_rows` (e.g.
        `Workers.gather_rows`) from each worker's [user, item, time, event] rows."""
        missing = np.zeros(len(self.train_users), np.int64)
        columns = [self.train_users, self.train_items, self.train_times, self.train_events]
        own = np.stack([missing if c is None else c for c in columns], axis=1).astype(np.int64)
        everyone = gather_rows(own)
        seen = UserItemSets.build(
            everyone[:, 0].astype(np.int32), everyone[:, 1].astype(np.int32), len(self.users)
        )
        return dataclasses.replace(self, seen=seen, everyone=everyone)

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
        times = _joined(self.train_times, heldout.times)
        events = _joined(self.train_events, heldout.events)
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
            train_times=times,
            train_events=None if events is None else events.astype(np.int16),
        )


def _joined(rows: np.ndarray | None, heldout: np.ndarray | None) -> np.ndarray | None:
    """Training rows' values followed by the held-out positives'; None unless both have them."""
    return None if rows is None or heldout is None else np.concatenate([rows, heldout])


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
    event_types = _event_types((train, validation, test), train_dir)
    return TrainingData(
        users=users,
        items=items,
        train_users=train_users,
        train_items=train_items,
        train_targets=_training_targets(train, implicit, train_dir),
        train_recency=recency_ranks(train_users, train),
        train_moments=moment_ranks(train_users, train),
        seen=UserItemSets.build(train_users, train_items, len(users)),
        item_counts=_item_counts(train_items, items, listed),
        validation=build_heldout(validation, users, items, validation_dir, event_types),
        test=build_heldout(test, users, items, test_dir, event_types),
        item_features=_align_features(item_features, items, tuple(channel_items)),
        sharded=sharded,
        train_times=_times(train),
        train_events=_events(train, event_types),
        event_types=event_types,
    )


def _item_counts(train_items: np.ndarray, items: Vocabulary, listed: ListedVocabulary | None) -> np.ndarray:
    """Each item's training rows: counted here, or as the vocabulary channel lists them (sharded)."""
    if listed is None:
        return np.bincount(train_items, minlength=len(items)).astype(np.int64)
    item_counts = np.zeros(len(items), np.int64)
    item_counts[items.lookup(listed.items.to_numpy())] = listed.item_counts
    return item_counts


_MAX_EVENT_TYPES = np.iinfo(np.int16).max  # stored as int16 codes


def _event_types(channels: tuple[pd.DataFrame, ...], source: str) -> tuple[str, ...]:
    """The sorted distinct event types of the channels' `event_type` columns (none without them)."""
    listed = [frame["event_type"].astype(str) for frame in channels if "event_type" in frame.columns]
    if not listed:
        return ()
    found = tuple(sorted(pd.concat(listed, ignore_index=True).unique()))
    if len(found) > _MAX_EVENT_TYPES:
        raise NcfError(
            f"{source}: {len(found):,} distinct event types, more than {_MAX_EVENT_TYPES:,}: event types are"
            " kinds of interaction (view, cart, purchase), not ids"
        )
    return found


def _events(frame: pd.DataFrame, event_types: tuple[str, ...]) -> np.ndarray | None:
    if "event_type" not in frame.columns:
        return None
    return event_codes(frame["event_type"].to_numpy(object), event_types)


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
