"""Non-neural baselines of the quality benchmark, scored exactly like the NCF models.

- Popularity: every user gets the items ranked by their number of training interactions.
- iALS (Hu, Koren & Volinsky 2008) from the `implicit` library (`implicit.cpu.als`), optionally with
  the recency weighting NeuMF trains with as the confidence of each interaction.
- EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): a closed-form
  item-item model.

Every model has `pairs(users, items)` and `catalog(users)` over index arrays (the scorers of
`ncf.evaluation.protocol`), so one evaluator scores every row of the table. Hyperparameters are chosen on the
validation split only by `tune`, which widens the grid until the best point is inside it; `refit_and_test`
then fits on train + validation, as train.py's refit does, and evaluates test once. The numbers are in
the README's *Results*.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from ncf.data.training_data import TrainingData
from ncf.evaluation import protocol
from ncf.evaluation.protocol import CatalogScorer, EvaluationProtocol, Scorer
from ncf.fit.pair_sampling import recency_weights
from ncf.train_settings import TrainConfig

Params = Mapping[str, Any]
CATALOG_CHUNK_USERS = 256  # users per dense [users, items] score block in the full-catalog metrics


def pairs_from_catalog(
    catalog: CatalogScorer, users: np.ndarray, items: np.ndarray, chunk_users: int = 1024
) -> np.ndarray:
    """Scores of (user, item) pairs read off each distinct user's catalog scores, a chunk of users at a time.

    For models whose natural output is a user's whole catalog (EASE): the evaluator's candidate lists
    repeat each user ~100 times, so one catalog row per user is cheaper than one dot product per pair.
    """
    distinct, inverse = np.unique(users, return_inverse=True)
    scores = np.empty(len(users), np.float32)
    for start in range(0, len(distinct), chunk_users):
        block = np.asarray(catalog(distinct[start : start + chunk_users]))
        inside = (inverse >= start) & (inverse < start + chunk_users)
        scores[inside] = block[inverse[inside] - start, items[inside]]
    return scores


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


@dataclass(frozen=True)
class FactorModel:
    """Scores as dot products of user and item factors (what iALS learns)."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])

    def catalog(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def catalog_chunk_users(self) -> int:
        return CATALOG_CHUNK_USERS


@dataclass(frozen=True)
class EaseModel:
    """EASE: a user's scores are their interaction row times the item-item weights (zero diagonal)."""

    interactions: sp.csr_matrix
    weights: np.ndarray

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return pairs_from_catalog(self.catalog, users, items)

    def catalog(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.interactions[users] @ self.weights)

    def catalog_chunk_users(self) -> int:
        return CATALOG_CHUNK_USERS


def interaction_matrix(data: TrainingData, values: np.ndarray | None = None) -> sp.csr_matrix:
    """The users × items matrix of the training interactions: `values` per row (default 1).

    Raises:
        ValueError: if `values` does not have one entry per training row.
    """
    if values is None:
        values = np.ones(len(data.train_users), np.float32)
    if len(values) != len(data.train_users):
        raise ValueError(f"{len(values)} values for {len(data.train_users)} training rows")
    shape = (len(data.users), len(data.items))
    return sp.csr_matrix((values, (data.train_users, data.train_items)), shape=shape, dtype=np.float32)


def ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """Steck's closed form: B = I - P·diag(1/diag(P)) with P = (XᵀX + λI)⁻¹, so diag(B) = 0.

    Args:
        gram: XᵀX, items × items.
        regularization: λ, the L2 penalty on B.

    Returns:
        B (float32), the minimiser of ||X - XB||² + λ||B||² subject to diag(B) = 0.
    """
    precision = np.linalg.inv(gram + regularization * np.eye(len(gram)))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


# -- hyperparameter grids ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One hyperparameter of a grid: the values tried, and how to go past an edge.

    `step` > 1 makes the axis numeric: `widened` adds value / step below the lowest or value * step
    above the highest (rounded for `integer` axes, never below `minimum`). Without `step` the values
    are options (e.g. with or without recency weighting): no edges, never widened.
    """

    name: str
    values: tuple[Any, ...]
    step: float | None = None
    integer: bool = False
    minimum: float = 0.0

    def on_edge(self, value: Any) -> bool:
        """Whether `value` is the lowest or the highest value of a numeric axis."""
        return self.step is not None and value in (self.values[0], self.values[-1])

    def widened(self, value: Any) -> Axis | None:
        """The axis with one more value beyond `value`'s edge; None when there is none to add."""
        if not self.on_edge(value):
            return None
        assert self.step is not None
        beyond = value * self.step if value == self.values[-1] else value / self.step
        beyond = round(beyond) if self.integer else float(beyond)
        if beyond < self.minimum or beyond in self.values:
            return None
        return replace(self, values=tuple(sorted((*self.values, beyond))))


@dataclass(frozen=True)
class Grid:
    """Every combination of the axes' values."""

    axes: tuple[Axis, ...]

    def points(self) -> Iterator[dict[str, Any]]:
        names = [axis.name for axis in self.axes]
        for values in itertools.product(*(axis.values for axis in self.axes)):
            yield dict(zip(names, values, strict=True))

    @property
    def size(self) -> int:
        return int(np.prod([len(axis.values) for axis in self.axes]))

    def describe(self) -> dict[str, list[Any]]:
        return {axis.name: list(axis.values) for axis in self.axes}


@dataclass(frozen=True)
class Trial:
    """One grid point and its validation metrics; `seconds` is the fit (and evaluation) time it took."""

    params: dict[str, Any]
    validation: dict[str, float]
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {**self.params, **self.validation, "seconds": round(self.seconds, 3)}


def evaluate(scorer: Scorer, data: TrainingData, split: str, k: int = 10) -> dict[str, float]:
    """The metrics of `ncf.evaluation.protocol.evaluate`, the evaluator that scores train.py's models."""
    heldout = data.validation if split == "validation" else data.test
    return protocol.evaluate(scorer, heldout, data.seen, EvaluationProtocol.of(TrainConfig(top_k=k)), split)


class Family(Protocol):
    """A tunable model: fits one point, and scores a batch of points on validation."""

    name: str

    def fit(self, data: TrainingData, params: Params) -> Scorer: ...

    def trials(self, data: TrainingData, points: Sequence[Params], k: int) -> list[Trial]: ...


def fit_each(family: Family, data: TrainingData, points: Sequence[Params], k: int) -> list[Trial]:
    """Trials of `points`, one fit and one validation evaluation each."""
    trials = []
    for params in points:
        started = time.perf_counter()
        metrics = evaluate(family.fit(data, params), data, "validation", k)
        trials.append(Trial(dict(params), metrics, time.perf_counter() - started))
    return trials


@dataclass(frozen=True)
class Tuning:
    """The outcome of `tune`: every trial (best first) and the grids it went through."""

    trials: list[Trial]
    grids: list[Grid]
    edges: list[str] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        return self.trials[0]

    @property
    def interior(self) -> bool:
        """True when no numeric hyperparameter of the best point is at the edge of the final grid."""
        return not self.edges

    def best_where(self, name: str, value: Any) -> Trial:
        """The best trial with hyperparameter `name` set to `value` (e.g. the best without recency)."""
        return next(t for t in self.trials if t.params[name] == value)


def tune(
    family: Family,
    data: TrainingData,
    grid: Grid,
    selection_key: str,
    k: int = 10,
    max_widenings: int = 6,
) -> Tuning:
    """Choose hyperparameters on the validation split only (test is never read).

    Scores every point of `grid`; while the best point lies on the edge of a numeric axis, widens that
    axis one step past it and scores the new points, at most `max_widenings` times.

    Returns:
        The trials best first (by `selection_key`, higher is better; ties keep the order they were
        scored in), every grid used, and the axes whose edge the best point is still on (empty when
        it is interior).
    """
    grids, scored = [grid], {}
    while True:
        todo = [p for p in grid.points() if _key(p) not in scored]
        for trial in family.trials(data, todo, k):
            scored[_key(trial.params)] = trial
        trials = sorted(scored.values(), key=lambda t: -t.validation[selection_key])
        best = trials[0].params
        edges = [axis.name for axis in grid.axes if axis.on_edge(best[axis.name])]
        widened = tuple(axis.widened(best[axis.name]) or axis for axis in grid.axes)
        if not edges or widened == grid.axes or len(grids) > max_widenings:
            return Tuning(trials, grids, edges)
        grid = Grid(widened)
        grids.append(grid)


def _key(params: Params) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def refit_and_test(
    fit: Callable[[TrainingData], Scorer], data: TrainingData, k: int = 10
) -> tuple[dict[str, float], float]:
    """Test metrics of a model fitted on train + validation (as train.py's refit does), and its fit time."""
    refit_data = data.with_heldout_positives("validation", implicit=True)
    started = time.perf_counter()
    model = fit(refit_data)
    seconds = time.perf_counter() - started
    return evaluate(model, refit_data, "test", k), seconds


# -- the tuned families --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ease:
    """EASE over the binary interaction matrix; one hyperparameter, `regularization` (λ)."""

    name: str = "ease"

    def fit(self, data: TrainingData, params: Params) -> EaseModel:
        interactions = interaction_matrix(data)
        gram = (interactions.T @ interactions).toarray().astype(np.float64)
        return EaseModel(interactions, ease_weights(gram, float(params["regularization"])))

    def trials(self, data: TrainingData, points: Sequence[Params], k: int) -> list[Trial]:
        return fit_each(self, data, points, k)


@dataclass(frozen=True)
class Ials:
    """iALS from `implicit`; hyperparameters factors, regularization, alpha, iterations, recency_boost.

    `implicit` takes the confidence of an observed pair as alpha × the matrix value (unobserved pairs
    have confidence 1). The value is 1, or with `recency_boost` > 0 the weight NeuMF gives the
    interaction (`ncf.fit.pair_sampling.recency_weights`, half-life `recency_half_life`).
    """

    seed: int = 42
    recency_half_life: float = TrainConfig().recency_half_life
    name: str = "ials"

    def confidences(self, data: TrainingData, recency_boost: float) -> sp.csr_matrix:
        weights = recency_weights(data.train_recency, recency_boost, self.recency_half_life)
        return interaction_matrix(data, weights)

    def fit(self, data: TrainingData, params: Params) -> FactorModel:
        """iALS factors of `data`'s training interactions after `params['iterations']` rounds."""
        *_, (_, model) = self._rounds(data, params, [params["iterations"]])
        return model

    def trials(self, data: TrainingData, points: Sequence[Params], k: int) -> list[Trial]:
        """One fit per point without `iterations`, evaluated after each iteration count asked for."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for params in points:
            groups[_key({n: v for n, v in params.items() if n != "iterations"})].append(params["iterations"])
        trials = []
        for fixed, counts in groups.items():
            started = time.perf_counter()
            for iterations, model in self._rounds(data, dict(fixed), counts):
                metrics = evaluate(model, data, "validation", k)
                params = {**dict(fixed), "iterations": iterations}
                trials.append(Trial(params, metrics, time.perf_counter() - started))
        return trials

    def _rounds(
        self, data: TrainingData, params: Params, counts: Iterable[int]
    ) -> list[tuple[int, FactorModel]]:
        """Fit for max(`counts`) iterations; the model after each of `counts` iterations."""
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        wanted = set(counts)
        snapshots: list[tuple[int, FactorModel]] = []

        def snapshot(iteration: int, _seconds: float, _loss: float | None) -> None:
            if iteration + 1 in wanted:
                factors = FactorModel(model.user_factors.copy(), model.item_factors.copy())
                snapshots.append((iteration + 1, factors))

        # implicit parallelises over users itself; a multi-threaded BLAS underneath only competes.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=int(params["factors"]),
                regularization=float(params["regularization"]),
                alpha=float(params["alpha"]),
                iterations=max(wanted),
                random_state=self.seed,
            )
            model.fit(self.confidences(data, float(params["recency_boost"])), False, snapshot)
        return snapshots
