"""Measure cold-start recommendation: hide every interaction of some items, then ask how well the
model, knowing those items by their features alone, ranks them for the users who did interact.

The figure is an AUC over pairs of cold items: for each user and each cold item the user interacted
with (a hidden interaction), the share of the cold items the user did not interact with that score
lower (ties count half). 0.5 is chance; 1.0 ranks every hidden interaction above every other cold
item. Comparing cold items only with cold items measures what the features teach, without the
popularity gap between new items and established ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]


def hold_out_items(
    interactions: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(kept interactions, hidden interactions, cold item ids): `fraction` of the distinct items, seeded."""
    items = np.sort(interactions["item_id"].unique())
    count = max(1, round(fraction * len(items)))
    cold = np.sort(np.random.default_rng(seed).choice(items, size=count, replace=False))
    hidden = interactions["item_id"].isin(cold)
    return interactions[~hidden], interactions[hidden], cold


def cold_start_auc(hidden: pd.DataFrame, cold_items: np.ndarray, score: PairScores) -> float:
    """The AUC described above; `score(user_ids, item_ids)` scores aligned raw-id pairs."""
    users = np.sort(hidden["user_id"].unique())
    cold_items = np.asarray(cold_items, dtype=object)
    pair_users = np.repeat(users.astype(object), len(cold_items))
    pair_items = np.tile(cold_items, len(users))
    scores = np.asarray(score(pair_users, pair_items), dtype=np.float64).reshape(len(users), len(cold_items))
    positive = np.zeros(scores.shape, dtype=bool)
    rows = np.searchsorted(users, hidden["user_id"].to_numpy())
    columns = np.searchsorted(np.sort(cold_items), hidden["item_id"].to_numpy())
    positive[rows, np.argsort(cold_items)[columns]] = True
    aucs = []
    for row_scores, row_positive in zip(scores, positive, strict=True):
        negatives = row_scores[~row_positive]
        if not len(negatives):
            continue
        for value in row_scores[row_positive]:
            aucs.append(np.mean((value > negatives) + 0.5 * (value == negatives)))
    return float(np.mean(aucs)) if aucs else float("nan")
