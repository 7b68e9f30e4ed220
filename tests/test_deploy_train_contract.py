"""What `train` sends to SageMaker really runs: the uploaded source bundle, started the way the SDK's
container driver starts it (`python train.py --name value ...` in the extracted bundle, SM_* set),
trains, writes a servable MODEL_DIR, and prints lines the request's metric regexes pick up. It runs
with a `top_k` other than train.py's default: the metric names carry it, and so must the regexes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from deploy_helpers import REGION, Recorder

from deploy.cli import main
from deploy.packaging import INFERENCE_DIR

pytest_plugins = ["deploy_fixtures"]
pytestmark = pytest.mark.slow

METRIC_LINE = re.compile(r"^(\w+)=([^;\s]+);$")


def download(uri: str, target: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    boto3.client("s3", region_name=REGION).download_file(bucket, key, str(target))
    return target


def test_training_request_runs_like_the_container(
    moto_aws: None, recorder: Recorder, tiny_channels: Path, tmp_path: Path, capsys
) -> None:
    from sagemaker.train.container_drivers.common.utils import hyperparameters_to_cli_args

    hps = ["--hp", "epochs=2", "--hp", "batch_size=256", "--hp", "factors=4", "--hp", "mlp_layers=8,4"]
    hps += ["--hp", "top_k=5"]
    with recorder.recording():
        assert main(["upload", "--prepared", str(tiny_channels)], session_factory=recorder) == 0
        assert main(["train", *hps], session_factory=recorder) == 0, capsys.readouterr().err
    request = recorder.only("CreateTrainingJob")
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }

    code = tmp_path / "opt/ml/input/data/code"
    code.mkdir(parents=True)
    with tarfile.open(download(channels["code"], tmp_path / "sourcedir.tar.gz")) as tar:
        tar.extractall(code, filter="data")
    environ = {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output")}
    s3 = boto3.client("s3", region_name=REGION)
    for name in ("train", "validation", "test"):  # what SageMaker copies into /opt/ml/input/data/<channel>
        folder = tmp_path / "opt/ml/input/data" / name
        folder.mkdir()
        bucket, _, prefix = channels[name].removeprefix("s3://").partition("/")
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
            s3.download_file(bucket, item["Key"], str(folder / item["Key"].removeprefix(prefix)))
        environ[f"SM_CHANNEL_{name.upper()}"] = str(folder)
    environ.update(
        SM_HPS=json.dumps(request["HyperParameters"]), SM_HOSTS='["algo-1"]', SM_CURRENT_HOST="algo-1"
    )
    (tmp_path / "model").mkdir()

    result = subprocess.run(
        [sys.executable, "train.py", *hyperparameters_to_cli_args(request["HyperParameters"])],
        cwd=code,
        env={**os.environ, **environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "model/1/saved_model.pb").is_file()
    assert (tmp_path / "model/code/inference.py").read_bytes() == (
        INFERENCE_DIR / "inference.py"
    ).read_bytes()

    definitions = request["AlgorithmSpecification"]["MetricDefinitions"]
    printed = [m.groups() for m in map(METRIC_LINE.match, result.stdout.splitlines()) if m]
    assert {name for name, _ in printed} >= {
        "validation_ndcg_at_5",
        "train_loss",
        "test_hr_at_5",
        "best_epoch",
    }
    for name, value in printed:  # each metric line is picked up by its own definition and no other
        matching = [d for d in definitions if re.search(d["Regex"], f"{name}={value};")]
        assert [d["Name"] for d in matching] == [name]
        assert float(re.search(matching[0]["Regex"], f"{name}={value};").group(1)) == float(value)
    # A tuning job ranks the trial by the objective's last value: every epoch's, then the selected one's.
    objective = next(d for d in definitions if d["Name"] == "validation_ndcg_at_5")
    values = [float(v) for v in re.findall(objective["Regex"], result.stdout)]
    metrics = json.loads((tmp_path / "output/metrics.json").read_text())
    assert len(values) == metrics["epochs_run"] + 1 == 3, result.stdout
    assert values[-1] == values[metrics["best_epoch"] - 1]
    assert values[-1] == pytest.approx(metrics["validation"]["validation_ndcg_at_5"], rel=1e-5)
