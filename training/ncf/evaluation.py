"""Ranking metrics for leave-one-out evaluation, in two protocols.

- Sampled (He et al. 2017): each held-out positive is ranked among its own sampled
  negatives (99 by default); HR@k and NDCG@k over those candidates.
- Full catalog: the positive is ranked among every item except the user's training items;
  Recall@k and NDCG@k. Sampled metrics are known to be optimistic and can even reorder
  models (Krichene & Rendle 2020), so both are reported.

Ranks are 0-based and pessimistic: a candidate that ties with the positive counts as
ranked above it, so a model that scores everything equally gets no credit. Scoring is
passed in as plain callables over index arrays, which keeps this module free of
TensorFlow and testable with hand-computed cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncf.errors import NcfError
from ncf.vocab import UserItemSets, Vocabulary

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
CatalogScorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class HeldOut:
    """One held-out positive per user, with its candidates; column 0 is the positive."""

    users: np.ndarray
    candidates: np.ndarray
    ratings: np.ndarray | None

    @property
    def positives(self) -> np.ndarray:
        return self.candidates[:, 0]

    def subset(self, rows: np.ndarray) -> HeldOut:
        ratings = None if self.ratings is None else self.ratings[rows]
        return HeldOut(self.users[rows], self.candidates[rows], ratings)


def build_heldout(frame: pd.DataFrame, users: Vocabulary, items: Vocabulary, source: str) -> HeldOut:
    """Group a validation/test channel (user_id, item_id, label[, rating]) into a HeldOut.

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
    return HeldOut(user_index, candidates, ratings)


def pessimistic_rank(positive_scores: np.ndarray, other_scores: np.ndarray) -> np.ndarray:
    """0-based rank of each positive among the other candidates of its row (ties rank above)."""
    return (other_scores >= positive_scores[:, None]).sum(axis=1)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item per row: 1 / log2(rank + 2) inside the cut-off."""
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(np.mean(gains))


def sampled_ranks(heldout: HeldOut, score_pairs: PairScorer) -> np.ndarray:
    """Rank of each positive among its sampled candidates."""
    rows, width = heldout.candidates.shape
    users = np.repeat(heldout.users, width)
    scores = score_pairs(users, heldout.candidates.reshape(-1)).reshape(rows, width)
    return pessimistic_rank(scores[:, 0], scores[:, 1:])


def full_catalog_ranks(
    heldout: HeldOut,
    score_catalog: CatalogScorer,
    train_items: UserItemSets,
    chunk_users: int,
) -> np.ndarray:
    """Rank of each positive among all items the user did not interact with in training."""
    ranks = np.empty(len(heldout.users), dtype=np.int64)
    for start in range(0, len(heldout.users), chunk_users):
        users = heldout.users[start : start + chunk_users]
        scores = np.array(score_catalog(users), dtype=np.float32, copy=True)
        scores[train_items.entries_of(users)] = -np.inf
        positives = heldout.positives[start : start + chunk_users]
        positive_scores = scores[np.arange(len(users)), positives]
        ranks[start : start + len(users)] = (scores >= positive_scores[:, None]).sum(axis=1) - 1
    return ranks


def ranking_metrics(
    prefix: str,
    heldout: HeldOut,
    score_pairs: PairScorer,
    score_catalog: CatalogScorer,
    train_items: UserItemSets,
    *,
    k: int = 10,
    chunk_users: int = 256,
) -> dict[str, float]:
    """HR/NDCG over sampled candidates and Recall/NDCG over the full catalog, named for logs."""
    sampled = sampled_ranks(heldout, score_pairs)
    full = full_catalog_ranks(heldout, score_catalog, train_items, chunk_users)
    return {
        f"{prefix}_hr_at_{k}": hit_rate(sampled, k),
        f"{prefix}_ndcg_at_{k}": ndcg(sampled, k),
        f"{prefix}_recall_at_{k}_full": hit_rate(full, k),
        f"{prefix}_ndcg_at_{k}_full": ndcg(full, k),
    }


def rmse(heldout: HeldOut, score_pairs: PairScorer) -> float:
    """Root mean squared error of predicted ratings on the held-out positives (explicit feedback)."""
    if heldout.ratings is None:
        raise NcfError("explicit feedback needs a 'rating' column in the validation and test channels")
    predictions = score_pairs(heldout.users, heldout.positives)
    return float(np.sqrt(np.mean((predictions - heldout.ratings) ** 2)))
