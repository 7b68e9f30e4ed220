"""The one evaluator: every model and every baseline is scored by `evaluate`, in two protocols.

- Sampled (He et al. 2017): each held-out positive is ranked among its own sampled
  negatives (99 by default); HR@k and NDCG@k over those candidates.
- Full catalog: the positive is ranked among every item except the user's training items;
  Recall@k and NDCG@k. Sampled metrics are known to be optimistic and can even reorder
  models (Krichene & Rendle 2020), so both are reported.

Ranks are 0-based and pessimistic: a candidate that ties with the positive counts as
ranked above it, so a model that scores everything equally gets no credit. A model comes
in as a `Scorer` over index arrays, which keeps this module free of TensorFlow and
testable with hand-computed cases. See the README's "How it trains" for the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ncf.data.heldout import HeldOut
from ncf.data.vocab import UserItemSets
from ncf.errors import NcfError

if TYPE_CHECKING:
    from ncf.train_settings import TrainConfig

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
CatalogScorer = Callable[[np.ndarray], np.ndarray]
Rows = Callable[[np.ndarray], np.ndarray]
SumAcross = Callable[[list[float]], np.ndarray]


class Scorer(Protocol):
    """What `evaluate` needs of a model: scores over user and item index arrays."""

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of aligned (user, item) pairs, shape [n] (predicted ratings for explicit feedback)."""

    def catalog(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for each user, shape [len(users), num_items]."""

    def catalog_chunk_users(self) -> int:
        """Users per `catalog` call that keep its memory reasonable."""


@dataclass(frozen=True)
class EvaluationProtocol:
    """How held-out users are scored: the cut-off, the full-catalog sample, and the rating error.

    Attributes:
        k: cut-off of HR/NDCG/Recall.
        max_full_users: full-catalog metrics use at most this many users, a fixed seeded sample (scoring
            every item for every user of a large dataset takes minutes); 0: every user.
        seed: seed of that sample.
        explicit: also report the RMSE of predicted ratings (explicit feedback).
    """

    k: int = 10
    max_full_users: int = 0
    seed: int = 0
    explicit: bool = False

    @classmethod
    def of(cls, config: TrainConfig) -> EvaluationProtocol:
        """How train.py scores its models (and the benchmarks their baselines), from its settings."""
        return cls(config.top_k, config.eval_max_users, config.seed, explicit=not config.is_implicit)


@dataclass(frozen=True)
class MetricSums:
    """Per-metric sums over some held-out users: what workers add up before dividing."""

    hits: float
    ndcg: float
    hits_full: float
    ndcg_full: float
    squared_error: float
    users: float

    @classmethod
    def of(cls, sampled: np.ndarray, full: np.ndarray, squared_error: float, k: int) -> MetricSums:
        """The sums of sampled and full-catalog ranks (0-based) at cut-off k."""
        return cls(
            hits=hit_rate(sampled, k) * len(sampled),
            ndcg=ndcg(sampled, k) * len(sampled),
            hits_full=hit_rate(full, k) * len(full),
            ndcg_full=ndcg(full, k) * len(full),
            squared_error=squared_error,
            users=len(sampled),
        )

    def added(self, sum_across: SumAcross) -> MetricSums:
        """These sums added up over every worker (`sum_across`, e.g. `Workers.sum`)."""
        return MetricSums(*(float(v) for v in sum_across(list(astuple(self)))))


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


def full_catalog_sample(num_users: int, max_users: int, seed: int) -> np.ndarray:
    """Rows of the held-out users that full-catalog metrics use: all, or a fixed seeded sample."""
    if not max_users or num_users <= max_users:
        return np.arange(num_users)
    return np.sort(np.random.default_rng([seed, 1 << 20]).choice(num_users, size=max_users, replace=False))


def evaluate(
    scorer: Scorer,
    heldout: HeldOut,
    seen: UserItemSets,
    protocol: EvaluationProtocol,
    split: str,
    *,
    mine: Rows | None = None,
    sum_across: SumAcross | None = None,
) -> dict[str, float]:
    """Every metric of one held-out split, named for logs (`{split}_hr_at_10`, ...).

    Args:
        scorer: the model or baseline.
        heldout: the split's users, each with its positive first among its candidates.
        seen: each user's training items, excluded from the full-catalog ranking.
        protocol: cut-off, full-catalog sample, explicit feedback.
        split: "validation" or "test", the metrics' prefix.
        mine: this worker's share of held-out rows (default: all of them).
        sum_across: adds the per-metric sums of every worker (default: one worker).

    Returns:
        HR@k and NDCG@k over the sampled candidates, Recall@k and NDCG@k over the full catalog (names
        ending in `_full`), and with `protocol.explicit` the RMSE of predicted ratings.

    Raises:
        NcfError: the workers' shares do not cover every held-out user (a sharded train channel that
            misses some held-out users' rows).
    """
    mine = mine or (lambda rows: rows)
    everyone = np.arange(len(heldout.users))
    full_rows = full_catalog_sample(len(everyone), protocol.max_full_users, protocol.seed)
    own = heldout.subset(mine(everyone))
    sampled = sampled_ranks(own, scorer.pairs)
    full = full_catalog_ranks(
        heldout.subset(mine(full_rows)), scorer.catalog, seen, scorer.catalog_chunk_users()
    )
    squared_error = (
        rmse(own, scorer.pairs) ** 2 * len(own.users) if protocol.explicit and len(own.users) else 0.0
    )
    sums = MetricSums.of(sampled, full, squared_error, protocol.k)
    if sum_across is not None:
        sums = sums.added(sum_across)
    if sums.users != len(everyone):
        raise NcfError(
            f"{split}: {len(everyone) - int(sums.users):,} held-out users have no training rows on any"
            " worker; a sharded train channel must hold every held-out user's rows (as prepare.py writes it)"
        )
    users, full_users, k = max(len(everyone), 1), max(len(full_rows), 1), protocol.k
    metrics = {
        f"{split}_hr_at_{k}": sums.hits / users,
        f"{split}_ndcg_at_{k}": sums.ndcg / users,
        f"{split}_recall_at_{k}_full": sums.hits_full / full_users,
        f"{split}_ndcg_at_{k}_full": sums.ndcg_full / full_users,
    }
    if protocol.explicit:
        metrics[f"{split}_rmse"] = float(np.sqrt(sums.squared_error / users))
    return metrics


def rmse(heldout: HeldOut, score_pairs: PairScorer) -> float:
    """Root mean squared error of predicted ratings on the held-out positives (explicit feedback)."""
    if heldout.ratings is None:
        raise NcfError("explicit feedback needs a 'rating' column in the validation and test channels")
    predictions = score_pairs(heldout.users, heldout.positives)
    return float(np.sqrt(np.mean((predictions - heldout.ratings) ** 2)))
