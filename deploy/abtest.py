"""`ab-report`: which endpoint variant's recommendations the users followed, with confidence intervals.

Pure functions: the I/O (capture files and the interactions file, local or S3) is in deploy/abreport_io.py.

- Each captured answer (a user and the items recommended, in order) is paired with the items that user
  interacted with in the `window` after the request. A request is a hit when one of its top `k` items is
  among them; its NDCG@k is the usual binary-relevance DCG over IDCG with min(k, |later items|) ideal
  hits. A request followed by no interaction counts as a miss (0 for both): the variants see the same
  kind of users (the endpoint splits traffic at random), and "was a recommendation followed" is the
  question. Catalog coverage is the share of the catalog (the items of the interactions file) that
  appears in the variant's top-k lists.
- Confidence intervals (95 %) come from a bootstrap over **users**, not a normal approximation over
  requests: one user's requests are not independent (the same tastes, often the same list asked for
  again), so treating them as independent understates the variance; resampling whole users keeps that
  correlation, and works for coverage too, which has no simple variance formula. The percentile
  interval of `resamples` replicates (fixed seed: the same input gives the same report).
- A variant leads on a metric when its estimate is the highest; the report says whether its interval
  overlaps any other variant's. Non-overlapping 95 % intervals are a conservative test of a difference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from deploy.capture import Served

METRICS = ("hit_rate", "ndcg", "coverage")
CONFIDENCE = 0.95
_CHUNK = 64  # bootstrap replicates computed at once (memory: _CHUNK x users)


@dataclass(frozen=True)
class Outcome:
    """One captured answer scored against what its user did next."""

    variant: str
    user_id: str
    hit: float
    ndcg: float
    items: tuple[str, ...]  # the top-k recommended
    followed: bool  # the user interacted with anything in the window


@dataclass(frozen=True)
class Estimate:
    """A metric's value and its 95 % interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class VariantReport:
    """Per variant: its traffic and the three metrics."""

    variant: str
    requests: int
    users: int
    followed: int  # requests whose user interacted with anything in the window (hit or not)
    metrics: dict[str, Estimate]


@dataclass(frozen=True)
class Comparison:
    """Which variant leads on one metric, and whether its interval is clear of every other's."""

    metric: str
    leader: str
    overlap: bool


def later_items(
    history: Mapping[str, Sequence[tuple[int, str]]], user_id: str, at: int, window_seconds: int
) -> set[str]:
    """The items `user_id` interacted with in (at, at + window] (history: (timestamp, item), sorted)."""
    events = history.get(user_id, ())
    start = _first_after(events, at)
    chosen: set[str] = set()
    for timestamp, item in events[start:]:
        if timestamp > at + window_seconds:
            break
        chosen.add(item)
    return chosen


def _first_after(events: Sequence[tuple[int, str]], at: int) -> int:
    """Index of the first event later than `at` (binary search over the sorted timestamps)."""
    low, high = 0, len(events)
    while low < high:
        middle = (low + high) // 2
        if events[middle][0] <= at:
            low = middle + 1
        else:
            high = middle
    return low


def score(recommended: Sequence[str], relevant: set[str], k: int) -> tuple[float, float]:
    """(hit@k, NDCG@k) of one list against the set of items the user went on to interact with."""
    top = recommended[:k]
    gains = [1.0 / math.log2(rank + 2) for rank, item in enumerate(top) if item in relevant]
    if not gains:
        return 0.0, 0.0
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return 1.0, sum(gains) / ideal


def join(
    served: Iterable[Served],
    history: Mapping[str, Sequence[tuple[int, str]]],
    k: int,
    window: timedelta,
) -> list[Outcome]:
    """Score every answer against its user's interactions in the window after the request."""
    window_seconds = int(window.total_seconds())
    outcomes = []
    for answer in served:
        relevant = later_items(history, answer.user_id, int(answer.time.timestamp()), window_seconds)
        hit, ndcg = score(answer.items, relevant, k)
        outcomes.append(Outcome(answer.variant, answer.user_id, hit, ndcg, answer.items[:k], bool(relevant)))
    return outcomes


def report(
    outcomes: Sequence[Outcome], catalog_size: int, *, resamples: int = 1000, seed: int = 0
) -> list[VariantReport]:
    """Per variant (sorted by name): requests, users and the metrics with bootstrap intervals."""
    by_variant: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_variant[outcome.variant].append(outcome)
    rng = np.random.default_rng(seed)
    return [
        _variant_report(name, rows, catalog_size, resamples, rng) for name, rows in sorted(by_variant.items())
    ]


def _variant_report(
    name: str, rows: list[Outcome], catalog_size: int, resamples: int, rng: np.random.Generator
) -> VariantReport:
    users = _UserTotals.of(rows)
    point = users.metrics(np.ones(len(users.ids)), catalog_size)
    replicates = users.bootstrap(catalog_size, resamples, rng)
    tail = (1.0 - CONFIDENCE) / 2 * 100
    metrics = {
        metric: Estimate(
            point[i],
            float(np.percentile(replicates[:, i], tail)),
            float(np.percentile(replicates[:, i], 100 - tail)),
        )
        for i, metric in enumerate(METRICS)
    }
    return VariantReport(name, len(rows), len(users.ids), sum(r.followed for r in rows), metrics)


@dataclass(frozen=True)
class _UserTotals:
    """Per user of one variant: requests, hits and NDCG summed, and the items recommended (as pairs)."""

    ids: list[str]
    requests: np.ndarray
    hits: np.ndarray
    ndcg: np.ndarray
    pair_users: np.ndarray  # (user index, item index) of every distinct recommended pair
    pair_items: np.ndarray
    items: int  # distinct items recommended

    @classmethod
    def of(cls, rows: list[Outcome]) -> _UserTotals:
        index = {user: i for i, user in enumerate(dict.fromkeys(r.user_id for r in rows))}
        requests, hits, ndcg = (np.zeros(len(index)) for _ in range(3))
        pairs: set[tuple[int, str]] = set()
        for r in rows:
            u = index[r.user_id]
            requests[u] += 1
            hits[u] += r.hit
            ndcg[u] += r.ndcg
            pairs.update((u, item) for item in r.items)
        items: dict[str, int] = {}
        pair_users = np.array([u for u, _ in pairs], dtype=np.int64)
        pair_items = np.array([items.setdefault(item, len(items)) for _, item in pairs], dtype=np.int64)
        return cls(list(index), requests, hits, ndcg, pair_users, pair_items, len(items))

    def metrics(self, weights: np.ndarray, catalog_size: int) -> tuple[float, float, float]:
        """(hit rate, NDCG, coverage) with each user counted `weights[u]` times."""
        total = float(weights @ self.requests)
        drawn_pairs = self.pair_items[weights[self.pair_users] > 0]
        covered = np.count_nonzero(np.bincount(drawn_pairs, minlength=self.items))
        return (
            float(weights @ self.hits) / total,
            float(weights @ self.ndcg) / total,
            covered / catalog_size if catalog_size else 0.0,
        )

    def bootstrap(self, catalog_size: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
        """`resamples` x 3 metric replicates, each over as many users drawn with replacement."""
        count = len(self.ids)
        out = np.empty((resamples, len(METRICS)))
        for start in range(0, resamples, _CHUNK):
            stop = min(start + _CHUNK, resamples)
            draws = rng.integers(0, count, size=(stop - start, count))
            for row, drawn in enumerate(draws):
                out[start + row] = self.metrics(np.bincount(drawn, minlength=count), catalog_size)
        return out


def compare(variants: Sequence[VariantReport]) -> list[Comparison]:
    """Per metric: the variant with the highest estimate and whether its interval overlaps another's
    (nothing with fewer than two variants)."""
    if len(variants) < 2:
        return []
    comparisons = []
    for metric in METRICS:
        leader = max(variants, key=lambda v: v.metrics[metric].value)
        best = leader.metrics[metric]
        overlap = any(v.metrics[metric].high >= best.low for v in variants if v.variant != leader.variant)
        comparisons.append(Comparison(metric, leader.variant, overlap))
    return comparisons


def format_lines(variants: Sequence[VariantReport], comparisons: Sequence[Comparison], k: int) -> list[str]:
    """The human-readable report: one block per variant, then the verdict per metric."""
    lines = []
    for v in variants:
        lines.append(
            f"variant {v.variant}: {v.requests} requests, {v.users} users, "
            f"{v.followed} followed by an interaction within the window"
        )
        for metric in METRICS:
            e = v.metrics[metric]
            lines.append(f"  {_label(metric, k):<16} {e.value:.4f}  (95% CI {e.low:.4f} - {e.high:.4f})")
    if not comparisons:
        lines.append("only one variant in the capture: nothing to compare")
    for c in comparisons:
        clear = "intervals overlap: not a clear difference" if c.overlap else "intervals do not overlap"
        lines.append(f"{_label(c.metric, k)}: {c.leader} leads ({clear})")
    return lines


def _label(metric: str, k: int) -> str:
    return f"{metric}@{k}"
