"""Ranking metrics against hand-computed cases, for both evaluation protocols."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ncf.errors import NcfError
from ncf.evaluation import (
    HeldOut,
    build_heldout,
    full_catalog_ranks,
    hit_rate,
    ndcg,
    pessimistic_rank,
    ranking_metrics,
    sampled_ranks,
)
from ncf.vocab import UserItemSets, Vocabulary


def test_ranks_count_ties_against_the_positive() -> None:
    ranks = pessimistic_rank(np.array([0.5, 0.9, 0.1]), np.array([[0.1, 0.7], [0.2, 0.3], [0.1, 0.1]]))
    assert ranks.tolist() == [1, 0, 2]


def test_hit_rate_and_ndcg_by_hand() -> None:
    ranks = np.array([0, 1, 9, 10, 50])
    assert hit_rate(ranks, 10) == pytest.approx(3 / 5)
    expected = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(11)) / 5
    assert ndcg(ranks, 10) == pytest.approx(expected)
    assert hit_rate(np.array([], int), 10) == 0.0


def test_sampled_ranks_use_each_users_own_candidates() -> None:
    heldout = HeldOut(np.array([0, 1]), np.array([[5, 1, 2], [6, 3, 4]]), None)
    scores = {5: 0.2, 1: 0.9, 2: 0.1, 6: 0.8, 3: 0.1, 4: 0.2}
    ranks = sampled_ranks(heldout, lambda users, items: np.array([scores[i] for i in items]))
    assert ranks.tolist() == [1, 0]


def test_full_catalog_rank_ignores_the_users_training_items() -> None:
    heldout = HeldOut(np.array([0]), np.array([[2, 0]]), None)
    seen = UserItemSets.build(np.array([0, 0]), np.array([0, 1]), num_users=1)
    catalog = np.array([[0.9, 0.8, 0.5, 0.6]])  # items 0 and 1 outrank 2 but were seen in training
    ranks = full_catalog_ranks(heldout, lambda users: catalog, seen, chunk_users=1)
    assert ranks.tolist() == [1]  # only item 3 is above the positive


def test_metric_names_and_values_for_a_perfect_model() -> None:
    heldout = HeldOut(np.array([0, 1]), np.array([[0, 1, 2], [1, 0, 2]]), None)
    seen = UserItemSets.build(np.array([0, 1]), np.array([3, 3]), num_users=2)

    def perfect_pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return (items == users).astype(float)

    def perfect_catalog(users: np.ndarray) -> np.ndarray:
        return (np.arange(4)[None, :] == users[:, None]).astype(float)

    metrics = ranking_metrics("validation", heldout, perfect_pairs, perfect_catalog, seen, k=1)
    assert metrics == {
        "validation_hr_at_1": 1.0,
        "validation_ndcg_at_1": 1.0,
        "validation_recall_at_1_full": 1.0,
        "validation_ndcg_at_1_full": 1.0,
    }


def frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "label"])


def test_heldout_puts_the_positive_first_whatever_the_row_order() -> None:
    users, items = (
        Vocabulary.from_values(pd.Series(["a", "b"])),
        Vocabulary.from_values(pd.Series(["x", "y", "z"])),
    )
    heldout = build_heldout(
        frame([("a", "x", 0), ("b", "z", 1), ("a", "y", 1), ("b", "x", 0)]), users, items, "v"
    )
    assert heldout.users.tolist() == [0, 1]
    assert heldout.candidates.tolist() == [[1, 0], [2, 0]]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", "x", 1), ("a", "y", 1)], "has 2 positives"),
        ([("a", "x", 1), ("a", "y", 0), ("b", "x", 1)], "between 1 and 2 candidates"),
        ([("a", "x", 2)], "column 'label'"),
        ([], "no rows"),
    ],
)
def test_malformed_heldout_files_are_refused(rows: list, message: str) -> None:
    vocab = Vocabulary.from_values(pd.Series(["a", "b", "x", "y"]))
    with pytest.raises(NcfError, match=message):
        build_heldout(frame(rows), vocab, vocab, "validation")
