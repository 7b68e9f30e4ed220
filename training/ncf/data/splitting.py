"""The NCF leave-one-out split: train rows, plus validation and test lists of one held-out positive and
E sampled negatives per user (He et al., "Neural Collaborative Filtering", WWW 2017).

Steps, in this order, each counted in `Split.counts` (nothing is dropped silently):

1. Duplicate (user, item) pairs: only the latest interaction is kept.
2. Implicit feedback with a rating threshold: interactions rated below it are dropped.
3. Minimum interactions per user and per item, applied again and again until no row is removed.
4. Per user, interactions sorted by time (ties: file order; no timestamps: file order): the latest goes to
   test, the one before to validation, the rest to train. Users with fewer than 3 interactions, or with
   fewer than E items they never interacted with, stay in train only.
5. Negatives: for each held-out row E distinct items, drawn uniformly from the items the user never
   interacted with anywhere in the input (even in rows dropped by steps 2-3), independently for
   validation and test. The catalog is every item left after step 3.

Everything is vectorised numpy over integer codes (ids are factorised once, in order of first appearance),
so 20M interactions split in well under a minute. Deterministic for a given seed. What users see of it:
the README's *Split (the NCF protocol)*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ncf.choices import FEEDBACK_MODES
from ncf.errors import NcfError

MIN_HELD_OUT_INTERACTIONS = 3
DROP_REASONS = ("duplicate_user_item", "below_rating_threshold", "min_interactions")

# Upper bound on the candidate draws (or catalog cells) handled at once by the negative sampler: bounds
# its memory (~40 bytes each) whatever the number of users.
_MAX_DRAWS_PER_CHUNK = 1 << 23
# Sampling by rejection draws about n_items * ln(s / (s - E)) candidates for a user with s unseen items;
# below DENSE_FACTOR * E unseen items, ranking the whole catalog costs less.
_DENSE_FACTOR = 4
_OVERSAMPLING = 1.2
_DRAW_STEP = 16


@dataclass(frozen=True)
class SplitOptions:
    """How to split; the defaults follow the NCF paper (implicit feedback, 99 negatives)."""

    feedback: str = "implicit"
    rating_threshold: float | None = None
    min_user_interactions: int = 1
    min_item_interactions: int = 1
    eval_negatives: int = 99
    seed: int = 42


@dataclass(frozen=True)
class Split:
    """The three channels as DataFrames, plus the counts for meta.json.

    train: user_id, item_id[, rating (explicit only)][, timestamp][, event_type] (the last two when the
    input has them), grouped by user in order of first appearance, time-ordered within a user.
    validation / test: user_id, item_id, label[, rating (explicit only)][, timestamp][, event_type]: per
    held-out user the positive (label 1) then E negatives (label 0, rating NaN); the timestamp and event
    type are the held-out interaction's, on each of its user's rows, so that the model trained on every
    interaction (`final_fit`) knows when and how each of them happened.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    counts: dict[str, Any]


def split_interactions(frame: pd.DataFrame, options: SplitOptions) -> Split:
    """Split a tidy interactions frame (see ncf.data.interactions) following `options`.

    Raises:
        NcfError: impossible options, an empty input, nothing left after filtering, or too few items
            to sample `eval_negatives` negatives.
    """
    _check_options(frame, options)
    rows, user_ids, item_ids = _encode(frame)
    read = {"rows_read": len(frame), "users_read": len(user_ids), "items_read": len(item_ids)}
    rows, seen_keys, dropped = _filter(rows, len(user_ids), len(item_ids), options)
    # Re-code users and items so that the codes of what is left are 0..n-1 (order kept).
    rows, seen_keys, user_ids, item_ids = _recode(rows, seen_keys, user_ids, item_ids, len(item_ids))
    n_users, n_items = len(user_ids), len(item_ids)
    if n_items < options.eval_negatives + 1:
        raise NcfError(
            f"only {n_items} items left, too few to sample {options.eval_negatives} negatives per held-out "
            f"user; lower --eval-negatives (at most {n_items - 1})"
        )
    seen_per_user = np.bincount(seen_keys // n_items, minlength=n_users)
    held = _leave_one_out(rows.user, n_users, seen_per_user, n_items, options.eval_negatives)
    validation_negatives, test_negatives = _held_out_negatives(held.users, seen_keys, n_items, options)
    explicit = options.feedback == "explicit"
    train = _train_frame(rows, held.train_rows, user_ids, item_ids, explicit)
    validation = _held_out_frame(
        rows, held.validation_rows, validation_negatives, user_ids, item_ids, explicit
    )
    test = _held_out_frame(rows, held.test_rows, test_negatives, user_ids, item_ids, explicit)
    counts = {
        "rows_read": read["rows_read"],
        "rows_dropped": dropped,
        "rows_kept": len(rows.user),
        "users_read": read["users_read"],
        "items_read": read["items_read"],
        "users": n_users,
        "items": n_items,
        **_split_counts(rows, held, len(train), len(validation), len(test), n_users, n_items),
    }
    return Split(train=train, validation=validation, test=test, counts=counts)


def _encode(frame: pd.DataFrame) -> tuple[_Rows, pd.Index, pd.Index]:
    """The frame as integer codes (ids factorised in order of first appearance), in time order."""
    user_codes, user_ids = pd.factorize(frame["user_id"])
    item_codes, item_ids = pd.factorize(frame["item_id"])
    rows = _Rows(
        user=user_codes.astype(np.int64),
        item=item_codes.astype(np.int64),
        rating=frame["rating"].to_numpy(np.float64) if "rating" in frame.columns else None,
        timestamp=frame["timestamp"].to_numpy(np.int64) if "timestamp" in frame.columns else None,
        event=frame["event_type"].to_numpy(object) if "event_type" in frame.columns else None,
    )
    if rows.timestamp is not None:
        rows = rows.take(stable_sort(rows.timestamp)[1])
    return rows, user_ids, item_ids


def _filter(
    rows: _Rows, n_users: int, n_items: int, options: SplitOptions
) -> tuple[_Rows, np.ndarray, dict[str, int]]:
    """Steps 1-3: (rows kept, sorted keys of every pair seen before filtering, rows dropped by reason)."""
    dropped = dict.fromkeys(DROP_REASONS, 0)
    latest, seen_keys = _latest_per_pair(rows.user, rows.item, n_items)
    rows = _drop(rows, latest, dropped, "duplicate_user_item")
    if options.rating_threshold is not None:
        rows = _drop(rows, rows.rating >= options.rating_threshold, dropped, "below_rating_threshold")
    keep = _min_interactions_mask(
        rows.user, rows.item, n_users, n_items, options.min_user_interactions, options.min_item_interactions
    )
    rows = _drop(rows, keep, dropped, "min_interactions")
    if len(rows.user) == 0:
        raise NcfError(f"no interactions left after filtering (dropped: {_describe(dropped)})")
    return rows, seen_keys, dropped


def _held_out_negatives(
    users: np.ndarray, seen_keys: np.ndarray, n_items: int, options: SplitOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Step 5: validation and test negatives, from two independent streams of `options.seed`."""
    validation_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(options.seed).spawn(2)
    )
    validation = sample_negatives(users, seen_keys, n_items, options.eval_negatives, validation_rng)
    return validation, sample_negatives(users, seen_keys, n_items, options.eval_negatives, test_rng)


def _split_counts(
    rows: _Rows,
    held: _HeldOut,
    train_rows: int,
    validation_rows: int,
    test_rows: int,
    n_users: int,
    n_items: int,
) -> dict[str, Any]:
    """The per-channel counts of meta.json."""
    return {
        "train_rows": train_rows,
        "train_users": _distinct(rows.user[held.train_rows], n_users),
        "train_items": _distinct(rows.item[held.train_rows], n_items),
        "validation_users": len(held.users),
        "validation_rows": validation_rows,
        "test_users": len(held.users),
        "test_rows": test_rows,
        "train_only_users": held.train_only,
    }


def _check_options(frame: pd.DataFrame, options: SplitOptions) -> None:
    if options.feedback not in FEEDBACK_MODES:
        raise NcfError(f"feedback must be one of {', '.join(FEEDBACK_MODES)}, not {options.feedback!r}")
    has_rating = "rating" in frame.columns
    if options.feedback == "explicit" and not has_rating:
        raise NcfError(
            "explicit feedback needs ratings, and the input has no rating column (see --rating-col)"
        )
    if options.rating_threshold is not None:
        if options.feedback == "explicit":
            raise NcfError("--rating-threshold applies to implicit feedback only")
        if not has_rating:
            raise NcfError("--rating-threshold needs ratings, and the input has no rating column")
    for name, value in (
        ("--min-user-interactions", options.min_user_interactions),
        ("--min-item-interactions", options.min_item_interactions),
    ):
        if value < 1:
            raise NcfError(f"{name} must be at least 1, not {value}")
    if options.eval_negatives < 0:
        raise NcfError(f"--eval-negatives must be 0 or more, not {options.eval_negatives}")
    if len(frame) == 0:
        raise NcfError("the input holds no interactions")


def _distinct(codes: np.ndarray, size: int) -> int:
    return int(np.count_nonzero(np.bincount(codes, minlength=size)))


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in dropped.items())


# ---------------------------------------------------------------------------------------------------------
# Rows and filters


@dataclass(frozen=True)
class _Rows:
    """Interactions as parallel arrays of integer codes (and optional rating / timestamp / event type)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    event: np.ndarray | None = None

    def take(self, index: np.ndarray) -> _Rows:
        """The rows at `index` (positions or a boolean mask), in that order."""
        return _Rows(
            self.user[index],
            self.item[index],
            None if self.rating is None else self.rating[index],
            None if self.timestamp is None else self.timestamp[index],
            None if self.event is None else self.event[index],
        )


def _drop(rows: _Rows, keep: np.ndarray, dropped: dict[str, int], reason: str) -> _Rows:
    dropped[reason] = int(len(keep) - np.count_nonzero(keep))
    return rows.take(keep) if dropped[reason] else rows


def _latest_per_pair(user: np.ndarray, item: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the last row of each (user, item) pair, sorted unique keys user * n_items + item).

    The rows must be in time order, so that the last row of a pair is its latest interaction.
    """
    keys, positions = stable_sort(user * n_items + item)
    last = np.append(keys[1:] != keys[:-1], True)
    latest = np.zeros(len(keys), dtype=bool)
    latest[positions[last]] = True
    return latest, keys[last]


def stable_sort(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted values, their positions in `values`) of an int64 array, equal values in position order.

    Sorting the single key value * len + position with numpy's fast unstable sort takes about half the
    time of a stable argsort; when that key could overflow, the stable argsort it is.
    """
    n = len(values)
    if n == 0:
        return values.copy(), np.arange(0)
    low = int(values.min())
    if int(values.max()) - low <= (np.iinfo(np.int64).max - n) // n:
        coded = np.sort((values - low) * n + np.arange(n))
        return coded // n + low, coded % n
    positions = np.argsort(values, kind="stable")
    return values[positions], positions


def _min_interactions_mask(
    user: np.ndarray, item: np.ndarray, n_users: int, n_items: int, min_user: int, min_item: int
) -> np.ndarray:
    """Rows whose user and item both keep at least the minimum counts, iterated until stable."""
    keep = np.ones(len(user), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    while True:
        user_counts = np.bincount(user[keep], minlength=n_users)
        item_counts = np.bincount(item[keep], minlength=n_items)
        still = keep & (user_counts[user] >= min_user) & (item_counts[item] >= min_item)
        if np.count_nonzero(still) == np.count_nonzero(keep):
            return keep
        keep = still


def _recode(
    rows: _Rows, seen_keys: np.ndarray, user_ids: pd.Index, item_ids: pd.Index, n_items: int
) -> tuple[_Rows, np.ndarray, pd.Index, pd.Index]:
    """Codes 0..n-1 for the users and items left, order kept; seen keys restricted to them and re-keyed.

    The new codes grow with the old ones, so re-keyed seen keys stay sorted.
    """
    user_left = np.zeros(len(user_ids), dtype=bool)
    user_left[rows.user] = True
    item_left = np.zeros(len(item_ids), dtype=bool)
    item_left[rows.item] = True
    if user_left.all() and item_left.all():
        return rows, seen_keys, user_ids, item_ids
    new_user = np.cumsum(user_left) - 1
    new_item = np.cumsum(item_left) - 1
    n_items_left = int(item_left.sum())
    seen_user, seen_item = seen_keys // n_items, seen_keys % n_items
    inside = user_left[seen_user] & item_left[seen_item]
    seen = new_user[seen_user[inside]] * n_items_left + new_item[seen_item[inside]]
    recoded = _Rows(new_user[rows.user], new_item[rows.item], rows.rating, rows.timestamp, rows.event)
    return recoded, seen, user_ids[user_left], item_ids[item_left]


# ---------------------------------------------------------------------------------------------------------
# Leave-one-out


@dataclass(frozen=True)
class _HeldOut:
    users: np.ndarray  # held-out user codes, ascending
    validation_rows: np.ndarray  # row positions, aligned with users
    test_rows: np.ndarray
    train_rows: np.ndarray  # row positions grouped by user, time-ordered within a user
    train_only: dict[str, int]


def _leave_one_out(
    user: np.ndarray, n_users: int, seen_per_user: np.ndarray, n_items: int, eval_negatives: int
) -> _HeldOut:
    """Hold out each eligible user's latest row for test and the one before for validation.

    `user` must be in time order (ties in file order): a stable sort by user keeps that order within a user.
    """
    by_user = stable_sort(user)[1]
    counts = np.bincount(user, minlength=n_users)
    ends = np.cumsum(counts)
    enough_rows = counts >= MIN_HELD_OUT_INTERACTIONS
    enough_unseen = n_items - seen_per_user >= eval_negatives
    users = np.flatnonzero(enough_rows & enough_unseen)
    test_rows = by_user[ends[users] - 1]
    validation_rows = by_user[ends[users] - 2]
    in_train = np.ones(len(user), dtype=bool)
    in_train[test_rows] = False
    in_train[validation_rows] = False
    return _HeldOut(
        users=users,
        validation_rows=validation_rows,
        test_rows=test_rows,
        train_rows=by_user[in_train[by_user]],
        train_only={
            "fewer_than_3_interactions": int(np.count_nonzero(~enough_rows)),
            "too_few_unseen_items": int(np.count_nonzero(enough_rows & ~enough_unseen)),
        },
    )


# ---------------------------------------------------------------------------------------------------------
# Negative sampling


def sample_negatives(
    users: np.ndarray, seen_keys: np.ndarray, n_items: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """For each user, `count` distinct items in [0, n_items) never seen by the user, drawn uniformly.

    `seen_keys` holds the sorted unique keys user * n_items + item of every pair seen; every user must have
    at least `count` unseen items. Returns an int64 array of shape (len(users), count).

    Users who have seen most of the catalog get a random ranking of all their unseen items; the others
    draw candidates with replacement, reject seen items and repeats (keeping draw order, so the first
    `count` left are a uniform sample), and draw again in the rare case too few are left.
    """
    users = np.asarray(users, dtype=np.int64)
    negatives = np.empty((len(users), count), dtype=np.int64)
    if count == 0 or len(users) == 0:
        return negatives
    seen_owner = seen_keys // n_items
    unseen = n_items - (np.searchsorted(seen_owner, users, "right") - np.searchsorted(seen_owner, users))
    if np.any(unseen < count):
        raise ValueError("every user needs at least `count` unseen items")
    dense = unseen < _DENSE_FACTOR * count
    rows = np.flatnonzero(dense)
    negatives[rows] = _rank_catalog(users[rows], seen_keys, n_items, count, rng)
    rows = np.flatnonzero(~dense)
    negatives[rows] = _draw_and_reject(users[rows], unseen[rows], seen_keys, n_items, count, rng)
    return negatives


def _is_seen(keys: np.ndarray, seen_keys: np.ndarray) -> np.ndarray:
    if len(seen_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    at = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
    return seen_keys[at] == keys


def _rank_catalog(
    users: np.ndarray, seen_keys: np.ndarray, n_items: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Random priorities for the whole catalog, seen items last; the `count` smallest per user."""
    out = np.empty((len(users), count), dtype=np.int64)
    step = max(1, _MAX_DRAWS_PER_CHUNK // n_items)
    for start in range(0, len(users), step):
        chunk = users[start : start + step]
        keys = chunk[:, None] * n_items + np.arange(n_items)[None, :]
        priority = rng.random(keys.shape)
        priority[_is_seen(keys, seen_keys)] = 2.0  # after every unseen item (priorities are < 1)
        out[start : start + step] = np.argpartition(priority, count - 1, axis=1)[:, :count]
    return out


def _draw_and_reject(
    users: np.ndarray,
    unseen: np.ndarray,
    seen_keys: np.ndarray,
    n_items: int,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Negatives by rejection, a chunk of users with the same number of draws at a time."""
    out = np.empty((len(users), count), dtype=np.int64)
    # Expected draws for `count` distinct unseen items: n_items * ln(unseen / (unseen - count)).
    draws = np.ceil(-n_items * np.log1p(-count / unseen) * _OVERSAMPLING).astype(np.int64) + 8
    draws = -(-draws // _DRAW_STEP) * _DRAW_STEP  # few distinct widths, so few chunks
    pending = np.arange(len(users))
    while len(pending):
        # Users by width, then by code: within a chunk the keys looked up in seen_keys come sorted.
        pending = pending[np.lexsort((users[pending], draws[pending]))]
        short = []
        for rows in _chunks_of_equal_width(draws[pending]):
            chunk = pending[rows]
            picked, enough = _draw_rows(users[chunk], int(draws[chunk[0]]), seen_keys, n_items, count, rng)
            out[chunk[enough]] = picked[enough]
            short.append(chunk[~enough])
        pending = np.concatenate(short)
        draws[pending] *= 2
    return out


def _chunks_of_equal_width(widths: np.ndarray) -> list[slice]:
    """Slices of sorted `widths` with one width each and at most _MAX_DRAWS_PER_CHUNK draws in all."""
    slices = []
    bounds = np.flatnonzero(np.diff(widths)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(widths)], strict=True):
        step = max(1, _MAX_DRAWS_PER_CHUNK // int(widths[start]))
        slices += [slice(s, min(s + step, stop)) for s in range(start, stop, step)]
    return slices


def _draw_rows(
    users: np.ndarray, width: int, seen_keys: np.ndarray, n_items: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`width` draws per user; (the first `count` distinct unseen ones per user, mask of users who got all).

    The first `count` distinct unseen items in draw order are a uniform sample without replacement. Both
    sorts below are row-wise sorts of a single integer key, which numpy does very fast.
    """
    candidates = rng.integers(0, n_items, size=(len(users), width))
    by_item = np.sort(candidates * width + np.arange(width), axis=1)  # by item, then by draw position
    item, position = by_item // width, by_item % width
    repeat = np.zeros(item.shape, dtype=bool)
    repeat[:, 1:] = item[:, 1:] == item[:, :-1]
    seen = _is_seen(users[:, None] * n_items + item, seen_keys)
    valid = ~(repeat | seen)
    enough = np.count_nonzero(valid, axis=1) >= count
    by_position = np.sort(np.where(valid, position, width) * n_items + item, axis=1)[:, :count]
    return by_position % n_items, enough


# ---------------------------------------------------------------------------------------------------------
# Frames


def _ids(index: pd.Index, codes: np.ndarray) -> pd.api.extensions.ExtensionArray | np.ndarray:
    return index.array.take(codes)


def _train_frame(
    rows: _Rows, positions: np.ndarray, user_ids: pd.Index, item_ids: pd.Index, explicit: bool
) -> pd.DataFrame:
    columns: dict[str, Any] = {
        "user_id": _ids(user_ids, rows.user[positions]),
        "item_id": _ids(item_ids, rows.item[positions]),
    }
    if explicit:
        columns["rating"] = rows.rating[positions]
    return pd.DataFrame({**columns, **_when_and_how(rows, positions, 1)})


def _when_and_how(rows: _Rows, positions: np.ndarray, repeat: int) -> dict[str, np.ndarray]:
    """The timestamp and event type columns (those the input has) of the rows at `positions`, each
    repeated `repeat` times."""
    columns = {"timestamp": rows.timestamp, "event_type": rows.event}
    return {
        name: np.repeat(values[positions], repeat) for name, values in columns.items() if values is not None
    }


def _held_out_frame(
    rows: _Rows,
    positions: np.ndarray,
    negatives: np.ndarray,
    user_ids: pd.Index,
    item_ids: pd.Index,
    explicit: bool,
) -> pd.DataFrame:
    """Per held-out user: the positive (label 1) then its negatives (label 0), rows of a user contiguous."""
    width = 1 + negatives.shape[1]
    items = np.concatenate([rows.item[positions][:, None], negatives], axis=1)
    labels = np.zeros((len(positions), width), dtype=np.int64)
    labels[:, 0] = 1
    columns: dict[str, Any] = {
        "user_id": _ids(user_ids, np.repeat(rows.user[positions], width)),
        "item_id": _ids(item_ids, items.ravel()),
        "label": labels.ravel(),
    }
    if explicit:
        ratings = np.full((len(positions), width), np.nan)
        ratings[:, 0] = rows.rating[positions]
        columns["rating"] = ratings.ravel()
    return pd.DataFrame({**columns, **_when_and_how(rows, positions, width)})
