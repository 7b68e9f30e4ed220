"""Cold-start items end to end: items known only from their features are in the exported catalog,
can be recommended and scored, and rank above chance for the users who interact with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from benchmarks.cold_start import cold_start_auc, hold_out_items
from conftest import channel_args, run_train

GROUPS = 4


def make_catalog(
    num_users: int = 200, num_items: int = 160, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users of a taste group interact with items of that group; an item's genres name its group
    (plus a noise genre), so its features predict who will like it."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(num_items)],
            "genres": [f"g{i % GROUPS}|n{rng.integers(5)}" for i in range(num_items)],
            "year": [str(1980 + int(rng.integers(40))) for _ in range(num_items)],
        }
    )
    rows = []
    for user in range(num_users):
        own = [i for i in range(num_items) if i % GROUPS == user % GROUPS]
        for step, item in enumerate(rng.choice(own, size=int(rng.integers(8, 13)), replace=False)):
            rows.append((f"u{user}", f"i{item}", 1_000_000 + 100 * step + user))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items


def test_auc_counts_pairs_of_cold_items_with_ties_as_half() -> None:
    hidden = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "z"]})
    table = {
        ("a", "x"): 0.9,
        ("a", "y"): 0.1,
        ("a", "z"): 0.5,
        ("b", "x"): 0.2,
        ("b", "y"): 0.2,
        ("b", "z"): 0.2,
    }

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.array([table[u, i] for u, i in zip(users, items, strict=True)])

    # a: x beats z (1), y loses to z (0); b: z ties x and y (0.5)
    assert cold_start_auc(hidden, np.array(["z", "x", "y"]), score) == pytest.approx(0.5)


def test_hold_out_items_hides_every_interaction_of_a_seeded_share_of_items() -> None:
    interactions, _ = make_catalog()
    kept, hidden, cold = hold_out_items(interactions, 0.05, seed=1)
    assert len(cold) == 8
    assert set(hidden["item_id"]) == set(cold) and not set(kept["item_id"]) & set(cold)
    assert len(kept) + len(hidden) == len(interactions)
    assert hold_out_items(interactions, 0.05, seed=1)[2].tolist() == cold.tolist()


@pytest.fixture(scope="module")
def cold_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """A NeuMF trained with features on interactions without any of 5 % of the items."""
    import prepare

    root = tmp_path_factory.mktemp("cold")
    interactions, items = make_catalog()
    kept, hidden, cold = hold_out_items(interactions, 0.05, seed=1)
    kept.to_csv(root / "interactions.csv", index=False)
    items.to_csv(root / "catalog.csv", index=False)
    args = ["--input", root / "interactions.csv", "--output", root / "prepared", "--eval-negatives", "15"]
    assert prepare.main([*map(str, args), "--item-features", str(root / "catalog.csv")]) == 0
    result = run_train(
        [
            *channel_args(root / "prepared"),
            *("--items", str(root / "prepared" / "items"), "--model-dir", str(root / "model")),
            *("--epochs", "10", "--batch-size", "256", "--factors", "8", "--mlp-layers", "16,8"),
            *("--learning-rate", "0.01", "--patience", "0", "--refit", "false"),
        ]
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"{len(cold)} cold-start items (features only)" in result.stdout
    return root / "model" / "1", hidden, cold


def test_cold_items_are_scored_and_ranked_above_chance(cold_model) -> None:
    saved, hidden, cold = cold_model
    loaded = tf.saved_model.load(str(saved))

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = loaded.signatures["score"](
            user_id=tf.constant(users.astype(str)), item_id=tf.constant(items.astype(str))
        )
        assert not out["fallback"].numpy().any()  # known user, known (cold) item: the model's score
        return out["score"].numpy()

    assert cold_start_auc(hidden, cold, score) > 0.7


def test_cold_items_are_in_the_served_catalog_with_zero_popularity(cold_model) -> None:
    saved, hidden, cold = cold_model
    loaded = tf.saved_model.load(str(saved))
    user = hidden["user_id"].iloc[0]
    ranked = loaded.signatures["serving_default"](user_id=tf.constant([user]), k=tf.constant(1000))
    returned = {i.decode() for i in ranked["item_ids"].numpy()[0]}
    assert set(cold) <= returned  # recommendable
    unknown = loaded.signatures["serving_default"](user_id=tf.constant(["nobody"]), k=tf.constant(1000))
    names = [i.decode() for i in unknown["item_ids"].numpy()[0]]
    fallback = dict(zip(names, unknown["scores"].numpy()[0], strict=True))
    assert [fallback[item] for item in cold] == [0.0] * len(cold)  # popularity 0: never seen in training
