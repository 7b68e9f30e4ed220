"""Distributed training on SageMaker's machinery: MultiWorkerMirroredStrategy across hosts,
MirroredStrategy across the GPUs of one host.

A multi-instance SageMaker job runs this same script on every host (`algo-1`, `algo-2`, ...).
The SDK v3 `ModelTrainer` does not set `TF_CONFIG`, so it is built here the way the
SageMaker TensorFlow toolkit does: workers `host:8890` in `SM_HOSTS` order, this host's
index, the first host is the chief. `NCF_WORKER_ADDRESSES` ("host:port,host:port", one per
entry of `SM_HOSTS`) overrides the addresses, e.g. to run workers on 127.0.0.1 with free
ports in tests. A single host with several GPUs mirrors training over all of them
(`NCF_DEVICES`, e.g. "/gpu:0,/gpu:1", picks the devices); a single host with at most one GPU
(or only CPUs) runs the single-process fast path with no strategy at all.

Every replica (a device of a worker) holds the whole model: variables are created in the
strategy's scope, so they are mirrored, one copy per local device, initialised identically.
Each step, every worker takes its own shard of the data, its local replicas split the
worker's batch, the strategy all-reduces the gradients (embedding gradients stay
`IndexedSlices`, which the collective all-gathers: the cost is the batch's rows, not the
tables), and the lazy Adam step runs once and updates every copy with the same reduced
gradients (see `ncf.fit.optim`): the weights stay identical without broadcasting them. The
checkpoint holds one copy of each variable; the chief alone saves it.

Dead or stuck peers: the coordination service's heartbeats make the survivors' collectives
fail within about 10 s of a worker dying. The few collectives outside the training steps (stop
flag and chunk length every ~2 s, evaluation sums, the resume check) also have a timeout
(`NCF_COLLECTIVE_TIMEOUT`, seconds, default 300) against a peer that hangs alive. The per-step
gradient all-reduce has none: TF 2.21 keeps a thread alive per collective with a timeout until
that timeout passes (measured: 12,000 threads after 2,000 steps), which exhausts a long epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncf import sagemaker_env
from ncf.errors import NcfError

SAGEMAKER_WORKER_PORT = 8890
ADDRESSES_VARIABLE = "NCF_WORKER_ADDRESSES"
TIMEOUT_VARIABLE = "NCF_COLLECTIVE_TIMEOUT"
DEVICES_VARIABLE = "NCF_DEVICES"
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


def local_worker_addresses(count: int) -> str:
    """`NCF_WORKER_ADDRESSES` for `count` workers on this machine: free ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    finally:
        for s in sockets:
            s.close()


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
    """This process's place among the workers, its local replicas, and the collectives between them.

    A single worker on a single device (`Workers()`) has no strategy: the trainer then runs
    exactly the single-process fast path and every collective below is the identity.
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

    @property
    def local_replicas(self) -> int:
        """Devices this worker trains on (its replicas)."""
        return len(self.strategy.extended.worker_devices) if self.strategy is not None else 1

    @property
    def replicas_in_sync(self) -> int:
        """Replicas of the whole job: workers times their devices."""
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    def scope(self) -> AbstractContextManager:
        """Where the model and optimizer must be created: their variables get a copy per local device."""
        return self.strategy.scope() if self.strategy is not None else nullcontext()

    def local_copies(self, variable: Any) -> tuple:
        """Every local device's copy of a variable created in `scope()`."""
        return (
            (variable,)
            if self.strategy is None
            else tuple(self.strategy.experimental_local_results(variable))
        )

    def shard(self, values: np.ndarray) -> np.ndarray:
        """This worker's rows of `values` (every count-th row from its index)."""
        return values[self.index :: self.count]

    def replica_share(self, *tensors: Any) -> tuple:
        """This replica's rows of the worker's batch (every local_replicas-th row); call inside `run`."""
        replicas = self.local_replicas
        if replicas == 1:
            return tensors
        import tensorflow as tf

        local = tf.distribute.get_replica_context().replica_id_in_sync_group % replicas
        return tuple(tensor[local::replicas] for tensor in tensors)

    def run(self, function: Any, args: tuple) -> Any:
        """Call `function(*args)` in every replica (or directly on one device); args go to all replicas."""
        return self.strategy.run(function, args=args) if self.strategy is not None else function(*args)

    def replica_total(self, per_replica: Any) -> Any:
        """The sum over this worker's replicas of a value `run` returned (the value itself on one)."""
        if self.strategy is None:
            return per_replica
        import tensorflow as tf

        return tf.add_n(list(self.strategy.experimental_local_results(per_replica)))

    def all_reduce_gradients(self, gradients: list) -> list:
        """Sum gradients (dense tensors and IndexedSlices) over all replicas; call inside `run`."""
        if self.strategy is None:
            return gradients
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        return sum_gathered(
            gradients, lambda tensor: context.all_gather(tensor, axis=0, options=self.step_options)
        )

    def sum(self, values: np.ndarray | list[float]) -> np.ndarray:
        """Element-wise sum over workers of a small float vector; every worker must call it."""
        array = np.asarray(values, dtype=np.float64)
        if self.count == 1:
            return array
        import tensorflow as tf

        function = self._sum_functions.get(len(array))
        if function is None:
            function = self._once_per_worker(
                lambda context, value: context.all_reduce(
                    tf.distribute.ReduceOp.SUM, value, options=self.options
                )
            )
            self._sum_functions[len(array)] = function
        return function(tf.constant(array)).numpy()

    def each(self, value: float) -> np.ndarray:
        """Every worker's `value`, in worker order; every worker must call it."""
        mine = np.zeros(self.count)
        mine[self.index] = value
        return self.sum(mine)

    def agreed_digest(self, text: str) -> str:
        """One digest of every worker's `text`, the same on all of them (`text` itself on one worker)."""
        if self.count == 1:
            return text
        # 40-bit parts: their sum over up to 8,192 workers stays exact in a float64 all-reduce.
        part = int(hashlib.sha256(text.encode()).hexdigest()[:10], 16)
        return f"{int(self.sum([part])[0]):x}x{self.count}"

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """Every worker's int64 [n, k] rows, stacked in worker order; every worker must call it."""
        if self.count == 1:
            return rows
        import tensorflow as tf

        sizes = self.each(len(rows)).astype(np.int64)
        padded = np.zeros((int(sizes.max()), rows.shape[1]), np.int64)  # every replica sends one shape
        padded[: len(rows)] = rows
        gather = self._once_per_worker(
            lambda context, value: context.all_gather(value, axis=0, options=self.options)
        )
        stacked = gather(tf.constant(padded)).numpy()
        per_replica = stacked.reshape(self.count, self.local_replicas, len(padded), rows.shape[1])[:, 0]
        return np.concatenate([per_replica[w, : sizes[w]] for w in range(self.count)])

    def _once_per_worker(self, collective: Callable[[Any, Any], Any]) -> Any:
        """A compiled `collective(replica_context, value)` run in every replica, where each worker's
        first replica holds `value` and its others zeros, so a worker's value counts once whatever its
        device count; returns the result on this worker's first replica."""
        import tensorflow as tf

        replicas = self.local_replicas

        def in_replica(value: tf.Tensor) -> tf.Tensor:
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group % replicas, 0)
            # The identity makes the input a value of this replica's device (else: "destinations can
            # not be empty").
            local = tf.identity(tf.where(first, value, tf.zeros_like(value)))
            return collective(context, local)

        def everywhere(value: tf.Tensor) -> tf.Tensor:
            return self.strategy.experimental_local_results(self.strategy.run(in_replica, args=(value,)))[0]

        return tf.function(everywhere)

    @contextmanager
    def failures_reported(self) -> Iterator[None]:
        """Turn a failed collective (a peer died, hung or is unreachable) into a clear NcfError."""
        try:
            yield
        except Exception as exc:
            import tensorflow as tf

            if self.count == 1 or not isinstance(exc, tf.errors.OpError):
                raise
            detail = next((line for line in str(exc.message).splitlines() if line.strip()), "")
            raise NcfError(
                f"worker {self.index} of {self.count}: lost contact with the other workers "
                f"({type(exc).__name__}: {detail[:300]}). Another worker died, hung or is unreachable: "
                "see its log. Restarting the job resumes from the last checkpoint"
            ) from exc


def sum_gathered(gradients: list, all_gather: Callable[[Any], Any]) -> list:
    """The sum over replicas of each gradient, in two collectives whatever the model.

    `all_reduce` of a gradient list costs one collective per dense tensor and two per
    IndexedSlices: about 17 per NeuMF step, each a network round trip that NCF's short steps
    cannot hide. Here every replica flattens all of its gradients into one float vector (and
    the IndexedSlices' indices into one int64 vector), `all_gather` (concatenation along axis
    0, as `ReplicaContext.all_gather`) collects them, and each replica unpacks the same
    result in the same order: embedding gradients become IndexedSlices of every replica's
    rows (duplicates are summed by the optimizer), dense ones are summed. Every replica must
    send the same sizes, which fixed batch shapes guarantee.
    """
    import tensorflow as tf

    sparse = [isinstance(g, tf.IndexedSlices) for g in gradients]
    flat = [
        tf.reshape(g.values if is_sparse else g, [-1]) for g, is_sparse in zip(gradients, sparse, strict=True)
    ]
    indices = [
        tf.cast(g.indices, tf.int64) for g, is_sparse in zip(gradients, sparse, strict=True) if is_sparse
    ]
    flat_sizes = [tf.size(f) for f in flat]
    index_sizes = [tf.size(i) for i in indices]
    values = tf.reshape(all_gather(tf.concat(flat, 0)), [-1, tf.add_n(flat_sizes)])
    if indices:
        gathered_indices = tf.reshape(all_gather(tf.concat(indices, 0)), [-1, tf.add_n(index_sizes)])
        index_parts = iter(tf.split(gathered_indices, index_sizes, axis=1))
    summed = []
    for gradient, is_sparse, part in zip(
        gradients, sparse, tf.split(values, flat_sizes, axis=1), strict=True
    ):
        if is_sparse:
            rows = tf.reshape(part, tf.concat([[-1], tf.shape(gradient.values)[1:]], 0))
            ids = tf.cast(tf.reshape(next(index_parts), [-1]), gradient.indices.dtype)
            summed.append(tf.IndexedSlices(rows, ids, gradient.dense_shape))
        else:
            summed.append(tf.reshape(tf.reduce_sum(part, axis=0), tf.shape(gradient)))
    return summed


def local_devices(environ: Mapping[str, str]) -> list[str]:
    """The devices a single host mirrors training over: `NCF_DEVICES`, else every visible GPU."""
    import tensorflow as tf

    raw = environ.get(DEVICES_VARIABLE, "")
    if not raw:
        return [device.name for device in tf.config.list_logical_devices("GPU")]
    devices = [name.strip() for name in raw.split(",") if name.strip()]
    known = {_device_key(device.name): device.name for device in tf.config.list_logical_devices()}
    unknown = [name for name in devices if _device_key(name) not in known]
    if len(devices) < 2 or unknown or len({_device_key(name) for name in devices}) < len(devices):
        problem = f"unknown device(s) {unknown}" if unknown else "not two or more different devices"
        raise NcfError(
            f"{DEVICES_VARIABLE}={raw!r}: {problem}. It lists two or more of this host's devices to mirror "
            f"training over (this host has: {', '.join(known.values())}); to train on one GPU, set "
            "CUDA_VISIBLE_DEVICES instead"
        )
    return devices


def _device_key(name: str) -> tuple[str, int] | None:
    """("GPU", 1) for "/gpu:1", "GPU:1" or "/job:localhost/replica:0/task:0/device:GPU:1"."""
    import tensorflow as tf

    try:
        spec = tf.DeviceSpec.from_string(name)
    except ValueError:
        return None
    return (spec.device_type.upper(), spec.device_index) if spec.device_type else None


def connect(cluster: Cluster | None, environ: Mapping[str, str], log: Any) -> Workers:
    """Join the job's workers (`resolve_cluster`; blocks until all have started), or train on this
    host alone when `cluster` is None."""
    if cluster is None:
        devices = local_devices(environ)
        if len(devices) < 2:
            return Workers()
        import tensorflow as tf

        log(f"single host, {len(devices)} devices ({', '.join(devices)}): MirroredStrategy")
        return Workers(strategy=tf.distribute.MirroredStrategy(devices))
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
