"""`train`: a SageMaker training job that runs training/train.py in script mode, via `ModelTrainer`.

The job gets the train/validation/test channels `upload` wrote, the configured hyperparameters
(passed to train.py as `--name value`), the metric regexes of `ncf.reporting` (so SageMaker charts
and tunes on what train.py prints), spot capacity with `max_wait` and a per-job checkpoint prefix
that train.py resumes from after an interruption, and this project's tags. Its source is one
content-addressed bundle under s3://<bucket>/<prefix>/code/ (training/ plus inference/, see
deploy/packaging.py), shared with `tune`. The job's container runs the SDK's command under a signal
forwarder (deploy/signals.py), so that a stop's or a spot interruption's SIGTERM reaches train.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import boto3
from botocore.exceptions import ClientError
from ncf.checksums import sha256_file
from ncf.errors import NcfError

from deploy import images
from deploy.aws import (
    ensure_bucket,
    is_not_found,
    is_project_resource,
    resource_tags,
    s3_object_exists,
    sdk_session,
    sdk_tags,
    split_s3_uri,
    wait_for_job,
)
from deploy.config import Settings
from deploy.packaging import ENTRY_POINT, stage_source, write_tarball
from deploy.upload import CHANNELS, OPTIONAL_CHANNELS

LOG = logging.getLogger("deploy")


@dataclass(frozen=True)
class SourceBundle:
    """The uploaded training source: where it is and whether it has a requirements.txt to install."""

    uri: str
    requirements: str | None


@dataclass(frozen=True)
class JobInputs:
    """What a training job (or tuning trial) reads: the uploaded source and the data channels."""

    bundle: SourceBundle
    channels: tuple[str, ...]


@dataclass(frozen=True)
class TrainingResult:
    """A started (and, with --wait, finished) training job."""

    job_name: str
    status: str
    model_data: str


def metric_definitions(settings: Settings) -> list[dict[str, str]]:
    """`[{Name, Regex}]` for every metric line train.py prints with the job's `top_k` (the cut-off in
    the names of its ranking metrics; owned by ncf.reporting)."""
    from ncf.reporting import metric_definitions as definitions

    return definitions(settings.top_k)


def data_channels(settings: Settings, s3_client: Any) -> tuple[str, ...]:
    """The channels a job reads: train/validation/test, and `items` / `vocabulary` when `upload` sent them.

    Raises:
        NcfError: a required channel has no files in S3; with `shard_train`, fewer train files than
            instances (an instance would get none) or no vocabulary channel to index them alike.
    """

    def files(channel: str, enough: int = 1) -> int:
        bucket, key = split_s3_uri(settings.data_uri(channel))
        return int(s3_client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=enough).get("KeyCount", 0))

    for channel in CHANNELS:
        if not files(channel):
            raise NcfError(
                f"no data under {settings.data_uri(channel)}: run `python -m deploy upload --prepared DIR` "
                f"(dataset {settings.dataset!r}) first"
            )
    optional = tuple(c for c in OPTIONAL_CHANNELS if files(c))
    if settings.shard_train:
        instances = settings.train_instance_count
        found = files("train", instances)
        if found < instances:
            raise NcfError(
                f"shard_train: {settings.data_uri('train')} has {found} file(s) for {instances} instances, so"
                f" an instance would get none: prepare with --shards {instances} or more and upload again"
            )
        if "vocabulary" not in optional:
            raise NcfError(
                f"shard_train: no vocabulary channel under {settings.data_uri('vocabulary')}; upload a folder"
                " written by this version of prepare.py (it has vocabulary/)"
            )
    return CHANNELS + optional


def channel_source(settings: Settings, channel: str) -> Any:
    """A channel's S3 prefix, split between the instances for a sharded train channel."""
    from sagemaker.core.shapes import S3DataSource

    distribution = "ShardedByS3Key" if channel == "train" and settings.shard_train else "FullyReplicated"
    return S3DataSource(
        s3_data_type="S3Prefix", s3_uri=settings.data_uri(channel), s3_data_distribution_type=distribution
    )


def channel_input(settings: Settings, channel: str) -> Any:
    """One channel of the job (`ModelTrainer`'s `InputData`)."""
    from sagemaker.core.training.configs import InputData

    return InputData(channel_name=channel, data_source=channel_source(settings, channel))


def upload_source_bundle(settings: Settings, s3_client: Any) -> SourceBundle:
    """Stage training/ + inference/, tar it reproducibly, upload it once per content."""
    with TemporaryDirectory(prefix="ncf-source-") as tmp:
        staged = stage_source(Path(tmp) / "source")
        requirements = "requirements.txt" if (staged / "requirements.txt").is_file() else None
        archive = write_tarball(staged, Path(tmp) / "sourcedir.tar.gz")
        uri = settings.s3_uri("code", sha256_file(archive)[:16], "sourcedir.tar.gz")
        if not s3_object_exists(s3_client, uri):
            bucket, key = split_s3_uri(uri)
            s3_client.upload_file(str(archive), bucket, key)
    return SourceBundle(uri, requirements)


def job_arguments(settings: Settings) -> dict[str, Any]:
    """`ModelTrainer` arguments that SageMaker and local-mode jobs share: name, limits, hyperparameters."""
    from sagemaker.core.training.configs import StoppingCondition

    return {
        "base_job_name": f"{settings.project}-train",
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=settings.max_run_seconds,
            max_wait_time_in_seconds=settings.max_wait_seconds if settings.spot else None,
        ),
        "hyperparameters": dict(settings.hyperparameters),
        "tags": sdk_tags(settings),
    }


def sdk_metric_definitions(settings: Settings) -> list[Any]:
    """`metric_definitions(settings)` as the SDK's `MetricDefinition` objects."""
    from sagemaker.core.training.configs import MetricDefinition

    return [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in metric_definitions(settings)]


def build_trainer(settings: Settings, session: boto3.Session, inputs: JobInputs, *, checkpoints: bool) -> Any:
    """The `ModelTrainer` for this project's training job (also the template of every tuning trial)."""
    return project_trainer(
        settings,
        sdk_session(session, settings),
        images.training_image(settings, session.region_name),
        inputs.bundle,
        [channel_input(settings, c) for c in inputs.channels],
        checkpoints=checkpoints,
    )


def project_trainer(
    settings: Settings,
    sagemaker_session: Any,
    image: str,
    bundle: SourceBundle,
    input_data_config: list[Any],
    *,
    checkpoints: bool,
    hyperparameters: dict[str, Any] | None = None,
    checkpoint_uri: Any = None,
) -> Any:
    """The job of `deploy train` on any SDK session (a pipeline's too) and any channels.

    A `SignalForwardingTrainer`: the job's main process forwards SIGTERM to train.py (tuning trials have no
    entrypoint to change; see deploy/signals.py). `hyperparameters` replace the configured ones (a
    pipeline passes its parameters there); `checkpoint_uri` replaces the SDK's per-job checkpoint prefix
    (a pipeline's job name is not known when the step is defined, so it gives one per execution).
    """
    from sagemaker.core.training.configs import CheckpointConfig, Compute, OutputDataConfig, SourceCode

    from deploy.signals import SignalForwardingTrainer

    arguments = job_arguments(settings)
    if hyperparameters is not None:
        arguments["hyperparameters"] = hyperparameters
    trainer = SignalForwardingTrainer(
        sagemaker_session=sagemaker_session,
        role=settings.role_arn,
        training_image=image,
        source_code=SourceCode(
            source_dir=bundle.uri, entry_script=ENTRY_POINT, requirements=bundle.requirements
        ),
        compute=Compute(
            instance_type=settings.train_instance_type,
            instance_count=settings.train_instance_count,
            volume_size_in_gb=settings.train_volume_gb,
            enable_managed_spot_training=settings.spot,
        ),
        output_data_config=OutputDataConfig(s3_output_path=settings.s3_uri("models")),
        input_data_config=input_data_config,
        **arguments,
    ).with_metric_definitions(sdk_metric_definitions(settings))
    if checkpoints:
        # No S3 URI: the SDK uses <prefix>/<base job name>/<job name>/checkpoints, one prefix per job,
        # which /opt/ml/checkpoints syncs with (and which a spot restart of the same job downloads).
        trainer = trainer.with_checkpoint_config(CheckpointConfig(s3_uri=checkpoint_uri))
    return trainer


def prepare_job(settings: Settings, session: boto3.Session) -> JobInputs:
    """The checks and the source upload that `train` and `tune` share."""
    s3_client = session.client("s3")
    ensure_bucket(s3_client, settings)
    channels = data_channels(settings, s3_client)
    return JobInputs(upload_source_bundle(settings, s3_client), channels)


def train(settings: Settings, session: boto3.Session, *, wait: bool, logs: bool) -> TrainingResult:
    """Launch the training job; with `wait`, follow it to the end.

    Args:
        settings: the resolved deploy settings (channels, instances, spot, hyperparameters).
        session: the boto3 session the SDK and S3 calls use.
        wait: poll the job until it finishes; `logs` also streams its CloudWatch log.

    Returns:
        The job's name, its status when this returns, and where its model.tar.gz goes.

    Raises:
        NcfError: missing channels or bucket (see `data_channels`).
        RemoteFailure: with `wait`, the job failed or stopped (its FailureReason included).
    """
    inputs = prepare_job(settings, session)
    trainer = build_trainer(settings, session, inputs, checkpoints=settings.checkpoints)
    trainer.train(wait=False, logs=False)
    job = started_job(trainer, settings.s3_uri("models"), session)
    LOG.info("training job %s started", job.training_job_name)
    if wait:
        wait_for_job(job, "training job", "training_job_status", settings.poll_seconds, logs=logs)
    job.refresh()
    model_data = f"{settings.s3_uri('models')}/{job.training_job_name}/output/model.tar.gz"
    return TrainingResult(job.training_job_name, job.training_job_status, model_data)


def started_job(trainer: Any, s3_output_path: str, session: boto3.Session) -> Any:
    """The `TrainingJob` that `trainer.train()` just created, found through the SDK's public API.

    `ModelTrainer.train` returns nothing; its documented `output_data` property is the URI
    `{s3_output_path}/{job name}/output/output.tar.gz` of the job it created, and `TrainingJob.get`
    describes a job by name.

    Raises:
        NcfError: `output_data` does not have that layout (an SDK that changed it).
    """
    from sagemaker.core.resources import TrainingJob

    uri, prefix, suffix = trainer.output_data, f"{s3_output_path.rstrip('/')}/", "/output/output.tar.gz"
    name = uri.removeprefix(prefix).removesuffix(suffix)
    if not uri.startswith(prefix) or not uri.endswith(suffix) or not name or "/" in name:
        raise NcfError(f"cannot read the training job's name from the SDK's output_data {uri!r}")
    return TrainingJob.get(training_job_name=name, session=session)


def completed_model_data(sagemaker_client: Any, job_name: str) -> str:
    """The model.tar.gz of a Completed training job.

    Raises:
        NcfError: the job does not exist, or has not Completed.
    """
    try:
        job = sagemaker_client.describe_training_job(TrainingJobName=job_name)
    except ClientError as exc:
        if is_not_found(exc):
            raise NcfError(f"training job {job_name!r} does not exist in this account and region") from None
        raise
    if job["TrainingJobStatus"] != "Completed":
        raise NcfError(
            f"training job {job_name} is {job['TrainingJobStatus']}, not Completed: it has no model"
        )
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def latest_training_job(settings: Settings, sagemaker_client: Any) -> str:
    """The newest Completed job that `train` started for this project (by name prefix and tag).

    Raises:
        NcfError: there is none.
    """
    pages = sagemaker_client.get_paginator("list_training_jobs").paginate(
        NameContains=f"{settings.project}-train-", StatusEquals="Completed"
    )
    # NameContains matches anywhere: another team's `x-<project>-train-...` job is not asked for its tags.
    summaries = [
        s
        for page in pages
        for s in page["TrainingJobSummaries"]
        if s["TrainingJobName"].startswith(f"{settings.project}-train-")
    ]
    for summary in sorted(summaries, key=lambda s: s["CreationTime"], reverse=True):
        tags = resource_tags(sagemaker_client, summary["TrainingJobArn"]) or []
        if is_project_resource(tags, settings.project):
            return summary["TrainingJobName"]
    raise NcfError(
        f"no completed training job of project {settings.project!r}: run `python -m deploy train --wait`, "
        "or pass --training-job NAME or --model-data s3://.../model.tar.gz"
    )
