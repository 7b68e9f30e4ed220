"""Each user's interactions (item, event type, time) in a compact form, and popularity over a recent window.

The exported model stores the interactions of the data it was trained on (every interaction, with the
final fit) so that interaction filters (`Interactions.event_type`, `Interactions.age_days`) can be applied
at serving time. In compressed sparse row form, sized for large data: `offsets` int64 [users + 1], then
per interaction the item (int32), the event type's code (int16, into the sorted `event_types`) and the
time as int32 seconds before `reference` (the data's last timestamp). About 10 bytes an interaction:
200 MB for ML-20M's 20M. Times older than 68 years before the last one are stored as 68 years old.

Pure numpy: built at export, read by `ncf.serving.interaction_store`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncf.errors import NcfError

SECONDS_PER_DAY = 86_400
_OLDEST = np.iinfo(np.int32).min  # the int32 seconds floor (68 years before the reference)


@dataclass(frozen=True)
class InteractionLog:
    """Users' interactions in CSR form: user u's are at positions `offsets[u]:offsets[u + 1]`.

    `events` is None without event types, `seconds` None without timestamps.
    """

    offsets: np.ndarray
    items: np.ndarray
    events: np.ndarray | None
    seconds: np.ndarray | None
    reference: int
    event_types: tuple[str, ...]

    @classmethod
    def build(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray | None,
        events: np.ndarray | None,
        num_users: int,
        event_types: tuple[str, ...],
    ) -> InteractionLog:
        """The log of parallel per-interaction arrays (`times` in seconds, `events` codes; either None)."""
        order = np.argsort(users, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))]).astype(np.int64)
        seconds, reference = None, 0
        if times is not None:
            reference = int(times.max(initial=0))
            seconds = np.maximum(times[order] - reference, _OLDEST).astype(np.int32)
        return cls(
            offsets=offsets,
            items=items[order].astype(np.int32),
            events=None if events is None else events[order].astype(np.int16),
            seconds=seconds,
            reference=reference,
            event_types=tuple(event_types),
        )

    @property
    def has_times(self) -> bool:
        return self.seconds is not None

    @property
    def has_events(self) -> bool:
        return self.events is not None


def recent_popularity(items: np.ndarray, times: np.ndarray | None, num_items: int, days: int) -> np.ndarray:
    """Each item's interactions in the last `days` days of the data (up to its last timestamp), relative
    to the most popular item's, in [0, 1]: the popularity fallback of `popularity_window_days`.

    Raises:
        NcfError: the data has no timestamps (a window needs them).
    """
    if times is None:
        raise NcfError(
            f"popularity_window_days {days}: the training data has no timestamps, so there is no recent"
            " window (prepare.py keeps a timestamp column: --timestamp-col); use 0 (all of the data)"
        )
    recent = times >= int(times.max(initial=0)) - days * SECONDS_PER_DAY
    counts = np.bincount(items[recent], minlength=num_items).astype(np.float32)
    return counts / max(float(counts.max(initial=0.0)), 1.0)
