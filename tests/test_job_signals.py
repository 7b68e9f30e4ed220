"""Stopping a `deploy train` job: SIGTERM to the job container's main process reaches train.py.

SageMaker stops a training job (StopTrainingJob, a spot interruption) with SIGTERM to the container's main
process and SIGKILL 120 s later (deploy/signals.py quotes the API reference). The main process is what the
CreateTrainingJob request names: ContainerEntrypoint + ContainerArguments.

The Docker test runs the request `deploy train` sends (recorded against moto) the way SageMaker runs it:
that command as the container's PID 1, in the local training image, over an /opt/ml laid out from the job's
own channels: the `sm_drivers` channel the SDK uploaded (the sm_train.sh its template code wrote, its driver
scripts), the source bundle, the data, the config files, and a checkpoint folder. `docker kill -s TERM`
signals PID 1 only, as SageMaker's stop does. The same job started with the SDK's own entrypoint is the
control: it must NOT hear the signal, or the test would prove nothing.

What it cannot prove: the image is the local stand-in (Debian's bash 5.2 and Python 3.11, AWS's toolkits),
not AWS's TensorFlow image (Ubuntu, Python 3.12), and SageMaker's agent is not here, so the timing between
the stop request and the SIGTERM, and whether a spot reclaim signals exactly like StopTrainingJob, are
taken from AWS's documentation, not tested.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from deploy_helpers import REGION, Recorder
from ncf.fit import interruption
from process_lines import GRACE_SECONDS, wait_for_line

from deploy.cli import main
from deploy.config import Settings
from deploy.localmode import build
from deploy.localmode.training import build_local_trainer
from deploy.packaging import stage_source
from deploy.signals import FORWARDER, FORWARDER_NAME, forwarding_command
from deploy.upload import CHANNELS

# Containers of the local training image: one Docker module at a time (see conftest.py).
pytestmark = pytest.mark.xdist_group("docker")


pytest_plugins = ["deploy_fixtures"]

#: Far more epochs (a few hundredths of a second each here) than the test waits for: a run still trains when
#: the signal comes, and the control still trains when it is checked; the epoch line says training has begun.
LONG_RUN = {"epochs": "100000", "patience": "0", "refit": "false", "final_fit": "false"}
EPOCH_LINE = "[neumf] epoch 2/"
STOPPED = "interrupted: SIGTERM received; stopped neumf with"
STOP_WITHIN = 30  # seconds: well inside the grace period (train.py checks for the signal every ~2 s)


def sdk_default_command_parts() -> tuple[list[str], list[str]]:
    """The (entrypoint, arguments) the SDK gives a `ModelTrainer` job with `source_code`."""
    from sagemaker.train.constants import DEFAULT_CONTAINER_ARGUMENTS, DEFAULT_CONTAINER_ENTRYPOINT

    return DEFAULT_CONTAINER_ENTRYPOINT, DEFAULT_CONTAINER_ARGUMENTS


def sdk_default_command() -> list[str]:
    """The SDK's main process for such a job: its entrypoint + arguments."""
    return [part for parts in sdk_default_command_parts() for part in parts]


def submitted_job(recorder: Recorder, channels: Path, hyperparameters: dict[str, str]) -> dict[str, Any]:
    """The CreateTrainingJob request of `deploy upload` + `deploy train` (against moto)."""
    hps = [part for name, value in hyperparameters.items() for part in ("--hp", f"{name}={value}")]
    with recorder.recording():
        assert main(["upload", "--prepared", str(channels)], session_factory=recorder) == 0
        assert main(["train", *hps], session_factory=recorder) == 0
    return recorder.only("CreateTrainingJob")


# --- the request and the forwarder, without Docker --------------------------------------------------------


def test_the_job_runs_the_sdks_command_under_the_forwarder(
    moto_aws: None, recorder: Recorder, tiny_channels: Path
) -> None:
    spec = submitted_job(recorder, tiny_channels, {"epochs": "1"})["AlgorithmSpecification"]
    assert spec["ContainerEntrypoint"] == ["/bin/bash", "-c", FORWARDER, FORWARDER_NAME]
    assert spec["ContainerArguments"] == sdk_default_command()


def test_the_forwarder_fits_the_apis_limits() -> None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    members = model.shape_for("AlgorithmSpecification").members

    command = forwarding_command(*sdk_default_command_parts())
    for values, name in zip(command, ("ContainerEntrypoint", "ContainerArguments"), strict=True):
        shape = members[name]
        assert len(values) <= shape.metadata["max"], name
        assert max(len(value) for value in values) <= shape.member.metadata["max"], name


@pytest.mark.parametrize("tuning_style", [False, True])
def test_local_mode_runs_the_jobs_command(tmp_path: Path, tuning_style: bool) -> None:
    """`deploy train --local` forwards as the job does; its tuning-trial form keeps the image's `train`."""
    channels = {name: tmp_path / "prepared" / name for name in CHANNELS}
    for folder in channels.values():
        folder.mkdir(parents=True)
    source = stage_source(tmp_path / "source")
    trainer = build_local_trainer(Settings(), "image", tmp_path, source, channels, tuning_style=tuning_style)
    spec = trainer._create_training_job_args()["algorithm_specification"]
    expected = [None, None] if tuning_style else list(forwarding_command(*sdk_default_command_parts()))
    assert [spec.container_entrypoint, spec.container_arguments] == expected


def forwarded(command: str, **popen: Any) -> subprocess.Popen:
    """`command` (a bash command line) run under the forwarder, as the job runs the SDK's command."""
    return subprocess.Popen(["bash", "-c", FORWARDER, FORWARDER_NAME, "bash", "-c", command], **popen)


@pytest.mark.parametrize("status", [0, 3])
def test_the_forwarder_exits_with_its_commands_status(status: int) -> None:
    assert forwarded(f"exit {status}").wait(timeout=30) == status


LATE_LISTENER = """
import os, sys, time
sys.path.insert(0, {training!r})
from ncf.fit import interruption
time.sleep(1.5)  # like train.py importing TensorFlow: SIGTERM arrives before the handler is installed
interruption.install()
print("listening", flush=True)
while not interruption.requested():
    time.sleep(0.05)
print("stopping", flush=True)
sys.exit(interruption.EXIT_INTERRUPTED)
"""


def test_sigterm_to_the_forwarder_reaches_a_grandchild_that_listens_late(tmp_path: Path) -> None:
    """Through a shell and a Python parent that handle no signal (as sm_train.sh and the SDK's driver), to a
    script that installs its handler after the signal was sent: the forwarder repeats it until it is heard."""
    script = tmp_path / "late.py"
    script.write_text(LATE_LISTENER.format(training=str(Path(interruption.__file__).parents[2])))
    driver = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, {str(script)!r}]))"
    process = forwarded(
        f"{sys.executable} -c {shlex.quote(driver)}; status=$?; echo driver exited $status; exit $status",
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == interruption.EXIT_INTERRUPTED, out
    assert out.splitlines() == ["listening", "stopping", f"driver exited {interruption.EXIT_INTERRUPTED}"]


SLOW_EXIT = """
import signal, sys, time
sys.path.insert(0, {training!r})
from ncf.fit import interruption

class SlowTeardown:  # like TensorFlow's, which runs after Python restored the default signal actions
    def __del__(self):
        time.sleep(2)
        print("torn down", flush=True)

teardown = SlowTeardown()
interruption.install()
signal.raise_signal(signal.SIGTERM)
print("exiting", flush=True)
sys.exit(interruption.EXIT_INTERRUPTED)
"""


def test_a_repeated_sigterm_does_not_kill_train_py_while_it_exits(tmp_path: Path) -> None:
    script = tmp_path / "slow_exit.py"
    script.write_text(SLOW_EXIT.format(training=str(Path(interruption.__file__).parents[2])))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    wait_for_line(process, "exiting", timeout=30)
    time.sleep(1)  # inside the teardown
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == interruption.EXIT_INTERRUPTED, out  # not -SIGTERM
    assert "torn down" in out


# --- the job's request, run in Docker as SageMaker runs it -------------------------------------------------


def download_prefix(s3: Any, uri: str, folder: Path) -> None:
    """What SageMaker copies into a channel's folder: every object under an S3Prefix channel's prefix (by its
    name when the prefix is the whole key, as the source bundle's is)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            target = folder / (key.removeprefix(prefix).lstrip("/") or key.rsplit("/", 1)[-1])
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))


def lay_out_opt_ml(request: dict[str, Any], root: Path) -> Path:
    """/opt/ml of the job's one instance: its channels, config files, and (it has a CheckpointConfig) the
    checkpoint folder that SageMaker syncs with S3."""
    s3 = boto3.client("s3", region_name=REGION)
    inputs = {}
    for channel in request["InputDataConfig"]:
        name, source = channel["ChannelName"], channel["DataSource"]["S3DataSource"]
        download_prefix(s3, source["S3Uri"], root / "input" / "data" / name)
        inputs[name] = {
            "TrainingInputMode": "File",
            "S3DistributionType": source["S3DataDistributionType"],
            "RecordWrapperType": "None",
        }
    instance_type = request["ResourceConfig"]["InstanceType"]
    resources = {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
        "current_group_name": "homogeneousCluster",
        "current_instance_type": instance_type,
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": instance_type, "hosts": ["algo-1"]}
        ],
        "network_interface_name": "eth0",
    }
    config = root / "input" / "config"
    config.mkdir(parents=True)
    for name, content in (
        ("hyperparameters.json", request["HyperParameters"]),
        ("resourceconfig.json", resources),
        ("inputdataconfig.json", inputs),
    ):
        (config / name).write_text(json.dumps(content))
    assert request["CheckpointConfig"].get("LocalPath", "/opt/ml/checkpoints") == "/opt/ml/checkpoints"
    for folder in ("checkpoints", "model", "output/data"):
        (root / folder).mkdir(parents=True)
    return root


@contextmanager
def job_container(image: str, opt_ml: Path, command: list[str], job_name: str) -> Iterator[tuple[str, Any]]:
    """`command` as PID 1 of a container over `opt_ml` (the attached `docker run`, output piped); its name."""
    name = f"ncf-signals-{uuid.uuid4().hex[:12]}"
    docker_run = [
        *("docker", "run", "--rm", "--name", name, "--network", "none", "--hostname", "algo-1"),
        *("-v", f"{opt_ml}:/opt/ml", "-e", f"TRAINING_JOB_NAME={job_name}"),
        *("--entrypoint", command[0], image, *command[1:]),
    ]
    process = subprocess.Popen(docker_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield name, process
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        process.kill()
        process.wait(timeout=60)


def finished_output(process: subprocess.Popen, timeout: float) -> str:
    """The rest of `process`'s output once it has exited; fails the test when it runs `timeout` s longer."""
    try:
        return process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout} s after SIGTERM (SIGKILL would end it {GRACE_SECONDS} s after)")


def docker_cli(*argv: str) -> str:
    return subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_stop_reaches_train_py_in_the_job_container_and_not_with_the_sdks_entrypoint(
    local_images: build.LocalImages, moto_aws: None, recorder: Recorder, tiny_channels: Path, tmp_path: Path
) -> None:
    request = submitted_job(recorder, tiny_channels, LONG_RUN)
    spec = request["AlgorithmSpecification"]
    job_command = [*spec["ContainerEntrypoint"], *spec["ContainerArguments"]]
    forwarded_root = lay_out_opt_ml(request, tmp_path / "forwarded")
    control_root = lay_out_opt_ml(request, tmp_path / "sdk-entrypoint")
    image, job = local_images.training, request["TrainingJobName"]
    with (
        job_container(image, forwarded_root, job_command, job) as (name, process),
        job_container(image, control_root, sdk_default_command(), job) as (control_name, control),
    ):
        seen = wait_for_line(process, EPOCH_LINE, timeout=240)
        control_seen = wait_for_line(control, EPOCH_LINE, timeout=240)
        docker_cli("kill", "--signal", "TERM", name)
        docker_cli("kill", "--signal", "TERM", control_name)
        signalled = time.monotonic()
        out = "".join(seen) + finished_output(process, STOP_WITHIN)
        stopped_after = time.monotonic() - signalled

        # Forwarded: train.py stopped on the signal, kept its checkpoint, and the container exited 143.
        assert process.returncode == interruption.EXIT_INTERRUPTED, out[-4000:]
        assert STOPPED in out, out[-4000:]
        epochs = int(out.split(STOPPED, 1)[1].split()[0])
        assert epochs >= 2
        checkpoint = next(forwarded_root.glob("checkpoints/**/checkpoint"))
        assert f'model_checkpoint_path: "ckpt-{epochs}"' in checkpoint.read_text()
        assert (checkpoint.parent / f"ckpt-{epochs}.index").is_file()

        # The SDK's entrypoint, signalled at the same moment: train.py still trains, the signal lost at PID 1.
        time.sleep(max(0.0, 10 - stopped_after))
        assert "train.py" in docker_cli("top", control_name)
        docker_cli("kill", "--signal", "KILL", control_name)
        control_out = "".join(control_seen) + control.communicate(timeout=60)[0]
    assert control.returncode == 128 + signal.SIGKILL
    assert STOPPED not in control_out, control_out[-4000:]
