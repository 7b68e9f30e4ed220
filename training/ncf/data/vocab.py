"""Raw string ids <-> dense indices, and the per-user item sets built on them.

Raw ids are opaque strings (MovieLens ids are sparse numbers, others are UUIDs or SKUs),
so every table in the model is indexed by position in a sorted vocabulary instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Vocabulary:
    """A sorted array of distinct raw ids; an id's index is its position."""

    ids: np.ndarray

    @classmethod
    def from_values(cls, *columns: pd.Series) -> Vocabulary:
        values = pd.concat([c.astype(str) for c in columns], ignore_index=True)
        return cls(np.sort(values.unique()).astype(object))

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, raw: pd.Series | np.ndarray) -> np.ndarray:
        """Indices of raw ids as int32; -1 for ids outside the vocabulary."""
        raw = np.asarray(raw, dtype=object)
        positions = np.searchsorted(self.ids, raw)
        positions = np.minimum(positions, len(self.ids) - 1)
        found = self.ids[positions] == raw
        return np.where(found, positions, -1).astype(np.int32)


@dataclass(frozen=True)
class UserItemSets:
    """Each user's items in compressed sparse row form: `items[offsets[u]:offsets[u + 1]]`.

    Used to keep a user's own training items out of negative samples, out of full-catalog
    evaluation rankings and out of served recommendations.
    """

    offsets: np.ndarray
    items: np.ndarray

    @classmethod
    def build(cls, users: np.ndarray, items: np.ndarray, num_users: int) -> UserItemSets:
        order = np.lexsort((items, users))
        sorted_users, sorted_items = users[order], items[order]
        keep = np.ones(len(sorted_users), dtype=bool)
        keep[1:] = (sorted_users[1:] != sorted_users[:-1]) | (sorted_items[1:] != sorted_items[:-1])
        sorted_users, sorted_items = sorted_users[keep], sorted_items[keep]
        counts = np.bincount(sorted_users, minlength=num_users)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(offsets, sorted_items.astype(np.int32))

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    def row_ids(self) -> np.ndarray:
        """The user index of every entry of `items`."""
        return np.repeat(np.arange(self.num_users, dtype=np.int32), np.diff(self.offsets))

    def entries_of(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `users`, item) for every item of every given user, without a Python loop."""
        starts = self.offsets[users]
        counts = self.offsets[np.asarray(users) + 1] - starts
        positions = np.repeat(np.arange(len(starts)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return positions, self.items[np.repeat(starts, counts) + within]

    def keys(self, num_items: int) -> np.ndarray:
        """Sorted int64 keys `user * num_items + item`, for vectorised membership tests."""
        return self.row_ids().astype(np.int64) * num_items + self.items
