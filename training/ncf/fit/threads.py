"""TensorFlow's thread pools sized from the machine: intra-op = physical cores, inter-op = sockets.

TensorFlow's default is one intra-op and one inter-op thread per logical CPU it can see. Two things go
wrong with that on the machines this trains on (2 to 96 vCPUs on SageMaker):

- In a container limited by a CPU quota (`docker --cpus`, cgroup v2 `cpu.max`) it still sees every CPU
  of the host and starts that many threads for a fraction of them: they wait on each other.
- Hyperthreads share a core's arithmetic units: an op split over both siblings of a core is hardly
  faster, and the split costs synchronisation. NCF's ops are small (a batch of 2,048 rows of 32 floats),
  so that cost shows.

So the intra-op pool (threads that split one op: matmuls, evaluation's catalog scoring) gets one thread
per physical core the process may use, capped by the CPU quota, and the inter-op pool (independent ops
run side by side) one per socket: the compiled training step is one XLA op, the rest of the graph is
mostly a chain. This is Intel's guidance for TensorFlow on CPUs (intra = physical cores, inter =
sockets). The settings `intra_op_threads` / `inter_op_threads` override it (0 = derived).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CPU_TOPOLOGY = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class CpuShape:
    """The CPUs this process may run on: logical CPUs, distinct physical cores and sockets among them,
    and the CPU quota (None: unlimited)."""

    logical: int
    cores: int
    sockets: int
    quota: float | None = None


def thread_counts(shape: CpuShape, intra: int = 0, inter: int = 0) -> tuple[int, int]:
    """(intra-op, inter-op) threads for `shape`; a non-zero `intra` / `inter` is taken as given."""
    limit = shape.logical if shape.quota is None else max(1, min(shape.logical, math.ceil(shape.quota)))
    derived_intra = max(1, min(shape.cores, limit))
    derived_inter = max(1, min(shape.sockets, derived_intra))
    return intra or derived_intra, inter or derived_inter


def cgroup_quota(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` line ("QUOTA PERIOD", or "max PERIOD": unlimited)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        return int(parts[0]) / int(parts[1])
    except (ValueError, ZeroDivisionError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_shape(root: Path = CPU_TOPOLOGY, cpu_max: Path = CGROUP_CPU_MAX) -> CpuShape:
    """This process's `CpuShape`, from its CPU affinity, sysfs topology and its cgroup's CPU quota.

    Where the topology cannot be read, every logical CPU counts as a core of one socket.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores, sockets = set(), set()
    for cpu in cpus:
        topology = root / f"cpu{cpu}" / "topology"
        siblings, package = _read(topology / "thread_siblings_list"), _read(topology / "physical_package_id")
        cores.add(siblings if siblings is not None else f"cpu{cpu}")
        sockets.add(package if package is not None else "0")
    quota_text = _read(cpu_max)
    quota = cgroup_quota(quota_text) if quota_text is not None else None
    return CpuShape(logical=len(cpus), cores=len(cores), sockets=len(sockets), quota=quota)


def configure(intra: int, inter: int, log: Callable[[str], None]) -> tuple[int, int] | None:
    """Size TensorFlow's thread pools (see the module docstring); must run before TensorFlow's first op.

    Returns the (intra, inter) it set, or None when TensorFlow had already started in this process (a
    second run in one interpreter, e.g. tests), whose pools are then left as they are.
    """
    import tensorflow as tf

    shape = cpu_shape()
    counts = thread_counts(shape, intra, inter)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(counts[0])
        tf.config.threading.set_inter_op_parallelism_threads(counts[1])
    except RuntimeError:
        log("threads: TensorFlow already started in this process; its thread pools are kept as they are")
        return None
    quota = "no CPU quota" if shape.quota is None else f"a CPU quota of {shape.quota:g}"
    log(
        f"threads: {counts[0]} intra-op, {counts[1]} inter-op ({shape.logical} logical CPUs, {shape.cores}"
        f" physical cores, {shape.sockets} socket(s), {quota})"
    )
    return counts
