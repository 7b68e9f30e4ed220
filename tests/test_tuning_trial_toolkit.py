"""A hyperparameter tuning trial, run the way the TensorFlow training image runs it: with AWS's own toolkits.

The tuning API has no `ContainerEntrypoint` (the SDK's `tuner.py` says so), so a trial does not run the
SDK's `sm_drivers` as a `deploy train` job does: it runs the image's default `train` command, the
console entry point of `sagemaker-training`, with the image's
`SAGEMAKER_TRAINING_MODULE=sagemaker_tensorflow_container.training:main`. That module sees
`_tuning_objective_metric` and no `model_dir` hyperparameter and appends `--model_dir None/<trial>/model`
to train.py's arguments ("Appending the training job name to model_dir"). The model must still land
in `SM_MODEL_DIR`, which SageMaker packs into the trial's model.tar.gz.

Both toolkits are the image's versions (aws/deep-learning-containers `docker/tensorflow/2.21/cpu/uv.lock`:
sagemaker-training 5.1.1, sagemaker-tensorflow-training 20.4.1), installed by `make install`.

Where they run: `sagemaker_training.environment` takes every path (`code/`, `model/`, `input/`,
`output/`) from `SAGEMAKER_BASE_DIR` when it is set, so the trial's `/opt/ml` is a temporary folder and
the machine's `/opt/ml` is never written. The TensorFlow toolkit's one hard-coded path, `MODEL_DIR =
"/opt/ml/model"`, is only read after training, for its "No model artifact is saved" warning; the test
checks the model folder itself instead. Network: sagemaker-training pip-installs the bundle's
`requirements.txt` (`pip install -r requirements.txt`); `PIP_NO_INDEX=1` keeps pip off the network, so
the install succeeds only if what the file asks for is already installed, as it is in the image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.packaging import stage_source, write_tarball

pytestmark = pytest.mark.slow

TRIAL = "ncf-tune-260101-0000-001-8b4f2c1e"
CHANNELS = ("train", "validation", "test")


def trial_hyperparameters(source_bundle: Path) -> dict[str, str]:
    """hyperparameters.json of one trial, values as strings, as SageMaker writes it for a tuning trial.

    The static part is what `deploy tune` sends (tests/test_deploy_e2e.py asserts the request): the
    configured hyperparameters plus the SDK tuner's script-mode keys `sagemaker_program` and
    `sagemaker_submit_directory` (sagemaker/train/tuner.py `_build_driver_and_code_channels`); then one
    value of each tuned range, and `_tuning_objective_metric`, which SageMaker adds to every trial. In a
    real trial the submit directory is the bundle's s3:// URI; the toolkit downloads it and unpacks it
    with the same `tarfile.extractall` it uses for a local tarball, which is what this test gives it.
    """
    return {
        "epochs": "2",
        "batch_size": "256",
        "mlp_layers": "16,8",
        "patience": "0",
        "factors": "8",
        "learning_rate": "0.005",
        "num_neg": "4",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": str(source_bundle),
        "_tuning_objective_metric": "validation_ndcg_at_10",
    }


def opt_ml_tree(root: Path, channels: Path, source_bundle: Path) -> None:
    """The /opt/ml SageMaker lays out for a one-instance trial: config files and the downloaded channels."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(trial_hyperparameters(source_bundle)))
    # `localhost`, not SageMaker's `algo-1`: the toolkit waits (up to 15 minutes) until every host resolves.
    host = "localhost"
    resources = {
        "current_host": host,
        "hosts": [host],
        "current_group_name": "homogeneousCluster",
        "current_instance_type": "ml.m5.xlarge",
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": "ml.m5.xlarge", "hosts": [host]}
        ],
        "network_interface_name": "eth0",
    }
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    file_channel = {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }
    (config / "inputdataconfig.json").write_text(json.dumps({name: file_channel for name in CHANNELS}))
    for name in CHANNELS:
        shutil.copytree(channels / name, root / "input" / "data" / name)
    for folder in ("model", "output/data", "code"):
        (root / folder).mkdir(parents=True, exist_ok=True)


def toolkit_train_command() -> str:
    """The image's `train` console script (sagemaker-training), installed next to this Python."""
    script = Path(sys.executable).with_name("train")
    assert script.is_file(), f"{script} is missing: install the test extras (make install)"
    return str(script)


def test_a_tuning_trial_run_by_the_training_toolkits_exports_to_sm_model_dir(
    tiny_channels: Path, tmp_path: Path
) -> None:
    bundle = write_tarball(stage_source(tmp_path / "source"), tmp_path / "sourcedir.tar.gz")
    root = tmp_path / "opt" / "ml"
    opt_ml_tree(root, tiny_channels, bundle)
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "SAGEMAKER_"))}
    environ.update(
        SAGEMAKER_BASE_DIR=str(root),
        SAGEMAKER_TRAINING_MODULE="sagemaker_tensorflow_container.training:main",
        TRAINING_JOB_NAME=TRIAL,
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        AWS_DEFAULT_REGION="us-east-1",
    )

    result = subprocess.run(
        [toolkit_train_command()],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]

    # The model is where SageMaker packs model.tar.gz from, with the serving handler ...
    model_dir = root / "model"
    assert (model_dir / "1" / "saved_model.pb").is_file(), log[-6000:]
    assert (model_dir / "code" / "inference.py").is_file()
    assert not (root / "code" / "None").exists()
    assert f"model_dir None/{TRIAL}/model ignored: exporting to SM_MODEL_DIR {model_dir}" in log
    assert (root / "output" / "data" / "metrics.json").is_file()

    # ... although the toolkits did what they do in a real trial: unpacked the bundle, installed its
    # requirements (offline), appended the invented model_dir, and reported success.
    assert (root / "code" / "train.py").is_file() and (root / "code" / "requirements.txt").is_file()
    assert "Installing dependencies from requirements.txt" in log
    assert f"Appending the training job name to model_dir: None/{TRIAL}/model" in log
    assert f"--model_dir None/{TRIAL}/model" in log
    assert (root / "output" / "success").is_file()
