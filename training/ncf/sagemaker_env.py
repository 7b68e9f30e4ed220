"""What the SageMaker training toolkit tells a script-mode job, read from its environment.

The toolkit sets `SM_MODEL_DIR`, `SM_CHANNEL_<NAME>`, `SM_OUTPUT_DATA_DIR`, `SM_HPS` (JSON)
and friends, and mounts checkpoints at `/opt/ml/checkpoints` when the job has a
`CheckpointConfig`. Outside SageMaker none of these exist and everything comes from the
command line instead. See the SageMaker training toolkit's `environment.py` for the source
of these names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncf.errors import NcfError

SAGEMAKER_CHECKPOINT_DIR = Path("/opt/ml/checkpoints")

_PATH_VARIABLES = {
    "train": "SM_CHANNEL_TRAIN",
    "validation": "SM_CHANNEL_VALIDATION",
    "test": "SM_CHANNEL_TEST",
    "items": "SM_CHANNEL_ITEMS",
    "vocabulary": "SM_CHANNEL_VOCABULARY",
    "model_dir": "SM_MODEL_DIR",
    "output_data_dir": "SM_OUTPUT_DATA_DIR",
}


def running_on_sagemaker(environ: Mapping[str, str]) -> bool:
    """True inside a SageMaker training container (the toolkit always sets SM_MODEL_DIR)."""
    return "SM_MODEL_DIR" in environ


def path_settings(
    environ: Mapping[str, str], checkpoint_root: Path = SAGEMAKER_CHECKPOINT_DIR
) -> dict[str, str]:
    """Channel, model, output and checkpoint folders that the environment provides."""
    settings = {key: environ[var] for key, var in _PATH_VARIABLES.items() if environ.get(var)}
    if running_on_sagemaker(environ) and checkpoint_root.is_dir():
        settings["checkpoint_dir"] = str(checkpoint_root)
    return settings


def model_dir(requested: str | None, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The folder the model is exported to, and a line to log when that is not the folder requested.

    On SageMaker it is always `SM_MODEL_DIR`: the only folder SageMaker packs into model.tar.gz. A
    `model_dir` given besides it is not ours to honour: the TensorFlow training toolkit appends
    `--model_dir <model_dir hyperparameter>/<job name>/model` to every tuning trial's arguments
    (`None/<job>/model` without that hyperparameter, a path relative to /opt/ml/code), and by its
    convention an S3 `model_dir` is where TensorFlow's own checkpoints go. Outside SageMaker the
    requested folder is used, made absolute; a toolkit-made `None/...` or an S3 URI is refused.
    """
    exported = environ.get("SM_MODEL_DIR")
    if exported:
        if requested is None or os.path.normpath(requested) == os.path.normpath(exported):
            return exported, None
        return exported, (
            f"model_dir {requested} ignored: exporting to SM_MODEL_DIR {exported}, the folder SageMaker"
            f" packs into model.tar.gz ({_why_not_sagemaker_model_dir(requested)})"
        )
    if requested is None:
        return None, None
    if requested.startswith("s3://"):
        raise NcfError(
            f"--model-dir {requested}: train.py exports to a local folder; give a path (on SageMaker the"
            " model goes to SM_MODEL_DIR, which SageMaker uploads)"
        )
    if _made_by_the_tensorflow_toolkit(requested):
        raise NcfError(
            f"--model-dir {requested}: 'None/...' is what the SageMaker TensorFlow toolkit makes of a"
            " missing model_dir hyperparameter in a tuning trial, not a folder to export to; without"
            " SM_MODEL_DIR give the folder explicitly"
        )
    if Path(requested).is_absolute():
        return requested, None
    absolute = str(Path(requested).resolve())
    return absolute, f"model dir {requested} is relative to {Path.cwd()}: exporting to {absolute}"


def _why_not_sagemaker_model_dir(requested: str) -> str:
    """Why a model_dir other than SM_MODEL_DIR reaches train.py on SageMaker, for the log line."""
    if requested.startswith("s3://"):
        return "an S3 model_dir is the TensorFlow toolkit's location for TensorFlow's own checkpoints"
    if _made_by_the_tensorflow_toolkit(requested):
        return (
            "the TensorFlow training toolkit appends <model_dir>/<job name>/model to a tuning trial's"
            " arguments, None/... when the job has no model_dir hyperparameter"
        )
    if not Path(requested).is_absolute():
        return "a relative folder lands in the working directory, which SageMaker does not upload"
    return "SageMaker uploads no other folder as the model"


def _made_by_the_tensorflow_toolkit(model_dir: str) -> bool:
    """`None/<job>/model`: the toolkit's f"{model_dir}/{job}/model" for a trial without model_dir."""
    return Path(model_dir).parts[:1] == ("None",)


def train_channel_sharded(environ: Mapping[str, str]) -> bool | None:
    """Whether the job's train channel is ShardedByS3Key (each host gets only some of its files),
    from `SM_INPUT_DATA_CONFIG`; None outside SageMaker or when the channel is not described."""
    raw = environ.get("SM_INPUT_DATA_CONFIG")
    if not raw:
        return None
    try:
        channels = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise NcfError(f"SM_INPUT_DATA_CONFIG is not valid JSON ({exc.msg} at position {exc.pos})") from exc
    train = channels.get("train") if isinstance(channels, dict) else None
    if not isinstance(train, dict):
        return None
    return train.get("S3DistributionType") == "ShardedByS3Key"


def hyperparameters(environ: Mapping[str, str]) -> dict[str, Any]:
    """The job's hyperparameters from `SM_HPS`, keys normalised to snake_case."""
    raw = environ.get("SM_HPS")
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise NcfError(f"SM_HPS is not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if not isinstance(values, dict):
        raise NcfError("SM_HPS must be a JSON object of hyperparameters")
    return {str(key).replace("-", "_"): value for key, value in values.items()}


def cluster(environ: Mapping[str, str]) -> tuple[list[str], str]:
    """(all hosts, this host) of the training job; a single local host outside SageMaker."""
    hosts_json = environ.get("SM_HOSTS")
    current = environ.get("SM_CURRENT_HOST")
    if hosts_json and current:
        try:
            hosts = json.loads(hosts_json)
        except json.JSONDecodeError as exc:
            raise NcfError(f"SM_HOSTS is not a JSON list of host names ({exc.msg})") from exc
        return [str(h) for h in hosts], current
    config_file = Path(environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")) / "resourceconfig.json"
    if running_on_sagemaker(environ) and config_file.is_file():
        resource = json.loads(config_file.read_text())
        return [str(h) for h in resource["hosts"]], str(resource["current_host"])
    return [os.uname().nodename], os.uname().nodename


def variable_for(setting: str) -> str:
    """The SageMaker environment variable that provides a path setting, for error messages."""
    return _PATH_VARIABLES[setting]
