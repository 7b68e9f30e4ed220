"""The validation and test channels as index arrays: one held-out positive per user and its candidates.

Built by `ncf.data.training_data` from the channels prepare.py writes; scored by `ncf.evaluation.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncf.data.vocab import Vocabulary
from ncf.errors import NcfError


@dataclass(frozen=True)
class HeldOut:
    """One held-out positive per user, with its candidates; column 0 is the positive.

    `times` (seconds) and `events` (codes into the data's event types) are the positives' when the
    channel has them (the final fit's exported model stores them for interaction filters)."""

    users: np.ndarray
    candidates: np.ndarray
    ratings: np.ndarray | None
    times: np.ndarray | None = None
    events: np.ndarray | None = None

    @property
    def positives(self) -> np.ndarray:
        return self.candidates[:, 0]

    def subset(self, rows: np.ndarray) -> HeldOut:
        def part(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[rows]

        return HeldOut(
            self.users[rows], self.candidates[rows], part(self.ratings), part(self.times), part(self.events)
        )


def build_heldout(
    frame: pd.DataFrame, users: Vocabulary, items: Vocabulary, source: str, event_types: tuple[str, ...] = ()
) -> HeldOut:
    """Group a validation/test channel (user_id, item_id, label[, rating][, timestamp][, event_type]) into
    a HeldOut; event types become their positions in `event_types` (sorted).

    Every user must have exactly one positive and the same number of candidates; anything
    else means the file was not written by `prepare.py` and is refused.
    """
    if frame.empty:
        raise NcfError(f"{source}: no rows; run prepare.py to create the validation and test channels")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if labels.isna().any() or not labels.isin([0, 1]).all():
        row = int(np.flatnonzero(labels.isna().to_numpy() | ~labels.isin([0, 1]).to_numpy())[0])
        raise NcfError(
            f"{source}: row {row + 2}, column 'label': expected 0 or 1, got {frame['label'].iloc[row]!r}"
        )
    order = np.lexsort((-labels.to_numpy(), frame["user_id"].to_numpy().astype(str)))
    frame = frame.iloc[order]
    group_sizes = frame.groupby("user_id", sort=False).size()
    positives_per_user = labels.iloc[order].groupby(frame["user_id"].to_numpy(), sort=False).sum()
    if (positives_per_user != 1).any():
        bad = positives_per_user[positives_per_user != 1].index[0]
        raise NcfError(
            f"{source}: user {bad!r} has {int(positives_per_user[bad])} positives; expected exactly 1"
        )
    if group_sizes.nunique() != 1:
        raise NcfError(
            f"{source}: users have between {group_sizes.min()} and {group_sizes.max()} candidates;"
            " expected 1 positive + the same number of negatives for every user"
        )
    width = int(group_sizes.iloc[0])
    user_index = users.lookup(frame["user_id"].to_numpy()[::width])
    candidates = items.lookup(frame["item_id"].to_numpy()).reshape(-1, width)
    ratings = None
    if "rating" in frame.columns:
        ratings = pd.to_numeric(frame["rating"], errors="coerce").to_numpy(np.float32)[::width]
    times = events = None
    if "timestamp" in frame.columns:
        times = pd.to_numeric(frame["timestamp"]).to_numpy(np.int64)[::width]
    if "event_type" in frame.columns:
        events = event_codes(frame["event_type"].to_numpy(object)[::width], event_types)
    return HeldOut(user_index, candidates, ratings, times, events)


def event_codes(values: np.ndarray, event_types: tuple[str, ...]) -> np.ndarray:
    """int16 positions of event type strings in the sorted `event_types` (which must hold them all)."""
    return np.searchsorted(np.asarray(event_types, dtype=object), values.astype(str)).astype(np.int16)
