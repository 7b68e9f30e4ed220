"""The XLA-compiled step loop trains exactly what the graph executor's loop trains, and compiles once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ncf.fit.step_loop import XLA_BLOCK_STEPS, EpochRunner
from ncf.models.ncf_models import ModelSpec, NcfModel

STEPS = XLA_BLOCK_STEPS + 5  # a whole block and a padded one
BATCH = 64


def batches() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(5)
    users = rng.integers(0, 30, (STEPS, BATCH)).astype(np.int32)  # few users: rows repeat in every batch
    items = rng.integers(0, 40, (STEPS, BATCH)).astype(np.int32)
    targets = rng.integers(0, 2, (STEPS, BATCH)).astype(np.float32)
    weights = rng.uniform(0.5, 2.0, (STEPS, BATCH)).astype(np.float32)
    weights[-1, BATCH // 2 :] = 0.0  # padding, as an epoch's last batch has
    return users, items, targets, weights


def trained(
    model_type: str, jit_compile: bool, windows: list[tuple[int, int]]
) -> tuple[list[np.ndarray], float]:
    model = NcfModel(ModelSpec(model_type, 30, 40, 8, (16, 8, 4)), seed=3)
    runner = EpochRunner(model, 0.01, 1e-3, implicit=True, jit_compile=jit_compile)
    inputs = [tf.constant(values) for values in batches()]
    loss = sum(float(runner.run_window(start, stop, *inputs)) for start, stop in windows)
    return [v.numpy() for v in runner.variables_in_order], loss


@pytest.fixture(scope="module")
def xla_trained() -> tuple[list[np.ndarray], float]:
    """NeuMF through the XLA loop, in chunks that start inside a block and end inside another."""
    return trained("neumf", True, [(0, 3), (3, XLA_BLOCK_STEPS + 2), (XLA_BLOCK_STEPS + 2, STEPS)])


def same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return all(np.allclose(a, b, rtol=2e-4, atol=2e-6) for a, b in zip(first, second, strict=True))


def test_xla_loop_matches_the_graph_loop(xla_trained: tuple[list[np.ndarray], float]) -> None:
    """Every step runs once, in order, with the same lazy Adam update (repeated rows summed)."""
    graph, graph_loss = trained("neumf", False, [(0, STEPS)])
    assert xla_trained[1] == pytest.approx(graph_loss, rel=1e-4)
    assert same(xla_trained[0], graph)


def test_a_step_left_out_changes_the_result(xla_trained: tuple[list[np.ndarray], float]) -> None:
    """The comparison above can fail: two steps fewer give other weights."""
    assert not same(xla_trained[0], trained("neumf", False, [(0, STEPS - 2)])[0])


# A child process, so that TensorFlow's own log tells each XLA compilation (its log level is read at start).
COMPILE_COUNT_SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    from test_step_loop_xla import STEPS, trained
    trained("neumf", True, [(0, 3), (3, 10), (10, STEPS)])
    """
)


def test_windows_of_any_length_share_one_xla_program() -> None:
    """Windows of 3, 7 and 11 steps run through one compiled program: a program per window length
    (the step count taken as a compile-time constant) costs about a second of compiling each."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "training"), str(root / "tests")]),
        "TF_CPP_MIN_LOG_LEVEL": "0",
        "TF_CPP_VMODULE": "device_compiler=2",
    }
    run = subprocess.run(
        [sys.executable, "-c", COMPILE_COUNT_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("Compilation of XLA executable time") == 1, run.stderr[-3000:]
