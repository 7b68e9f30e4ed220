"""Adam that updates only the embedding rows a batch touched ("lazy" Adam), as TF1's LazyAdamOptimizer did.

Keras' Adam updates every row of every embedding table at every step, which costs more than the forward
and backward passes of a small NCF model; here embedding tables get Adam's moments and updates only for
the rows in the batch, and the small dense weights get ordinary Adam. The speed-up grows with the
tables: `make bench` measures it (tests/benchmarks/results/optimizer.json, the README's *Results*).

Under a distribution strategy the variables are mirrored, one copy per local device: `apply` is called
in every replica with the same all-reduced gradients, steps once (a `merge_call`) and updates each copy
with the same numbers, so the copies stay identical without broadcasting weights.
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
    """

    def __init__(
        self,
        variables: list[tf.Variable],
        learning_rate: float,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ) -> None:
        super().__init__(name="lazy_adam")
        self.learning_rate = tf.Variable(learning_rate, trainable=False, dtype=tf.float32, name="lr")
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
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
        rows, positions = tf.unique(grad.indices)
        summed = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(rows)[0])
        m_rows = self.beta_1 * tf.gather(m, rows) + (1.0 - self.beta_1) * summed
        v_rows = self.beta_2 * tf.gather(v, rows) + (1.0 - self.beta_2) * tf.square(summed)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        var.scatter_sub(tf.IndexedSlices(lr * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))
