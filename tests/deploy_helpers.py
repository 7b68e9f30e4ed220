"""Helpers of the deploy/ tests: the fake account, request capture, and the moto shims.

Fixtures that use them live in tests/deploy_fixtures.py. Moto shims, each narrow and needed only
because moto 5.2.5 differs from SageMaker:
- UpdateEndpoint: moto does not implement it. `stub_update_endpoint` answers that one call and
  makes its effect visible through moto's own API (the endpoint now uses the new config), or, bound
  to a status and reason, leaves the endpoint on its old config as a failed or rolled-back update does.
- ListPipelineExecutionSteps: moto does not implement it (nor run any step); `stub_list_execution_steps`
  answers with no steps, as for an execution that has just started.
- moto's Describe* answers carry `VpcConfig: {}` / `DataCaptureConfig: {}` and describe an
  endpoint's data capture with the endpoint config's shape (no CaptureStatus); sagemaker-core's
  response models reject both. `fix_moto_shapes` drops the empty dicts and adds the summary fields.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.exceptions import ClientError

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ncf-test-execution"
BUCKET = "ncf-test-bucket"
PROJECT = "ncftest"
TEST_CONFIG = f"""
region = "{REGION}"
role_arn = "{ROLE_ARN}"
bucket = "{BUCKET}"
prefix = "ncf"
project = "{PROJECT}"
poll_seconds = 1
spot = true
max_run_seconds = 3600
max_wait_seconds = 7200
bluegreen_wait_seconds = 60

[hyperparameters]
epochs = 3
mlp_layers = "64,32,16,8"
learning_rate = 0.002

[tags]
team = "recsys"
"""
SDK_CONFIG = """SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


#: Set while a moto shim talks to moto itself: those requests are the test's, not the CLI's.
_SHIM_REQUEST: ContextVar[bool] = ContextVar("shim_request", default=False)


@contextmanager
def shim_requests() -> Iterator[None]:
    """Requests made inside are not recorded (a moto shim standing in for AWS)."""
    token = _SHIM_REQUEST.set(True)
    try:
        yield
    finally:
        _SHIM_REQUEST.reset(token)


@dataclass
class Call:
    """One API request as the CLI or the SDK made it."""

    service: str
    operation: str
    params: dict[str, Any]
    region: str | None = None
    error: str = ""  # the error code AWS (moto) answered with, if any


@dataclass
class Recorder:
    """Session factory for `deploy.cli.main` that installs the moto shims, and the record of every
    request any botocore client made while `recording()` was active.

    Recording happens in `BaseClient._make_api_call`, not on the factory's sessions: the SDK also
    makes clients of its own (sagemaker-core's CloudWatch Logs client comes from a fresh
    `boto3.Session()`, `invoke` builds its runtime client itself), and those requests count too.
    """

    calls: list[Call] = field(default_factory=list)
    hooks: list[tuple[str, Any]] = field(default_factory=list)
    active: bool = False

    def __call__(self, region: str | None) -> boto3.Session:
        session = boto3.Session(region_name=region or REGION)
        session.events.register("after-call.sagemaker", fix_moto_shapes)
        session.events.register("before-call.sagemaker.UpdateEndpoint", stub_update_endpoint)
        session.events.register("before-call.sagemaker.ListPipelineExecutionSteps", stub_list_execution_steps)
        for event, handler in self.hooks:
            session.events.register(event, handler)
        return session

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record every request made inside (by any client, in any thread) except the shims'."""
        original = BaseClient._make_api_call
        recorder = self

        def record(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            if not recorder.active or _SHIM_REQUEST.get():
                return original(client, operation, params)
            call = Call(
                client.meta.service_model.service_name, operation, dict(params), client.meta.region_name
            )
            recorder.calls.append(call)
            try:
                return original(client, operation, params)
            except ClientError as exc:
                call.error = exc.response.get("Error", {}).get("Code", "")
                raise

        BaseClient._make_api_call = record
        self.active = True
        try:
            yield
        finally:
            self.active = False
            BaseClient._make_api_call = original

    def requests(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every `operation` request, in order."""
        return [c.params for c in self.calls if c.operation == operation]

    def only(self, operation: str) -> dict[str, Any]:
        """The parameters of the one `operation` request."""
        found = self.requests(operation)
        assert len(found) == 1, f"expected one {operation} request, got {len(found)}"
        return found[0]


def fix_moto_shapes(parsed: dict[str, Any], model: Any, **_: Any) -> None:
    """Make moto's SageMaker answers look like SageMaker's (see the module docstring)."""
    for key in [k for k, v in parsed.items() if isinstance(v, dict) and not v]:
        del parsed[key]
    capture = parsed.get("DataCaptureConfig")
    if model.name == "DescribeEndpoint" and capture and "CaptureStatus" not in capture:
        raw = boto3.client("sagemaker", region_name=REGION)  # no hooks: plain moto
        with shim_requests():
            configured = raw.describe_endpoint_config(EndpointConfigName=parsed["EndpointConfigName"])
        capture.update(
            CaptureStatus="Started",
            CurrentSamplingPercentage=configured["DataCaptureConfig"]["InitialSamplingPercentage"],
        )


def stub_update_endpoint(
    params: dict[str, Any], *, status: str = "InService", failure_reason: str | None = None, **_: Any
) -> tuple[AWSResponse, dict[str, Any]]:
    """moto lacks UpdateEndpoint: re-point the endpoint at the new config through moto's own API.

    Only this one operation is answered here; the request itself has already been recorded. The
    endpoint keeps its name, ARN and tags, as a real blue/green update does.

    An update that does not succeed is simulated by binding `status` and `failure_reason` (tests
    monkeypatch this name with `functools.partial`; the Recorder looks it up when it builds a session):
    the endpoint then stays on its old config, as SageMaker leaves it after a rollback, and reports
    `status` (InService after a rollback, Failed, UpdateRollbackFailed, or Updating for an update that
    outlasts the CLI's wait) with `failure_reason`. That goes through moto's in-process backend
    (`moto_aws` tests only): its API cannot set a status or a reason.
    """
    request = json.loads(params["body"])  # before-call sees the serialized request
    raw = boto3.client("sagemaker", region_name=REGION)  # no hooks: plain moto
    name, config = request["EndpointName"], request["EndpointConfigName"]
    with shim_requests():
        current = raw.describe_endpoint(EndpointName=name)
        if status == "InService" and failure_reason is None:
            tags = raw.list_tags(ResourceArn=current["EndpointArn"])["Tags"]
            raw.delete_endpoint(EndpointName=name)
            raw.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=tags)
        else:
            endpoint = sagemaker_backend().endpoints[name]
            endpoint.endpoint_status, endpoint.failure_reason = status, failure_reason
    return AWSResponse("", 200, {}, None), {"EndpointArn": current["EndpointArn"]}


def stub_list_execution_steps(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """moto lacks ListPipelineExecutionSteps: answer as SageMaker does for an execution whose steps have
    not started yet (moto runs no step). The request itself has already been recorded."""
    return AWSResponse("", 200, {}, None), {"PipelineExecutionSteps": []}


def sagemaker_backend() -> Any:
    """moto's in-process SageMaker state (for failure injection in `moto_aws` tests)."""
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION]


def write_model_archive(path: Path, *, with_code: bool, requirements: str | None = None) -> Path:
    """A stand-in model.tar.gz: a 1/ SavedModel tree, code/inference.py when `with_code`, and
    code/requirements.txt with `requirements` unless None."""
    files = {"1/saved_model.pb": b"savedmodel", "1/variables/variables.index": b"index"}
    if with_code:
        files["code/inference.py"] = b"# old handler\n"
    if requirements is not None:
        files["code/requirements.txt"] = requirements.encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
