"""Blue/green updates of an endpoint that autoscales, against in-process moto.

- An update that fails, rolls back or outlasts the CLI's wait leaves the blue fleet's autoscaling
  (scalable target and policy) exactly as it was, and the CLI says so (exit 1).
- Autoscaling is taken off only when AWS requires it: when the update changes a scaled variant's
  instance type (or makes it serverless). A model-only update leaves it in place.
- The green fleet starts with as many instances as the blue fleet serves with now (within the
  autoscaling maximum), not fewer.

moto has no UpdateEndpoint: `deploy_helpers.stub_update_endpoint` answers it, bound here to an
outcome; a scaled-out blue fleet is moto's variant `CurrentInstanceCount` set in its backend.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import deploy_helpers
import pytest
from deploy_helpers import BUCKET, PROJECT, REGION, Recorder, sagemaker_backend, write_model_archive

from deploy.cli import main

pytest_plugins = ["deploy_fixtures"]

ENDPOINT = f"{PROJECT}-endpoint"
RESOURCE_ID = f"endpoint/{ENDPOINT}/variant/AllTraffic"
MODEL_URI = f"s3://{BUCKET}/ncf/models/job/output/model.tar.gz"
POLICY = f"{PROJECT}-invocations-per-instance"
REASON = "The primary container for production variant AllTraffic did not pass the ping health check."


@pytest.fixture
def cli(moto_aws: None, recorder: Recorder, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    """Run the CLI in-process on a model.tar.gz in the bucket; returns (exit status, stdout, stderr)."""
    path = write_model_archive(tmp_path / "model.tar.gz", with_code=True)
    boto3.client("s3", region_name=REGION).upload_file(
        str(path), BUCKET, MODEL_URI.removeprefix(f"s3://{BUCKET}/")
    )

    def run(*argv: str) -> tuple[int, str, str]:
        status = main(["deploy", "--model-data", MODEL_URI, *argv], session_factory=recorder)
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def scaling(moto_aws: None) -> Any:
    return boto3.client("application-autoscaling", region_name=REGION)


def update_ends(monkeypatch: pytest.MonkeyPatch, status: str, failure_reason: str | None) -> None:
    """The next UpdateEndpoint leaves the endpoint on its old config with `status` and `failure_reason`."""
    stub = functools.partial(
        deploy_helpers.stub_update_endpoint, status=status, failure_reason=failure_reason
    )
    monkeypatch.setattr(deploy_helpers, "stub_update_endpoint", stub)


def scale_out(instances: int) -> None:
    """The blue fleet has scaled out to `instances` (moto keeps the variant's counts in its backend)."""
    variant = sagemaker_backend().endpoints[ENDPOINT].production_variants[0]
    variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = instances


def scaling_state(scaling: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The endpoint's scalable targets and policies as Application Auto Scaling describes them."""
    keep_target = ("ResourceId", "MinCapacity", "MaxCapacity", "SuspendedState")
    keep_policy = ("ResourceId", "PolicyName", "PolicyType", "TargetTrackingScalingPolicyConfiguration")
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    return (
        [{k: t[k] for k in keep_target if k in t} for t in targets],
        [{k: p[k] for k in keep_policy if k in p} for p in policies],
    )


def operations(recorder: Recorder) -> list[str]:
    return [c.operation for c in recorder.calls]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.fixture
def fake_clock(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's wait loops see a clock that each poll moves on by the poll interval (a timeout in
    no real time)."""
    from sagemaker.core import resources

    now = [time.time()]
    monkeypatch.setattr(
        resources,
        "time",
        SimpleNamespace(time=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds)),
    )


@pytest.mark.parametrize(
    ("status", "failure_reason", "message"),
    [
        ("InService", REASON, f"rolled back to {PROJECT}-config-"),  # back on the blue config
        ("UpdateRollbackFailed", REASON, "failed: " + REASON),
        ("Failed", REASON, "failed: " + REASON),
        ("Updating", None, "is still Updating after 5 s"),  # the CLI's wait times out
    ],
)
def test_failed_update_restores_the_blue_autoscaling(
    cli,
    recorder: Recorder,
    scaling: Any,
    monkeypatch: pytest.MonkeyPatch,
    fake_clock: None,
    status: str,
    failure_reason: str | None,
    message: str,
) -> None:
    assert cli("--autoscaling", "--min-instances", "2", "--max-instances", "5")[0] == 0
    blue_config = recorder.only("CreateEndpointConfig")["EndpointConfigName"]
    blue_scaling = scaling_state(scaling)
    assert blue_scaling[0] == [{"ResourceId": RESOURCE_ID, "MinCapacity": 2, "MaxCapacity": 5}]
    recorder.calls.clear()
    update_ends(monkeypatch, status, failure_reason)

    # a new instance type: AWS refuses the update unless autoscaling is off first
    code, out, err = cli(
        "--autoscaling",
        "--max-instances",
        "3",
        "--instance-type",
        "ml.c5.large",
        "--set",
        "deploy_timeout_seconds=5",
    )

    assert code == 1 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: endpoint {ENDPOINT} ") and message in line
    assert f"autoscaling restored as it was: {RESOURCE_ID} 2-5 instances, policy {POLICY}" in line
    done = operations(recorder)
    assert (
        done.index("DeleteScalingPolicy")
        < done.index("DeregisterScalableTarget")
        < done.index("UpdateEndpoint")
    )
    assert (
        done.index("UpdateEndpoint") < done.index("RegisterScalableTarget") < done.index("PutScalingPolicy")
    )
    assert recorder.only("RegisterScalableTarget") == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": RESOURCE_ID,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 2,
        "MaxCapacity": 5,
    }
    assert scaling_state(scaling) == blue_scaling  # the blue policy, not the one this deploy asked for
    endpoint = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointConfigName"] == blue_config
    assert "DeleteEndpointConfig" not in done and "DeleteModel" not in done


def test_update_refused_by_the_api_restores_the_blue_autoscaling(
    cli, recorder: Recorder, scaling: Any
) -> None:
    assert cli("--autoscaling")[0] == 0
    blue_scaling = scaling_state(scaling)

    def refuse(params: dict[str, Any], **_: Any) -> None:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "ValidationException", "Message": "Cannot update in-progress endpoint"}}
        raise ClientError(error, "UpdateEndpoint")

    recorder.hooks.append(("before-parameter-build.sagemaker.UpdateEndpoint", refuse))
    code, _, err = cli("--serverless")  # a serverless variant has no instance type: deregistered first

    assert code == 1
    line = one_error_line(err)
    assert line.startswith(
        "error: UpdateEndpoint failed: ValidationException: Cannot update in-progress endpoint"
    )
    assert "autoscaling restored as it was" in line
    assert scaling_state(scaling) == blue_scaling


def test_model_only_update_leaves_autoscaling_in_place(cli, recorder: Recorder, scaling: Any) -> None:
    assert cli("--autoscaling", "--max-instances", "5")[0] == 0
    recorder.calls.clear()

    assert cli("--autoscaling", "--max-instances", "6")[0] == 0  # same instance type: AWS allows it

    done = operations(recorder)
    assert "DeregisterScalableTarget" not in done and "DeleteScalingPolicy" not in done
    assert done.index("UpdateEndpoint") < done.index("RegisterScalableTarget")
    assert recorder.only("RegisterScalableTarget")["MaxCapacity"] == 6
    targets, policies = scaling_state(scaling)
    assert targets == [{"ResourceId": RESOURCE_ID, "MinCapacity": 1, "MaxCapacity": 6}]
    assert [p["PolicyName"] for p in policies] == [POLICY]


def test_update_without_autoscaling_removes_it_once_the_green_fleet_serves(
    cli, recorder: Recorder, scaling: Any
) -> None:
    assert cli("--autoscaling")[0] == 0
    recorder.calls.clear()

    assert cli()[0] == 0

    done = operations(recorder)
    assert (
        done.index("UpdateEndpoint")
        < done.index("DeleteScalingPolicy")
        < done.index("DeregisterScalableTarget")
    )
    assert "RegisterScalableTarget" not in done
    assert scaling_state(scaling) == ([], [])


@pytest.mark.parametrize(
    ("serving", "argv", "green"),
    [
        (3, ["--max-instances", "4"], 3),  # scaled out: the green fleet starts as large
        (6, ["--max-instances", "4"], 4),  # ... but within the autoscaling maximum
        (1, ["--instance-count", "2", "--max-instances", "4"], 2),  # never below deploy_instance_count
        (5, ["--no-autoscaling", "--instance-count", "2"], 2),  # a fixed fleet: the size the user asked for
    ],
)
def test_green_fleet_starts_with_as_many_instances_as_serve_now(
    cli, recorder: Recorder, serving: int, argv: list[str], green: int
) -> None:
    assert cli("--autoscaling", "--max-instances", "6")[0] == 0
    scale_out(serving)
    recorder.calls.clear()

    code, _, err = cli("--autoscaling", *argv)

    assert code == 0, err
    variant = recorder.only("CreateEndpointConfig")["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == green
    assert f"(blue/green, the new fleet starts with {green} instances" in err
    described = boto3.client("sagemaker", region_name=REGION).describe_endpoint(EndpointName=ENDPOINT)
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == green


def test_scaling_that_cannot_be_restored_is_described_in_the_error(
    cli, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("--autoscaling", "--min-instances", "2", "--max-instances", "5")[0] == 0
    update_ends(monkeypatch, "InService", REASON)

    def refuse(params: dict[str, Any], **_: Any) -> None:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "ValidationException", "Message": "Endpoint is not InService"}}
        raise ClientError(error, "RegisterScalableTarget")

    recorder.hooks.append(("before-parameter-build.application-autoscaling.RegisterScalableTarget", refuse))
    code, _, err = cli("--autoscaling", "--instance-type", "ml.c5.large")

    assert code == 1
    assert one_error_line(err).endswith(
        f"{REASON}; its autoscaling could NOT be restored (RegisterScalableTarget failed: "
        f"ValidationException: Endpoint is not InService): it was {RESOURCE_ID} 2-5 instances, "
        f"policy {POLICY}"
    )
