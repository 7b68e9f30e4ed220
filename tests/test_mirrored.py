"""Single-host multi-device training (MirroredStrategy), on a CPU split into two logical devices.

GPUs are not needed to exercise the strategy: TensorFlow can split one CPU into several logical
devices, and MirroredStrategy treats them like GPUs (a copy of every variable per device, the batch
split between them, gradients all-reduced). `tests/logical_cpus.py` makes the split before
train.py starts; NCF_DEVICES names the devices.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import DISTRIBUTED_SETTINGS, REPO, channel_args
from ncf.errors import NcfError
from ncf.fit.distribute import local_devices

LOGICAL_CPUS = REPO / "tests" / "logical_cpus.py"
TOLERANCE = 0.1  # seed-to-seed noise of these settings, as in test_multiworker.py


def run_on_logical_cpus(args: list[str], devices: str = "/cpu:0,/cpu:1") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LOGICAL_CPUS), "2", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NCF_DEVICES": devices},
        check=False,
    )


def test_devices_default_to_the_visible_gpus_and_are_checked_when_named() -> None:
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    assert local_devices({}) == gpus
    with pytest.raises(NcfError, match=r"NCF_DEVICES='/cpu:0': not two or more"):
        local_devices({"NCF_DEVICES": "/cpu:0"})
    with pytest.raises(NcfError, match=r"NCF_DEVICES='/cpu:0,/cpu:0': not two or more different"):
        local_devices({"NCF_DEVICES": "/cpu:0,/cpu:0"})
    with pytest.raises(NcfError, match=r"unknown device\(s\) \['/gpu:7'\].*this host has: /device:CPU:0"):
        local_devices({"NCF_DEVICES": "/cpu:0,/gpu:7"})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_devices_train_one_model_as_good_as_one_device_and_resume(
    tiny_channels: Path, tmp_path: Path, single_device_metrics: dict
) -> None:
    flags = [f"--{name}={value}" for name, value in DISTRIBUTED_SETTINGS.items()]
    args = [
        *channel_args(tiny_channels),
        f"--model-dir={tmp_path / 'model'}",
        f"--checkpoint-dir={tmp_path / 'checkpoints'}",
        "--package=false",
        *flags,
        "--batch-size=255",  # odd: each device still gets an equal share (the batch is rounded up to 256)
    ]
    first = run_on_logical_cpus(args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "single host, 2 devices" in first.stdout and "MirroredStrategy" in first.stdout
    # One digest per stage: both device copies of every variable are identical.
    one_digest = r"weights digest \w+ on worker 0 \(2 device\(s\)\)"
    assert len(re.findall(one_digest, first.stdout)) == 3, first.stdout  # selection, refit, final fit
    assert "weights digest" not in re.sub(one_digest, "", first.stdout)

    mirrored = json.loads((tmp_path / "output" / "metrics.json").read_text())
    for name in ("test_hr_at_10", "test_ndcg_at_10", "test_recall_at_10_full"):
        alone = single_device_metrics["test"][name]
        assert mirrored["test"][name] == pytest.approx(alone, abs=TOLERANCE), name
    assert mirrored["test"]["test_hr_at_10"] > 0.9  # chance: 10 of 16 candidates, 0.625

    # The export is the ordinary artifact: one copy of each variable, servable without the strategy.
    loaded = tf.saved_model.load(str(tmp_path / "model" / "1"))
    top = loaded.signatures["serving_default"](user_id=tf.constant(["u0"]), k=tf.constant(3))
    assert top["item_ids"].shape == (1, 3)

    # Checkpoints restore into mirrored variables: a rerun resumes after the last epoch, same result.
    again = run_on_logical_cpus(args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[neumf]" not in again.stdout.replace("[neumf] weights digest", "")
    resumed = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert resumed["test"] == mirrored["test"]


def test_mirrored_step_equals_the_single_device_step() -> None:
    """One lazy-Adam step with the batch split over two devices equals it on one device."""
    script = r"""
import sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, "training")
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ncf.fit.distribute import Workers
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.fit.step_loop import EpochRunner

rng = np.random.default_rng(0)
users = rng.integers(0, 30, (3, 64)).astype(np.int32)
items = rng.integers(0, 20, (3, 64)).astype(np.int32)
targets = rng.integers(0, 2, (3, 64)).astype(np.float32)
weights = np.ones((3, 64), np.float32)
spec = ModelSpec("neumf", 30, 20, 4, (8, 4))
results = []
for workers in (Workers(), Workers(strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    with workers.scope():
        model = NcfModel(spec, seed=3)
        runner = EpochRunner(model, 0.01, 1e-4, implicit=True, workers=workers)
    loss = float(runner.run_steps(users, items, targets, weights))
    copies = [[c.numpy() for c in workers.local_copies(v)] for v in runner.variables_in_order]
    for per_device in copies:
        for copy in per_device[1:]:
            np.testing.assert_array_equal(copy, per_device[0])
    results.append((loss, [per_device[0] for per_device in copies]))
(loss_one, one), (loss_two, two) = results
np.testing.assert_allclose(loss_two, loss_one, rtol=1e-5)
for a, b in zip(one, two):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
print("equal")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "equal" in result.stdout, result.stdout + result.stderr


def test_bad_device_list_is_a_clear_error(tiny_channels: Path, tmp_path: Path) -> None:
    args = [*channel_args(tiny_channels), f"--model-dir={tmp_path / 'model'}", "--epochs=1"]
    result = run_on_logical_cpus(args, devices="/gpu:3,/gpu:4")
    assert result.returncode == 2
    assert "error: NCF_DEVICES='/gpu:3,/gpu:4': unknown device(s)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "model").exists()
