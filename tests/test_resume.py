"""Checkpoint resume: a run stopped after epoch N and restarted ends where an uninterrupted run does."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TRAIN_SCRIPT, channel_args, run_train
from ncf.data.training_data import load_training_data
from ncf.errors import NcfError
from ncf.fit.stage_loop import fit
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.train_settings import load_config
from process_lines import wait_for_line

SETTINGS = [
    "--epochs",
    "6",
    "--batch-size",
    "128",
    "--factors",
    "4",
    "--mlp-layers",
    "8,4",
    "--patience",
    "0",
    "--learning-rate",
    "0.01",
]


def quiet(_: str) -> None:
    pass


def train_in_process(channels: Path, checkpoints: Path, epochs: int) -> NcfModel:
    config = load_config([*channel_args(channels), "--model-dir", "unused", *SETTINGS], {})
    config = dataclasses.replace(config, epochs=epochs)
    data = load_training_data(config.train, config.validation, config.test, implicit=True)
    model = NcfModel(ModelSpec("neumf", len(data.users), len(data.items), 4, (8, 4)), seed=config.seed)
    fit(model, data, config, epochs=epochs, checkpoint_dir=checkpoints, log=quiet, stage="neumf")
    return model


def test_resuming_after_an_epoch_gives_the_uninterrupted_weights(tiny_channels: Path, tmp_path: Path) -> None:
    straight = train_in_process(tiny_channels, tmp_path / "straight", epochs=6)
    train_in_process(tiny_channels, tmp_path / "interrupted", epochs=2)
    resumed = train_in_process(tiny_channels, tmp_path / "interrupted", epochs=6)
    for name, var in straight.embeddings.items():
        np.testing.assert_allclose(resumed.embeddings[name].numpy(), var.numpy(), rtol=1e-6, atol=1e-7)
    for name, var in straight.dense.items():
        np.testing.assert_allclose(resumed.dense[name].numpy(), var.numpy(), rtol=1e-6, atol=1e-7)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tiny_channels: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "ckpt"
    train_in_process(tiny_channels, checkpoints, epochs=3)
    newest = sorted((checkpoints / "neumf").glob("ckpt-3.data-*"))[0]
    newest.write_bytes(newest.read_bytes()[:20])
    messages: list[str] = []
    config = load_config([*channel_args(tiny_channels), "--model-dir", "unused", *SETTINGS], {})
    data = load_training_data(config.train, config.validation, config.test, implicit=True)
    model = NcfModel(ModelSpec("neumf", len(data.users), len(data.items), 4, (8, 4)), seed=config.seed)
    result = fit(
        model, data, config, epochs=4, checkpoint_dir=checkpoints, log=messages.append, stage="neumf"
    )
    assert any("unreadable" in m for m in messages)
    assert any("resumed" in m and "after epoch 2" in m for m in messages)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]


def test_checkpoints_of_other_settings_are_refused(tiny_channels: Path, tmp_path: Path) -> None:
    train_in_process(tiny_channels, tmp_path / "ckpt", epochs=1)
    config = load_config(
        [*channel_args(tiny_channels), "--model-dir", "unused", *SETTINGS, "--l2", "0.5"], {}
    )
    data = load_training_data(config.train, config.validation, config.test, implicit=True)
    model = NcfModel(ModelSpec("neumf", len(data.users), len(data.items), 4, (8, 4)), seed=config.seed)
    with pytest.raises(NcfError, match="other settings"):
        fit(model, data, config, epochs=2, checkpoint_dir=tmp_path / "ckpt", log=quiet, stage="neumf")


@pytest.mark.slow
def test_killed_training_process_resumes_to_the_same_result(tiny_channels: Path, tmp_path: Path) -> None:
    """The spot-interruption path for real: SIGKILL the process mid-run, start it again."""
    common = [*channel_args(tiny_channels), *SETTINGS, "--epochs", "12", "--package", "false"]
    straight = run_train(
        [
            *common,
            "--model-dir",
            str(tmp_path / "a" / "model"),
            "--checkpoint-dir",
            str(tmp_path / "a" / "ckpt"),
        ]
    )
    assert straight.returncode == 0, straight.stderr

    args = [
        *common,
        "--model-dir",
        str(tmp_path / "b" / "model"),
        "--checkpoint-dir",
        str(tmp_path / "b" / "ckpt"),
    ]
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    wait_for_line(process, "[neumf] epoch 4/")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (tmp_path / "b" / "output" / "metrics.json").exists()

    resumed = run_train(args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    first = json.loads((tmp_path / "a" / "output" / "metrics.json").read_text())
    second = json.loads((tmp_path / "b" / "output" / "metrics.json").read_text())
    assert second["best_epoch"] == first["best_epoch"]
    for name, value in first["test"].items():
        assert second["test"][name] == pytest.approx(value, abs=1e-6)


def test_only_read_errors_count_as_an_unreadable_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A damaged file means "try an older checkpoint"; a bug or an exhausted machine must surface."""
    import tensorflow as tf
    from ncf.fit.checkpointing import Checkpointer, LoopState

    state = LoopState("fingerprint")
    checkpointer = Checkpointer(tmp_path, state, weights=tf.Module())
    state.epochs_done.assign(1)
    checkpointer.save()
    messages: list[str] = []

    def broken_read(path: str) -> None:
        raise tf.errors.DataLossError(None, None, f"{path}: truncated record")

    monkeypatch.setattr(checkpointer.checkpoint, "restore", broken_read)
    with pytest.raises(NcfError, match=r"no checkpoint .* could be restored"):
        checkpointer.restore_latest(messages.append)
    assert any("unreadable (DataLossError)" in m for m in messages)

    def bug(path: str) -> None:
        raise TypeError("a bug in the restoring code")

    monkeypatch.setattr(checkpointer.checkpoint, "restore", bug)
    with pytest.raises(TypeError, match="a bug"):
        checkpointer.restore_latest(messages.append)
