"""The new-user benchmark's data logic (`bench_newusers.py`): which users a draw holds out, their first
events in time order, the blend settings chosen on validation users, and the spread over draws.

Pure functions over pandas/numpy, no TensorFlow, so the unit tests (tests/test_newuser_draws.py) run fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

TIE_ORDERS = ("ascending", "descending")


@dataclass(frozen=True)
class Draw:
    """One held-out draw: a name, what it holds out (in words) and the rule that picks the users."""

    name: str
    rule: str
    pick: Callable[[pd.Series], np.ndarray]
    """Event counts per eligible user (index: user id) -> the held-out user ids."""


def by_numeric_id(users: pd.Index) -> np.ndarray:
    """User ids in numeric order where every id is a number (MovieLens), else in string order."""
    ids = users.to_numpy().astype(str)
    numeric = pd.to_numeric(pd.Series(ids), errors="coerce")
    return ids[np.argsort(numeric.to_numpy(), kind="stable")] if numeric.notna().all() else np.sort(ids)


def every_tenth(offset: int) -> Callable[[pd.Series], np.ndarray]:
    """Every tenth user in id order, starting at position `offset`."""
    return lambda counts: by_numeric_id(counts.index)[offset::10]


def random_share(share: float, seed: int) -> Callable[[pd.Series], np.ndarray]:
    """A seeded random `share` of the users."""

    def pick(counts: pd.Series) -> np.ndarray:
        users = by_numeric_id(counts.index)
        return np.random.default_rng(seed).choice(users, size=round(len(users) * share), replace=False)

    return pick


def long_histories(share: float, seed: int) -> Callable[[pd.Series], np.ndarray]:
    """A seeded random `share` of all users, drawn among the third with the most events."""

    def pick(counts: pd.Series) -> np.ndarray:
        ordered = counts.loc[by_numeric_id(counts.index)].sort_values(ascending=False, kind="stable")
        longest = ordered.index.to_numpy()[: max(1, len(ordered) // 3)]
        size = min(len(longest), round(len(counts) * share))
        return np.random.default_rng(seed).choice(longest, size=size, replace=False)

    return pick


DRAWS = (
    Draw("tenth-0", "every tenth user in id order, from the first", every_tenth(0)),
    Draw("tenth-5", "every tenth user in id order, from the sixth", every_tenth(5)),
    Draw("random-1", "a random 10% of the users (seed 1)", random_share(0.1, 1)),
    Draw("random-2", "a random 10% of the users (seed 2)", random_share(0.1, 2)),
    Draw(
        "long",
        "10% of the users, drawn among the third with the longest histories (seed 3)",
        long_histories(0.1, 3),
    ),
)


def event_counts(frame: pd.DataFrame, more_than: int) -> pd.Series:
    """Events per user, for the users with more than `more_than` (those a draw may hold out)."""
    counts = frame.groupby("user_id").size()
    return counts[counts > more_than]


def validation_users(counts: pd.Series, test_users: set[str], size: int, seed: int) -> np.ndarray:
    """A seeded random `size` of the users in `counts` outside every test draw (`test_users`)."""
    outside = [u for u in by_numeric_id(counts.index) if u not in test_users]
    return np.random.default_rng(seed).choice(outside, size=min(size, len(outside)), replace=False)


def first_events(frame: pd.DataFrame, users: Sequence[str], ties: str) -> dict[str, list[str]]:
    """{user: items in time order} for `users`; same-second events ordered by item id (numeric where
    every id is a number), `ascending` or `descending` (`TIE_ORDERS`)."""
    if ties not in TIE_ORDERS:
        raise ValueError(f"ties: expected one of {', '.join(TIE_ORDERS)}, got {ties!r}")
    chosen = frame[frame["user_id"].isin(set(users))]
    numeric = pd.to_numeric(chosen["item_id"], errors="coerce")
    key = numeric if numeric.notna().all() else chosen["item_id"]
    ordered = chosen.assign(tie=key).sort_values(
        ["timestamp", "tie"], ascending=[True, ties == "ascending"], kind="stable"
    )
    return {user: group["item_id"].tolist() for user, group in ordered.groupby("user_id", sort=True)}


def choose_blend(scores: Mapping[int, Mapping[float, float]]) -> dict[str, float]:
    """The blend weight and event threshold that maximise the mean validation score over event counts.

    `scores[n][w]`: the score of histories of n events blended with weight w (weight 0: the model
    alone, which must be there). A threshold T blends the histories with fewer than T events, so the
    candidates are 0 (none) and n + 1 for every evaluated n; ties go to the smaller weight, then the
    smaller threshold (the least change to the model). Returns {"weight", "max_events", "score",
    "model_alone"}.
    """
    counts = sorted(scores)
    weights = sorted({w for row in scores.values() for w in row})
    if any(0.0 not in scores[n] for n in counts):
        raise ValueError("choose_blend needs every event count's score with weight 0 (the model alone)")
    alone = float(np.mean([scores[n][0.0] for n in counts]))
    best = {"weight": 0.0, "max_events": 0, "score": alone, "model_alone": alone}
    for weight in weights:
        for threshold in (n + 1 for n in counts):
            blended = [scores[n][weight if n < threshold else 0.0] for n in counts]
            if np.mean(blended) > best["score"] + 1e-12:
                best = {**best, "weight": weight, "max_events": threshold, "score": float(np.mean(blended))}
    return best


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "min": float(array.min()), "max": float(array.max())}


def summarise(evaluations: Sequence[Mapping[int, Mapping[str, Sequence[float]]]]) -> dict:
    """{n: {row: {"hr": spread, "ndcg": spread}}} over evaluations of {n: {row: (HR, NDCG)}}."""
    summary: dict = {}
    for n in evaluations[0]:
        summary[n] = {
            row: {
                metric: spread([evaluation[n][row][index] for evaluation in evaluations])
                for index, metric in enumerate(("hr", "ndcg"))
            }
            for row in evaluations[0][n]
        }
    return summary


def bar_at(
    evaluations: Sequence[Mapping[int, Mapping[str, Sequence[float]]]],
    row: str,
    events: int,
    mean_ratio: float,
    min_ratio: float,
) -> dict:
    """Issue 23's bar on HR@10 with `events` events: the mean over evaluations >= `mean_ratio` x
    popularity's mean and >= item-kNN's mean, and no evaluation below `min_ratio` x its popularity."""
    hr = {
        name: np.array([e[events][name][0] for e in evaluations]) for name in (row, "popularity", "item_knn")
    }
    ratios = hr[row] / np.maximum(hr["popularity"], 1e-9)
    ratio_of_means = float(hr[row].mean() / max(hr["popularity"].mean(), 1e-9))
    return {
        "row": row,
        "events": events,
        "ratio_of_means_to_popularity": ratio_of_means,
        "ratios_to_popularity": ratios.tolist(),
        "lowest_ratio": float(ratios.min()),
        "mean_hr": float(hr[row].mean()),
        "item_knn_mean_hr": float(hr["item_knn"].mean()),
        "passed": bool(
            ratio_of_means >= mean_ratio
            and hr[row].mean() >= hr["item_knn"].mean()
            and ratios.min() >= min_ratio
        ),
    }


ROW_TITLES = {
    "sasrec": "SASRec (export: with the blend)",
    "sasrec_no_blend": "SASRec alone (blend weight 0)",
    "neumf_foldin": "NeuMF fold-in",
    "item_knn": "item-kNN",
    "popularity": "popularity",
}


def markdown_table(summary: Mapping[Any, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> str:
    """The README's table: a row per model, a column per event count, each cell HR@10 mean ± std
    [min–max] / NDCG@10 mean, from `summarise`'s output (event counts as int or JSON string keys)."""
    counts = sorted(summary, key=int)
    header = "| events in `history` | " + " | ".join(str(n) for n in counts) + " |"
    lines = [header, "|---|" + "---|" * len(counts)]
    for row, title in ROW_TITLES.items():
        cells = []
        for n in counts:
            hr, ndcg = summary[n][row]["hr"], summary[n][row]["ndcg"]
            cells.append(
                f"{hr['mean']:.3f} ± {hr['std']:.3f} [{hr['min']:.3f}–{hr['max']:.3f}] / {ndcg['mean']:.3f}"
            )
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
