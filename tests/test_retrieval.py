"""Two-stage top-k (`ncf.serving.retrieval`): exhaustive scoring's answers, exclusions kept, choice kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.models.ncf_models import ModelSpec, NcfModel, dot_product_part, gmf_vectors, mlp_item_effect
from ncf.serving.export import Recommender, save_recommender
from ncf.serving.retrieval import DOT_PRODUCT, EXHAUSTIVE, TWO_STAGE, choose

NUM_USERS, NUM_ITEMS = 12, 60
USERS = Vocabulary.from_values(pd.Series([f"u{i}" for i in range(NUM_USERS)]))
ITEMS = Vocabulary.from_values(pd.Series([f"i{j}" for j in range(NUM_ITEMS)]))
RNG = np.random.default_rng(7)
SEEN = UserItemSets.build(
    np.repeat(np.arange(NUM_USERS), 8), RNG.integers(0, NUM_ITEMS, NUM_USERS * 8), NUM_USERS
)
POPULARITY = RNG.dirichlet(np.ones(NUM_ITEMS)).astype(np.float32)
QUERY = tf.constant([*USERS.ids.astype(str), "stranger"])  # row r < NUM_USERS is user index r
EXCLUDE = tf.constant([[f"i{(3 * r) % NUM_ITEMS}", f"i{(3 * r + 1) % NUM_ITEMS}", ""] for r in range(13)])


def model_of(model_type: str) -> NcfModel:
    spec = ModelSpec(model_type, NUM_USERS, NUM_ITEMS, 4, (8, 4))
    model = NcfModel(spec, seed=3, init_stddev=0.5)
    if model_type == "mf":  # non-zero biases, so the augmented vectors are exercised
        model.embeddings["item_bias"].assign(RNG.normal(size=(NUM_ITEMS, 1)).astype(np.float32))
        model.embeddings["user_bias"].assign(RNG.normal(size=(NUM_USERS, 1)).astype(np.float32))
    return model


def recommender(model: NcfModel, candidates: int, implicit: bool = True) -> Recommender:
    """A Recommender with retrieval forced on (`candidates` > 0) or off (0), whatever the catalog size."""
    choice = choose(model.spec.model_type, NUM_ITEMS, candidates, min_items=0)
    return Recommender(model, USERS, ITEMS, SEEN, POPULARITY, implicit, retrieval=choice)


def answers(rec: Recommender, k: int) -> list[dict[str, np.ndarray]]:
    """The three top-k signatures' outputs for every user plus an unknown one."""
    k = tf.constant(k)
    outputs = [
        rec.recommend(QUERY, k),
        rec.recommend_excluding(QUERY, k, EXCLUDE),
        rec.recommend_with_seen(QUERY, k, EXCLUDE),
    ]
    return [{name: value.numpy() for name, value in out.items()} for out in outputs]


@pytest.mark.parametrize(("model_type", "implicit"), [("neumf", True), ("gmf", True), ("mf", False)])
def test_two_stage_equals_exhaustive_when_candidates_cover_the_catalog(
    model_type: str, implicit: bool
) -> None:
    model = model_of(model_type)
    exhaustive = answers(recommender(model, 0, implicit), k=NUM_ITEMS)
    retrieved = answers(recommender(model, NUM_ITEMS, implicit), k=NUM_ITEMS)
    for want, got in zip(exhaustive, retrieved, strict=True):
        np.testing.assert_array_equal(got["item_ids"], want["item_ids"])
        np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got["fallback"], want["fallback"])


def test_dot_product_part_plus_bias_is_the_logit_of_mf_and_gmf() -> None:
    for model_type in ("mf", "gmf"):
        model = model_of(model_type)
        users, items = dot_product_part(model)
        logits = tf.matmul(users, items, transpose_b=True) + model.dense["bias"]
        every_user = tf.range(NUM_USERS)
        np.testing.assert_allclose(logits, model.logits_all_items(every_user), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("candidates", [1, 5])
def test_seen_and_excluded_items_never_come_back(candidates: int) -> None:
    """Few candidates and k above N: the answer is k items deep, none of them seen or excluded."""
    out = answers(recommender(model_of("neumf"), candidates), k=20)
    seen_rows = [set(ITEMS.ids[SEEN.items[SEEN.offsets[u] : SEEN.offsets[u + 1]]]) for u in range(NUM_USERS)]
    excluded_rows = [{v.decode() for v in row if v} for row in EXCLUDE.numpy()]
    for row in range(len(QUERY)):
        seen = seen_rows[row] if row < NUM_USERS else set()
        for signature, forbidden in zip(
            out, (seen, seen | excluded_rows[row], excluded_rows[row]), strict=True
        ):
            returned = {v.decode() for v in signature["item_ids"][row]}
            assert "" not in returned and len(returned) == 20
            assert not returned & forbidden
            assert np.all(np.diff(signature["scores"][row]) <= 0)


def test_unknown_users_get_the_popularity_fallback_through_retrieval() -> None:
    out = answers(recommender(model_of("neumf"), 3), k=5)[0]
    best = ITEMS.ids[np.argsort(-POPULARITY)[:5]]
    assert [v.decode() for v in out["item_ids"][-1]] == list(best)
    np.testing.assert_allclose(out["scores"][-1], np.sort(POPULARITY)[::-1][:5])
    assert out["fallback"].tolist() == [False] * NUM_USERS + [True]


def test_the_export_chooses_by_catalog_size_and_model_type() -> None:
    assert choose("neumf", 1_682, 500, 20_000).mode == EXHAUSTIVE
    assert choose("neumf", 1_000_000, 500, 20_000).mode == TWO_STAGE
    assert choose("neumf", 1_000_000, 0, 20_000).mode == EXHAUSTIVE
    assert choose("mlp", 1_000_000, 500, 20_000).mode == EXHAUSTIVE
    assert choose("sasrec", 1_000_000, 500, 20_000).mode == EXHAUSTIVE
    assert choose("gmf", 1_000_000, 500, 20_000).mode == DOT_PRODUCT
    assert choose("mf", 30_000, 500, 20_000).candidates == 0


def test_forced_retrieval_export_serves_every_signature_and_records_its_choice(tmp_path: Path) -> None:
    model = model_of("neumf")
    exhaustive = answers(recommender(model, 0), k=10)[0]
    loaded = tf.saved_model.load(str(save_recommender(recommender(model, 8), tmp_path)))
    metadata = json.loads(loaded.retrieval_metadata.numpy())
    assert metadata["mode"] == TWO_STAGE and metadata["candidates"] == 8
    sig, k = loaded.signatures, tf.constant(10)
    top = sig["serving_default"](user_id=QUERY, k=k)
    assert top["item_ids"].shape == (len(QUERY), 10)
    overlap = [
        len(set(a) & set(b)) for a, b in zip(top["item_ids"].numpy(), exhaustive["item_ids"], strict=True)
    ]
    assert sum(overlap) >= 0.5 * 10 * len(QUERY)  # 8 candidates of 60 items, reranked: mostly the same
    for name in ("recommend_excluding", "recommend_with_seen"):
        assert sig[name](user_id=QUERY, k=k, exclude=EXCLUDE)["item_ids"].shape == (len(QUERY), 10)
    scored = sig["score"](user_id=tf.constant(["u1", "stranger"]), item_id=tf.constant(["i2", "i2"]))
    assert scored["fallback"].numpy().tolist() == [False, True]
    assert sig["similar_items"](item_id=tf.constant(["i0"]), k=k)["item_ids"].shape == (1, 10)
    assert sig["similar_users"](user_id=tf.constant(["u0"]), k=k)["user_ids"].shape == (1, 10)
    empty = tf.fill(
        [len(QUERY), 2], ""
    )  # no events: the fold-in leaves the rows, the answer is serving_default's
    folded = sig["recommend_from_history"](user_id=QUERY, history=empty, k=k)
    np.testing.assert_array_equal(folded["item_ids"].numpy(), top["item_ids"].numpy())


def test_a_small_catalog_export_records_exhaustive_scoring(trained_model: Path) -> None:
    metrics = json.loads((trained_model.parent / "output" / "metrics.json").read_text())
    assert metrics["exported_model"]["retrieval"]["mode"] == EXHAUSTIVE
    loaded = tf.saved_model.load(str(trained_model / "1"))
    assert json.loads(loaded.retrieval_metadata.numpy())["mode"] == EXHAUSTIVE


def test_neumf_retrieval_column_is_the_mlp_towers_mean_over_users() -> None:
    """With every user sampled, the extra column is the MLP part of each pair's logit averaged over users."""
    model = model_of("neumf")
    effect = mlp_item_effect(model, sample_users=NUM_USERS).numpy()
    users, items = np.meshgrid(np.arange(NUM_USERS), np.arange(NUM_ITEMS), indexing="ij")
    pairs = model.logits(tf.constant(users.ravel(), tf.int32), tf.constant(items.ravel(), tf.int32))
    gmf_users, gmf_items = gmf_vectors(model)
    gmf = tf.reduce_sum(tf.gather(gmf_users, users.ravel()) * tf.gather(gmf_items, items.ravel()), axis=1)
    mlp = (pairs - gmf - model.dense["bias"]).numpy().reshape(NUM_USERS, NUM_ITEMS)
    np.testing.assert_allclose(effect, mlp.mean(axis=0), rtol=1e-4, atol=1e-5)
    _, vectors = dot_product_part(model)
    np.testing.assert_allclose(vectors[:, -1], effect, rtol=1e-6)
