"""`batch`: Batch Transform over a JSON Lines file of users -> recommendations in S3.

Input: one JSON object per line, as inference.py reads them (`{"user_id": "42", "k": 10}`; only
`user_id` is required), from S3 or a local file (uploaded under <prefix>/batch/input/<job>/).
The job splits the file by line, sends several lines per request (`MultiRecord`, at most
`batch_max_payload_mb`), and writes `<input name>.out` with one prediction per line, in input
order, under s3://<bucket>/<prefix>/batch/output/<job>/.

A MultiRecord request holds as many whole lines as fit in `MaxPayloadInMB`: about 200,000 users in
6 MB of short lines, which takes the handler tens of seconds or more (it scores each user against the
whole catalog). So the job also sets, for its container:
- `NCF_MAX_BODY_BYTES` = `batch_max_payload_mb` MiB, so inference.py accepts every request the job
  makes (its default is 6 MiB, the real-time limit);
- `SAGEMAKER_NGINX_PROXY_READ_TIMEOUT_SECONDS` = `batch_invocation_timeout_seconds`: the TF Serving
  container's nginx otherwise gives up on a request after 60 s (its default) and answers 504;
- `ModelClientConfig.InvocationsTimeoutInSeconds` = the same (SageMaker's default is 600 s).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import boto3
from ncf.errors import NcfError

from deploy import hosting
from deploy.aws import ensure_bucket, s3_object_exists, sdk_tags, split_s3_uri, unique_name, wait_for_job
from deploy.config import Settings

LOG = logging.getLogger("deploy")
JSONLINES = "application/jsonlines"
MIB = 1024 * 1024


@dataclass(frozen=True)
class BatchReport:
    """The transform job, its model, and where its results go."""

    job_name: str
    model: str
    input_uri: str
    output_uri: str
    status: str


def check_users_file(path: Path) -> int:
    """Count the requests of a local JSON Lines users file, or say which line is wrong."""
    if not path.is_file():
        raise NcfError(f"batch input {path} does not exist")
    count = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NcfError(f"{path}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "user_id" not in record:
            raise NcfError(
                f'{path}, line {number}: expected an object with "user_id", e.g. {{"user_id": "42"}}'
            )
        count += 1
    if not count:
        raise NcfError(f"batch input {path} has no users")
    return count


def container_environment(settings: Settings) -> dict[str, str]:
    """What the serving container needs to answer this job's requests (see the module docstring)."""
    return {
        "NCF_MAX_BODY_BYTES": str(settings.batch_max_payload_mb * MIB),
        "SAGEMAKER_NGINX_PROXY_READ_TIMEOUT_SECONDS": str(settings.batch_invocation_timeout_seconds),
    }


def run_batch(
    settings: Settings, session: boto3.Session, *, source: str, model_data: str, wait: bool
) -> BatchReport:
    """Create a model from `model_data` and a transform job over `source` (S3 URI or local file)."""
    from sagemaker.core.resources import TransformJob
    from sagemaker.core.shapes import (
        ModelClientConfig,
        TransformDataSource,
        TransformInput,
        TransformOutput,
        TransformResources,
        TransformS3DataSource,
    )

    s3_client = session.client("s3")
    ensure_bucket(s3_client, settings)
    job_name = unique_name(settings, "batch")
    input_uri = _stage_input(settings, s3_client, source, job_name)
    model = hosting.create_model(settings, session, model_data, settings.batch_instance_type)
    output_uri = settings.s3_uri("batch", "output", job_name) + "/"
    job = TransformJob.create(
        transform_job_name=job_name,
        model_name=model,
        batch_strategy="MultiRecord",
        max_payload_in_mb=settings.batch_max_payload_mb,
        model_client_config=ModelClientConfig(
            invocations_timeout_in_seconds=settings.batch_invocation_timeout_seconds
        ),
        environment=container_environment(settings),
        transform_input=TransformInput(
            data_source=TransformDataSource(
                s3_data_source=TransformS3DataSource(s3_data_type="S3Prefix", s3_uri=input_uri)
            ),
            content_type=JSONLINES,
            split_type="Line",
        ),
        transform_output=TransformOutput(s3_output_path=output_uri, accept=JSONLINES, assemble_with="Line"),
        transform_resources=TransformResources(
            instance_type=settings.batch_instance_type, instance_count=settings.batch_instance_count
        ),
        tags=sdk_tags(settings),
        session=session,
        region=session.region_name,
    )
    LOG.info("transform job %s started", job_name)
    if wait:
        wait_for_job(job, "transform job", "transform_job_status", settings.poll_seconds)
    job.refresh()
    return BatchReport(job_name, model, input_uri, output_uri, job.transform_job_status)


def _stage_input(settings: Settings, s3_client: object, source: str, job_name: str) -> str:
    """The input's S3 URI: checked when it is in S3, uploaded when it is a local file."""
    if not source:
        raise NcfError("no batch input: pass --input users.jsonl (local or s3://...) or set batch_input")
    if source.startswith("s3://"):
        split_s3_uri(source)
        if not s3_object_exists(s3_client, source):
            raise NcfError(f"batch input {source} does not exist")
        return source
    path = Path(source)
    count = check_users_file(path)
    uri = settings.s3_uri("batch", "input", job_name, path.name)
    bucket, key = split_s3_uri(uri)
    s3_client.upload_file(str(path), bucket, key)
    LOG.info("uploaded %d users to %s", count, uri)
    return uri
