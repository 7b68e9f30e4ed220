"""Similar items / similar users: the measures against numpy references, and the exported signatures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.errors import NcfError
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.serving.export import Recommender, save_recommender
from ncf.serving.similarity import (
    MEASURES,
    co_counts,
    jaccard,
    model_vectors,
    others_k,
    own_pairs,
    pearson,
    transpose,
)
from ncf.serving.topk import top_k_excluding
from ncf.train_settings import SIMILARITY_MEASURES, load_config

# 5 users x 6 items; item 5 has no interactions, user 4 has every item but 5.
MATRIX = np.array(
    [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [1, 1, 1, 1, 1, 0],
    ],
    dtype=np.int64,
)
USERS = Vocabulary.from_values(pd.Series([f"u{i}" for i in range(MATRIX.shape[0])]))
ITEMS = Vocabulary.from_values(pd.Series([f"m{i}" for i in range(MATRIX.shape[1])]))


def seen_sets() -> UserItemSets:
    users, items = np.nonzero(MATRIX)
    return UserItemSets.build(users.astype(np.int32), items.astype(np.int32), MATRIX.shape[0])


def ragged(sets: UserItemSets) -> tf.RaggedTensor:
    return tf.RaggedTensor.from_row_splits(sets.items, sets.offsets)


def reference_jaccard(vectors: np.ndarray) -> np.ndarray:
    """Row-by-row Jaccard with explicit sets; nan where both rows are empty."""
    sets = [set(np.flatnonzero(v)) for v in vectors]
    return np.array([[len(a & b) / len(a | b) if a | b else np.nan for b in sets] for a in sets])


def reference_pearson(vectors: np.ndarray) -> np.ndarray:
    """np.corrcoef of the 0/1 rows; nan for constant rows."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(vectors.astype(float))


@pytest.mark.parametrize(("side", "vectors"), [("item", MATRIX.T), ("user", MATRIX)])
def test_jaccard_and_pearson_match_numpy_on_a_tiny_matrix(side: str, vectors: np.ndarray) -> None:
    by_user = seen_sets()
    by_item = transpose(by_user, MATRIX.shape[1])
    own, other = (by_item, by_user) if side == "item" else (by_user, by_item)
    queries = tf.range(vectors.shape[0])
    counts = co_counts(queries, ragged(own), ragged(other), vectors.shape[0])
    np.testing.assert_array_equal(counts.numpy(), vectors @ vectors.T)
    sizes = tf.constant(vectors.sum(axis=1), tf.float32)
    pairs = [
        (jaccard(counts, sizes, sizes).numpy(), reference_jaccard(vectors)),
        (pearson(counts, sizes, sizes, vectors.shape[1]).numpy(), reference_pearson(vectors)),
    ]
    for got, expected in pairs:
        undefined = np.isnan(expected)
        assert np.all(got[undefined] == -np.inf)
        np.testing.assert_allclose(got[~undefined], expected[~undefined], rtol=1e-6, atol=1e-6)


def test_top_k_excludes_the_query_and_undefined_entries() -> None:
    scores = tf.constant([[0.9, 0.5, -np.inf, 0.7], [0.1, 0.2, 0.3, 0.4]])
    indices, values = top_k_excluding(scores, own_pairs(tf.constant([0, 3])), others_k(tf.constant(10), 4))
    assert indices.numpy().tolist() == [[3, 1, -1], [2, 1, 0]]
    np.testing.assert_allclose(values.numpy(), [[0.7, 0.5, 0.0], [0.3, 0.2, 0.1]])


def reference_vectors(model: NcfModel, side: str) -> np.ndarray:
    """The documented representation, in numpy: per-tower unit vectors, concatenated, equally weighted."""
    emb = {k: v.numpy() for k, v in model.embeddings.items()}
    dense = {k: v.numpy() for k, v in model.dense.items()}
    spec = model.spec
    towers = []
    if spec.has_gmf:
        head = dense["head"][: spec.factors, 0] if spec.model_type != "mf" else 1.0
        towers.append(emb[f"gmf_{side}"] * head)
    if spec.has_mlp:
        towers.append(emb[f"mlp_{side}"] @ dense[f"mlp_w0_{side}"])
    units = [t / np.linalg.norm(t, axis=1, keepdims=True) for t in towers]
    return np.concatenate(units, axis=1) / np.sqrt(len(units))


@pytest.mark.parametrize("model_type", ["neumf", "gmf", "mlp", "mf"])
@pytest.mark.parametrize("side", ["item", "user"])
def test_cosine_uses_the_documented_vectors(model_type: str, side: str) -> None:
    model = NcfModel(ModelSpec(model_type, 5, 6, 4, (8, 4)), seed=3, init_stddev=0.5)
    vectors = reference_vectors(model, side)
    np.testing.assert_allclose(model_vectors(model, side).numpy(), vectors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny model exported once per measure, loaded back as TF Serving would load it."""
    model = NcfModel(ModelSpec("neumf", len(USERS), len(ITEMS), 4, (8, 4)), seed=1, init_stddev=0.5)
    popularity = (MATRIX.sum(axis=0) / MATRIX.sum(axis=0).max()).astype(np.float32)
    loaded = {}
    for measure in ("cosine", "jaccard", "pearson"):
        recommender = Recommender(model, USERS, ITEMS, seen_sets(), popularity, True, similarity=measure)
        path = save_recommender(recommender, tmp_path_factory.mktemp(measure))
        loaded[measure] = tf.saved_model.load(str(path))
    return {"model": model, **loaded}


def similar(loaded, signature: str, ids: list[str], k: int) -> dict:
    key = "item_id" if signature == "similar_items" else "user_id"
    out = loaded.signatures[signature](**{key: tf.constant(ids), "k": tf.constant(k)})
    return {name: value.numpy() for name, value in out.items()}


def decoded(values) -> list[list[str]]:
    return [[v.decode() for v in row] for row in values]


@pytest.mark.parametrize("measure", ["cosine", "jaccard", "pearson"])
def test_similar_items_signature_shapes_exclusion_and_unknown_ids(exported, measure: str) -> None:
    out = similar(exported[measure], "similar_items", ["m0", "nope", "m3"], 3)
    assert set(out) == {"item_ids", "scores", "known"}
    assert out["item_ids"].shape == out["scores"].shape == (3, 3)
    assert out["known"].tolist() == [True, False, True]
    rows = decoded(out["item_ids"])
    assert "m0" not in rows[0] and "m3" not in rows[2]
    assert rows[1] == ["", "", ""] and out["scores"][1].tolist() == [0.0] * 3
    assert np.all(np.diff(out["scores"][[0, 2]], axis=1) <= 1e-7)


def test_k_is_clamped_to_the_other_rows(exported) -> None:
    out = similar(exported["cosine"], "similar_users", ["u0"], 50)
    assert out["user_ids"].shape == (1, len(USERS) - 1)
    assert sorted(decoded(out["user_ids"])[0]) == ["u1", "u2", "u3", "u4"]


def test_exported_cosine_scores_match_numpy(exported) -> None:
    vectors = reference_vectors(exported["model"], "item")
    out = similar(exported["cosine"], "similar_items", ["m2"], 5)
    expected = vectors @ vectors[2]
    got = {item: score for item, score in zip(decoded(out["item_ids"])[0], out["scores"][0], strict=True)}
    assert set(got) == {f"m{i}" for i in range(6)} - {"m2"}
    for item, score in got.items():
        assert score == pytest.approx(expected[int(item[1:])], abs=1e-5)


def test_exported_jaccard_ranks_by_shared_users_and_skips_undefined(exported) -> None:
    # m0's users {0,1,4}: m1 {0,1,2,4} -> 3/4, m2 {1,2,4} -> 2/4, m3 {2,3,4} -> 1/5, m4 {3,4} -> 1/4.
    out = similar(exported["jaccard"], "similar_items", ["m0"], 5)
    assert decoded(out["item_ids"])[0] == ["m1", "m2", "m4", "m3", "m5"]
    np.testing.assert_allclose(out["scores"][0], [0.75, 0.5, 0.25, 0.2, 0.0])
    # m5 has no users: Jaccard with it is 0 (defined), Pearson with it undefined (constant vector).
    pearson_row = decoded(similar(exported["pearson"], "similar_items", ["m0"], 5)["item_ids"])[0]
    assert pearson_row[-1] == "" and "m5" not in pearson_row


def test_exported_pearson_users_match_numpy(exported) -> None:
    out = similar(exported["pearson"], "similar_users", ["u1"], 4)
    expected = reference_pearson(MATRIX)[1]
    for user, score in zip(decoded(out["user_ids"])[0], out["scores"][0], strict=True):
        assert score == pytest.approx(expected[int(user[1:])], abs=1e-6)


def test_similarity_setting_is_validated() -> None:
    paths = ["--train", "t", "--validation", "v", "--test", "s", "--model-dir", "m"]
    assert SIMILARITY_MEASURES == MEASURES  # one definition: ncf.choices (TF-free, so config.py can use it)
    assert load_config(paths, {}).similarity == "cosine"
    assert load_config([*paths, "--similarity", "jaccard"], {}).similarity == "jaccard"
    with pytest.raises(NcfError, match="hyperparameter similarity: expected one of cosine, jaccard, pearson"):
        load_config([*paths, "--similarity", "euclid"], {})
