"""`pipeline upsert|start|status|describe`: the retraining pipeline on SageMaker Pipelines.

`upsert` uploads the source bundle (the one `train` uses), makes sure the Model Package Group and the
"no approved model" stand-in exist, and creates or updates the pipeline (deploy/pipeline_steps.py) with the
execution role. `start` looks up the latest Approved model package (the model the candidate must match)
and starts an execution with the given parameters; `--wait` follows it and fails with the gate's verdict
when the candidate is refused. `status` lists recent executions and the steps of the newest, `describe` the
pipeline and its parameters. The local form (`start --local`) is deploy/localmode/pipeline.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError
from ncf.errors import NcfError

from deploy import images, registry
from deploy.aws import RemoteFailure, ensure_bucket, is_not_found, project_tags, sdk_session, split_s3_uri
from deploy.config import Settings
from deploy.pipeline_steps import Context, build_pipeline, import_workflow_sdk, parameters
from deploy.training import SourceBundle, upload_source_bundle

LOG = logging.getLogger("deploy")
NO_MODEL_MARKER = "NO_APPROVED_MODEL"  # training/evaluate.py's name for it
LATEST_APPROVED_MARKER = "LATEST_APPROVED.json"  # likewise
RUNNING = ("Executing", "Stopping")


def no_model_uri(settings: Settings) -> str:
    """The CurrentModel input while no model is approved: a prefix holding only the marker file."""
    return settings.s3_uri("pipeline", "no-approved-model") + "/"


def latest_approved_uri(settings: Settings) -> str:
    """CurrentModel's default: a prefix whose marker file names the Model Package Group, so that a run
    nobody resolved CurrentModel for (a schedule's) compares against the group's newest Approved model,
    which training/evaluate.py looks up when the run reaches it."""
    return settings.s3_uri("pipeline", "latest-approved") + "/"


def pipeline_context(
    settings: Settings, region: str, session: Any, bundle: SourceBundle, artifacts: str
) -> Context:
    """What the steps are built from, for a SageMaker or a local pipeline session."""
    return Context(
        settings=settings,
        session=session,
        training_image=images.training_image(settings, region),
        inference_image=images.inference_image(settings, region),
        bundle=bundle,
        artifacts=artifacts,
        parameters=parameters(settings, latest_approved_uri(settings)),
    )


def put_marker(s3_client: Any, settings: Settings, region: str) -> None:
    """Write the "no approved model" stand-in (a Processing input cannot be an empty prefix) and the
    "latest approved" one (the group and its region, as JSON)."""
    bucket, key = split_s3_uri(no_model_uri(settings) + NO_MODEL_MARKER)
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"no model package is Approved yet\n")
    bucket, key = split_s3_uri(latest_approved_uri(settings) + LATEST_APPROVED_MARKER)
    group = {"group": settings.package_group, "region": region}
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(group).encode())


@dataclass(frozen=True)
class UpsertReport:
    """What `pipeline upsert` did."""

    pipeline: str
    arn: str
    source: str
    model_package_group: str


def upsert(settings: Settings, session: boto3.Session) -> UpsertReport:
    """Create or update the pipeline (and what it needs: source bundle, marker, package group)."""
    import_workflow_sdk(session.region_name)
    s3_client = session.client("s3")
    ensure_bucket(s3_client, settings)
    bundle = upload_source_bundle(settings, s3_client)
    put_marker(s3_client, settings, session.region_name)
    group = registry.ensure_group(session.client("sagemaker"), settings)
    sdk = sdk_session(session, settings, pipeline=True)
    context = pipeline_context(settings, session.region_name, sdk, bundle, settings.s3_uri("pipeline"))
    response = build_pipeline(context).upsert(
        role_arn=settings.role_arn,
        description=f"{settings.project}: prepare, train, evaluate against the approved model, gate",
        tags=project_tags(settings),
    )
    return UpsertReport(settings.pipeline, response["PipelineArn"], bundle.uri, group)


@contextmanager
def existing_pipeline(settings: Settings) -> Iterator[None]:
    """Turn SageMaker's "no such pipeline" into the hint to run `pipeline upsert`."""
    try:
        yield
    except ClientError as exc:
        if is_not_found(exc) or "does not exist" in str(exc):
            raise NcfError(
                f"pipeline {settings.pipeline} does not exist: run `python -m deploy pipeline upsert`"
            ) from None
        raise


def current_model(sagemaker_client: Any, settings: Settings) -> str:
    """The model.tar.gz of the latest Approved package, or the "no approved model" stand-in."""
    approved = registry.list_packages(sagemaker_client, settings, approval="Approved")
    return registry.model_data(sagemaker_client, approved[0].arn) if approved else no_model_uri(settings)


def start(
    settings: Settings, session: boto3.Session, values: dict[str, Any], *, wait: bool
) -> dict[str, Any]:
    """Start an execution with `values` (parameter name -> value) and CurrentModel from the registry.

    Raises:
        NcfError: the pipeline does not exist (run `pipeline upsert`).
        RemoteFailure: with `wait`, the execution failed (the gate's refusal names both scores).
    """
    client = session.client("sagemaker")
    values = {"CurrentModel": current_model(client, settings), **values}
    with existing_pipeline(settings):
        response = client.start_pipeline_execution(
            PipelineName=settings.pipeline,
            PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in values.items()],
        )
    arn = response["PipelineExecutionArn"]
    LOG.info("pipeline execution %s started (current model: %s)", arn, values["CurrentModel"])
    if wait:
        wait_for_execution(client, arn, settings.poll_seconds)
    return execution_summary(client, arn)


def wait_for_execution(client: Any, arn: str, poll_seconds: int) -> None:
    """Poll until the execution ends; `RemoteFailure` with its failure reason unless it Succeeded."""
    while True:
        described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
        status = described["PipelineExecutionStatus"]
        if status not in RUNNING:
            break
        time.sleep(poll_seconds)
    if status != "Succeeded":
        reason = described.get("FailureReason") or failed_step_reason(client, arn) or "no reason given"
        raise RemoteFailure(f"pipeline execution {arn} {status}: {reason}")


def failed_step_reason(client: Any, arn: str) -> str:
    """The failure reason of the execution's first failed step (a Fail step's message)."""
    for step in execution_steps(client, arn):
        if step.get("FailureReason"):
            return f"step {step['StepName']}: {step['FailureReason']}"
    return ""


def execution_steps(client: Any, arn: str) -> list[dict[str, Any]]:
    """The execution's steps, in the order they started."""
    pages = client.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=arn, SortOrder="Ascending"
    )
    return [step for page in pages for step in page["PipelineExecutionSteps"]]


def execution_summary(client: Any, arn: str) -> dict[str, Any]:
    """An execution's status and its steps' statuses (what `start` and `status` print)."""
    described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
    return {
        "execution": arn,
        "status": described["PipelineExecutionStatus"],
        "started": described.get("CreationTime"),
        "failure_reason": described.get("FailureReason", ""),
        "steps": [
            {
                "name": s["StepName"],
                "status": s.get("StepStatus", ""),
                "failure_reason": s.get("FailureReason", ""),
            }
            for s in execution_steps(client, arn)
        ],
    }


def status(settings: Settings, session: boto3.Session, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` executions; the newest with its steps."""
    client = session.client("sagemaker")
    with existing_pipeline(settings):
        listed = client.list_pipeline_executions(
            PipelineName=settings.pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
        )["PipelineExecutionSummaries"]
    summaries = [
        {
            "execution": e["PipelineExecutionArn"],
            "status": e["PipelineExecutionStatus"],
            "started": e.get("StartTime"),
        }
        for e in listed
    ]
    if summaries:
        summaries[0] = execution_summary(client, summaries[0]["execution"])
    return summaries


def describe(settings: Settings, session: boto3.Session) -> dict[str, Any]:
    """The pipeline: ARN, status, role, times, its parameters and its steps (from its definition)."""
    client = session.client("sagemaker")
    with existing_pipeline(settings):
        described = client.describe_pipeline(PipelineName=settings.pipeline)
    definition = json.loads(described["PipelineDefinition"])
    return {
        "pipeline": described["PipelineName"],
        "arn": described["PipelineArn"],
        "status": described.get("PipelineStatus", ""),
        "role": described.get("RoleArn", ""),
        "last_modified": described.get("LastModifiedTime"),
        "parameters": {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])},
        "steps": step_names(definition["Steps"]),
    }


def step_names(steps: list[dict[str, Any]]) -> list[str]:
    """`Name (Type)` of every step, a condition's branches included, in definition order."""
    names = []
    for step in steps:
        names.append(f"{step['Name']} ({step['Type']})")
        arguments = step.get("Arguments", {})
        names += step_names(arguments.get("IfSteps", []) + arguments.get("ElseSteps", []))
    return names
