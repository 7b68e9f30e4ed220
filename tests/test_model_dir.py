"""Where the model is exported: SM_MODEL_DIR on SageMaker whatever model_dir arrives, never a silent guess.

The TensorFlow training toolkit appends `--model_dir None/<job>/model` to a tuning trial's arguments
(and puts it in SM_HPS); an S3 model_dir is its convention for TensorFlow checkpoints. The end-to-end
run through the real toolkits is tests/test_tuning_trial_toolkit.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ncf.errors import NcfError
from ncf.train_settings import load_config

CHANNELS = ["--train", "t", "--validation", "v", "--test", "s"]
SAGEMAKER = {"SM_MODEL_DIR": "/opt/ml/model", "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data"}


def resolve(argv: list[str], environ: dict[str, str]) -> tuple[str | None, list[str]]:
    notes: list[str] = []
    config = load_config([*CHANNELS, *argv], environ, notes.append)
    return config.model_dir, notes


@pytest.mark.parametrize(
    ("requested", "reason"),
    [
        ("None/ncf-tune-001-abc/model", "appends <model_dir>/<job name>/model to a tuning trial's arguments"),
        ("s3://bucket/checkpoints/ncf-tune-001-abc/model", "TensorFlow's own checkpoints"),
        ("model", "a relative folder lands in the working directory"),
        ("/tmp/elsewhere", "SageMaker uploads no other folder"),
    ],
)
def test_on_sagemaker_the_model_goes_to_sm_model_dir_and_the_override_is_logged(
    requested: str, reason: str
) -> None:
    for argv, environ in (
        (["--model_dir", requested], SAGEMAKER),  # the toolkit's appended flag
        ([], {**SAGEMAKER, "SM_HPS": json.dumps({"model_dir": requested})}),  # and its SM_HPS copy
    ):
        model_dir, notes = resolve(argv, environ)
        assert model_dir == "/opt/ml/model"
        assert len(notes) == 1
        assert notes[0].startswith(f"model_dir {requested} ignored: exporting to SM_MODEL_DIR /opt/ml/model")
        assert reason in notes[0]


def test_on_sagemaker_without_a_model_dir_nothing_is_logged() -> None:
    assert resolve([], SAGEMAKER) == ("/opt/ml/model", [])
    assert resolve(["--model-dir", "/opt/ml/model"], SAGEMAKER) == ("/opt/ml/model", [])


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("None/ncf-tune-001-abc/model", r"--model-dir None/ncf-tune-001-abc/model: 'None/\.\.\.' is what"),
        ("s3://bucket/model", r"--model-dir s3://bucket/model: train.py exports to a local folder"),
    ],
)
def test_outside_sagemaker_a_toolkit_made_or_s3_model_dir_is_refused(requested: str, message: str) -> None:
    with pytest.raises(NcfError, match=message):
        resolve(["--model-dir", requested], {})


def test_outside_sagemaker_a_relative_model_dir_is_made_absolute_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model_dir, notes = resolve(["--model-dir", "runs/model"], {})
    assert model_dir == str(tmp_path / "runs" / "model")
    assert notes == [
        f"model dir runs/model is relative to {tmp_path}: exporting to {tmp_path / 'runs' / 'model'}"
    ]
    assert resolve(["--model-dir", str(tmp_path / "m")], {}) == (str(tmp_path / "m"), [])
