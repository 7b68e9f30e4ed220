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
