"""The quality benchmark's baselines (tests/benchmarks/baselines.py) on tiny data: fast, no TensorFlow."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from benchmarks.baselines import (
    Axis,
    Ease,
    FactorModel,
    Grid,
    Ials,
    Params,
    PopularityModel,
    Trial,
    ease_weights,
    evaluate,
    interaction_matrix,
    pairs_from_catalog,
    refit_and_test,
    tune,
)
from ncf.data.training_data import TrainingData, load_training_data
from ncf.fit.pair_sampling import recency_weights

SELECTION = "validation_ndcg_at_10"


@pytest.fixture(scope="module")
def tiny_data(tiny_channels: Path) -> TrainingData:
    """The shared tiny channels: users in four taste groups, each interacting only with its group's items."""
    return load_training_data(
        str(tiny_channels / "train"), str(tiny_channels / "validation"), str(tiny_channels / "test"), True
    )


def constrained_ridge(interactions: np.ndarray, regularization: float) -> np.ndarray:
    """EASE solved the slow, obvious way: per item j, ridge regression of column j on the other columns.

    The constraint diag(B) = 0 makes the problem separate by column: column j of B is the ridge fit of
    X[:, j] from X[:, others], and B[j, j] = 0.
    """
    num_items = interactions.shape[1]
    weights = np.zeros((num_items, num_items))
    for j in range(num_items):
        others = np.flatnonzero(np.arange(num_items) != j)
        x = interactions[:, others]
        lhs = x.T @ x + regularization * np.eye(len(others))
        weights[others, j] = np.linalg.solve(lhs, x.T @ interactions[:, j])
    return weights


def test_ease_closed_form_matches_a_direct_solve() -> None:
    rng = np.random.default_rng(0)
    interactions = (rng.random((30, 9)) < 0.4).astype(float)

    closed = ease_weights(interactions.T @ interactions, regularization=2.5)

    np.testing.assert_allclose(closed, constrained_ridge(interactions, 2.5), rtol=1e-4, atol=1e-5)
    assert not np.diag(closed).any()


@pytest.mark.parametrize(
    "family, params",
    [
        (Ease(), {"regularization": 5.0}),
        (Ials(seed=3), dict(factors=8, regularization=1.0, alpha=5.0, iterations=8, recency_boost=0.0)),
    ],
    ids=["ease", "ials"],
)
def test_baselines_learn_the_taste_groups_that_popularity_misses(
    tiny_data: TrainingData, family: Ease | Ials, params: Params
) -> None:
    model = family.fit(tiny_data, params)

    learned = evaluate(model, tiny_data, "validation", k=3)
    popularity = evaluate(PopularityModel.fit(tiny_data), tiny_data, "validation", k=3)
    assert learned["validation_hr_at_3"] >= 0.8
    assert learned["validation_hr_at_3"] > popularity["validation_hr_at_3"] + 0.3
    # The same scores through either scorer: the evaluator may use pairs or catalog.
    users, items = np.array([0, 5, 5, 11]), np.array([3, 0, 7, 2])
    np.testing.assert_allclose(
        model.pairs(users, items), model.catalog(users)[np.arange(4), items], rtol=1e-5
    )


def test_ials_is_deterministic_and_checkpoints_equal_shorter_fits(tiny_data: TrainingData) -> None:
    family = Ials(seed=3)
    params = dict(factors=8, regularization=1.0, alpha=5.0, iterations=6, recency_boost=8.0)
    model, again = family.fit(tiny_data, params), family.fit(tiny_data, params)
    np.testing.assert_array_equal(model.item_factors, again.item_factors)

    points = [{**params, "iterations": n} for n in (2, 6)]
    trials = family.trials(tiny_data, points, k=10)

    assert [t.params["iterations"] for t in trials] == [2, 6]
    short = family.fit(tiny_data, points[0])
    assert trials[0].validation == pytest.approx(evaluate(short, tiny_data, "validation"))
    assert trials[1].validation == pytest.approx(evaluate(model, tiny_data, "validation"))


def test_ials_confidences_carry_neumfs_recency_weights(tiny_data: TrainingData) -> None:
    family = Ials()
    weighted = family.confidences(tiny_data, recency_boost=8.0)
    expected = recency_weights(tiny_data.train_recency, 8.0, family.recency_half_life)
    np.testing.assert_allclose(weighted[tiny_data.train_users, tiny_data.train_items].A1, expected)
    assert weighted.max() == pytest.approx(9.0)  # each user's latest interaction: 1 + boost
    uniform = family.confidences(tiny_data, recency_boost=0.0)
    assert uniform.nnz == len(tiny_data.train_users) and set(uniform.data) == {1.0}


def test_interaction_matrix_refuses_misaligned_values(tiny_data: TrainingData) -> None:
    with pytest.raises(ValueError, match="values for"):
        interaction_matrix(tiny_data, np.ones(3, np.float32))


def test_pairs_from_catalog_matches_the_dot_products() -> None:
    rng = np.random.default_rng(1)
    model = FactorModel(rng.normal(size=(7, 3)), rng.normal(size=(5, 3)))
    users, items = rng.integers(0, 7, 40), rng.integers(0, 5, 40)
    np.testing.assert_allclose(
        pairs_from_catalog(model.catalog, users, items, chunk_users=2), model.pairs(users, items), rtol=1e-6
    )


def test_popularity_scores_every_user_by_training_counts(tiny_data: TrainingData) -> None:
    model = PopularityModel.fit(tiny_data)
    counts = np.bincount(tiny_data.train_items, minlength=len(tiny_data.items))
    assert np.argmax(model.scores) == np.argmax(counts)
    np.testing.assert_allclose(model.scores, counts / counts.max())
    users = np.array([0, 3])
    catalog = model.catalog(users)
    assert catalog.shape == (2, len(tiny_data.items))
    np.testing.assert_array_equal(catalog[1], model.scores)
    np.testing.assert_array_equal(model.pairs(users, np.array([4, 4])), model.scores[[4, 4]])


@dataclasses.dataclass
class Parabola:
    """A stand-in family whose validation score peaks at `peak` (log scale): tests the grid search alone."""

    peak: dict[str, float]
    name: str = "parabola"
    scored: list[dict] = dataclasses.field(default_factory=list)

    def trials(self, data: TrainingData, points: Sequence[Params], k: int) -> list[Trial]:
        self.scored += [dict(p) for p in points]
        return [Trial(dict(p), {SELECTION: self.score(p)}, 0.0) for p in points]

    def score(self, params: Params) -> float:
        return -sum((np.log2(params[n]) - np.log2(v)) ** 2 for n, v in self.peak.items())


def test_tuning_widens_the_grid_until_the_best_point_is_interior(tiny_data: TrainingData) -> None:
    family = Parabola({"regularization": 32.0, "factors": 4})
    grid = Grid(
        (
            Axis("regularization", (1.0, 2.0, 4.0), step=2),
            Axis("factors", (2, 4, 8), step=2, integer=True),
            Axis("recency_boost", (0.0, 8.0)),
        )
    )

    tuning = tune(family, tiny_data, grid, SELECTION)

    assert tuning.best.params["regularization"] == 32.0 and tuning.best.params["factors"] == 4
    assert tuning.interior and tuning.edges == []
    assert tuning.grids[-1].describe()["regularization"] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert tuning.grids[-1].describe()["factors"] == [2, 4, 8]  # already interior: never widened
    assert tuning.grids[-1].describe()["recency_boost"] == [0.0, 8.0]  # options are never widened
    keys = [tuple(sorted(p.items())) for p in family.scored]
    assert len(keys) == len(set(keys)) == tuning.grids[-1].size == len(tuning.trials)  # each point once
    scores = [t.validation[SELECTION] for t in tuning.trials]
    assert scores == sorted(scores, reverse=True)


def test_tuning_reports_an_edge_it_cannot_widen(tiny_data: TrainingData) -> None:
    family = Parabola({"factors": 1})
    grid = Grid((Axis("factors", (2, 4), step=2, integer=True, minimum=2),))

    tuning = tune(family, tiny_data, grid, SELECTION)

    assert tuning.best.params == {"factors": 2}
    assert not tuning.interior and tuning.edges == ["factors"]
    assert len(tuning.grids) == 1


def test_tuning_stops_after_max_widenings(tiny_data: TrainingData) -> None:
    tuning = tune(
        Parabola({"alpha": 1e6}), tiny_data, Grid((Axis("alpha", (1.0,), step=10),)), SELECTION, 10, 3
    )
    assert tuning.grids[-1].describe()["alpha"] == [1.0, 10.0, 100.0, 1000.0]
    assert tuning.edges == ["alpha"]


def test_tuning_iALS_reads_validation_only(tiny_data: TrainingData) -> None:
    blind = dataclasses.replace(tiny_data, test=None)  # any use of the test split would fail
    grid = Grid(
        (
            Axis("factors", (4, 8)),
            Axis("regularization", (1.0,)),
            Axis("alpha", (2.0, 20.0)),
            Axis("iterations", (1, 3)),
            Axis("recency_boost", (0.0,)),
        )
    )

    tuning = tune(Ials(seed=0), blind, grid, SELECTION)

    assert len(tuning.trials) == grid.size == 8 and tuning.interior
    best = tuning.best
    assert best.validation == pytest.approx(
        evaluate(Ials(seed=0).fit(blind, best.params), blind, "validation")
    )


def test_refit_trains_on_validation_positives_and_reports_test(tiny_data: TrainingData) -> None:
    fitted_on: list[TrainingData] = []

    def fit(data: TrainingData) -> PopularityModel:
        fitted_on.append(data)
        return PopularityModel.fit(data)

    metrics, _ = refit_and_test(fit, tiny_data)

    (refit_data,) = fitted_on
    assert len(refit_data.train_users) == len(tiny_data.train_users) + len(tiny_data.validation.users)
    user, item = tiny_data.validation.users[0], tiny_data.validation.positives[0]
    assert item in refit_data.seen.items[refit_data.seen.offsets[user] : refit_data.seen.offsets[user + 1]]
    # Scored on test with the refit data's seen items excluded, exactly as `evaluate` does.
    assert metrics == evaluate(PopularityModel.fit(refit_data), refit_data, "test")
