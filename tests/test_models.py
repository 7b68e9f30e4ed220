"""Model shapes, and that catalog-wide scoring agrees with pairwise scoring for every model type."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.models.registry import NCF_MODEL_TYPES


def build(model_type: str, users: int = 7, items: int = 11) -> NcfModel:
    return NcfModel(
        ModelSpec(model_type, users, items, factors=4, mlp_layers=(8, 6, 4)), seed=3, init_stddev=0.5
    )


@pytest.mark.parametrize("model_type", NCF_MODEL_TYPES)
def test_pair_scores_have_one_value_per_pair(model_type: str) -> None:
    model = build(model_type)
    logits = model.logits(tf.constant([0, 1, 6]), tf.constant([10, 0, 3]))
    assert logits.shape == (3,)
    assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("model_type", NCF_MODEL_TYPES)
def test_catalog_scores_equal_pairwise_scores(model_type: str) -> None:
    model = build(model_type)
    users = np.array([0, 4, 6], dtype=np.int32)
    catalog = model.logits_all_items(tf.constant(users)).numpy()
    assert catalog.shape == (3, 11)
    pairs_users = np.repeat(users, 11)
    pairs_items = np.tile(np.arange(11, dtype=np.int32), 3)
    pairwise = model.logits(tf.constant(pairs_users), tf.constant(pairs_items)).numpy().reshape(3, 11)
    np.testing.assert_allclose(catalog, pairwise, rtol=1e-5, atol=1e-5)


def test_towers_match_the_model_type() -> None:
    assert set(build("gmf").embeddings) == {"gmf_user", "gmf_item"}
    assert set(build("mlp").embeddings) == {"mlp_user", "mlp_item"}
    assert set(build("neumf").embeddings) == {"gmf_user", "gmf_item", "mlp_user", "mlp_item"}
    assert set(build("mf").embeddings) == {"gmf_user", "gmf_item", "user_bias", "item_bias"}
    assert "head" not in build("mf").dense


def test_same_seed_same_initialisation() -> None:
    first, second = build("neumf"), build("neumf")
    for name, var in first.embeddings.items():
        np.testing.assert_array_equal(var.numpy(), second.embeddings[name].numpy())


def test_neumf_from_pretrained_towers_blends_their_scores() -> None:
    gmf, mlp, neumf = build("gmf"), build("mlp"), build("neumf")
    neumf.load_pretrained(gmf, mlp, alpha=0.5)
    users, items = tf.constant([0, 2, 5]), tf.constant([1, 9, 4])
    expected = 0.5 * gmf.logits(users, items) + 0.5 * mlp.logits(users, items)
    np.testing.assert_allclose(neumf.logits(users, items).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_pretraining_needs_matching_towers() -> None:
    with pytest.raises(ValueError):
        build("neumf").load_pretrained(build("mlp"), build("gmf"))
