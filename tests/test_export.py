"""The exported SavedModel's signatures: raw ids in and out, exclusions, fallback, scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.serving.export import Recommender, save_recommender

USERS = Vocabulary.from_values(pd.Series(["alice", "bob", "carol"]))
ITEMS = Vocabulary.from_values(pd.Series([f"m{i}" for i in range(6)]))
SEEN_USERS = USERS.lookup(np.array(["alice", "alice", "bob"]))
SEEN_ITEMS = ITEMS.lookup(np.array(["m0", "m1", "m5"]))
POPULARITY = np.array([1.0, 0.2, 0.9, 0.1, 0.5, 0.3], np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    model = NcfModel(ModelSpec("neumf", len(USERS), len(ITEMS), 4, (8, 4)), seed=1, init_stddev=0.5)
    seen = UserItemSets.build(SEEN_USERS, SEEN_ITEMS, len(USERS))
    recommender = Recommender(model, USERS, ITEMS, seen, POPULARITY, implicit=True)
    path = save_recommender(recommender, tmp_path_factory.mktemp("export"))
    return model, tf.saved_model.load(str(path))


def call(loaded, name: str, **inputs):
    return {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}


def ids(values) -> list[str]:
    return [v.decode() for v in values]


def test_saved_model_lives_in_a_numbered_version_folder(served, tmp_path: Path) -> None:
    assert set(served[1].signatures) == {
        "serving_default",
        "recommend_excluding",
        "recommend_with_seen",
        "score",
        "similar_items",
        "similar_users",
        "recommend_from_history",  # the NCF fold-in (ncf.serving.foldin)
    }


def test_top_k_excludes_training_items_and_is_sorted(served) -> None:
    model, loaded = served
    out = call(loaded, "serving_default", user_id=tf.constant(["alice", "bob"]), k=tf.constant(3))
    assert out["item_ids"].shape == (2, 3)
    assert not {"m0", "m1"} & set(ids(out["item_ids"][0]))
    assert "m5" not in ids(out["item_ids"][1])
    assert np.all(np.diff(out["scores"], axis=1) <= 0)
    assert out["fallback"].tolist() == [False, False]
    # The scores are the model's probabilities for those raw ids.
    alice = USERS.lookup(np.array(["alice"]))[0]
    catalog = tf.sigmoid(model.logits_all_items(tf.constant([alice]))).numpy()[0]
    expected = [catalog[ITEMS.lookup(np.array([i]))[0]] for i in ids(out["item_ids"][0])]
    np.testing.assert_allclose(out["scores"][0], expected, rtol=1e-5)


def test_unknown_user_gets_popularity_and_the_fallback_flag(served) -> None:
    out = call(served[1], "serving_default", user_id=tf.constant(["zed"]), k=tf.constant(3))
    assert ids(out["item_ids"][0]) == ["m0", "m2", "m4"]
    np.testing.assert_allclose(out["scores"][0], [1.0, 0.9, 0.5])
    assert out["fallback"].tolist() == [True]


def test_caller_exclusions_add_to_seen_items(served) -> None:
    out = call(
        served[1],
        "recommend_excluding",
        user_id=tf.constant(["zed", "alice"]),
        k=tf.constant(6),
        exclude=tf.constant([["m0", "", "unknown-item"], ["m2", "m3", ""]]),
    )
    assert ids(out["item_ids"][0])[:4] == ["m2", "m4", "m5", "m1"]
    assert ids(out["item_ids"][0])[5] == ""  # only 5 of 6 items are eligible
    alice = [i for i in ids(out["item_ids"][1]) if i]
    assert sorted(alice) == ["m4", "m5"]
    assert ids(out["item_ids"][1])[2:] == ["", "", "", ""]
    assert out["scores"][1][2:].tolist() == [0.0] * 4


def test_with_seen_keeps_training_items(served) -> None:
    out = call(
        served[1],
        "recommend_with_seen",
        user_id=tf.constant(["alice"]),
        k=tf.constant(6),
        exclude=tf.constant([[""]]),
    )
    assert sorted(ids(out["item_ids"][0])) == [f"m{i}" for i in range(6)]


def test_k_is_clamped_to_the_catalog(served) -> None:
    out = call(served[1], "serving_default", user_id=tf.constant(["carol"]), k=tf.constant(50))
    assert out["item_ids"].shape == (1, 6)


def test_score_signature_flags_unknown_ids(served) -> None:
    out = call(
        served[1],
        "score",
        user_id=tf.constant(["alice", "zed", "alice"]),
        item_id=tf.constant(["m2", "m2", "nope"]),
    )
    assert out["fallback"].tolist() == [False, True, True]
    np.testing.assert_allclose(out["score"][1:], [0.9, 0.0])
    assert 0.0 < out["score"][0] < 1.0
