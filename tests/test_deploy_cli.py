"""The CLI surface: help everywhere, images, IAM documents, one-line errors (no AWS needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import ACCOUNT, BUCKET, ROLE_ARN

from deploy import images
from deploy.cli import build_parser, main
from deploy.config import Settings

pytest_plugins = ["deploy_fixtures"]

COMMANDS = (
    "upload",
    "train",
    "deploy",
    "invoke",
    "batch",
    "tune",
    "status",
    "teardown",
    "iam-policy",
    "show-config",
    "doctor",
)
REPO = Path(__file__).resolve().parents[1]


def test_module_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deploy", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{REPO / 'training'}:{REPO}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m deploy {command}")
    assert "--set NAME=VALUE" in out and "--config" in out


def test_invoke_options_come_from_deploy_invoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["invoke", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--user" in out and "--endpoint-url" in out
    assert "--user" not in build_parser(with_invoke=False).format_help()


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--instance-count", "many"]) == 2
    assert "invalid int value" in capsys.readouterr().err


def test_images_follow_versions_and_instance_types() -> None:
    registry = "763104351884.dkr.ecr.eu-west-1.amazonaws.com"
    settings = Settings(train_instance_type="ml.g5.xlarge", deploy_instance_type="ml.c5.large")
    assert images.training_image(settings, "eu-west-1") == f"{registry}/tensorflow-training:2.21-gpu-py312"
    assert images.inference_image(settings, "eu-west-1") == f"{registry}/tensorflow-inference:2.20-cpu-py312"
    serverless = Settings(serverless=True, deploy_instance_type="ml.g5.xlarge")
    assert images.inference_image(serverless, "eu-west-1").endswith(":2.20-cpu-py312")
    assert images.training_image(Settings(training_image="mine:1"), "eu-west-1") == "mine:1"


def test_unsupported_version_is_a_user_error(aws_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iam-policy", "--set", "inference_framework_version=2.21"]) == 2
    assert (
        "setting inference_framework_version: no TensorFlow inference image for 2.21"
        in capsys.readouterr().err
    )


def test_iam_policy_is_least_privilege(aws_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iam-policy"]) == 0
    documents = json.loads(capsys.readouterr().out)
    role = {s["Sid"]: s for s in documents["ExecutionRolePolicy"]["Statement"]}
    assert role["ProjectObjects"]["Resource"] == f"arn:aws:s3:::{BUCKET}/ncf/*"
    assert role["ListProjectPrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["ncf", "ncf/*"]}}
    assert role["PullTensorFlowImages"]["Resource"] == [
        "arn:aws:ecr:us-east-1:763104351884:repository/tensorflow-inference",
        "arn:aws:ecr:us-east-1:763104351884:repository/tensorflow-training",
    ]
    assert all(
        s["Resource"] != "*"
        for s in role.values()
        # actions that take no resource (ListModelPackages: the Evaluate step of a scheduled run)
        if s["Sid"] not in ("PullImagesAuth", "WriteMetrics", "FindApprovedModel")
    )
    trust = documents["TrustPolicy"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    operator = {s["Sid"]: s for s in documents["OperatorPolicy"]["Statement"]}
    assert operator["PassExecutionRole"]["Resource"] == ROLE_ARN
    assert operator["PassExecutionRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert (
        "arn:aws:sagemaker:us-east-1:123456789012:training-job/ncftest-*"
        in operator["ManageProjectResources"]["Resource"]
    )
    sagemaker = "arn:aws:sagemaker:us-east-1:123456789012"
    assert operator["ManagePipeline"]["Resource"] == f"{sagemaker}:pipeline/ncftest-retrain"
    registry = [
        f"{sagemaker}:model-package-group/ncftest-models",
        f"{sagemaker}:model-package/ncftest-models/*",
    ]
    assert operator["ManageModelRegistry"]["Resource"] == registry
    # The pipeline runs as the execution role: its steps' jobs, the group, and passing itself to the jobs.
    assert role["RunPipelineSteps"]["Resource"] == [
        f"{sagemaker}:processing-job/pipelines-*",
        f"{sagemaker}:training-job/pipelines-*",
    ]
    assert role["RegisterPassingModels"]["Resource"] == registry
    assert role["PassItselfToPipelineSteps"]["Resource"] == ROLE_ARN
    assert role["PassItselfToPipelineSteps"]["Condition"] == operator["PassExecutionRole"]["Condition"]


def test_iam_policy_needs_an_account(aws_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iam-policy", "--set", "role_arn=", "--which", "trust"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: iam-policy needs the 12-digit account id: set role_arn or pass --account-id"
    )
    assert main(["iam-policy", "--set", "role_arn=", "--account-id", "111122223333", "--which", "trust"]) == 0
    assert json.loads(capsys.readouterr().out)["Statement"][0]["Condition"]["StringEquals"] == {
        "aws:SourceAccount": "111122223333"
    }
