"""Lazy Adam: touches only the embedding rows of the batch, and matches Adam on those rows."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from ncf.optim import LazyAdam


def test_only_rows_in_the_batch_change() -> None:
    table = tf.Variable(np.ones((5, 2), np.float32))
    optimizer = LazyAdam([table], learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 3, 3]))
    optimizer.apply(tape.gradient(loss, [table]), [table])
    changed = np.any(table.numpy() != 1.0, axis=1)
    assert changed.tolist() == [False, True, False, True, False]
    assert np.all(optimizer.first_moments[0].numpy()[[0, 2, 4]] == 0.0)


def test_rows_follow_the_adam_update_with_duplicates_summed() -> None:
    start = np.arange(8, dtype=np.float32).reshape(4, 2)
    table = tf.Variable(start)
    optimizer = LazyAdam([table], learning_rate=0.01)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table, [2, 2, 0])))
        optimizer.apply(tape.gradient(loss, [table]), [table])

    reference = tf.Variable(start)
    keras_adam = tf.keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-7)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(reference, [2, 2, 0])))
        keras_adam.apply_gradients([(tf.convert_to_tensor(tape.gradient(loss, reference)), reference)])
    np.testing.assert_allclose(table.numpy()[[0, 2]], reference.numpy()[[0, 2]], rtol=1e-5)
    np.testing.assert_array_equal(table.numpy()[[1, 3]], start[[1, 3]])


def test_dense_variables_get_plain_adam() -> None:
    weight = tf.Variable([1.0, -1.0])
    optimizer = LazyAdam([weight], learning_rate=0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weight * weight)
    optimizer.apply(tape.gradient(loss, [weight]), [weight])
    # The first Adam step moves every coordinate by the learning rate, against the gradient's sign.
    np.testing.assert_allclose(weight.numpy(), [0.9, -0.9], rtol=1e-5)
