"""Gradients summed over replicas through two all-gathers (ncf.fit.distribute.sum_gathered)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from ncf.fit.distribute import sum_gathered


def replica_gradients(seed: int) -> list:
    """What one replica's tape gives for a small NCF-like model: embedding rows and dense weights."""
    rng = np.random.default_rng(seed)
    users = tf.IndexedSlices(
        tf.constant(rng.normal(size=(4, 3)), tf.float32), tf.constant(rng.integers(0, 9, 4), tf.int32), [9, 3]
    )
    items = tf.IndexedSlices(
        tf.constant(rng.normal(size=(4, 2)), tf.float32), tf.constant(rng.integers(0, 5, 4), tf.int64), [5, 2]
    )
    weights = tf.constant(rng.normal(size=(3, 2)), tf.float32)
    bias = tf.constant(rng.normal(), tf.float32)
    return [users, weights, items, bias]


def test_every_replica_gets_the_sum_of_all_replicas_gradients() -> None:
    replicas = [replica_gradients(seed) for seed in range(3)]
    sent: list[list[tf.Tensor]] = [[] for _ in replicas]

    for index, gradients in enumerate(replicas):  # what each replica sends, in call order
        sum_gathered(gradients, lambda tensor, index=index: sent[index].append(tensor) or tensor)

    calls = iter(range(2))

    def all_gather(tensor: tf.Tensor) -> tf.Tensor:  # concatenation along axis 0, replica order
        call = next(calls)
        np.testing.assert_array_equal(tensor, sent[0][call])
        return tf.concat([sent[r][call] for r in range(len(replicas))], axis=0)

    summed = sum_gathered(replicas[0], all_gather)
    assert len(sent[0]) == 2  # one collective for every float, one for every index
    for position, result in enumerate(summed):
        expected = sum(tf.convert_to_tensor(gradients[position]) for gradients in replicas)
        if isinstance(replicas[0][position], tf.IndexedSlices):
            assert isinstance(result, tf.IndexedSlices)
            assert result.indices.dtype == replicas[0][position].indices.dtype
            assert result.values.shape[0] == 3 * 4  # every replica's rows; the optimizer sums duplicates
        np.testing.assert_allclose(tf.convert_to_tensor(result), expected, rtol=1e-6)


def test_dense_only_gradients_need_one_collective() -> None:
    gradients = [tf.constant([1.0, 2.0]), tf.constant([[3.0]])]
    calls = []
    summed = sum_gathered(gradients, lambda tensor: calls.append(tensor) or tf.concat([tensor, tensor], 0))
    assert len(calls) == 1
    np.testing.assert_array_equal(summed[0], [2.0, 4.0])
    np.testing.assert_array_equal(summed[1], [[6.0]])
