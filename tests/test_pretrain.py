"""NeuMF from pretrained GMF and MLP towers, through train.py: every stage runs, is refit, final-fit
and resumes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import channel_args, run_train

pytestmark = pytest.mark.slow


def test_pretraining_runs_both_towers_then_neumf_and_resumes(tiny_channels: Path, tmp_path: Path) -> None:
    args = [
        *channel_args(tiny_channels),
        "--model-dir",
        str(tmp_path / "model"),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
        "--pretrain",
        "true",
        "--pretrain-epochs",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "256",
        "--factors",
        "8",
        "--mlp-layers",
        "16,8",
        "--package",
        "false",
    ]
    first = run_train(args)
    assert first.returncode == 0, first.stderr + first.stdout
    stages = [
        "[pretrain-gmf]",
        "[pretrain-mlp]",
        "[neumf]",
        "[pretrain-gmf-refit]",
        "[pretrain-mlp-refit]",
        "[neumf-refit]",
        "[pretrain-gmf-final]",
        "[pretrain-mlp-final]",
        "[neumf-final]",
    ]
    positions = [first.stdout.index(stage) for stage in stages]
    assert positions == sorted(positions)
    assert (tmp_path / "model" / "1" / "saved_model.pb").is_file()

    again = run_train(args)  # every stage is complete in the checkpoints: nothing is trained twice
    assert again.returncode == 0, again.stderr
    assert not re.search(r"^\[[\w-]+\] epoch \d+/", again.stdout, re.MULTILINE)  # no epoch progress lines
    assert again.stdout.count("resumed from") == len(stages)
