"""Multi-worker training on SageMaker's machinery: TF_CONFIG + MultiWorkerMirroredStrategy.

A multi-instance SageMaker job runs this same script on every host (`algo-1`, `algo-2`, ...).
The SDK v3 `ModelTrainer` does not set `TF_CONFIG`, so it is built here the way the
SageMaker TensorFlow toolkit does: workers `host:8890` in `SM_HOSTS` order, this host's
index, the first host is the chief. `NCF_WORKER_ADDRESSES` ("host:port,host:port", one per
entry of `SM_HOSTS`) overrides the addresses, e.g. to run workers on 127.0.0.1 with free
ports in tests.

Every worker holds the whole model as ordinary (non-distributed) variables, initialised
identically from the seed. Each step, every worker computes gradients on its own shard of
the batch, the strategy all-reduces them (embedding gradients stay `IndexedSlices`, which
the collective all-gathers: the cost is the batch's rows, not the tables), and every worker
applies the same reduced gradients with the same lazy Adam: the weights stay identical
without broadcasting them. Because no variable is a distributed variable, checkpoints need
no cross-worker synchronisation and the chief alone saves them.

Dead or stuck peers: the coordination service's heartbeats make the survivors' collectives
fail within about 10 s of a worker dying. The few collectives outside the training steps (stop
flag and chunk length every ~2 s, evaluation sums, the resume check) also have a timeout
(`NCF_COLLECTIVE_TIMEOUT`, seconds, default 300) against a peer that hangs alive. The per-step
gradient all-reduce has none: TF 2.21 keeps a thread alive per collective with a timeout until
that timeout passes (measured: 12,000 threads after 2,000 steps), which exhausts a long epoch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncf import sagemaker_env
from ncf.errors import NcfError

SAGEMAKER_WORKER_PORT = 8890
ADDRESSES_VARIABLE = "NCF_WORKER_ADDRESSES"
TIMEOUT_VARIABLE = "NCF_COLLECTIVE_TIMEOUT"
DEFAULT_COLLECTIVE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Cluster:
    """The workers of a multi-host job ("host:port" each) and which of them this process is."""

    workers: tuple[str, ...]
    index: int

    def tf_config(self) -> dict[str, Any]:
        return {"cluster": {"worker": list(self.workers)}, "task": {"type": "worker", "index": self.index}}


def resolve_cluster(environ: Mapping[str, str]) -> Cluster | None:
    """The job's cluster from the SageMaker environment, or None for a single-host job."""
    hosts, current = sagemaker_env.cluster(environ)
    override = environ.get(ADDRESSES_VARIABLE, "")
    if len(hosts) < 2 and not override:
        return None
    if current not in hosts:
        raise NcfError(f"SM_CURRENT_HOST {current!r} is not one of SM_HOSTS {hosts}")
    addresses = [f"{host}:{SAGEMAKER_WORKER_PORT}" for host in hosts]
    if override:
        addresses = [a.strip() for a in override.split(",") if a.strip()]
        if len(addresses) != len(hosts):
            raise NcfError(
                f"{ADDRESSES_VARIABLE} lists {len(addresses)} addresses but SM_HOSTS has {len(hosts)} hosts"
            )
    return Cluster(tuple(addresses), hosts.index(current))


def collective_timeout(environ: Mapping[str, str]) -> float:
    raw = environ.get(TIMEOUT_VARIABLE, "")
    try:
        value = float(raw) if raw else DEFAULT_COLLECTIVE_TIMEOUT
    except ValueError:
        raise NcfError(f"{TIMEOUT_VARIABLE} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise NcfError(f"{TIMEOUT_VARIABLE} must be positive, got {raw!r}")
    return value


class Workers:
    """This process's place among the workers, and the collectives between them.

    A single worker (`Workers()`) has no strategy: the trainer then runs exactly the
    single-process fast path and every collective below is the identity.
    """

    def __init__(
        self,
        index: int = 0,
        count: int = 1,
        strategy: Any = None,
        step_options: Any = None,
        options: Any = None,
    ) -> None:
        self.index = index
        self.count = count
        self.strategy = strategy
        self.step_options = step_options
        self.options = options
        self._sum_functions: dict[int, Any] = {}

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @property
    def distributed(self) -> bool:
        return self.strategy is not None

    def shard(self, values: np.ndarray) -> np.ndarray:
        """This worker's rows of `values` (every count-th row from its index)."""
        return values[self.index :: self.count]

    def run(self, function: Any, args: tuple) -> Any:
        """Call `function(*args)` in the strategy's replica context (or directly on one worker)."""
        return self.strategy.run(function, args=args) if self.strategy is not None else function(*args)

    def all_reduce_gradients(self, gradients: list) -> list:
        """Sum gradients (dense tensors and IndexedSlices) over workers; call inside `run`."""
        if self.strategy is None:
            return gradients
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        return context.all_reduce(tf.distribute.ReduceOp.SUM, gradients, options=self.step_options)

    def sum(self, values: np.ndarray | list[float]) -> np.ndarray:
        """Element-wise sum over workers of a small float vector; every worker must call it."""
        array = np.asarray(values, dtype=np.float64)
        if self.strategy is None:
            return array
        import tensorflow as tf

        function = self._sum_functions.get(len(array))
        if function is None:

            def reduce(value: tf.Tensor) -> tf.Tensor:
                # The identity makes the input a value of this replica's device (else: "destinations
                # can not be empty").
                local = tf.identity(value)
                context = tf.distribute.get_replica_context()
                return context.all_reduce(tf.distribute.ReduceOp.SUM, local, options=self.options)

            function = tf.function(lambda value: self.strategy.run(reduce, args=(value,)))
            self._sum_functions[len(array)] = function
        return function(tf.constant(array)).numpy()

    @contextmanager
    def failures_reported(self) -> Iterator[None]:
        """Turn a failed collective (a peer died, hung or is unreachable) into a clear NcfError."""
        try:
            yield
        except Exception as exc:
            import tensorflow as tf

            if self.strategy is None or not isinstance(exc, tf.errors.OpError):
                raise
            detail = next((line for line in str(exc.message).splitlines() if line.strip()), "")
            raise NcfError(
                f"worker {self.index} of {self.count}: lost contact with the other workers "
                f"({type(exc).__name__}: {detail[:300]}). Another worker died, hung or is unreachable: "
                "see its log. Restarting the job resumes from the last checkpoint"
            ) from exc


def connect(environ: Mapping[str, str], log: Any) -> Workers:
    """Join the job's workers (blocks until all have started), or a single worker when alone."""
    cluster = resolve_cluster(environ)
    if cluster is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
        if gpus > 1:
            log(f"warning: {gpus} GPUs visible; training uses one (MirroredStrategy is not implemented)")
        return Workers()
    os.environ["TF_CONFIG"] = json.dumps(cluster.tf_config())
    import tensorflow as tf

    timeout = collective_timeout(environ)
    ring = tf.distribute.experimental.CommunicationImplementation.RING
    step_options = tf.distribute.experimental.CommunicationOptions(implementation=ring)
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout, implementation=ring)
    log(
        f"multi-worker: worker {cluster.index} of {len(cluster.workers)} ({', '.join(cluster.workers)}), "
        f"MultiWorkerMirroredStrategy, collective timeout {timeout:g}s"
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=step_options)
    return Workers(cluster.index, len(cluster.workers), strategy, step_options, options)
