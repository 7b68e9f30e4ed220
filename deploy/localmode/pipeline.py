"""`pipeline start --local`: the retraining pipeline run by the SDK's local pipeline session in Docker.

The graph is the one `pipeline upsert` sends (deploy/pipeline_steps.py), without the Register step: the
SDK's local pipeline executor runs Processing, Training, Condition, Fail and CreateModel steps, not a model
registration. Its steps pass data through S3 URIs as on SageMaker (the SDK uploads the training drivers at
definition time, property files are read from S3), so the run gets its own S3: moto's server (the dev
extras' `moto[server]`) on 127.0.0.1, for this run only. The input folder, the source bundle and the
current model go in; the candidate, its evaluation report and the prepared channels come back to
`<local_dir>/pipeline/<execution>/`.

In place of the registry, a candidate that passes the gate becomes `<local_dir>/pipeline/approved/
model.tar.gz`, the current model of the next local run (unless `--current-model` names another).
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from ncf.errors import NcfError

from deploy.aws import split_s3_uri
from deploy.config import Settings
from deploy.localmode.build import image_tags
from deploy.localmode.docker import remove_containers, require_docker, require_image
from deploy.localmode.sdk_fixes import local_mode_fixes
from deploy.localmode.training import LogTail
from deploy.pipeline import NO_MODEL_MARKER, no_model_uri
from deploy.pipeline_steps import REPORT_FILE, Context, build_pipeline, import_workflow_sdk, parameters
from deploy.training import upload_source_bundle

LOCAL_BUCKET = "ncf-local-pipeline"
COMPOSE_NETWORK = "sagemaker-local"  # the SDK's name for its compose projects' network
REGION = "us-east-1"  # any region: nothing leaves this machine


@dataclass(frozen=True)
class LocalExecution:
    """A finished local execution: its status, steps, gate verdict and where its files were copied."""

    execution: str
    status: str
    failure_reason: str
    steps: list[dict[str, str]]
    gate: dict[str, Any]
    folder: str
    approved_model: str


@contextmanager
def local_s3() -> Iterator[str]:
    """An S3 endpoint for one run: moto's server on 127.0.0.1 (stopped afterwards)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise NcfError(
            "pipeline start --local needs moto's server as its S3: pip install 'moto[server]' "
            "(it is in this project's dev extras)"
        ) from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # its request log is not this run's progress
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def removing_step_containers() -> Iterator[None]:
    """Remove each step's container, and the SDK's compose network, when the run ends.

    The SDK's local step runner (`sagemaker.core.local.image._SageMakerContainer`) runs `compose up` and
    leaves the stopped container and the `sagemaker-local` network behind; `train --local` takes its
    compose project down. The names come from the compose files the runner writes.
    """
    from sagemaker.core.local.image import _SageMakerContainer

    names: list[str] = []
    original = _SageMakerContainer._generate_compose_file

    def recording(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        content = original(self, *args, **kwargs)
        names.extend(service["container_name"] for service in content["services"].values())
        return content

    _SageMakerContainer._generate_compose_file = recording
    try:
        yield
    finally:
        _SageMakerContainer._generate_compose_file = original
        remove_containers(names, network=COMPOSE_NETWORK)


def local_session(endpoint: str, bucket: str) -> Any:
    """The SDK's local pipeline session on `endpoint`, both halves: it runs pipelines, jobs become steps."""
    from sagemaker.core.workflow.pipeline_context import LocalPipelineSession as StepCapturingSession
    from sagemaker.mlops.local import LocalPipelineSession as PipelineRunningSession

    class ProjectLocalSession(PipelineRunningSession, StepCapturingSession):
        def default_bucket(self) -> str:
            return bucket

    boto = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
    session = ProjectLocalSession(boto_session=boto, default_bucket=bucket, s3_endpoint_url=endpoint)
    session.config = {"local": {"local_code": True}}
    return session


def upload_folder(s3_client: Any, folder: Path, uri: str) -> None:
    """Every file under `folder` to the prefix `uri`."""
    bucket, prefix = split_s3_uri(uri)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3_client.upload_file(
            str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        )


def stage_inputs(
    settings: Settings, s3_client: Any, input_data: Path, current: Path | None
) -> dict[str, str]:
    """Put the run's inputs into the local S3; returns the InputData and CurrentModel parameter values."""
    s3_client.create_bucket(Bucket=settings.bucket)
    upload_folder(s3_client, input_data, settings.raw_data)
    if current is None:
        bucket, key = split_s3_uri(no_model_uri(settings) + NO_MODEL_MARKER)
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"no approved model yet\n")
        return {"InputData": settings.raw_data, "CurrentModel": no_model_uri(settings)}
    current_uri = settings.s3_uri("pipeline", "current", "model.tar.gz")
    s3_client.upload_file(str(current), *split_s3_uri(current_uri))
    return {"InputData": settings.raw_data, "CurrentModel": current_uri}


def local_settings(settings: Settings) -> Settings:
    """A local run's settings: its own bucket in the local S3, no spot, no checkpoints."""
    role = settings.role_arn or "arn:aws:iam::000000000000:role/local-mode"  # the local runner ignores it
    return replace(
        settings, bucket=LOCAL_BUCKET, raw_data_uri="", spot=False, checkpoints=False, role_arn=role
    )


def approved_model(settings: Settings) -> Path:
    """Where a local run keeps the model that passed its gate (the next local run's current model)."""
    return Path(settings.local_dir) / "pipeline" / "approved" / "model.tar.gz"


def run_local(
    settings: Settings, input_data: Path, values: dict[str, Any], current: Path | None = None
) -> LocalExecution:
    """Run the pipeline to the end in local containers and copy its results back.

    Args:
        settings: the resolved settings (the local run replaces bucket, spot and checkpoints).
        input_data: a folder of raw interactions, as prepare.py reads it (e.g. data/default).
        values: pipeline parameters to set (ModelType, Epochs, GateMargin, ...).
        current: the model to beat; default: the last local run's approved model, if any.
    """
    if not input_data.is_dir():
        raise NcfError(f"--input-data {input_data}: not a folder (pass a folder of raw interactions)")
    require_docker()
    images = image_tags()
    require_image(images.training, "training")
    settings = local_settings(settings)
    import_workflow_sdk(REGION)
    current = current or (approved_model(settings) if approved_model(settings).is_file() else None)
    with local_s3() as endpoint:
        session = local_session(endpoint, settings.bucket)
        staged = stage_inputs(settings, session.s3_client, input_data, current)
        bundle = upload_source_bundle(settings, session.s3_client)
        context = Context(
            settings,
            session,
            images.training,
            images.serving,
            bundle,
            settings.s3_uri("pipeline"),
            parameters(settings, no_model_uri(settings)),
        )
        pipeline = build_pipeline(context, register=False)
        session.create_pipeline(pipeline, f"{settings.project}: local run")
        # The containers' log goes to stderr: stdout is for the result.
        with local_mode_fixes(), removing_step_containers(), redirect_stdout(LogTail(sys.stderr)):
            execution = session.start_pipeline_execution(
                PipelineName=pipeline.name, PipelineParameters={**values, **staged}
            )
        return collect(settings, session, execution)


def collect(settings: Settings, session: Any, execution: Any) -> LocalExecution:
    """Copy the execution's outputs to `<local_dir>/pipeline/<id>/`; promote a passing candidate."""
    import json

    described = execution.describe()
    execution_id = described["PipelineExecutionArn"]
    folder = Path(settings.local_dir) / "pipeline" / execution_id
    steps = {s["StepName"]: s for s in execution.list_steps()["PipelineExecutionSteps"]}
    gate: dict[str, Any] = {}
    report = output_uri(execution, "Evaluate", "evaluation")
    if report:
        gate = json.loads(session.read_s3_file(*split_s3_uri(f"{report}/{REPORT_FILE}")))["gate"]
        download(session, f"{report}/{REPORT_FILE}", folder / REPORT_FILE)
    model = step_properties(execution, "Train").get("ModelArtifacts", {}).get("S3ModelArtifacts")
    promoted = ""
    if model:
        download(session, model, folder / "model.tar.gz")
        if gate.get("passed"):
            approved_model(settings).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / "model.tar.gz", approved_model(settings))
            promoted = str(approved_model(settings))
    return LocalExecution(
        execution=execution_id,
        status=described["PipelineExecutionStatus"],
        failure_reason=described.get("FailureReason", ""),
        steps=[{"name": n, "status": s.get("StepStatus", "")} for n, s in steps.items()],
        gate=gate,
        folder=str(folder),
        approved_model=promoted,
    )


def step_properties(execution: Any, step: str) -> dict[str, Any]:
    """What the local executor recorded of a finished step (its Describe* answer); {} for none."""
    recorded = execution.step_execution.get(step)
    return (recorded.properties or {}) if recorded is not None else {}


def output_uri(execution: Any, step: str, output: str) -> str:
    """The S3 URI a Processing step's output went to ("" when the step did not finish)."""
    outputs = step_properties(execution, step).get("ProcessingOutputConfig", {}).get("Outputs", {})
    return outputs.get(output, {}).get("S3Output", {}).get("S3Uri", "").rstrip("/")


def download(session: Any, uri: str, target: Path) -> None:
    """One object of the local S3 to a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    session.s3_client.download_file(*split_s3_uri(uri), str(target))
