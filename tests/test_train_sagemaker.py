"""train.py end to end, run exactly as the SageMaker training container runs it."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import channel_args, run_train
from ncf.reporting import metric_definitions

pytestmark = pytest.mark.slow


def sagemaker_tree(root: Path, channels: Path) -> dict[str, str]:
    """An /opt/ml-like tree and the SM_* variables the training toolkit would set for it."""
    for name in ("train", "validation", "test"):
        shutil.copytree(channels / name, root / "input" / "data" / name)
    (root / "model").mkdir()
    (root / "output" / "data").mkdir(parents=True)
    hps = {"epochs": "3", "batch_size": "256", "factors": "8", "mlp_layers": "16,8", "model_type": "neumf"}
    return {
        "SM_MODEL_DIR": str(root / "model"),
        "SM_CHANNEL_TRAIN": str(root / "input" / "data" / "train"),
        "SM_CHANNEL_VALIDATION": str(root / "input" / "data" / "validation"),
        "SM_CHANNEL_TEST": str(root / "input" / "data" / "test"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_HPS": json.dumps(hps),
        "SM_CHANNELS": json.dumps(["test", "train", "validation"]),
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_CURRENT_HOST": "algo-1",
    }


def test_train_with_only_the_sagemaker_environment(tiny_channels: Path, tmp_path: Path) -> None:
    environ = sagemaker_tree(tmp_path / "ml", tiny_channels)
    result = run_train([], env=environ)
    assert result.returncode == 0, result.stderr + result.stdout

    model_dir = tmp_path / "ml" / "model"
    assert (model_dir / "1" / "saved_model.pb").is_file()
    assert (model_dir / "code" / "inference.py").is_file()
    assert not (tmp_path / "ml" / "model.tar.gz").exists()  # SageMaker packs SM_MODEL_DIR itself
    metrics = json.loads((tmp_path / "ml" / "output" / "data" / "metrics.json").read_text())
    assert metrics["hyperparameters"]["epochs"] == 3
    assert set(metrics["test"]) >= {"test_hr_at_10", "test_ndcg_at_10", "test_recall_at_10_full"}
    assert (tmp_path / "ml" / "output" / "data" / "training_curve.png").stat().st_size > 1000
    assert len((tmp_path / "ml" / "output" / "data" / "history.csv").read_text().splitlines()) == 4

    # Every metric line is matched by exactly its own SageMaker metric definition.
    found = {}
    for definition in metric_definitions(10):  # train.py's default top_k
        values = [float(m) for m in re.findall(definition["Regex"], result.stdout)]
        if values:
            found[definition["Name"]] = values
    # Every epoch's value, then the selected epoch's again, last: the one a tuning job ranks the trial by.
    assert len(found["validation_ndcg_at_10"]) == 4
    assert found["validation_ndcg_at_10"][-1] == found["validation_ndcg_at_10"][metrics["best_epoch"] - 1]
    assert found["epoch"] == [1.0, 2.0, 3.0]
    assert found["test_hr_at_10"] == [pytest.approx(metrics["test"]["test_hr_at_10"], abs=1e-5)]
    assert found["best_epoch"] == [metrics["best_epoch"]]


def test_local_run_writes_model_archive(trained_model: Path) -> None:
    archive = trained_model.parent / "model.tar.gz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"1/saved_model.pb", "code/inference.py"} <= names


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--epochs", "many"], "error: hyperparameter epochs: expected a whole number"),
        (["--train", "/nonexistent/train"], "/nonexistent/train"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tiny_channels: Path, tmp_path: Path, extra, message) -> None:
    result = run_train([*channel_args(tiny_channels), "--model-dir", str(tmp_path / "m"), *extra])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
