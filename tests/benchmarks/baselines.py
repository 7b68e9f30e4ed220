"""Non-neural baselines for the quality benchmark: item popularity and iALS, scored like the NCF models.

- Popularity: every user gets the items ranked by their number of training interactions.
- iALS (Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008):
  preference p_ui = 1 for observed pairs and 0 otherwise, confidence c_ui = 1 + alpha for observed
  pairs and 1 otherwise, and L2 regularisation lambda. Each half-step solves every user's (then every
  item's) ridge regression exactly:

      x_u = (Y^T Y + alpha * Y_u^T Y_u + lambda I)^-1 (1 + alpha) Y_u^T 1

  where Y_u holds the factors of the user's items. Y^T Y is shared; the per-user Gram matrices are
  batched: rows are sorted by degree and padded per chunk, so one `np.matmul` and one batched
  `np.linalg.solve` handle a whole chunk (seconds per fit on MovieLens 100K, numpy only).

Both expose the `PairScorer`/`CatalogScorer` callables of `ncf.evaluation`, so their metrics are
computed by the very functions that evaluate the trained models. Tuning (`tune_ials`) sees the
training interactions and the validation split only; `refit_and_test` then fits once more on
train + validation, as train.py's default `--refit` does, and evaluates that model on test.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ncf import evaluation
from ncf.config import TrainConfig
from ncf.dataset import TrainingData
from ncf.vocab import UserItemSets

# Rows solved per batched call. Rows are sorted by degree first, so a chunk pads its rows to nearly
# the same length; small chunks waste little on padding and keep the gathered block small.
_ROWS_PER_CHUNK = 32
CATALOG_CHUNK_USERS = 256  # users per dense [users, items] score block in the full-catalog metrics


@dataclass(frozen=True)
class IalsParams:
    """The hyperparameters of one iALS fit."""

    factors: int
    regularization: float
    alpha: float
    iterations: int


@dataclass(frozen=True)
class IalsGrid:
    """Every combination of these values is tried; `iterations` are checkpoints of one fit each."""

    factors: Sequence[int]
    regularization: Sequence[float]
    alpha: Sequence[float]
    iterations: Sequence[int]

    def fits(self) -> Iterable[tuple[int, float, float]]:
        return itertools.product(self.factors, self.regularization, self.alpha)

    @property
    def size(self) -> int:
        return len(self.factors) * len(self.regularization) * len(self.alpha) * len(self.iterations)


@dataclass(frozen=True)
class FactorModel:
    """Scores as dot products of user and item factors."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])

    def catalog(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def catalog_chunk_users(self) -> int:
        return CATALOG_CHUNK_USERS


@dataclass(frozen=True)
class PopularityModel:
    """The same score for every user: the item's share of the most popular item's interactions."""

    scores: np.ndarray

    @classmethod
    def fit(cls, data: TrainingData) -> PopularityModel:
        return cls(data.popularity)

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.scores[items]

    def catalog(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(users), len(self.scores)))

    def catalog_chunk_users(self) -> int:
        return CATALOG_CHUNK_USERS


Scorer = FactorModel | PopularityModel


def ials_half_step(fixed: np.ndarray, rows: UserItemSets, alpha: float, regularization: float) -> np.ndarray:
    """Exact least-squares factors of every row (user or item) given the other side's `fixed` factors.

    `rows` lists, per row to solve, the indices into `fixed` it interacted with.
    """
    num_rows, factors = rows.num_users, fixed.shape[1]
    shared = fixed.T @ fixed + regularization * np.eye(factors)
    # An extra zero row that padding indices point at: padded entries add nothing to the sums.
    # The Gram matrices are accumulated in float32 (twice as fast); the solve runs in float64.
    padded_fixed = np.vstack([fixed, np.zeros((1, factors))]).astype(np.float32)
    degrees = np.diff(rows.offsets)
    order = np.argsort(degrees, kind="stable")
    solved = np.zeros((num_rows, factors))
    for start in range(0, num_rows, _ROWS_PER_CHUNK):
        chunk = order[start : start + _ROWS_PER_CHUNK]
        counts = degrees[chunk]
        index = np.full((len(chunk), int(counts.max())), len(fixed))
        positions, members = rows.entries_of(chunk)
        within = np.arange(len(positions)) - np.repeat(np.cumsum(counts) - counts, counts)
        index[positions, within] = members
        gathered = padded_fixed[index]
        lhs = shared + alpha * np.matmul(gathered.transpose(0, 2, 1), gathered)
        rhs = (1.0 + alpha) * gathered.sum(axis=1, dtype=np.float64)
        solved[chunk] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
    return solved


def ials_iterations(
    seen: UserItemSets, num_items: int, params: IalsParams, seed: int
) -> Iterator[FactorModel]:
    """The model after each of `params.iterations` rounds of exact user then item solves.

    Item factors start small and random, user factors are solved first. Yielding every round lets
    one fit be evaluated at several iteration counts.
    """
    rng = np.random.default_rng(seed)
    by_item = UserItemSets.build(seen.items, seen.row_ids(), num_items)
    items = rng.normal(0.0, 0.1 / np.sqrt(params.factors), size=(num_items, params.factors))
    for _ in range(params.iterations):
        users = ials_half_step(items, seen, params.alpha, params.regularization)
        items = ials_half_step(users, by_item, params.alpha, params.regularization)
        yield FactorModel(users, items)


def fit_ials(seen: UserItemSets, num_items: int, params: IalsParams, seed: int) -> FactorModel:
    """iALS factors of the interactions in `seen` (users are its rows) over `num_items` items."""
    *_, model = ials_iterations(seen, num_items, params, seed)
    return model


def evaluate(scorer: Scorer, data: TrainingData, split: str, k: int = 10) -> dict[str, float]:
    """The metrics of `ncf.evaluation.evaluate`, the evaluator that scores train.py's models."""
    heldout = data.validation if split == "validation" else data.test
    protocol = evaluation.EvaluationProtocol.of(TrainConfig(top_k=k))
    return evaluation.evaluate(scorer, heldout, data.seen, protocol, split)


@dataclass(frozen=True)
class Trial:
    """One point of the grid and its validation metrics."""

    params: IalsParams
    validation: dict[str, float]
    seconds: float


def tune_ials(data: TrainingData, grid: IalsGrid, selection_key: str, seed: int, k: int = 10) -> list[Trial]:
    """Fit every grid point on the training interactions and score it on validation (never on test).

    Returns the trials best first (by `selection_key`, higher is better; ties keep grid order).
    """
    trials: list[Trial] = []
    for factors, regularization, alpha in grid.fits():
        started = time.perf_counter()
        longest = IalsParams(factors, regularization, alpha, max(grid.iterations))
        for iteration, model in enumerate(ials_iterations(data.seen, len(data.items), longest, seed), 1):
            if iteration in grid.iterations:
                params = IalsParams(factors, regularization, alpha, iteration)
                metrics = evaluate(model, data, "validation", k)
                trials.append(Trial(params, metrics, time.perf_counter() - started))
    return sorted(trials, key=lambda t: -t.validation[selection_key])


def refit_and_test(
    fit: Callable[[TrainingData], Scorer], data: TrainingData, k: int = 10
) -> tuple[dict[str, float], float]:
    """Test metrics of a model fitted on train + validation (as train.py's refit does), and its fit time."""
    refit_data = data.with_heldout_positives("validation", implicit=True)
    started = time.perf_counter()
    model = fit(refit_data)
    seconds = time.perf_counter() - started
    return evaluate(model, refit_data, "test", k), seconds


def trial_summary(trial: Trial) -> dict[str, Any]:
    return {**asdict(trial.params), **trial.validation, "seconds": round(trial.seconds, 3)}
