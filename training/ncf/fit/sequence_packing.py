"""The sequence model's training windows, packed so that an epoch costs in proportion to real events.

Each user's time-ordered items are cut into windows of at most `width` next-item predictions (the
newest window first, then the ones before it; the oldest starts at the user's first item). A window is
described by where its targets start in the user-sorted rows and how many there are, not by a padded
row: on a sparse catalog (a median of 7 events per user) a padded [windows, 200] array would be 96 %
padding. Windows are then packed end to end into rows of `width` slots (next fit, in a random order
drawn each epoch); `segments` says which window each slot belongs to, so attention never crosses
windows. The rows hold every training event exactly once as a target.

`model_length` picks the width from the data: the longest window a high quantile of the users needs,
capped by the `max_len` setting, so that a catalog of short histories does not train, store and serve
200 slots per user.

All functions here are pure numpy (no TensorFlow): `ncf.fit.sequence_epochs` turns them into steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Widths are rounded up to a multiple of this (tidy shapes; a user one item longer keeps the same width).
WIDTH_MULTIPLE = 8


def model_length(counts: np.ndarray, max_len: int, quantile: float) -> int:
    """The slots the model reads: `quantile` of the users' training lengths, rounded up to a multiple
    of WIDTH_MULTIPLE, at least one and at most `max_len`. `counts`: training items per user."""
    if not len(counts) or quantile >= 1.0:
        needed = int(counts.max()) if len(counts) else max_len
    else:
        needed = int(np.ceil(np.quantile(counts, quantile)))
    rounded = -(-max(needed, 1) // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
    return int(min(max_len, rounded))


@dataclass(frozen=True)
class Windows:
    """Every training window of rows sorted by user, oldest first: its user, first target row, length.

    Window w predicts rows `first[w] .. first[w] + length[w] - 1` from the row before each.
    """

    owners: np.ndarray
    first: np.ndarray
    lengths: np.ndarray

    @property
    def predictions(self) -> int:
        return int(self.lengths.sum())


def cut_windows(users: np.ndarray, num_users: int, width: int) -> Windows:
    """The windows of `width` predictions of each user's rows (`users` sorted, each user's oldest first).

    A user's first item is never a target (nothing precedes it), so a user of n rows makes n - 1
    predictions, in ceil((n - 1) / width) windows, newest first; users with one row make none.
    """
    counts = np.bincount(users, minlength=num_users).astype(np.int64)
    starts = np.cumsum(counts) - counts
    per_user = np.where(counts >= 2, -(-(counts - 1) // width), 0)
    owners = np.repeat(np.arange(num_users), per_user)
    nth = np.arange(len(owners)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    last = starts[owners] + counts[owners] - 1 - width * nth
    first = np.maximum(last - width + 1, starts[owners] + 1)
    return Windows(owners.astype(np.int32), first.astype(np.int64), (last - first + 1).astype(np.int64))


def next_fit(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, offset) of each window packed in the given order: a window starts a new row when it does
    not fit in what is left of the current one (every length is at most `width`)."""
    rows = np.empty(len(lengths), np.int64)
    offsets = np.empty(len(lengths), np.int64)
    row, used = 0, 0
    for index, length in enumerate(lengths.tolist()):
        if used + length > width:
            row, used = row + 1, 0
        rows[index], offsets[index] = row, used
        used += length
    return rows, offsets


@dataclass(frozen=True)
class PackedRows:
    """Windows packed into rows of `width` slots; empty slots hold `pad` and segment -1.

    `segments` numbers the windows of a row (0, 1, ...): a slot attends only to earlier slots of its
    own segment. `users` is each slot's user (0 in empty slots).
    """

    users: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray
    segments: np.ndarray


def pack(windows: Windows, items: np.ndarray, width: int, pad: int, order: np.ndarray) -> PackedRows:
    """Windows in `order` packed into rows of `width` (`items`: the user-sorted rows' item indices)."""
    lengths = windows.lengths[order]
    rows, offsets = next_fit(lengths, width)
    count = int(rows[-1]) + 1 if len(rows) else 0
    starts_in_row = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    segment_of = np.arange(len(rows)) - np.repeat(starts_in_row, np.diff(np.r_[starts_in_row, len(rows)]))
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    slot_row = np.repeat(rows, lengths)
    slot_col = np.repeat(offsets, lengths) + within
    target_rows = np.repeat(windows.first[order], lengths) + within
    shape = (count, width)
    packed = PackedRows(
        users=np.zeros(shape, np.int32),
        inputs=np.full(shape, pad, np.int32),
        targets=np.full(shape, pad, np.int32),
        segments=np.full(shape, -1, np.int32),
    )
    packed.users[slot_row, slot_col] = np.repeat(windows.owners[order], lengths)
    packed.inputs[slot_row, slot_col] = items[target_rows - 1]
    packed.targets[slot_row, slot_col] = items[target_rows]
    packed.segments[slot_row, slot_col] = np.repeat(segment_of, lengths)
    return packed
