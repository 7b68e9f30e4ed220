"""The sequence model (model_type sasrec): its windows and stored histories, training through train.py with
the shared contract, resuming, its refusals, and the exported signatures including `recommend_from_history`.

The data (conftest's `walk_channels`) has strong order and no taste groups: every user walks the catalog
item by item (i, i+1, ...) from a random start, so only a model that reads the order predicts the next item.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import SASREC_TEST_FLAGS, channel_args
from ncf.data.training_data import load_training_data
from ncf.data.vocab import Vocabulary
from ncf.errors import NcfError
from ncf.fit.sequence_epochs import SequenceSource
from ncf.fit.sequence_packing import pack
from ncf.fit.stage_loop import fit
from ncf.models.sasrec import build_sasrec, last_items
from ncf.serving.history import latest_items
from ncf.train_settings import load_config

SASREC_FLAGS = SASREC_TEST_FLAGS


def fake_data(
    users: list[int], items: list[int], recency: list[int], num_users: int, num_items: int, moments=None
):
    return SimpleNamespace(
        train_users=np.array(users, np.int32),
        train_items=np.array(items, np.int32),
        train_recency=np.array(recency, np.int32),
        moments=np.array(recency if moments is None else moments, np.int32),
        users=Vocabulary(np.array([f"u{i}" for i in range(num_users)], dtype=object)),
        items=Vocabulary(np.array([f"i{i}" for i in range(num_items)], dtype=object)),
    )


def test_histories_and_windows_follow_time_not_file_order() -> None:
    # user 0: items 5, 6, 7, 8 oldest first (listed out of order); user 1: one item; pad = 9
    data = fake_data([0, 0, 1, 0, 0], [7, 5, 2, 8, 6], [1, 3, 0, 0, 2], num_users=3, num_items=9)
    np.testing.assert_array_equal(last_items(data, 3), [[6, 7, 8], [9, 9, 2], [9, 9, 9]])
    source = SequenceSource(data, window_config(max_len=2, shuffle_ties=True))
    windows = source.windows  # user 0: 3 predictions, windows of 2, the newest first
    np.testing.assert_array_equal(windows.owners, [0, 0])
    packed = pack(windows, source.ordered_items, 2, 9, np.array([0, 1]))
    np.testing.assert_array_equal(packed.inputs, [[6, 7], [5, 9]])
    np.testing.assert_array_equal(packed.targets, [[7, 8], [6, 9]])
    np.testing.assert_array_equal(packed.segments, [[0, 0], [0, -1]])


def window_config(**overrides) -> SimpleNamespace:
    settings = {"seed": 1, "sequence_loss": "softmax", "num_neg": 0, "batch_size": 64}
    settings["max_len_quantile"] = 1.0
    settings.update({"shuffle_ties": True, **overrides})
    return SimpleNamespace(**settings)


def test_interactions_with_one_timestamp_are_trained_as_a_set() -> None:
    # user 0 in time order: 1, then 2, 3, 4 in the same second (file order), then 5; pad = 6
    data = fake_data([0] * 5, [1, 2, 3, 4, 5], [4, 3, 2, 1, 0], 1, 6, moments=[2, 1, 1, 1, 0])
    orders = set()
    for shuffle in (False, True):
        source = SequenceSource(data, window_config(max_len=5, shuffle_ties=shuffle))
        seen = {(*source.batches(epoch).inputs[0, 0, :4], 5) for epoch in range(12)}
        assert all(order[0] == 1 and order[-1] == 5 for order in seen)  # the burst stays between them
        orders.add(frozenset(seen))
    in_file_order, shuffled = sorted(orders, key=len)
    assert in_file_order == {(1, 2, 3, 4, 5)}
    assert len(shuffled) > 2 and all(sorted(order) == [1, 2, 3, 4, 5] for order in shuffled)


def test_a_short_history_reads_the_same_whatever_padding_precedes_it() -> None:
    # positions are relative (attention biased by distance): a new user's three events are read as
    # every user's first three were in training, not at slots only long histories reach
    data = fake_data([0, 0], [1, 2], [1, 0], num_users=1, num_items=6)
    config = SimpleNamespace(
        factors=8,
        max_len=6,
        max_len_quantile=1.0,
        attention_blocks=2,
        attention_heads=2,
        dropout=0.0,
        user_embedding=False,
        seed=3,
    )
    model = build_sasrec(config, data)
    model.dense["distance"].assign(tf.random.stateless_normal((6, 2), (1, 2)))
    pad, users = model.padding, tf.constant([0, 0])
    short = model.represent(tf.constant([[3, 1, 4], [4, 1, 3]]), users)
    # encode, not represent: represent drops the batch's leading padding before encoding
    padded = model.encode(tf.constant([[pad, pad, pad, 3, 1, 4], [pad, pad, pad, 4, 1, 3]]))[:, -1]
    np.testing.assert_allclose(short.numpy(), padded.numpy(), atol=1e-5)
    assert not np.allclose(short[0].numpy(), short[1].numpy(), atol=1e-3)  # the order still counts


def test_latest_items_appends_and_keeps_the_newest() -> None:
    pad = 9
    rows = tf.constant([[pad, 1, 2, pad, 3, 4], [pad, pad, pad, 5, pad, pad]])
    np.testing.assert_array_equal(latest_items(rows, pad, 3).numpy(), [[2, 3, 4], [pad, pad, 5]])
    np.testing.assert_array_equal(latest_items(rows, pad, 8).numpy()[1], [pad] * 7 + [5])


def test_trains_through_train_py_with_the_shared_contract(sasrec_run: Path) -> None:
    log = (sasrec_run / "train.log").read_text()
    metrics = json.loads((sasrec_run / "output" / "metrics.json").read_text())
    assert "validation_ndcg_at_10=" in log and "[sasrec-refit]" in log
    assert metrics["model_type"] == "sasrec" and metrics["best_epoch"] >= 1
    # 15 sampled negatives: chance HR@10 is 10/16; the walk's next item is certain from the last one
    assert metrics["test"]["test_hr_at_10"] > 0.9, metrics["test"]
    assert metrics["test"]["test_ndcg_at_10"] > 0.7, metrics["test"]


def test_export_stores_everything_before_the_test_item(sasrec_run: Path, walk_channels: Path) -> None:
    loaded = tf.saved_model.load(str(sasrec_run / "model" / "1"))
    validation = pd.read_csv(next((walk_channels / "validation").glob("*.csv")))
    positives = validation[validation["label"] == 1].set_index("user_id")["item_id"]
    histories = loaded.model.histories.numpy()
    item_ids = [i.decode() for i in loaded.item_ids.numpy()]
    user_ids = [u.decode() for u in loaded.user_ids.numpy()]
    newest = {user_ids[row]: item_ids[histories[row, -1]] for row in range(len(user_ids))}
    assert all(newest[user] == item for user, item in positives.items())


def test_every_signature_answers_for_sasrec(sasrec_run: Path) -> None:
    loaded = tf.saved_model.load(str(sasrec_run / "model" / "1"))
    users, k = tf.constant(["u1", "nobody"]), tf.constant(5)
    top = loaded.signatures["serving_default"](user_id=users, k=k)
    assert top["fallback"].numpy().tolist() == [False, True] and top["item_ids"].shape == (2, 5)
    exclude = tf.constant([["item-0"], [""]])
    for name in ("recommend_excluding", "recommend_with_seen"):
        answer = loaded.signatures[name](user_id=users, k=k, exclude=exclude)
        assert b"item-0" not in answer["item_ids"].numpy()[0]
    score = loaded.signatures["score"](user_id=users, item_id=tf.constant(["item-1", "item-1"]))
    assert score["fallback"].numpy().tolist() == [False, True]
    for name, field, query in (("similar_items", "item_id", "item-1"), ("similar_users", "user_id", "u1")):
        similar = loaded.signatures[name](**{field: tf.constant([query])}, k=k)
        assert similar["known"].numpy().tolist() == [True]


def test_recommend_from_history_reacts_to_the_latest_events(sasrec_run: Path) -> None:
    recommend = tf.saved_model.load(str(sasrec_run / "model" / "1")).signatures["recommend_from_history"]
    history = tf.constant([["item-3", "item-4", "no-such-item"], ["item-10", "", ""], ["", "", ""]])
    answer = recommend(user_id=tf.constant(["new-a", "new-b", "new-c"]), history=history, k=tf.constant(3))
    top = answer["item_ids"].numpy().astype(str)
    assert top[0][0] == "item-5" and top[1][0] == "item-11"  # the walk continues from the last event
    assert "item-3" not in top[0] and "item-4" not in top[0]  # history items are excluded like seen ones
    assert answer["fallback"].numpy().tolist() == [False, False, True]
    assert answer["unknown_history"].numpy().tolist() == [[False, False, True], [False] * 3, [False] * 3]
    known = recommend(user_id=tf.constant(["u1"]), history=tf.constant([["item-20"]]), k=tf.constant(1))
    assert known["item_ids"].numpy().astype(str)[0][0] == "item-21"


def test_resuming_gives_the_uninterrupted_weights(walk_channels: Path, tmp_path: Path) -> None:
    config = load_config(
        [*channel_args(walk_channels), "--model-dir", "unused", *SASREC_FLAGS, "--epochs", "3"], {}
    )
    data = load_training_data(config.train, config.validation, config.test, implicit=True)

    def train(checkpoints: Path, epochs: int):
        model = build_sasrec(config, data)
        fit(model, data, config, epochs=epochs, checkpoint_dir=checkpoints, log=lambda _: None, stage="s")
        return model

    straight = train(tmp_path / "straight", 3)
    train(tmp_path / "stopped", 1)
    resumed = train(tmp_path / "stopped", 3)
    for name, variable in {**straight.embeddings, **straight.dense}.items():
        other = {**resumed.embeddings, **resumed.dense}[name]
        np.testing.assert_allclose(other.numpy(), variable.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["bce", "sampled_softmax"])
def test_sampled_objectives_train(walk_channels: Path, loss: str) -> None:
    config = load_config(
        [*channel_args(walk_channels), "--model-dir", "unused", *SASREC_FLAGS, "--sequence-loss", loss], {}
    )
    config = dataclasses.replace(config, epochs=2)
    data = load_training_data(config.train, config.validation, config.test, implicit=True)
    batches = SequenceSource(data, config).batches(0)
    assert batches.negatives.shape == (batches.inputs.shape[0], config.num_neg)
    result = fit(
        build_sasrec(config, data), data, config, epochs=2, checkpoint_dir=None, log=lambda _: None, stage="s"
    )
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--feedback", "explicit", "--selection-metric", "rmse"], "no explicit-feedback"),
        (["--item-features", "features.csv"], "does not use item features"),
        (["--attention-heads", "3"], "does not divide factors"),
    ],
)
def test_refuses_what_it_does_not_support(flags: list[str], message: str, walk_channels: Path) -> None:
    with pytest.raises(NcfError, match=message):
        load_config([*channel_args(walk_channels), "--model-dir", "m", *SASREC_FLAGS, *flags], {})


def test_catalog_scores_equal_pairwise_scores(walk_channels: Path) -> None:
    config = load_config([*channel_args(walk_channels), "--model-dir", "unused", *SASREC_FLAGS], {})
    data = load_training_data(config.train, config.validation, config.test, implicit=True)
    model = build_sasrec(config, data)
    users = np.array([0, 4, 6, 4], dtype=np.int32)
    catalog = model.logits_all_items(tf.constant(users)).numpy()
    items = len(data.items)
    pairs = model.logits(tf.constant(np.repeat(users, items)), tf.constant(np.tile(np.arange(items), 4)))
    np.testing.assert_allclose(catalog, pairs.numpy().reshape(4, items), rtol=1e-5, atol=1e-5)


def test_a_stop_request_interrupts_with_the_last_epoch_checkpointed(
    walk_channels: Path, tmp_path: Path
) -> None:
    from ncf.fit.interruption import TrainingInterrupted

    config = load_config([*channel_args(walk_channels), "--model-dir", "unused", *SASREC_FLAGS], {})
    data = load_training_data(config.train, config.validation, config.test, implicit=True)
    calls = iter(range(1000))
    with pytest.raises(TrainingInterrupted) as stopped:  # asked to stop once the first epoch is done
        fit(
            build_sasrec(config, data),
            data,
            config,
            epochs=3,
            checkpoint_dir=tmp_path,
            log=lambda _: None,
            stage="s",
            stop_requested=lambda: next(calls) >= 2,
        )
    assert stopped.value.epochs_done >= 1 and (tmp_path / "s" / "checkpoint").is_file()
