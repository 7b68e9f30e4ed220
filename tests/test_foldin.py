"""Fold-in (`ncf.serving.foldin`): the NCF types' `recommend_from_history` reacts to a request's events.

Small models of every NCF type are fitted here, in-process, to two clear taste clusters: users 0-11 like
items 0-19 (cluster A), users 12-23 items 20-39 (cluster B); each user has seen 8 of their cluster's
items, chosen at random (no other structure to learn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ncf.data.features import FeatureMatrix
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.fit.optim import LazyAdam
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.serving.export import Recommender
from ncf.serving.foldin import FoldInSettings
from ncf.serving.retrieval import EXHAUSTIVE, choose

NUM_USERS, NUM_ITEMS, CLUSTER = 24, 40, 20
USER_IDS = [f"u{i:02d}" for i in range(NUM_USERS)]  # sorted, so the id's index is its number
ITEM_IDS = [f"i{j:02d}" for j in range(NUM_ITEMS)]
USERS = Vocabulary.from_values(pd.Series(USER_IDS))
ITEMS = Vocabulary.from_values(pd.Series(ITEM_IDS))
B_ITEMS = set(ITEM_IDS[CLUSTER:])


def cluster_of(user: int) -> int:
    return 0 if user < NUM_USERS // 2 else 1


RNG = np.random.default_rng(5)
SEEN_PAIRS = np.array(
    [
        (u, cluster_of(u) * CLUSTER + j)
        for u in range(NUM_USERS)
        for j in RNG.choice(CLUSTER, 8, replace=False)
    ]
)
SEEN = UserItemSets.build(SEEN_PAIRS[:, 0], SEEN_PAIRS[:, 1], NUM_USERS)
POPULARITY = np.bincount(SEEN_PAIRS[:, 1], minlength=NUM_ITEMS).astype(np.float32) + np.linspace(
    0, 0.5, NUM_ITEMS
)


def cluster_features() -> FeatureMatrix:
    """One categorical feature per item: its cluster."""
    tokens = (np.arange(NUM_ITEMS) >= CLUSTER).astype(np.int32)[:, None]
    return FeatureMatrix(
        tokens=tokens,
        weights=np.ones((NUM_ITEMS, 1), np.float32),
        numeric=np.zeros((NUM_ITEMS, 0), np.float32),
        has_id=np.ones((NUM_ITEMS, 1), np.float32),
        token_names=("A", "B"),
        numeric_names=(),
    )


def fitted(model_type: str, features: bool) -> NcfModel:
    """A model of `model_type` fitted to the seen matrix (full-matrix logistic loss, Adam)."""
    spec = ModelSpec(model_type, NUM_USERS, NUM_ITEMS, 2, (4, 4))  # too narrow to memorise: clusters
    model = NcfModel(spec, seed=1, init_stddev=0.1, item_features=cluster_features() if features else None)
    labels = np.zeros((NUM_USERS, NUM_ITEMS), np.float32)
    labels[SEEN_PAIRS[:, 0], SEEN_PAIRS[:, 1]] = 1.0
    variables = list(model.embeddings.values()) + list(model.dense.values())
    optimizer = LazyAdam(variables, 0.05)

    @tf.function
    def fit() -> None:
        for _ in tf.range(150):
            with tf.GradientTape() as tape:
                logits = model.logits_all_items(tf.range(NUM_USERS))
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
            optimizer.apply(tape.gradient(loss, variables), variables)

    fit()
    return model


def served(model_type: str, retrieval: bool = False, features: bool = False, **settings: int) -> Recommender:
    """A Recommender of a fitted model; `retrieval` forces the export's dot-product/two-stage top-k."""
    choice = choose(model_type, NUM_ITEMS, 10 if retrieval else 0, min_items=0)
    model = fitted(model_type, features)
    return Recommender(
        model, USERS, ITEMS, SEEN, POPULARITY, True, retrieval=choice, foldin=FoldInSettings(**settings)
    )


def from_history(signatures: dict, users: list[str], histories: list[list[str]], k: int) -> dict:
    width = max(1, *(len(h) for h in histories))
    padded = [h + [""] * (width - len(h)) for h in histories]
    function = signatures["recommend_from_history"]
    answer = function(user_id=tf.constant(users), history=tf.constant(padded, tf.string), k=tf.constant(k))
    return {name: value.numpy() for name, value in answer.items()}


def ids(row: np.ndarray) -> list[str]:
    return [item.decode() for item in row]


# Every NCF type; item features and the retrieval stages (dot product, two-stage) among them.
CASES = [
    ("mf", True, False),
    ("gmf", False, True),
    ("mlp", False, False),
    ("neumf", False, False),
    ("neumf", True, True),
]


@dataclass
class Served:
    """A Recommender and its signatures, traced once per module."""

    recommender: Recommender
    signatures: dict


@pytest.fixture(
    scope="module",
    params=CASES,
    ids=lambda c: f"{c[0]}{'-retrieval' if c[1] else ''}{'-features' if c[2] else ''}",
)
def served_model(request: pytest.FixtureRequest) -> Served:
    model_type, retrieval, features = request.param
    rec = served(model_type, retrieval, features)
    assert (rec.retrieval_choice.mode == EXHAUSTIVE) != retrieval
    return Served(rec, rec.signatures())


B_HISTORY = ITEM_IDS[CLUSTER : CLUSTER + 10]


def test_a_known_user_moves_to_the_cluster_of_the_history(served_model: Served) -> None:
    plain = served_model.signatures["serving_default"](user_id=tf.constant(["u00"]), k=tf.constant(5))
    assert not B_ITEMS & set(ids(plain["item_ids"].numpy()[0]))  # a cluster-A user, answered with A items
    answer = from_history(served_model.signatures, ["u00"], [B_HISTORY], 5)
    assert set(ids(answer["item_ids"][0])) <= B_ITEMS - set(B_HISTORY)
    assert not answer["fallback"][0]


def test_an_empty_history_gives_serving_default_exactly(served_model: Served) -> None:
    users = USER_IDS[::5]
    plain = served_model.signatures["serving_default"](user_id=tf.constant(users), k=tf.constant(7))
    answer = from_history(served_model.signatures, users, [[] for _ in users], 7)
    np.testing.assert_array_equal(answer["item_ids"], plain["item_ids"].numpy())
    np.testing.assert_array_equal(answer["scores"], plain["scores"].numpy())


def test_an_unknown_user_is_personalised_by_known_items_and_unknown_ids_are_reported(
    served_model: Served,
) -> None:
    histories = [["i25", "nope", "i27", "i30"], ["nope", "also-not"], []]
    answer = from_history(served_model.signatures, ["stranger", "stranger", "stranger"], histories, 5)
    popular = [ITEM_IDS[i] for i in np.argsort(-POPULARITY)[:5]]
    personal = ids(answer["item_ids"][0])
    assert set(personal) <= B_ITEMS - {"i25", "i27", "i30"} and personal != popular
    assert answer["fallback"].tolist() == [False, True, True]
    assert ids(answer["item_ids"][1]) == popular and ids(answer["item_ids"][2]) == popular
    assert answer["unknown_history"].tolist() == [
        [False, True, False, False],
        [True, True, False, False],
        [False] * 4,
    ]


def test_history_and_seen_items_are_excluded(served_model: Served) -> None:
    history = ["i00", "i01", "i02", "i20"]
    answer = from_history(served_model.signatures, ["u00"], [history], NUM_ITEMS)
    returned = [item for item in ids(answer["item_ids"][0]) if item]
    seen = {ITEM_IDS[j] for j in SEEN_PAIRS[SEEN_PAIRS[:, 0] == 0, 1]}
    assert not (set(history) | seen) & set(returned)
    if (
        served_model.recommender.retrieval_choice.mode == EXHAUSTIVE
    ):  # retrieval returns at most its candidates
        assert set(returned) == set(ITEM_IDS) - set(history) - seen


def test_a_sampled_softmax_also_folds_in() -> None:
    """Above `candidates` items the softmax runs over a fixed, evenly spaced sample: still cluster B."""
    rec = served("neumf", candidates=8)
    assert rec.foldin.sampled and rec.foldin.sample.shape[0] == 8
    answer = from_history(rec.signatures(), ["u00", "stranger"], [B_HISTORY, ["i21", "i22"]], 5)
    assert set(ids(answer["item_ids"][0])) <= B_ITEMS and set(ids(answer["item_ids"][1])) <= B_ITEMS
