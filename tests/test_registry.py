"""`registry list|approve|reject` and `deploy --model-package` against moto's Model Registry.

Local mode cannot run the pipeline's Register step, so what it registers is exercised here: packages
created as the step creates them (a versioned package in <project>-models), then the commands on them.
"""

from __future__ import annotations

import json

import boto3
import pytest
from deploy_helpers import BUCKET, PROJECT, REGION, Recorder, write_model_archive

pytest_plugins = ["deploy_fixtures"]

GROUP = f"{PROJECT}-models"


def register(group: str, model_data: str, status: str) -> str:
    """A model package version as the pipeline's Register step creates it."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [{"Image": "image", "ModelDataUrl": model_data}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]


@pytest.fixture
def packages(moto_aws: None) -> list[str]:
    """Two versions: 1 Approved, 2 PendingManualApproval (and another team's group with an Approved one)."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for group in (GROUP, "team-b-models"):
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
    register("team-b-models", f"s3://{BUCKET}/team-b/model.tar.gz", "Approved")
    return [
        register(GROUP, f"s3://{BUCKET}/ncf/models/job-{n}/output/model.tar.gz", status)
        for n, status in ((1, "Approved"), (2, "PendingManualApproval"))
    ]


def test_list_shows_the_groups_versions_newest_first(cli, recorder: Recorder, packages: list[str]) -> None:
    status, out, err = cli("registry", "list", "--json")
    assert status == 0, err
    listed = json.loads(out)
    assert listed["group"] == GROUP
    assert [(p["version"], p["approval"]) for p in listed["packages"]] == [
        (2, "PendingManualApproval"),
        (1, "Approved"),
    ]
    request = recorder.only("ListModelPackages")
    assert request["ModelPackageGroupName"] == GROUP and request["ModelPackageType"] == "Versioned"


def test_approve_by_version_then_latest_approved_is_that_one(
    cli, recorder: Recorder, packages: list[str]
) -> None:
    status, out, err = cli("registry", "approve", "2", "--reason", "A/B test won")
    assert status == 0, err
    assert out.strip() == f"{packages[1]}: Approved"
    assert recorder.only("UpdateModelPackage") == {
        "ModelPackageArn": packages[1],
        "ModelApprovalStatus": "Approved",
        "ApprovalDescription": "A/B test won",
    }
    assert cli("registry", "reject", "latest-approved")[0] == 0
    assert recorder.requests("UpdateModelPackage")[-1]["ModelPackageArn"] == packages[1]
    described = boto3.client("sagemaker", region_name=REGION).describe_model_package(
        ModelPackageName=packages[1]
    )
    assert described["ModelApprovalStatus"] == "Rejected"


def test_a_package_of_another_group_is_refused_before_any_call(
    cli, recorder: Recorder, packages: list[str]
) -> None:
    foreign = packages[0].replace(f"/{GROUP}/", "/team-b-models/")
    status, _, err = cli("registry", "approve", foreign)
    assert status == 2
    assert (
        err.strip().splitlines()[-1].startswith(f"error: {foreign!r} is not a model package of this project")
    )
    assert not recorder.requests("UpdateModelPackage")


def test_an_unknown_version_and_no_approved_package_are_one_line_errors(cli, moto_aws: None) -> None:
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName=GROUP)
    status, _, err = cli("registry", "approve", "7")
    assert (status, err.strip()) == (2, f"error: {GROUP} has no version 7 (see `registry list`)")
    status, _, err = cli("deploy", "--model-package", "latest-approved")
    assert status == 2 and err.strip().startswith(f"error: no Approved model package in {GROUP}")


def test_deploy_serves_the_latest_approved_package(
    cli, recorder: Recorder, packages: list[str], tmp_path
) -> None:
    archive = write_model_archive(tmp_path / "model.tar.gz", with_code=True)
    boto3.client("s3", region_name=REGION).upload_file(
        str(archive), BUCKET, "ncf/models/job-1/output/model.tar.gz"
    )
    status, out, err = cli("deploy", "--model-package", "latest-approved")
    assert status == 0, err
    [container] = [recorder.only("CreateModel")["PrimaryContainer"]]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/ncf/models/job-1/output/model.tar.gz"
    assert "InService" in out


def test_model_package_excludes_the_other_model_sources(cli, packages: list[str]) -> None:
    status, _, err = cli("deploy", "--model-package", "1", "--training-job", "x")
    assert (status, err.strip()) == (
        2,
        "error: --model-package cannot be combined with --training-job or --model-data",
    )
    status, _, err = cli("deploy", "--local", "--model-package", "1")
    assert (status, err.strip()) == (
        2,
        "error: --model-package serves from SageMaker's Model Registry: not with --local",
    )
