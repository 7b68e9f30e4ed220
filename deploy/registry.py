"""The Model Registry side of the retraining loop: this project's Model Package Group and its versions.

The retraining pipeline registers each candidate that passed its gate into `<project>-models`
(`model_package_group`), Approved or PendingManualApproval (`approval_status`). `registry list` shows
the versions, `registry approve|reject` changes one's status, `deploy --model-package latest-approved|ARN`
serves one, and `pipeline start` compares each new candidate with the latest Approved version.

Only packages of this project's group are touched: an ARN of another group is refused before any call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from ncf.errors import NcfError

from deploy.aws import is_not_found, project_tags
from deploy.config import Settings

LATEST_APPROVED = "latest-approved"
DECISIONS = {"approve": "Approved", "reject": "Rejected"}


@dataclass(frozen=True)
class Package:
    """One version of the group, as `registry list` shows it."""

    arn: str
    version: int
    approval: str
    status: str
    created: datetime | None
    description: str


def ensure_group(sagemaker_client: Any, settings: Settings) -> str:
    """Create the project's Model Package Group (tagged) unless it exists; returns its name."""
    group = settings.package_group
    try:
        sagemaker_client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        if not is_not_found(exc) and "does not exist" not in str(exc):
            raise
        sagemaker_client.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription=f"{settings.project}: models from the {settings.pipeline} pipeline",
            Tags=project_tags(settings),
        )
    return group


def list_packages(sagemaker_client: Any, settings: Settings, *, approval: str | None = None) -> list[Package]:
    """The group's versions, newest first (only `approval` ones when given); none for a missing group."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": settings.package_group,
        "ModelPackageType": "Versioned",
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }
    if approval:
        request["ModelApprovalStatus"] = approval
    pages = sagemaker_client.get_paginator("list_model_packages").paginate(**request)
    return [
        Package(
            arn=s["ModelPackageArn"],
            version=int(s.get("ModelPackageVersion", 0)),
            approval=s.get("ModelApprovalStatus", ""),
            status=s.get("ModelPackageStatus", ""),
            created=s.get("CreationTime"),
            description=s.get("ModelPackageDescription", ""),
        )
        for page in pages
        for s in page["ModelPackageSummaryList"]
    ]


def package_arn(sagemaker_client: Any, settings: Settings, reference: str) -> str:
    """The ARN that `reference` names: `latest-approved`, a version number of the group, or an ARN in it.

    Raises:
        NcfError: an ARN of another group, an unknown version, or no Approved version.
    """
    if reference == LATEST_APPROVED:
        approved = list_packages(sagemaker_client, settings, approval="Approved")
        if not approved:
            raise NcfError(
                f"no Approved model package in {settings.package_group}: run the pipeline "
                "(`pipeline start`) or approve one (`registry approve VERSION`)"
            )
        return approved[0].arn
    if reference.isdigit():
        for package in list_packages(sagemaker_client, settings):
            if package.version == int(reference):
                return package.arn
        raise NcfError(f"{settings.package_group} has no version {reference} (see `registry list`)")
    if f":model-package/{settings.package_group}/" not in reference:
        raise NcfError(
            f"{reference!r} is not a model package of this project's group {settings.package_group}: "
            "pass latest-approved, a version number or an ARN arn:aws:sagemaker:...:model-package/"
            f"{settings.package_group}/N"
        )
    return reference


def model_data(sagemaker_client: Any, arn: str) -> str:
    """The model.tar.gz a package serves (its first container's ModelDataUrl)."""
    try:
        package = sagemaker_client.describe_model_package(ModelPackageName=arn)
    except ClientError as exc:
        if is_not_found(exc) or "does not exist" in str(exc):
            raise NcfError(f"model package {arn} does not exist in this account and region") from None
        raise
    containers = package.get("InferenceSpecification", {}).get("Containers", [])
    if not containers or not containers[0].get("ModelDataUrl"):
        raise NcfError(f"model package {arn} has no model data to serve")
    return containers[0]["ModelDataUrl"]


def decide(sagemaker_client: Any, settings: Settings, reference: str, decision: str, reason: str) -> str:
    """Approve or reject a version (`decision` is a key of DECISIONS); returns its ARN."""
    arn = package_arn(sagemaker_client, settings, reference)
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": DECISIONS[decision]}
    if reason:
        request["ApprovalDescription"] = reason
    sagemaker_client.update_model_package(**request)
    return arn
