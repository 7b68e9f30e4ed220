"""The compiled step loop: one graph call runs many training steps, lazy Adam updates the touched rows.

Per-step cost, not per-sample cost, dominates NCF on CPUs: a step driven from Python costs
milliseconds. So an epoch (batched in numpy by `ncf.fit.pair_epochs`) runs in a `tf.function` that
loops over many steps in-graph, in chunks of about `CHUNK_SECONDS` so that a SIGTERM (spot
interruption) is noticed within seconds. With several workers or devices (`ncf.fit.distribute`)
each step's gradients are summed over every replica, and the decisions between chunks (stop,
next chunk length) are agreed by all workers.

On one device the loop can be compiled with XLA (`jit_compile`): the forward and backward passes, the
lazy Adam updates and the loop itself become one fused program (its speed against the graph executor:
tests/benchmarks/results/speed-steps.json). The epoch's arrays are
cut into fixed blocks of XLA_BLOCK_STEPS steps, so XLA compiles once per training stage, not once per chunk
length; epochs under XLA_MIN_EPOCH_STEPS steps keep the graph executor (the compile would not pay off).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ncf.fit.distribute import Workers
from ncf.fit.optim import LazyAdam
from ncf.fit.pair_sampling import EpochBatches
from ncf.models.base import Model

StopRequested = Callable[[], bool]
CHUNK_SECONDS = 2.0
# Steps per call of the XLA program: it takes fixed-shape blocks, so it compiles once. A block is a small
# copy; the whole epoch passed to XLA instead made every step ~25x slower (the loop carried it).
XLA_BLOCK_STEPS = 16
# Epochs with fewer steps run in the graph executor even with jit_compile: XLA's compile (a few seconds per
# training stage on 2 cores, tens under load) would cost more than it saves over a run of small epochs.
XLA_MIN_EPOCH_STEPS = 1000
_BATCH_SPEC = tf.TensorSpec([None, None], tf.int32)
_VALUE_SPEC = tf.TensorSpec([None, None], tf.float32)
_STEP_SPEC = tf.TensorSpec([], tf.int32)


class EpochRunner(tf.Module):
    """Owns the optimizer and the compiled multi-step function of one model.

    Args:
        model: the model to train; its variables are updated in place.
        learning_rate: Adam's.
        l2: penalty on the embedding rows of each batch.
        implicit: BCE on logits (implicit feedback) or squared error (explicit ratings).
        workers: the job's workers and devices (default: one process, one device).
        jit_compile: compile the step loop with XLA where it can: on one device (with several replicas
            the gradient exchange runs outside XLA, so the graph executor runs their steps).

    Subclasses with other per-step inputs (`ncf.fit.sequence_epochs`) set `INPUT_SIGNATURE` (one spec per
    array of the batches' `step_inputs()`, step first) and `_step`.
    """

    INPUT_SIGNATURE: tuple[tf.TensorSpec, ...] = (_BATCH_SPEC, _BATCH_SPEC, _VALUE_SPEC, _VALUE_SPEC)

    def __init__(
        self,
        model: Model,
        learning_rate: float,
        l2: float,
        implicit: bool,
        workers: Workers | None = None,
        jit_compile: bool = False,
    ) -> None:
        super().__init__(name="epoch_runner")
        self.model = model
        self.workers = workers or Workers()
        jit_compile = jit_compile and not self.workers.distributed
        self.variables_in_order = list(model.embeddings.values()) + list(model.dense.values())
        self.optimizer = LazyAdam(self.variables_in_order, learning_rate, jit_compiled=jit_compile)
        self.chunk_steps = 8  # steps per graph call, adapted to ~CHUNK_SECONDS while training
        self.l2 = l2
        self.implicit = implicit
        signature = [_STEP_SPEC, _STEP_SPEC, *self.INPUT_SIGNATURE]
        self.graph_window = tf.function(self._run_window, input_signature=signature)  # traced when first used
        self.run_window = self.graph_window
        if jit_compile:
            block = [tf.TensorSpec([XLA_BLOCK_STEPS, *s.shape[1:]], s.dtype) for s in self.INPUT_SIGNATURE]
            block_signature = [*signature[:2], *block]
            self._xla_block = tf.function(self._run_window, input_signature=block_signature, jit_compile=True)
            self.run_window = tf.function(self._run_blocks, input_signature=signature)

    def _penalty(self, users: tf.Tensor, items: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """L2 on the embedding rows of this batch (the NCF-style per-batch regulariser)."""
        total = tf.zeros_like(weights)
        for name, table in self.model.embeddings.items():
            index = users if name.endswith("user") or name == "user_bias" else items
            total += tf.reduce_sum(tf.square(tf.gather(table, index)), axis=1)
        return self.l2 * total

    def _step(self, users: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        users, items, targets, weights = self.workers.replica_share(users, items, targets, weights)
        with tf.GradientTape() as tape:
            logits = self.model.logits(users, items)
            if self.implicit:
                losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
            else:
                losses = tf.square(logits - targets)
            weighted = tf.reduce_sum(weights * losses)
            penalty = tf.reduce_sum(weights * self._penalty(users, items, weights))
            objective = (weighted + penalty) / tf.maximum(tf.reduce_sum(weights), 1.0)
            if self.workers.replicas_in_sync > 1:
                objective /= self.workers.replicas_in_sync  # the summed gradients are then the replicas' mean
        gradients = self.workers.all_reduce_gradients(tape.gradient(objective, self.variables_in_order))
        self.optimizer.apply(gradients, self.variables_in_order)
        return weighted

    def run_steps(self, *inputs: np.ndarray | tf.Tensor) -> tf.Tensor:
        """Train on each [step] row of the inputs in turn; the summed weighted loss (before the penalty)."""
        return self.run_window(0, len(inputs[0]), *inputs)

    def _run_window(self, start: tf.Tensor, stop: tf.Tensor, *inputs: tf.Tensor) -> tf.Tensor:
        """`run_steps` on the steps `start` to `stop` (excluded) of the inputs."""
        # A `while` loop, not `for step in tf.range(...)`: under XLA, autograph gives a range loop a
        # maximum iteration count, which XLA needs as a compile-time constant, so each distinct window
        # length compiled a program of its own (~1 s each on 2 cores).
        total = tf.constant(0.0)
        step = start
        while step < stop:
            total += self.workers.replica_total(
                self.workers.run(self._step, tuple(values[step] for values in inputs))
            )
            step += 1
        return total

    def _run_blocks(self, start: tf.Tensor, stop: tf.Tensor, *inputs: tf.Tensor) -> tf.Tensor:
        """`_run_window` through the XLA program of XLA_BLOCK_STEPS steps: each block of the window is
        cut out here (the last one padded, its padding never run) and trained by one call of it."""
        total = tf.constant(0.0)
        for first in tf.range(start, stop, XLA_BLOCK_STEPS):
            count = tf.minimum(XLA_BLOCK_STEPS, stop - first)
            block = []
            for values in inputs:
                part = values[first : first + count]
                padding = [[0, XLA_BLOCK_STEPS - count]] + [[0, 0]] * (len(values.shape) - 1)
                block.append(tf.pad(part, padding))
            total += self._xla_block(0, count, *block)
        return total

    def stop_agreed(self, stop_requested: StopRequested, proposal: int | None = None) -> bool:
        """Whether any worker was asked to stop; also adopts the chief's next chunk length (`proposal`,
        default: the current one). Every worker must call it at the same point."""
        workers = self.workers
        proposal = self.chunk_steps if proposal is None else proposal
        agreed = workers.sum([float(stop_requested()), proposal if workers.is_chief else 0])
        self.chunk_steps = int(agreed[1])
        return bool(agreed[0] > 0)

    def train_epoch(self, batches: EpochBatches, stop_requested: StopRequested) -> float | None:
        """Run one epoch in chunks of ~CHUNK_SECONDS; its summed loss, or None when asked to stop."""
        inputs = [tf.constant(values) for values in batches.step_inputs()]  # one copy, shared by the chunks
        steps = inputs[0].shape[0]
        window = self.run_window if steps >= XLA_MIN_EPOCH_STEPS else self.graph_window
        done = 0
        loss = 0.0
        while done < steps:
            chunk = min(self.chunk_steps, steps - done)
            started = time.perf_counter()
            loss += float(window(done, done + chunk, *inputs))
            done += chunk
            rate = chunk / max(time.perf_counter() - started, 1e-3)
            proposal = int(np.clip(rate * CHUNK_SECONDS, 1, 4 * self.chunk_steps))
            if self.stop_agreed(stop_requested, proposal) and done < steps:
                return None
        return loss
