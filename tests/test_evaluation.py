"""Ranking metrics against hand-computed cases, for both evaluation protocols."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from ncf.data.heldout import HeldOut, build_heldout
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.errors import NcfError
from ncf.evaluation.protocol import (
    EvaluationProtocol,
    evaluate,
    full_catalog_ranks,
    hit_rate,
    ndcg,
    pessimistic_rank,
    sampled_ranks,
)


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


class TableScorer:
    """A model given as a [users, items] score table."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.table[users, items]

    def catalog(self, users: np.ndarray) -> np.ndarray:
        return self.table[users]

    def catalog_chunk_users(self) -> int:
        return 2


PERFECT = TableScorer(np.eye(4)[:2])  # user u likes item u best
HELDOUT = HeldOut(np.array([0, 1]), np.array([[0, 1, 2], [1, 0, 2]]), np.array([4.0, 2.0], np.float32))
SEEN = UserItemSets.build(np.array([0, 1]), np.array([3, 3]), num_users=2)


def test_metric_names_and_values_for_a_perfect_model() -> None:
    metrics = evaluate(PERFECT, HELDOUT, SEEN, EvaluationProtocol(k=1), "validation")
    assert metrics == {
        "validation_hr_at_1": 1.0,
        "validation_ndcg_at_1": 1.0,
        "validation_recall_at_1_full": 1.0,
        "validation_ndcg_at_1_full": 1.0,
    }


def test_explicit_feedback_adds_the_rmse_of_the_held_out_ratings() -> None:
    metrics = evaluate(PERFECT, HELDOUT, SEEN, EvaluationProtocol(k=1, explicit=True), "test")
    assert metrics["test_rmse"] == pytest.approx(math.sqrt(((1 - 4) ** 2 + (1 - 2) ** 2) / 2))


def all_reduce(workers: int) -> list:
    """`sum_across` functions of `workers` threads that add their vectors up, as an all-reduce does."""
    barrier = threading.Barrier(workers)
    slots: list[np.ndarray] = [np.zeros(0)] * workers

    def of(worker: int):
        def sum_across(values: list[float]) -> np.ndarray:
            slots[worker] = np.asarray(values, np.float64)
            barrier.wait()
            total = np.sum(slots, axis=0)
            barrier.wait()
            return total

        return sum_across

    return [of(w) for w in range(workers)]


def test_workers_scoring_their_shares_report_the_metrics_of_one_worker() -> None:
    scorer = TableScorer(np.array([[0.1, 0.9, 0.5, 0.0], [0.3, 0.9, 0.2, 0.1]]))
    protocol = EvaluationProtocol(k=2)
    whole = evaluate(scorer, HELDOUT, SEEN, protocol, "test")
    sums = all_reduce(2)
    with ThreadPoolExecutor(2) as pool:
        shares = list(
            pool.map(
                lambda w: evaluate(
                    scorer, HELDOUT, SEEN, protocol, "test", mine=lambda rows: rows[w::2], sum_across=sums[w]
                ),
                range(2),
            )
        )
    assert shares[0] == shares[1] == pytest.approx(whole)
    assert whole["test_hr_at_2"] == 0.5  # one hit, one miss: each share alone would say 0 or 1


def test_users_no_worker_scored_are_an_error_not_a_silent_average() -> None:
    with pytest.raises(NcfError, match="1 held-out users have no training rows on any worker"):
        evaluate(PERFECT, HELDOUT, SEEN, EvaluationProtocol(k=1), "test", mine=lambda rows: rows[:1])


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
