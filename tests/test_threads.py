"""TensorFlow's thread pools derived from the machine (`ncf.fit.threads`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ncf.fit.threads import CpuShape, cgroup_quota, cpu_shape, thread_counts


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (CpuShape(logical=2, cores=2, sockets=1), (2, 1)),
        (CpuShape(logical=2, cores=1, sockets=1), (1, 1)),  # two hyperthreads of one core
        (CpuShape(logical=96, cores=48, sockets=2), (48, 2)),  # ml.c5.24xlarge
        (CpuShape(logical=96, cores=48, sockets=2, quota=4.0), (4, 2)),  # docker --cpus 4 on it
        (CpuShape(logical=8, cores=8, sockets=1, quota=0.5), (1, 1)),
    ],
)
def test_intra_op_is_physical_cores_within_the_quota_and_inter_op_is_sockets(
    shape: CpuShape, expected: tuple[int, int]
) -> None:
    assert thread_counts(shape) == expected


def test_explicit_settings_win() -> None:
    assert thread_counts(CpuShape(logical=96, cores=48, sockets=2), intra=3, inter=5) == (3, 5)


@pytest.mark.parametrize(
    ("text", "quota"), [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5), ("junk", None)]
)
def test_cgroup_cpu_max(text: str, quota: float | None) -> None:
    assert cgroup_quota(text) == quota


def test_topology_read_from_sysfs(tmp_path: Path) -> None:
    """Siblings listed alike are one core; packages are sockets; the quota comes from cpu.max."""
    import os

    cpus = sorted(os.sched_getaffinity(0))
    for cpu in cpus:
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(f"{cpu // 2 * 2}-{cpu // 2 * 2 + 1}\n")
        (topology / "physical_package_id").write_text("0\n")
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    shape = cpu_shape(tmp_path, tmp_path / "cpu.max")
    assert shape == CpuShape(logical=len(cpus), cores=len({c // 2 for c in cpus}), sockets=1, quota=1.0)
    missing = cpu_shape(tmp_path / "absent", tmp_path / "absent")
    assert (missing.cores, missing.sockets, missing.quota) == (len(cpus), 1, None)
