"""The users' interactions inside the SavedModel, for interaction filters (`Interactions.event_type`,
`Interactions.age_days`; see `ncf.serving.filters`).

Stored as `ncf.data.interaction_log.InteractionLog` builds them (CSR: row offsets, int32 items, int16
event codes, int32 seconds before the data's last timestamp), plus one empty row for unknown users.
A request gathers its users' rows (`gather`), the filter decides per interaction whether it holds, and
`items_with` turns the interactions that hold into an [users, items] mask: the item matches for that
user when at least one of their interactions with it holds.

Ages are counted from a reference time: the request's `now` (seconds since the epoch), or, when it is
0 or less, the serving clock (`tf.timestamp`), because the stored interactions age as the deployed
model does: a purchase 29 days before training is 31 days old two days after deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ncf.data.interaction_log import SECONDS_PER_DAY, InteractionLog


@dataclass(frozen=True)
class Requesters:
    """The users a recommendation is for: interaction filters read their interactions."""

    known: tf.Tensor  # [B] bool
    index: tf.Tensor  # [B] int32, 0 where unknown
    now: tf.Tensor  # float64 scalar, seconds since the epoch; <= 0: the serving clock


@dataclass(frozen=True)
class Interacted:
    """The interactions of a batch of users, flat: the user's row in the batch, the item, the event
    type's code (-1 without event types) and the age in days (0 without timestamps)."""

    rows: tf.Tensor  # int64 [M]
    items: tf.Tensor  # int64 [M]
    events: tf.Tensor  # int64 [M]
    age_days: tf.Tensor  # float64 [M]
    batch: tf.Tensor  # int64 scalar: B


class InteractionStore(tf.Module):
    """Every user's interactions as variables (see the module docstring)."""

    def __init__(self, log: InteractionLog, num_items: int) -> None:
        super().__init__(name="interactions")
        self.num_users = len(log.offsets) - 1
        self.num_items = num_items
        # One extra empty row at the end: the interactions of an unknown user.
        offsets = np.concatenate([log.offsets, log.offsets[-1:]])
        self.offsets = tf.Variable(offsets, trainable=False, name="offsets")
        self.items = tf.Variable(log.items, trainable=False, name="items")
        self.events = None if log.events is None else tf.Variable(log.events, trainable=False, name="events")
        seconds = log.seconds
        self.seconds = None if seconds is None else tf.Variable(seconds, trainable=False, name="seconds")
        self.reference = tf.Variable(log.reference, dtype=tf.int64, trainable=False, name="reference")

    def gather(self, users: Requesters) -> Interacted:
        """The interactions of `users` (none for unknown users), with their ages at `users.now`."""
        rows = tf.where(users.known, users.index, self.num_users)
        starts = tf.gather(self.offsets, rows)
        limits = tf.gather(self.offsets, rows + 1)
        positions = tf.ragged.range(starts, limits)
        flat = positions.flat_values
        events = tf.fill(tf.shape(flat), tf.constant(-1, tf.int64))
        if self.events is not None:
            events = tf.cast(tf.gather(self.events, flat), tf.int64)
        ages = tf.zeros(tf.shape(flat), tf.float64)
        if self.seconds is not None:
            now = tf.where(users.now > 0, users.now, tf.timestamp())
            when = tf.cast(self.reference, tf.float64) + tf.cast(tf.gather(self.seconds, flat), tf.float64)
            ages = (now - when) / SECONDS_PER_DAY
        return Interacted(
            rows=positions.value_rowids(),
            items=tf.cast(tf.gather(self.items, flat), tf.int64),
            events=events,
            age_days=ages,
            batch=tf.cast(tf.shape(rows)[0], tf.int64),
        )

    def items_with(self, interacted: Interacted, holds: tf.Tensor) -> tf.Tensor:
        """[B, items] bool: whether the user (row) has an interaction with the item for which `holds`."""
        coordinates = tf.boolean_mask(tf.stack([interacted.rows, interacted.items], axis=1), holds)
        counts = tf.scatter_nd(
            coordinates,
            tf.ones(tf.shape(coordinates)[:1], tf.int32),
            tf.stack([interacted.batch, tf.constant(self.num_items, tf.int64)]),
        )
        return counts > 0
