"""Adam that updates only the embedding rows a batch touched ("lazy" Adam), as TF1's LazyAdamOptimizer did.

Keras' Adam updates every row of every embedding table at every step, which costs more than the forward
and backward passes of a small NCF model; here embedding tables get Adam's moments and updates only for
the rows in the batch, and the small dense weights get ordinary Adam. The speed-up grows with the
tables: `make bench` measures it (tests/benchmarks/results/optimizer.json, the README's *Results*).

Under a distribution strategy the variables are mirrored, one copy per local device: `apply` is called
in every replica with the same all-reduced gradients, steps once (a `merge_call`) and updates each copy
with the same numbers, so the copies stay identical without broadcasting weights.

Inside an XLA cluster (the single-device step loop compiles its steps with `jit_compile`, see
`ncf.fit.step_loop`) there is no `tf.unique`, whose output has a data-dependent shape. There the rows a
batch repeats are summed through each row's first slot in the batch (one int per table row, scattered
with a minimum) and every slot writes its row's new value: repeated rows write identical values, so the
result is the same update as the `tf.unique` path's, with shapes fixed by the batch.
"""

from __future__ import annotations

import tensorflow as tf


class LazyAdam(tf.Module):
    """Adam with row-sparse updates for `tf.IndexedSlices` gradients.

    How it differs from Keras' Adam: for a row that is not in the batch, Keras' Adam still decays the
    row's moments and moves the row by `lr * m / (sqrt(v) + epsilon)`, so a row keeps drifting on the
    momentum of batches it was in. Lazy Adam leaves such a row, and its moments, exactly as they were;
    when the row is next in a batch its moments resume from where they stopped (not decayed for the
    steps it missed). The bias correction uses the global step count in both. Rows that are in every
    batch, and dense variables, get exactly Adam's update.

    Args:
        variables: the variables it will update, in the order `apply` receives their gradients.
        learning_rate: Adam's step size (a variable, so a checkpoint restores it).
        beta_1, beta_2, epsilon: as in Adam (Kingma & Ba 2015; Keras' defaults).
        jit_compiled: `apply` runs inside an XLA-compiled function (rows deduplicated without `tf.unique`).
    """

    def __init__(
        self,
        variables: list[tf.Variable],
        learning_rate: float,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        jit_compiled: bool = False,
    ) -> None:
        super().__init__(name="lazy_adam")
        self.learning_rate = tf.Variable(learning_rate, trainable=False, dtype=tf.float32, name="lr")
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.jit_compiled = jit_compiled
        self.iterations = tf.Variable(0, trainable=False, dtype=tf.int64, name="iterations")
        self.first_moments = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.second_moments = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(self, gradients: list, variables: list[tf.Variable]) -> None:
        """One Adam step; `gradients[i]` belongs to `variables[i]` (same order as at construction).

        In a strategy's replica context the gradients must already be all-reduced.
        """
        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            tf.distribute.get_replica_context().merge_call(self._apply_to_copies, args=(gradients, variables))
            return
        corrected_lr = self._advance()
        for grad, var, m, v in self._with_moments(gradients, variables):
            self._update(var, grad, m, v, corrected_lr)

    def _apply_to_copies(self, strategy: tf.distribute.Strategy, gradients: list, variables: list) -> None:
        """The step in cross-replica context: once, applied to every device's copy of each variable."""
        corrected_lr = self._advance()
        for grad, var, m, v in self._with_moments(gradients, variables):
            strategy.extended.update(var, self._update, args=(grad, m, v, corrected_lr), group=False)

    def _with_moments(self, gradients: list, variables: list) -> zip:
        return zip(gradients, variables, self.first_moments, self.second_moments, strict=True)

    def _advance(self) -> tf.Tensor:
        """Count the step; Adam's bias-corrected learning rate for it."""
        self.iterations.assign_add(1)
        step = tf.cast(self.iterations, tf.float32)
        return self.learning_rate * tf.sqrt(1.0 - self.beta_2**step) / (1.0 - self.beta_1**step)

    def _update(self, var: tf.Variable, grad: object, m: tf.Variable, v: tf.Variable, lr: tf.Tensor) -> None:
        if isinstance(grad, tf.IndexedSlices):
            self._sparse_step(grad, var, m, v, lr)
        else:
            m.assign(self.beta_1 * m + (1.0 - self.beta_1) * grad)
            v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad))
            var.assign_sub(lr * m / (tf.sqrt(v) + self.epsilon))

    def _sparse_step(
        self, grad: tf.IndexedSlices, var: tf.Variable, m: tf.Variable, v: tf.Variable, lr: tf.Tensor
    ) -> None:
        rows, summed = (_summed_per_slot if self.jit_compiled else _summed_per_row)(grad, tf.shape(var)[0])
        m_rows = self.beta_1 * tf.gather(m, rows) + (1.0 - self.beta_1) * summed
        v_rows = self.beta_2 * tf.gather(v, rows) + (1.0 - self.beta_2) * tf.square(summed)
        step = lr * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        # An update, not a subtraction: repeated rows (`_summed_per_slot`) all write the same value.
        var.scatter_update(tf.IndexedSlices(tf.gather(var, rows) - step, rows))


def _summed_per_row(grad: tf.IndexedSlices, table_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the distinct rows of the gradient, each one's summed gradient): `tf.unique`, for graph mode."""
    rows, positions = tf.unique(grad.indices)
    return rows, tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(rows)[0])


def _summed_per_slot(grad: tf.IndexedSlices, table_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the gradient's rows as they come, repeats included, each slot's row's summed gradient), in shapes
    fixed by the batch (XLA). A row's first slot in the batch names its sum: found by scattering each
    slot's position into a per-table-row int buffer with a minimum."""
    slots = tf.shape(grad.indices)[0]
    first = tf.math.unsorted_segment_min(tf.range(slots), grad.indices, table_rows)
    owner = tf.gather(first, grad.indices)
    summed = tf.math.unsorted_segment_sum(grad.values, owner, slots)
    return grad.indices, tf.gather(summed, owner)
