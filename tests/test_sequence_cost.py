"""The sequence model's cost in proportion to real events: packed windows, the loss at real slots only,
the logQ-corrected sampled softmax, the model length from the data, scoring without padding, and the
bfloat16 mixed-precision step (`ncf.fit.sequence_packing`, `ncf.fit.sequence_epochs`, `ncf.fit.precision`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
from ncf.data.vocab import Vocabulary
from ncf.errors import NcfError
from ncf.fit.precision import choose_dtype
from ncf.fit.sequence_epochs import SequenceRunner, SequenceSource, resolved_loss, sampling_log_q
from ncf.fit.sequence_packing import cut_windows, model_length, pack
from ncf.models.sasrec import build_sasrec
from ncf.train_settings import TrainConfig

NUM_ITEMS = 12


def interactions(lengths: list[int], seed: int = 0) -> SimpleNamespace:
    """Training data of users with `lengths` random items each (rows in time order, distinct moments)."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    within = np.arange(len(users)) - np.repeat(np.cumsum(lengths) - np.array(lengths), lengths)
    recency = (np.repeat(lengths, lengths) - 1 - within).astype(np.int32)
    return SimpleNamespace(
        train_users=users,
        train_items=rng.integers(0, NUM_ITEMS, len(users)).astype(np.int32),
        train_recency=recency,
        moments=recency,
        users=Vocabulary(np.array([f"u{i}" for i in range(len(lengths))], dtype=object)),
        items=Vocabulary(np.array([f"i{i}" for i in range(NUM_ITEMS)], dtype=object)),
    )


def tiny_config(**overrides: object) -> TrainConfig:
    settings = dict(model_type="sasrec", factors=8, dropout=0.0, l2=0.0, max_len=4, max_len_quantile=1.0)
    settings.update(
        seed=1, batch_size=4096, shuffle_ties=False, sequence_loss="softmax", mixed_precision="off"
    )
    return TrainConfig(**{**settings, **overrides})


def full_softmax_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    return log_z - shifted[np.arange(len(labels)), labels]


def test_the_loss_is_the_sum_over_real_events_of_each_window_alone() -> None:
    # users of 5, 2 and 7 items with windows of 4: several windows packed into a row, padding at row ends
    data = interactions([5, 2, 7, 1])
    config = tiny_config()
    model = build_sasrec(config, data)
    source = SequenceSource(data, config)
    batches = source.batches(0)
    assert batches.inputs.shape[0] == 1 and (batches.weights == 0).any()  # one step, with empty slots

    # by hand, before the step updates the weights: every window encoded on its own, a full softmax
    # at each of its real positions
    items, windows = source.ordered_items, source.windows
    expected = 0.0
    for first, length in zip(windows.first, windows.lengths, strict=True):
        inputs, targets = items[first - 1 : first - 1 + length], items[first : first + length]
        states = model.encode(tf.constant(inputs[None]))[0].numpy()
        logits = states @ model.item_table().numpy().T
        expected += full_softmax_loss(logits, targets).sum()
    assert batches.num_samples == 4 + 1 + 6  # every event but each user's first is a target, once
    total = float(SequenceRunner(model, config).run_steps(*batches.step_inputs()))
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_packing_keeps_every_event_once_and_windows_apart() -> None:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 30, 40)
    users = np.repeat(np.arange(40), lengths)
    items = rng.integers(0, 100, len(users)).astype(np.int32)
    windows = cut_windows(users, 40, 8)
    packed = pack(windows, items, 8, 100, rng.permutation(len(windows.lengths)))

    starts = np.cumsum(lengths) - lengths
    expected = Counter(
        (int(u), int(items[i - 1]), int(items[i])) for i, u in enumerate(users) if i not in set(starts)
    )
    real = packed.segments >= 0
    got = Counter(
        zip(
            packed.users[real].tolist(),
            packed.inputs[real].tolist(),
            packed.targets[real].tolist(),
            strict=True,
        )
    )
    assert got == expected
    assert (packed.targets[~real] == 100).all() and (packed.inputs[~real] == 100).all()
    for row_segments, row_users in zip(packed.segments, packed.users, strict=True):
        used = row_segments[row_segments >= 0]
        assert (np.diff(used) >= 0).all()  # each window's slots are contiguous
        for segment in np.unique(used):
            assert len(np.unique(row_users[row_segments == segment])) == 1


def test_model_length_follows_the_data_capped_by_max_len() -> None:
    counts = np.arange(1, 101)  # 1..100 items per user
    assert model_length(counts, 200, 0.99) == 104  # the 99th percentile (99.01 -> 100), rounded up to 8s
    assert model_length(counts, 50, 0.99) == 50
    assert model_length(counts, 200, 1.0) == 104
    assert model_length(np.array([2, 2, 3]), 200, 0.5) == 8
    model = build_sasrec(tiny_config(max_len=200, max_len_quantile=0.99), interactions([5, 2, 7, 1]))
    assert model.spec.max_len == 8 and model.histories.shape == (4, 8)


def test_sampled_softmax_with_log_q_estimates_the_full_softmax() -> None:
    # 200 items with skewed counts; draws by popularity, each negative's logit corrected by the log of
    # its expected count: the sampled loss then estimates the full softmax's (the uncorrected one does not)
    items, draws = 200, 20_000
    counts = (1000.0 / (np.arange(items) + 1.0)).astype(np.int64)
    data = interactions([3] * 4)
    data.items = Vocabulary(np.array([f"i{i}" for i in range(items)], dtype=object))
    model = build_sasrec(tiny_config(), data)
    rng = np.random.default_rng(0)
    model.embeddings["item"].assign(rng.normal(0, 0.5, (items + 1, 8)).astype(np.float32))
    states = tf.constant(rng.normal(0, 1, (64, 8)), tf.float32)
    positives = tf.constant(rng.integers(0, items, 64), tf.int32)

    log_q = sampling_log_q(counts, draws)
    q = np.exp(log_q[:-1]) / draws
    negatives = rng.choice(items, draws, p=q / q.sum()).astype(np.int32)
    runner = SequenceRunner(model, tiny_config(sequence_loss="sampled_softmax"))
    corrected = runner._losses(states, positives, negatives, log_q[negatives])
    uncorrected = runner._losses(states, positives, negatives, np.zeros(draws, np.float32))
    logits = states.numpy() @ model.item_table().numpy().T
    full = full_softmax_loss(logits, positives.numpy())
    assert abs(float(np.mean(corrected)) - full.mean()) < 0.05
    assert abs(float(np.mean(uncorrected)) - full.mean()) > 1.0


def test_scoring_reads_only_the_real_part_of_the_histories() -> None:
    model = build_sasrec(tiny_config(max_len=8, attention_blocks=2), interactions([5, 2, 7, 1]))
    pad = model.padding
    sequences = tf.constant([[pad] * 5 + [3, 1, 4], [pad] * 6 + [2, 7], [pad] * 7 + [5]])
    full = model.encode(sequences)[:, -1].numpy()  # every column, every position of the last block
    np.testing.assert_allclose(model.represent(sequences, tf.constant([0, 1, 2])).numpy(), full, atol=1e-5)


def test_the_bfloat16_step_trains_float32_variables_close_to_the_float32_step() -> None:
    data = interactions([5, 2, 7, 1])
    losses = {}
    for mode in ("off", "on"):
        config = tiny_config(mixed_precision=mode)
        model = build_sasrec(config, data)
        batches = SequenceSource(data, config).batches(0)
        losses[mode] = float(SequenceRunner(model, config).run_steps(*batches.step_inputs()))
        assert all(v.dtype == tf.float32 for v in (*model.embeddings.values(), *model.dense.values()))
        assert all(np.isfinite(v.numpy()).all() for v in model.dense.values())
    np.testing.assert_allclose(losses["on"], losses["off"], rtol=0.02)


def test_precision_and_objective_choices() -> None:
    assert choose_dtype("auto", []) == tf.float32  # a CPU: no mixed precision unless asked
    assert choose_dtype("auto", [(9, 0)]) == tf.bfloat16
    assert choose_dtype("auto", [(7, 0)]) == tf.float32  # no native bfloat16 before compute capability 8
    assert choose_dtype("on", []) == tf.bfloat16 and choose_dtype("off", [(9, 0)]) == tf.float32
    with pytest.raises(NcfError, match="mixed_precision on"):
        choose_dtype("on", [(7, 5)])
    config = tiny_config(sequence_loss="auto", softmax_max_items=100)
    assert resolved_loss(config, 100) == "softmax" and resolved_loss(config, 101) == "sampled_softmax"
    assert resolved_loss(dataclasses.replace(config, sequence_loss="bce"), 10) == "bce"
