"""`deploy train --local`: the project's `ModelTrainer` job in the SDK's local container mode.

The job is the one `deploy train` sends to SageMaker (same entry point, source bundle layout, hyperparameters,
metric definitions, stopping condition), run by `ModelTrainer(training_mode=Mode.LOCAL_CONTAINER)` on the
local training image, with prepare.py's output folders as local file channels (the SDK bind-mounts them at
/opt/ml/input/data/<channel>). The SDK runs `docker compose up` and packs /opt/ml/model into
`<root>/compressed_artifacts/model.tar.gz`; it is copied to `<root>/model.tar.gz`.

`tuning_style=True` runs what a tuning trial runs instead: no `source_code`, hence no container entrypoint,
so the image's own `train` (sagemaker-training with the TensorFlow toolkit) finds the script through the
`sagemaker_program` / `sagemaker_submit_directory` hyperparameters and gets `_tuning_objective_metric`,
as SageMaker's tuner sends them.

Every run leaves no container or network behind: compose's project is taken down whether the job
succeeded or not.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import sys
import tarfile
from collections import deque
from collections.abc import Iterable
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ncf.errors import NcfError

from deploy.aws import unique_name
from deploy.config import Settings
from deploy.localmode.build import image_tags
from deploy.localmode.docker import compose_down, container_exit_codes, require_docker, require_image
from deploy.localmode.sdk_fixes import local_mode_fixes
from deploy.packaging import ENTRY_POINT, stage_source
from deploy.training import job_arguments, sdk_metric_definitions
from deploy.tuning import objective_metric
from deploy.upload import CHANNELS, OPTIONAL_CHANNELS

LOG = logging.getLogger("deploy")
COMPOSE_FILE = "docker-compose.yaml"


@dataclass(frozen=True)
class LocalTrainingResult:
    """A finished local-mode job: its name, folder, model.tar.gz and the metrics train.py wrote."""

    job_name: str
    root: str
    model_data: str
    metrics: dict[str, Any]


def local_channels(prepared: Path) -> dict[str, Path]:
    """train/validation/test (required) and items/vocabulary (when present) of a prepare.py output folder."""
    missing = [c for c in CHANNELS if not (prepared / c).is_dir()]
    if missing:
        raise NcfError(
            f"--prepared {prepared}: no {', '.join(missing)} folder; run `make prepare` "
            "(training/prepare.py --output DIR) and pass that DIR"
        )
    optional = [c for c in OPTIONAL_CHANNELS if (prepared / c).is_dir()]
    return {c: (prepared / c).resolve() for c in (*CHANNELS, *optional)}


def build_local_trainer(
    settings: Settings, image: str, root: Path, source: Path, channels: dict[str, Path], *, tuning_style: bool
) -> Any:
    """The `ModelTrainer` of `deploy train` in local container mode (or a tuning trial's form of it)."""
    from sagemaker.core.training.configs import Compute, InputData, SourceCode
    from sagemaker.train.model_trainer import Mode

    from deploy.signals import SignalForwardingTrainer

    arguments = job_arguments(settings)
    requirements = "requirements.txt" if (source / "requirements.txt").is_file() else None
    if tuning_style:
        arguments["hyperparameters"] = {
            **arguments["hyperparameters"],
            "sagemaker_program": ENTRY_POINT,
            "sagemaker_submit_directory": source.as_uri(),
            "_tuning_objective_metric": objective_metric(settings),  # SageMaker adds it to each trial
        }
        code = {}
    else:
        code = {
            "source_code": SourceCode(
                source_dir=str(source), entry_script=ENTRY_POINT, requirements=requirements
            )
        }
    return SignalForwardingTrainer(
        training_mode=Mode.LOCAL_CONTAINER,
        local_container_root=str(root),
        training_image=image,
        compute=Compute(instance_type="local", instance_count=1),
        input_data_config=[InputData(channel_name=c, data_source=str(p)) for c, p in channels.items()],
        **code,
        **arguments,
    ).with_metric_definitions(sdk_metric_definitions(settings))


class LogTail(io.TextIOBase):
    """Passes the containers' log on to `stream` and keeps its last lines (without compose's prefixes)."""

    PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)?[\w.-]+\s*\|(?:\x1b\[[0-9;]*m)?\s?")

    def __init__(self, stream: TextIO, keep: int = 200) -> None:
        self.stream = stream
        self.lines: deque[str] = deque(maxlen=keep)

    def write(self, text: str) -> int:
        self.stream.write(text)
        for line in text.splitlines():
            self.lines.append(self.PREFIX.sub("", line).strip())
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def failure_reason(root: Path, log: Iterable[str]) -> str:
    """Why the job failed: train.py's last `error:` line, else the last line of /opt/ml/output/failure."""
    errors = [line for line in log if line.startswith("error: ")]
    if errors:
        return "train.py: " + errors[-1]
    for failure in sorted(root.glob("*/output/failure")):
        lines = [line.strip() for line in failure.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return ""


def job_metrics(output_archive: Path) -> dict[str, Any]:
    """metrics.json from the job's output.tar.gz (/opt/ml/output/data), or {} when it wrote none."""
    try:
        with tarfile.open(output_archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.rsplit("/", 1)[-1] == "metrics.json":
                    return json.loads(tar.extractfile(member).read())
    except (OSError, tarfile.TarError, ValueError):
        pass
    return {}


def train_local(
    settings: Settings, prepared: Path, output_root: Path, *, tuning_style: bool = False
) -> LocalTrainingResult:
    """Run the job to the end in local containers; `NcfError` naming cause and fix when it cannot."""
    channels = local_channels(prepared)
    require_docker()
    image = image_tags().training
    require_image(image, "training")
    job_name = unique_name(settings, "tune" if tuning_style else "train")
    root = (output_root / job_name).resolve()
    root.mkdir(parents=True)
    source = stage_source(root / "source")
    trainer = build_local_trainer(settings, image, root, source, channels, tuning_style=tuning_style)
    LOG.info("local training job in %s (image %s)", root, image)
    # The SDK streams the containers' log to stdout; this CLI keeps stdout for its result.
    log = LogTail(sys.stderr)
    compose_file = root / COMPOSE_FILE
    try:
        with local_mode_fixes(), redirect_stdout(log):
            trainer.train(wait=True, logs=True)
        failed = [code for code in container_exit_codes(compose_file) if code != 0]
        if failed:  # compose said 0, the container did not: the SDK took a failed job for a finished one
            raise RuntimeError(f"Process exited with code: {failed[0]}")
    except RuntimeError as err:
        status = (
            str(err).rsplit("exited with code:", 1)[-1].strip() if "exited with code" in str(err) else "?"
        )
        reason = failure_reason(root, log.lines)
        raise NcfError(
            f"the local training container exited with status {status}"
            + (f": {reason}" if reason else "")
            + f"; its log is above and its files are in {root}; fix the cause and run again"
        ) from None
    finally:
        compose_down(compose_file)
    packed = root / "compressed_artifacts" / "model.tar.gz"
    if not packed.is_file():
        raise NcfError(f"the local training job wrote no {packed}; its files are in {root}")
    model = root / "model.tar.gz"
    shutil.copyfile(packed, model)
    metrics = job_metrics(root / "compressed_artifacts" / "output.tar.gz")
    return LocalTrainingResult(job_name, str(root), str(model), metrics)
