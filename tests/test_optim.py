"""Lazy Adam: touches only the embedding rows of the batch, and matches Adam on those rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from ncf.fit.optim import LazyAdam


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


def test_rows_left_out_of_a_batch_stay_exactly_put_where_keras_adam_moves_them() -> None:
    """Row 0 is in the first batch only. Keras' Adam keeps moving it by its first moment; lazy Adam,
    which updates moments and weights of the batch's rows only, leaves it bit-identical."""
    start = np.arange(8, dtype=np.float32).reshape(4, 2)
    batches = [[0, 2], [2], [2, 3]]

    def train(step: Callable[[object, tf.Variable], None], table: tf.Variable) -> list[np.ndarray]:
        after = []
        for rows in batches:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(tf.gather(table, rows)))
            step(tape.gradient(loss, table), table)
            after.append(table.numpy().copy())
        return after

    lazy_table = tf.Variable(start)
    lazy = LazyAdam([lazy_table], learning_rate=0.01)
    lazy_steps = train(lambda grad, table: lazy.apply([grad], [table]), lazy_table)
    keras_table = tf.Variable(start)
    keras_adam = tf.keras.optimizers.Adam(learning_rate=0.01, epsilon=1e-7)
    keras_steps = train(
        lambda grad, table: keras_adam.apply_gradients([(tf.convert_to_tensor(grad), table)]), keras_table
    )

    # Row 0 after its only step: the same update in both.
    np.testing.assert_allclose(lazy_steps[0][0], keras_steps[0][0], rtol=1e-6)
    # Steps 2 and 3 do not touch row 0: lazy Adam leaves it exactly as it was, Keras' Adam moves it.
    assert np.array_equal(lazy_steps[2][0], lazy_steps[0][0])
    assert not np.allclose(keras_steps[2][0], keras_steps[0][0], rtol=0, atol=1e-4)
    # Row 3 joins at step 3 with zero moments in both: the same first-step update.
    np.testing.assert_allclose(lazy_steps[2][3], keras_steps[2][3], rtol=1e-5)
    # Row 2, in every batch, follows Adam exactly; row 1, never in a batch, never moves.
    np.testing.assert_allclose(lazy_steps[2][2], keras_steps[2][2], rtol=1e-5)
    assert np.array_equal(lazy_steps[2][1], start[1]) and np.array_equal(keras_steps[2][1], start[1])


def test_the_xla_update_matches_the_graph_update_with_repeated_rows() -> None:
    """Inside XLA (no tf.unique) repeated rows are summed through their first slot: the same update."""
    start = np.random.default_rng(3).normal(size=(6, 3)).astype(np.float32)
    rows = tf.constant([4, 1, 4, 4, 0, 1])
    weights = tf.constant(np.arange(1, 19, dtype=np.float32).reshape(6, 3))

    def trained(jit_compiled: bool) -> tuple[np.ndarray, np.ndarray]:
        table = tf.Variable(start)
        optimizer = LazyAdam([table], learning_rate=0.05, jit_compiled=jit_compiled)

        @tf.function(jit_compile=jit_compiled)
        def step() -> None:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(tf.gather(table, rows)) * weights)
            optimizer.apply(tape.gradient(loss, [table]), [table])

        for _ in range(3):
            step()
        return table.numpy(), optimizer.second_moments[0].numpy()

    (graph, graph_v), (xla, xla_v) = trained(False), trained(True)
    np.testing.assert_allclose(xla, graph, rtol=1e-5)
    np.testing.assert_allclose(xla_v, graph_v, rtol=1e-5)
    np.testing.assert_array_equal(xla[[2, 3, 5]], start[[2, 3, 5]])
