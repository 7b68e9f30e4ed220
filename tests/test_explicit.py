"""Explicit feedback end to end: prepare keeps ratings, train.py regresses them, the export predicts them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import channel_args, make_interactions, run_train

pytestmark = pytest.mark.slow


def test_rating_regression_trains_reports_rmse_and_serves_ratings(tmp_path: Path) -> None:
    import prepare

    source = tmp_path / "ratings.csv"
    make_interactions(seed=3).to_csv(source, index=False)
    channels = tmp_path / "prepared"
    argv = [
        "--input",
        str(source),
        "--output",
        str(channels),
        "--eval-negatives",
        "15",
        "--feedback",
        "explicit",
    ]
    assert prepare.main(argv) == 0
    assert "rating" in (channels / "train" / "part-00000.csv").read_text().splitlines()[0]

    model_dir = tmp_path / "model"
    result = run_train(
        [
            *channel_args(channels),
            "--model-dir",
            str(model_dir),
            "--feedback",
            "explicit",
            "--selection-metric",
            "rmse",
            "--epochs",
            "6",
            "--batch-size",
            "128",
            "--factors",
            "8",
            "--mlp-layers",
            "16,8",
            "--learning-rate",
            "0.01",
        ]
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "validation_rmse=" in result.stdout
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["feedback"] == "explicit"
    assert 0.0 < metrics["test"]["test_rmse"] < 2.0  # ratings are 1..5: a constant 0 predictor scores ~3.3

    scores = tf.saved_model.load(str(model_dir / "1")).signatures["score"]
    predicted = scores(user_id=tf.constant(["u1", "u2"]), item_id=tf.constant(["item-1", "item-2"]))["score"]
    assert np.all((predicted.numpy() > 1.5) & (predicted.numpy() < 6.0))  # 1..5 ratings, not probabilities


def test_explicit_training_without_ratings_is_refused(tiny_channels: Path, tmp_path: Path) -> None:
    result = run_train(
        [
            *channel_args(tiny_channels),
            "--model-dir",
            str(tmp_path / "m"),
            "--feedback",
            "explicit",
            "--selection-metric",
            "rmse",
        ]
    )
    assert result.returncode == 2
    assert "explicit feedback needs a 'rating' column" in result.stderr
