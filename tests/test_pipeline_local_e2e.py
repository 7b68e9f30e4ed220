"""`pipeline start --local` end to end in Docker on the embedded data (data/default), with tiny settings.

Two runs, as a retraining loop sees them: the first has no model to beat and passes its gate (its model
becomes the current one); the second trains a deliberately worse candidate (1 epoch instead of 4) and the
gate refuses it, naming both scores. Prepare, Train, Evaluate, Gate and Refused run for real in the SDK's
local pipeline session; Register cannot run locally (tests/test_registry.py covers the registry).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.localmode import build

# Containers and the SDK's `sagemaker-local` network: one Docker module at a time (see conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker")]

REPO = Path(__file__).resolve().parents[1]
TINY = '{"batch_size": "2048", "factors": "8", "mlp_layers": "16,8", "learning_rate": "0.01"}'
SCORES = re.compile(r"candidate test_ndcg_at_10 ([0-9.]+), current ([0-9.]+|none approved)")


def start_local(local_dir: Path, epochs: int) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'training'}{os.pathsep}{REPO}",
        "NCF_LOCAL_DIR": str(local_dir),
        "NCF_HYPERPARAMETERS": TINY,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [sys.executable, "-m", "deploy", "pipeline", "start", "--local", "--epochs", str(epochs)]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)


def test_a_good_candidate_passes_and_a_worse_one_is_refused_with_both_scores(
    local_images: build.LocalImages, tmp_path: Path
) -> None:
    first = start_local(tmp_path, epochs=4)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [line.strip() for line in first.stdout.splitlines()[1:6]] == [
        "Prepare: Succeeded",
        "Train: Succeeded",
        "Evaluate: Succeeded",
        "Gate: Succeeded",
        "gate: " + first.stdout.split("gate: ", 1)[1].splitlines()[0],
    ]
    good, current = SCORES.search(first.stdout).groups()
    assert current == "none approved" and float(good) > 0.1
    approved = tmp_path / "pipeline" / "approved" / "model.tar.gz"
    assert approved.is_file()

    second = start_local(tmp_path, epochs=1)
    assert second.returncode == 1, second.stderr[-3000:]
    error = second.stderr.strip().splitlines()[-1]
    assert error.startswith("error: local pipeline execution ")
    assert "Step 'Refused' failed with message: the gate refused the candidate: " in error
    worse, current = SCORES.search(error).groups()
    assert float(current) == float(good) and float(worse) < float(good)
    assert "Refused: Failed" in second.stdout
    report = next((tmp_path / "pipeline").glob("*/evaluation.json"), None)
    assert report is not None
    commands = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.Command}}",
            "--filter",
            f"ancestor={local_images.training}",
        ],
        capture_output=True,
        text=True,
    )
    assert "runpy.run_path" not in commands.stdout  # no Processing step's container is left behind
