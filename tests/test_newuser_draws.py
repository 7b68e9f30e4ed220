"""The new-user benchmark's data logic (`tests/benchmarks/newuser_draws.py`): draws, tie orders, the
blend's weight and threshold chosen on validation scores, and the spread and bar over evaluations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchmarks.newuser_draws import (
    DRAWS,
    bar_at,
    choose_blend,
    event_counts,
    first_events,
    markdown_table,
    spread,
    summarise,
    validation_users,
)


def interactions(users: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, users + 1):
        for event in range(12 + user % 7 * 3):
            rows.append((str(user), str(rng.integers(1, 60)), int(event // 2)))  # pairs share a second
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_every_draw_holds_out_about_a_tenth_of_the_eligible_users() -> None:
    counts = event_counts(interactions(), 10)
    picked = {draw.name: set(draw.pick(counts)) for draw in DRAWS}
    assert all(len(users) == 4 for users in picked.values())
    assert picked["tenth-0"] == {"1", "11", "21", "31"}  # numeric id order, not string order
    assert not picked["tenth-0"] & picked["tenth-5"]
    longest = set(counts.sort_values(ascending=False).index[: len(counts) // 3])
    assert picked["long"] <= longest
    assert picked["random-1"] != picked["random-2"]


def test_validation_users_are_outside_every_test_draw() -> None:
    counts = event_counts(interactions(), 10)
    test_users = {u for draw in DRAWS for u in draw.pick(counts)}
    chosen = validation_users(counts, test_users, 8, seed=1)
    assert len(chosen) == 8 and not set(chosen) & test_users


def test_same_second_events_follow_the_tie_order() -> None:
    frame = pd.DataFrame({"user_id": ["a"] * 4, "item_id": ["10", "9", "2", "30"], "timestamp": [5, 5, 1, 7]})
    assert first_events(frame, ["a"], "ascending") == {"a": ["2", "9", "10", "30"]}
    assert first_events(frame, ["a"], "descending") == {"a": ["2", "10", "9", "30"]}
    with pytest.raises(ValueError, match="ties"):
        first_events(frame, ["a"], "random")


def test_the_blend_is_chosen_where_it_helps_and_stops_at_the_threshold() -> None:
    scores = {
        1: {0.0: 0.10, 0.3: 0.20, 0.6: 0.18},
        2: {0.0: 0.12, 0.3: 0.16, 0.6: 0.17},
        3: {0.0: 0.20, 0.3: 0.15, 0.6: 0.10},
    }
    choice = choose_blend(scores)
    assert (choice["weight"], choice["max_events"]) == (0.3, 3)  # blends 1 and 2 events, not 3
    assert choice["score"] == pytest.approx((0.20 + 0.16 + 0.20) / 3)
    assert choice["model_alone"] == pytest.approx((0.10 + 0.12 + 0.20) / 3)


def test_no_blend_when_it_never_helps_and_ties_keep_the_model() -> None:
    worse = {1: {0.0: 0.3, 0.5: 0.2}, 5: {0.0: 0.3, 0.5: 0.1}}
    assert (choose_blend(worse)["weight"], choose_blend(worse)["max_events"]) == (0.0, 0)
    tied = {1: {0.0: 0.3, 0.5: 0.3}}
    assert choose_blend(tied)["weight"] == 0.0
    with pytest.raises(ValueError, match="weight 0"):
        choose_blend({1: {0.5: 0.3}})


def test_spread_summary_and_bar_over_evaluations() -> None:
    assert spread([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2**0.5), "min": 1.0, "max": 3.0}
    evaluations = [
        {5: {"sasrec": (0.34, 0.2), "popularity": (0.20, 0.1), "item_knn": (0.30, 0.2)}},
        {5: {"sasrec": (0.30, 0.2), "popularity": (0.22, 0.1), "item_knn": (0.30, 0.2)}},
    ]
    summary = summarise(evaluations)
    assert summary[5]["sasrec"]["hr"]["mean"] == pytest.approx(0.32)
    bar = bar_at(evaluations, "sasrec", 5, mean_ratio=1.5, min_ratio=1.4)
    assert bar["ratio_of_means_to_popularity"] == pytest.approx(0.32 / 0.21)
    assert bar["lowest_ratio"] == pytest.approx(0.30 / 0.22) and not bar["passed"]  # 1.36 < 1.4
    assert bar_at(evaluations, "sasrec", 5, mean_ratio=1.5, min_ratio=1.3)["passed"]


def test_the_readme_table_has_a_row_per_model_and_a_column_per_event_count() -> None:
    rows = ("sasrec", "sasrec_no_blend", "neumf_foldin", "item_knn", "popularity")
    evaluation = {n: {row: (0.1 * n, 0.05 * n) for row in rows} for n in (1, 5)}
    summary = {str(n): value for n, value in summarise([evaluation, evaluation]).items()}  # as in JSON
    lines = markdown_table(summary).splitlines()
    assert lines[0] == "| events in `history` | 1 | 5 |" and len(lines) == 2 + len(rows)
    assert "| 0.500 ± 0.000 [0.500–0.500] / 0.250 |" in lines[2]
