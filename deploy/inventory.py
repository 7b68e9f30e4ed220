"""`status` and `teardown`: find this project's SageMaker resources by tag, and delete the hosting ones.

A resource belongs to the project only when it carries the project tag (see deploy/aws.py) with
this project's value. Only resources whose names this CLI generates (`<project>-...`, checked
here because the List APIs' NameContains matches anywhere in a name) or the configured endpoint
are ever asked for their tags or described: in an account shared with other teams, the operator
has no rights on theirs, and needs none. `teardown` deletes endpoints
(after their scaling policies and scalable targets), endpoint configs and models, in that order.
It is idempotent: a resource that is already gone counts as deleted, and a second run finds
nothing. Jobs are listed, never deleted (SageMaker keeps job records; stop one in the console).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from deploy import autoscaling
from deploy.aws import describe_client_error, is_not_found, is_project_resource, resource_tags


@dataclass(frozen=True)
class Kind:
    """How to list, describe and delete one SageMaker resource type."""

    name: str
    noun: str  # the API's resource noun: Endpoint, EndpointConfig, ...
    plural: str  # the List* response key
    status_key: str | None

    @property
    def snake(self) -> str:
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.noun).lstrip("_")

    def call(self, client: Any, verb: str, name: str) -> dict[str, Any]:
        return getattr(client, f"{verb}_{self.snake}")(**{f"{self.noun}Name": name})


KINDS = {
    k.name: k
    for k in (
        Kind("endpoint", "Endpoint", "Endpoints", "EndpointStatus"),
        Kind("endpoint-config", "EndpointConfig", "EndpointConfigs", None),
        Kind("model", "Model", "Models", None),
        Kind("training-job", "TrainingJob", "TrainingJobSummaries", "TrainingJobStatus"),
        Kind(
            "tuning-job",
            "HyperParameterTuningJob",
            "HyperParameterTuningJobSummaries",
            "HyperParameterTuningJobStatus",
        ),
        Kind("transform-job", "TransformJob", "TransformJobSummaries", "TransformJobStatus"),
    )
}
HOSTING = ("endpoint", "endpoint-config", "model")


@dataclass(frozen=True)
class Resource:
    """One tagged resource of the project."""

    kind: str
    name: str
    status: str
    created: datetime | None
    detail: str = ""


def is_project_name(name: str, project: str, endpoint: str | None = None) -> bool:
    """True for a name this CLI generates (`<project>-...`) or the configured endpoint's name."""
    return name.startswith(f"{project}-") or name == endpoint


def find(
    sagemaker_client: Any,
    project: str,
    kinds: tuple[str, ...],
    limit: int | None = None,
    endpoint: str | None = None,
) -> list[Resource]:
    """The project's resources of `kinds`, newest first (at most `limit` of each kind).

    Only resources named by `is_project_name` are asked for their tags (see the module docstring).
    """
    found = []
    for kind in (KINDS[k] for k in kinds):
        # The endpoint may be named anything (endpoint_name): list them all, then pick by name.
        options = {} if kind.name == "endpoint" else {"NameContains": f"{project}-"}
        pages = sagemaker_client.get_paginator(f"list_{kind.snake}s").paginate(**options)
        summaries = [
            s
            for page in pages
            for s in page[kind.plural]
            if is_project_name(s[f"{kind.noun}Name"], project, endpoint)
        ]
        summaries.sort(key=lambda s: s["CreationTime"], reverse=True)
        found.extend(_tagged(sagemaker_client, kind, summaries, project, limit))
    return found


def _tagged(
    sagemaker_client: Any, kind: Kind, summaries: list[dict[str, Any]], project: str, limit: int | None
) -> list[Resource]:
    """The summaries whose resource carries the project tag, as `Resource`s (at most `limit`)."""
    mine: list[Resource] = []
    for summary in summaries:
        if limit is not None and len(mine) >= limit:
            break
        tags = resource_tags(sagemaker_client, summary[f"{kind.noun}Arn"])
        if tags is not None and is_project_resource(tags, project):
            status = summary.get(kind.status_key, "") if kind.status_key else ""
            mine.append(Resource(kind.name, summary[f"{kind.noun}Name"], status, summary.get("CreationTime")))
    return mine


def with_endpoint_details(
    sagemaker_client: Any, autoscaling_client: Any, resources: list[Resource]
) -> list[Resource]:
    """Endpoints annotated with their config and autoscaling range (for `status`)."""
    annotated = []
    for resource in resources:
        if resource.kind == "endpoint":
            try:
                endpoint = KINDS["endpoint"].call(sagemaker_client, "describe", resource.name)
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
                continue
            scaling = autoscaling.describe(autoscaling_client, endpoint)
            detail = f"config {endpoint['EndpointConfigName']}, {variants_detail(endpoint)}" + (
                f", autoscaling {scaling}" if scaling else ""
            )
            resource = Resource(resource.kind, resource.name, resource.status, resource.created, detail)
        annotated.append(resource)
    return annotated


def variants_detail(endpoint: dict[str, Any]) -> str:
    """`variants A 90% (2 instances), B 10% (1 instance)` from DescribeEndpoint (weights as shares)."""
    variants = endpoint.get("ProductionVariants", [])
    total = sum(v.get("CurrentWeight", 0.0) for v in variants) or 1.0
    parts = []
    for v in variants:
        count = v.get("CurrentInstanceCount")
        instances = f" ({count} instance{'s' if count != 1 else ''})" if count is not None else ""
        parts.append(f"{v['VariantName']} {v.get('CurrentWeight', 0.0) / total:.0%}{instances}")
    return "variants " + ", ".join(parts) if parts else "no variants"


@dataclass(frozen=True)
class Outcome:
    """What happened to one resource in `teardown`."""

    resource: Resource
    result: str  # "deleted", "already gone" or "failed: <why>"


def delete(sagemaker_client: Any, autoscaling_client: Any, resources: list[Resource]) -> list[Outcome]:
    """Delete hosting resources (endpoints first); a resource already gone is not an error."""
    order = {name: i for i, name in enumerate(HOSTING)}
    outcomes = []
    for resource in sorted((r for r in resources if r.kind in order), key=lambda r: order[r.kind]):
        try:
            outcomes.append(Outcome(resource, _delete_one(sagemaker_client, autoscaling_client, resource)))
        except ClientError as exc:
            outcomes.append(Outcome(resource, f"failed: {describe_client_error(exc)}"))
    return outcomes


def delete_if_tagged(sagemaker_client: Any, kind: str, name: str, project: str) -> bool:
    """Delete one resource when it carries the project tag; True when it was deleted.

    A resource not named `<project>-...` is left alone without a look (see the module docstring).
    """
    if not is_project_name(name, project):
        return False
    spec = KINDS[kind]
    try:
        description = spec.call(sagemaker_client, "describe", name)
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    if not is_project_resource(
        resource_tags(sagemaker_client, description[f"{spec.noun}Arn"]) or [], project
    ):
        return False
    return _delete_one(sagemaker_client, None, Resource(kind, name, "", None)) == "deleted"


def _delete_one(sagemaker_client: Any, autoscaling_client: Any, resource: Resource) -> str:
    spec = KINDS[resource.kind]
    try:
        if resource.kind == "endpoint" and autoscaling_client is not None:
            autoscaling.remove(autoscaling_client, spec.call(sagemaker_client, "describe", resource.name))
        spec.call(sagemaker_client, "delete", resource.name)
    except ClientError as exc:
        if is_not_found(exc):
            return "already gone"
        raise
    return "deleted"
