"""Which epoch a training stage keeps: the best validation score, never a NaN one."""

from __future__ import annotations

import math

import pytest
from ncf.fit.stage_loop import _better
from ncf.train_settings import TrainConfig

NAN = math.nan


@pytest.mark.parametrize(
    ("metric", "score", "best", "expected"),
    [
        ("ndcg", 0.5, None, True),  # the first epoch fills the empty slot
        ("ndcg", 0.6, 0.5, True),
        ("ndcg", 0.4, 0.5, False),
        ("rmse", 0.9, 1.0, True),  # lower is better
        ("rmse", 1.1, 1.0, False),
        ("ndcg", NAN, None, True),  # a diverged first epoch holds the slot until a real score comes
        ("ndcg", 0.01, NAN, True),  # ... and any real score replaces it (NaN compares false)
        ("rmse", 5.0, NAN, True),
        ("ndcg", NAN, 0.5, False),  # a diverged later epoch never replaces a real one
        ("ndcg", NAN, NAN, False),
    ],
)
def test_a_nan_score_never_stays_best(metric: str, score: float, best: float | None, expected: bool) -> None:
    config = TrainConfig(selection_metric=metric, feedback="explicit" if metric == "rmse" else "implicit")
    assert _better(config, score, best) is expected
