"""The AWS edge every command shares: sessions, the project tag, S3 checks, names and error wording.

Everything here is thin and side-effect free until called. The SageMaker SDK is imported lazily
(it takes seconds), so `--help`, `iam-policy` and `invoke` stay fast.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError
from ncf.errors import NcfError

from deploy.config import Settings

LOG = logging.getLogger("deploy")

#: Every resource this CLI creates carries this tag, valued with the `project` setting.
#: `status` and `teardown` only ever look at (and delete) resources that carry it.
PROJECT_TAG = "ncf-sagemaker:project"

#: Builds the boto3 session for a region (tests pass one that records the requests).
SessionFactory = Callable[[str | None], boto3.Session]


class RemoteFailure(Exception):
    """Something failed on the AWS side (a job or endpoint failed, an API call was refused).

    The CLI prints `error: <message>` and exits 1: not the user's input (that is `NcfError`, exit 2)
    and not a bug in this project (that keeps its traceback).
    """


def default_session_factory(region: str | None) -> boto3.Session:
    """A plain boto3 session: credentials, profile and endpoint from the usual AWS sources."""
    return boto3.Session(region_name=region or None)


def open_session(settings: Settings, factory: SessionFactory = default_session_factory) -> boto3.Session:
    """The session for this run; fails clearly when no region is configured anywhere."""
    session = factory(settings.region or None)
    if not session.region_name:
        raise NcfError(
            "no AWS region configured: set region in the config file, NCF_REGION, --region or AWS_REGION"
        )
    return session


def sdk_session(session: boto3.Session, settings: Settings, *, pipeline: bool = False) -> Any:
    """A SageMaker SDK session that stages its uploads under s3://<bucket>/<prefix>/.

    Its `default_bucket()` is the configured bucket as it is: the SDK's own version first looks the
    bucket up with ListBuckets (`s3:ListAllMyBuckets`, which a least-privilege operator lacks and
    does not need) and creates it when missing. `ensure_bucket` has already checked the bucket with
    the operator's own rights, and this CLI never creates one. With `pipeline`, a `PipelineSession`:
    the SDK's jobs then become pipeline steps instead of starting.
    """
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.workflow.pipeline_context import PipelineSession

    class ConfiguredBucketSession(PipelineSession if pipeline else Session):
        def default_bucket(self) -> str:
            return settings.bucket

    return ConfiguredBucketSession(
        boto_session=session, default_bucket=settings.bucket, default_bucket_prefix=settings.prefix or None
    )


def project_tags(settings: Settings) -> list[dict[str, str]]:
    """The tags every created resource gets: the project tag plus the configured `tags`."""
    return [{"Key": PROJECT_TAG, "Value": settings.project}] + [
        {"Key": k, "Value": v} for k, v in settings.tags.items()
    ]


def sdk_tags(settings: Settings) -> list[dict[str, str]]:
    """`project_tags` in the SDK's field names. Plain dicts on purpose: sagemaker-core 3.27 types the
    `tags` of some resources (TransformJob, TrainingJob) with its `Tag` *resource* class and others
    with the `Tag` shape, and a dict validates as either."""
    return [{"key": t["Key"], "value": t["Value"]} for t in project_tags(settings)]


def is_project_resource(tags: Iterable[Mapping[str, str]], project: str) -> bool:
    """True when the tag list carries this project's tag."""
    return any(t.get("Key") == PROJECT_TAG and t.get("Value") == project for t in tags)


def resource_tags(sagemaker_client: Any, arn: str) -> list[dict[str, str]] | None:
    """The resource's tags, or None when it no longer exists."""
    try:
        pages = sagemaker_client.get_paginator("list_tags").paginate(ResourceArn=arn)
        return [tag for page in pages for tag in page.get("Tags", [])]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def ensure_bucket(s3_client: Any, settings: Settings) -> None:
    """Fail clearly when the configured bucket does not exist or cannot be reached.

    The check lists (at most one key) under the project's prefix, as the SageMaker SDK checks a
    bucket it may only use under a prefix: HeadBucket is authorized as `s3:ListBucket` with no
    `s3:prefix` in the request, which a ListBucket limited to the prefix denies.
    """
    bucket = settings.bucket
    under_prefix = {"Prefix": f"{settings.prefix}/"} if settings.prefix else {}
    try:
        s3_client.list_objects_v2(Bucket=bucket, MaxKeys=1, **under_prefix)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise NcfError(
                f"S3 bucket {bucket!r} does not exist: create it or set bucket/NCF_BUCKET"
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise NcfError(
                f"S3 bucket {bucket!r} exists but this identity may not use it (access denied)"
            ) from None
        raise


def split_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') of `s3://bucket/key`, or a clear error."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise NcfError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return match.group(1), match.group(2)


def s3_object_exists(s3_client: Any, uri: str) -> bool:
    """True when the object (not a prefix) exists.

    Listed rather than HeadObject'ed: S3 answers a HeadObject on a missing key with 403, not 404,
    unless the caller may list the bucket without a prefix condition, which the project's
    least-privilege policy does not allow. A listing under the key itself is allowed.
    """
    bucket, key = split_s3_uri(uri)
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    return bool(listed) and listed[0]["Key"] == key


def unique_name(settings: Settings, kind: str) -> str:
    """`<project>-<kind>-<UTC yymmddHHMMSS><2 hex>`: unique and sortable.

    At most 32 characters for a `kind` of up to 4 letters (tuning job names are capped at 32).
    """
    stamp = datetime.now(UTC).strftime("%y%m%d%H%M%S")
    return f"{settings.project}-{kind}-{stamp}{secrets.token_hex(1)}"


def is_not_found(exc: ClientError) -> bool:
    """True for the ways SageMaker, S3 and Application Auto Scaling say 'no such resource'."""
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "").lower()
    if code in ("ResourceNotFound", "ObjectNotFoundException", "NoSuchKey", "NoSuchBucket", "404"):
        return True
    return code == "ValidationException" and ("could not find" in message or "does not exist" in message)


def describe_client_error(exc: ClientError) -> str:
    """One line: which API call failed and what AWS said."""
    error = exc.response.get("Error", {})
    return f"{exc.operation_name} failed: {error.get('Code', 'Error')}: {error.get('Message', str(exc))}"


def wait_for_job(job: Any, kind: str, status_field: str, poll_seconds: int, **wait_options: Any) -> None:
    """Wait for an SDK job resource to finish; `RemoteFailure` with its FailureReason unless Completed."""
    from sagemaker.core.utils.exceptions import FailedStatusError

    name = job.get_name()
    try:
        job.wait(poll=poll_seconds, **wait_options)
    except FailedStatusError:
        raise RemoteFailure(
            f"{kind} {name} failed: {text_or(job.failure_reason, 'no reason given')}"
        ) from None
    status = getattr(job, status_field)
    if status != "Completed":
        reason = text_or(
            job.failure_reason, text_or(getattr(job, "secondary_status", None), "no reason given")
        )
        raise RemoteFailure(f"{kind} {name} ended {status}: {reason}")


def text_or(value: Any, fallback: str) -> str:
    """`value` when the SDK filled it with a non-empty string (it uses `Unassigned()` otherwise)."""
    return value if isinstance(value, str) and value else fallback
