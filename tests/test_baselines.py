"""The quality benchmark's baselines (tests/benchmarks/baselines.py) on tiny data: fast, no TensorFlow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from benchmarks.baselines import (
    IalsGrid,
    IalsParams,
    PopularityModel,
    evaluate,
    fit_ials,
    ials_half_step,
    refit_and_test,
    tune_ials,
)
from ncf.dataset import TrainingData, load_training_data
from ncf.vocab import UserItemSets

SELECTION = "validation_ndcg_at_10"


@pytest.fixture(scope="module")
def tiny_data(tiny_channels: Path) -> TrainingData:
    """The shared tiny channels: users in four taste groups, each interacting only with its group's items."""
    return load_training_data(
        str(tiny_channels / "train"), str(tiny_channels / "validation"), str(tiny_channels / "test"), True
    )


def dense_ials_rows(
    fixed: np.ndarray, interactions: np.ndarray, alpha: float, regularization: float
) -> np.ndarray:
    """Hu et al.'s closed form per row, written with the full confidence matrix (the slow, obvious way)."""
    factors = fixed.shape[1]
    rows = []
    for preferences in interactions:
        confidence = 1.0 + alpha * preferences
        lhs = fixed.T @ (confidence[:, None] * fixed) + regularization * np.eye(factors)
        rows.append(np.linalg.solve(lhs, fixed.T @ (confidence * preferences)))
    return np.array(rows)


def test_half_step_solves_every_row_exactly() -> None:
    rng = np.random.default_rng(0)
    num_users, num_items = 37, 11
    dense = (rng.random((num_users, num_items)) < 0.3).astype(float)
    dense[5] = 0.0  # a row with no interactions gets zero factors
    dense[6] = 1.0  # and one with every item
    users, items = np.nonzero(dense)
    seen = UserItemSets.build(users.astype(np.int32), items.astype(np.int32), num_users)
    fixed = rng.normal(size=(num_items, 4))

    solved = ials_half_step(fixed, seen, alpha=3.0, regularization=0.5)

    np.testing.assert_allclose(solved, dense_ials_rows(fixed, dense, 3.0, 0.5), rtol=1e-4, atol=1e-6)
    assert not solved[5].any()


def test_ials_is_deterministic_and_learns_the_taste_groups(tiny_data: TrainingData) -> None:
    params = IalsParams(factors=8, regularization=1.0, alpha=5.0, iterations=8)
    model = fit_ials(tiny_data.seen, len(tiny_data.items), params, seed=3)
    again = fit_ials(tiny_data.seen, len(tiny_data.items), params, seed=3)
    np.testing.assert_array_equal(model.item_factors, again.item_factors)

    ials = evaluate(model, tiny_data, "validation", k=3)
    popularity = evaluate(PopularityModel.fit(tiny_data), tiny_data, "validation", k=3)
    assert ials["validation_hr_at_3"] >= 0.8
    assert ials["validation_hr_at_3"] > popularity["validation_hr_at_3"] + 0.2


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


def test_tuning_reads_validation_only_and_ranks_the_whole_grid(tiny_data: TrainingData) -> None:
    grid = IalsGrid(factors=(4, 8), regularization=(1.0,), alpha=(2.0, 20.0), iterations=(1, 3))
    blind = dataclasses.replace(tiny_data, test=None)  # any use of the test split would fail

    trials = tune_ials(blind, grid, SELECTION, seed=0)

    assert len(trials) == grid.size == 8
    scores = [t.validation[SELECTION] for t in trials]
    assert scores == sorted(scores, reverse=True)
    assert {(t.params.factors, t.params.alpha, t.params.iterations) for t in trials} == {
        (f, a, i) for f in (4, 8) for a in (2.0, 20.0) for i in (1, 3)
    }
    # A checkpoint of a longer fit equals a fit of that many iterations.
    best = trials[0]
    direct = evaluate(fit_ials(blind.seen, len(blind.items), best.params, seed=0), blind, "validation")
    assert direct == pytest.approx(best.validation)


def test_refit_trains_on_validation_positives_and_reports_test(tiny_data: TrainingData) -> None:
    fitted_on: list[TrainingData] = []

    def fit(data: TrainingData) -> PopularityModel:
        fitted_on.append(data)
        return PopularityModel.fit(data)

    metrics, seconds = refit_and_test(fit, tiny_data)

    (refit_data,) = fitted_on
    assert len(refit_data.train_users) == len(tiny_data.train_users) + len(tiny_data.validation.users)
    user, item = tiny_data.validation.users[0], tiny_data.validation.positives[0]
    assert item in refit_data.seen.items[refit_data.seen.offsets[user] : refit_data.seen.offsets[user + 1]]
    assert set(metrics) == {
        "test_hr_at_10",
        "test_ndcg_at_10",
        "test_recall_at_10_full",
        "test_ndcg_at_10_full",
    }
    assert seconds >= 0
