"""`doctor`: check, before anything costs money, what a first run needs, and say what to fix.

One `Check` per line: credentials and account, region, the bucket and prefix (through the same
`ensure_bucket` the commands call), the execution role (exists, trusts SageMaker, can be passed by
this identity), the training and serving image tags in the region's registry, Docker and the local
images for `--local`, and the Service Quotas of the configured instance types.

A check ends `ok`, `fail` (something a run would trip on; exit status 1) or `not checked` (doctor
could not find out, e.g. no rights to ask; not a failure). The checks only read: nothing is created.
The functions that call AWS take a client and return `Check`s; `format_lines`, `as_data` and
`exit_status` only format them.
"""

from __future__ import annotations

import json
import re
import textwrap
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError
from ncf.errors import NcfError

from deploy import images
from deploy.aws import SessionFactory, describe_client_error, ensure_bucket
from deploy.config import Settings

OK, FAIL, NOT_CHECKED = "ok", "fail", "not checked"
_MARKS = {OK: "ok", FAIL: "FAIL", NOT_CHECKED: "--"}
#: Lines longer than this are wrapped (the whole report fits a 100-column terminal).
WIDTH = 100
SAGEMAKER = "sagemaker.amazonaws.com"
POLICY_HINT = "`deploy iam-policy` grants it"
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403")
_ECR_URI = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)[:@](.+)")


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was found and, when it failed, the fix in a few words."""

    name: str
    status: str
    found: str
    fix: str = ""


def ok(name: str, found: str) -> Check:
    return Check(name, OK, found)


def fail(name: str, found: str, fix: str = "") -> Check:
    return Check(name, FAIL, found, fix)


def not_checked(name: str, why: str) -> Check:
    return Check(name, NOT_CHECKED, f"not checked ({why})")


# --- the whole run ------------------------------------------------------------------------------


def run(settings: Settings, session_factory: SessionFactory, *, local: bool = False) -> list[Check]:
    """Every check, in the order a first run meets them; `local` also requires what `--local` needs."""
    session = session_factory(settings.region or None)
    region = check_region(session)
    checks = [region]
    if region.status == OK:
        checks += aws_checks(session, settings)
    else:
        checks.append(not_checked("aws", "credentials, bucket, role, images and quotas need a region"))
    checks.append(check_local(local))
    return checks


def aws_checks(session: boto3.Session, settings: Settings) -> list[Check]:
    """The checks that ask AWS; only the credentials check runs when the credentials do not work."""
    credentials, caller_arn = check_credentials(session.client("sts"), settings.role_arn)
    if caller_arn is None:
        return [credentials, not_checked("aws", "bucket, role, images and quotas need working credentials")]
    iam = session.client("iam")
    return [
        credentials,
        guarded("bucket", lambda: check_bucket(session.client("s3"), settings)),
        *guarded_list("role", lambda: role_checks(iam, settings, caller_arn)),
        *guarded_list("images", lambda: image_checks(session, settings)),
        *guarded_list("quota", lambda: quota_checks(session.client("service-quotas"), settings)),
    ]


def guarded(name: str, check: Callable[[], Check]) -> Check:
    """`check()`, or a failed `name` line when AWS answered something the check does not expect
    (throttling, an endpoint that cannot be reached): one surprise never hides the other checks."""
    return guarded_list(name, lambda: [check()])[0]


def guarded_list(name: str, checks: Callable[[], list[Check]]) -> list[Check]:
    """`guarded` for a function that returns several lines."""
    try:
        return checks()
    except ClientError as exc:
        return [fail(name, describe_client_error(exc))]
    except (BotoCoreError, NcfError) as exc:
        return [fail(name, str(exc))]


# --- credentials, region, bucket -----------------------------------------------------------------


def check_credentials(sts: Any, role_arn: str) -> tuple[Check, str | None]:
    """Who the credentials are (sts GetCallerIdentity) and whether role_arn is in their account.
    Returns the caller's ARN too, None when the credentials do not work."""
    try:
        identity = sts.get_caller_identity()
    except (NoCredentialsError, PartialCredentialsError):
        return fail("credentials", "none found", "configure a profile, SSO or AWS_ACCESS_KEY_ID"), None
    except ClientError as exc:
        return fail("credentials", describe_client_error(exc), "renew or replace them"), None
    account, arn = identity["Account"], identity["Arn"]
    role_account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    if role_account and role_account != account:
        found = f"account {account}, role_arn's is {role_account}"
        return fail("credentials", found, "use one account for both"), arn
    return ok("credentials", arn), arn


def sagemaker_regions(session: boto3.Session) -> set[str]:
    """The regions botocore's endpoint data lists for SageMaker, in every partition (offline)."""
    return {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    }


def check_region(session: boto3.Session) -> Check:
    """A region is configured and SageMaker is offered there."""
    region = session.region_name
    if not region:
        return fail("region", "none configured", "set region, NCF_REGION, --region or AWS_REGION")
    if region not in sagemaker_regions(session):
        return fail("region", f"{region}: botocore lists no SageMaker there", "choose a SageMaker region")
    return ok("region", region)


def check_bucket(s3: Any, settings: Settings) -> Check:
    """The bucket and prefix answer the same check `upload`, `train`, `deploy` and `batch` make."""
    if not settings.bucket:
        return fail("bucket", "none configured", "set bucket, NCF_BUCKET or --bucket")
    try:
        ensure_bucket(s3, settings)
    except NcfError as exc:
        return fail("bucket", str(exc))
    return ok("bucket", f"{settings.s3_uri()}/ reachable")


# --- the execution role ---------------------------------------------------------------------------


def role_checks(iam: Any, settings: Settings, caller_arn: str) -> list[Check]:
    """The role exists, trusts SageMaker, and this identity may pass it to SageMaker."""
    if not settings.role_arn:
        return [fail("role", "no role_arn configured", "set role_arn, NCF_ROLE_ARN or --role-arn")]
    exists, role = check_role_exists(iam, settings.role_arn)
    checks = [exists]
    if role is not None:
        checks.append(check_role_trust(role))
    if exists.status != FAIL:
        checks.append(check_role_pass(iam, caller_arn, settings.role_arn))
    return checks


def check_role_exists(iam: Any, role_arn: str) -> tuple[Check, dict[str, Any] | None]:
    """iam GetRole on role_arn; returns the role too (None when not found or not readable)."""
    name = role_arn.rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            return fail("role", f"{name} does not exist", "create it from `deploy iam-policy`"), None
        if code in _DENIED:
            return not_checked("role", f"no rights to iam:GetRole on {name}; {POLICY_HINT}"), None
        raise
    return ok("role", f"{name} exists"), role


def check_role_trust(role: dict[str, Any]) -> Check:
    """Its trust policy lets sagemaker.amazonaws.com assume it (sts:AssumeRole)."""
    document = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(document, str):  # the API's URL-encoded JSON, when a client does not decode it
        document = json.loads(urllib.parse.unquote(document))
    if any(_trusts_sagemaker(statement) for statement in _as_list(document.get("Statement"))):
        return ok("role trust", f"{SAGEMAKER} may assume it")
    return fail(
        "role trust",
        "SageMaker may not assume it",
        "use `deploy iam-policy --which trust`",
    )


def _trusts_sagemaker(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal") or {}
    services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
    actions = _as_list(statement.get("Action"))
    return (
        statement.get("Effect") == "Allow"
        and SAGEMAKER in services
        and any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions)
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def check_role_pass(iam: Any, caller_arn: str, role_arn: str) -> Check:
    """iam SimulatePrincipalPolicy: may the caller's own policies pass the role to SageMaker?"""
    source = principal_arn(iam, caller_arn)
    if source is None:
        return not_checked("role pass", f"{caller_arn} is not a user or role IAM can simulate")
    try:
        answer = iam.simulate_principal_policy(
            PolicySourceArn=source,
            ActionNames=["iam:PassRole"],
            ResourceArns=[role_arn],
            ContextEntries=[
                {
                    "ContextKeyName": "iam:PassedToService",
                    "ContextKeyValues": [SAGEMAKER],
                    "ContextKeyType": "string",
                }
            ],
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _DENIED:
            return not_checked("role pass", f"no rights to iam:SimulatePrincipalPolicy; {POLICY_HINT}")
        return not_checked("role pass", f"iam:SimulatePrincipalPolicy answered {code}")
    decision = answer["EvaluationResults"][0]["EvalDecision"]
    if decision == "allowed":
        return ok("role pass", "you may pass it to SageMaker (iam:PassRole)")
    return fail("role pass", f"iam:PassRole: {decision}", "attach `deploy iam-policy --which operator`")


def principal_arn(iam: Any, caller_arn: str) -> str | None:
    """The IAM user or role ARN behind an STS caller ARN (what SimulatePrincipalPolicy takes), or None
    for a caller it cannot simulate (the root user, a federated user). A role session's ARN has no
    path: GetRole supplies the role's full ARN, the pathless one stands in when that is refused."""
    parts = caller_arn.split(":", 5)
    if len(parts) < 6:
        return None
    partition, account, resource = parts[1], parts[4], parts[5]
    if resource.startswith("user/"):
        return caller_arn
    if not resource.startswith("assumed-role/"):
        return None
    name = resource.split("/")[1]
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError:
        return f"arn:{partition}:iam::{account}:role/{name}"


# --- images ---------------------------------------------------------------------------------------


def project_images(settings: Settings, region: str) -> dict[str, tuple[str, str]]:
    """check name -> (image URI, the setting that chose it): the jobs' and endpoints' images."""
    training = images.training_image(settings, region)
    serving = images.inference_image(settings, region)
    batch = images.inference_image(settings, region, settings.batch_instance_type)
    training_setting = "training_image" if settings.training_image else "framework_version"
    serving_setting = "inference_image" if settings.inference_image else "inference_framework_version"
    chosen = {"train image": (training, training_setting), "serve image": (serving, serving_setting)}
    if batch != serving:
        chosen["batch image"] = (batch, serving_setting)
    return chosen


def image_checks(session: boto3.Session, settings: Settings) -> list[Check]:
    """Each image's tag exists in its registry (ecr DescribeImages in the image's region)."""
    return [
        check_image(session, name, uri, setting)
        for name, (uri, setting) in project_images(settings, session.region_name).items()
    ]


def check_image(session: boto3.Session, name: str, uri: str, setting: str) -> Check:
    """ecr DescribeImages for the URI's tag in the registry account the URI names (AWS's, for the
    SDK's images): fails when the tag or repository is not there, not checked without the rights."""
    match = _ECR_URI.fullmatch(uri)
    if match is None:
        return not_checked(name, f"{uri} is not an ECR image")
    registry, region, repository, tag = match.groups()
    image_id = {"imageDigest": tag} if tag.startswith("sha256:") else {"imageTag": tag}
    try:
        session.client("ecr", region_name=region).describe_images(
            registryId=registry, repositoryName=repository, imageIds=[image_id]
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ImageNotFoundException", "RepositoryNotFoundException"):
            return fail(name, f"{repository}:{tag} missing", f"set {setting}")
        if code in _DENIED:
            return not_checked(name, f"no rights to ecr:DescribeImages on {registry}; {POLICY_HINT}")
        raise
    return ok(name, f"{repository}:{tag} in {registry} ({region})")


# --- local mode -------------------------------------------------------------------------------------


def check_local(required: bool) -> Check:
    """With `--local`: the Docker engine and compose answer and this checkout's local images are built."""
    from deploy.localmode.build import image_tags
    from deploy.localmode.docker import docker_problem, image_exists

    if not required:
        return not_checked("local mode", "only `--local` runs need Docker: add --local to check it")
    problem = docker_problem()
    if problem:
        return fail("local mode", problem)
    tags = image_tags()
    missing = [tag for tag in (tags.training, tags.serving) if not image_exists(tag)]
    if missing:
        return fail("local mode", f"not built: {', '.join(missing)}", "run `make local-images`")
    return ok("local mode", "Docker answers; the local training and serving images are built")


# --- quotas -----------------------------------------------------------------------------------------


def quota_needs(settings: Settings) -> dict[str, int]:
    """Service Quotas quota name -> the instances the configured settings run at once."""
    spot = "spot " if settings.spot else ""
    needs = {f"{settings.train_instance_type} for {spot}training job usage": settings.train_instance_count}
    if not settings.serverless:
        fleet = settings.autoscaling_max_instances if settings.autoscaling else settings.deploy_instance_count
        needs[f"{settings.deploy_instance_type} for endpoint usage"] = fleet
    needs[f"{settings.batch_instance_type} for transform job usage"] = settings.batch_instance_count
    return needs


def quota_checks(client: Any, settings: Settings) -> list[Check]:
    """Each needed quota against its applied value (or AWS's default when none is applied)."""
    needs = quota_needs(settings)
    try:
        values = quota_values(client, needs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") not in _DENIED:
            raise
        return [not_checked("quota", f"no rights to servicequotas:ListServiceQuotas; {POLICY_HINT}")]
    return [check_quota(name, need, values.get(name)) for name, need in needs.items()]


def quota_values(client: Any, names: Iterable[str]) -> dict[str, float]:
    """The values of the named SageMaker quotas: applied ones (ListServiceQuotas), then AWS's
    defaults (ListAWSDefaultServiceQuotas) for those that list has no applied value for."""
    wanted = set(names)
    values = _listed_quotas(client, "list_service_quotas", wanted)
    missing = wanted - set(values)
    if missing:
        try:
            values.update(_listed_quotas(client, "list_aws_default_service_quotas", missing))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") != "NoSuchResourceException":
                raise
    return values


def _listed_quotas(client: Any, operation: str, wanted: set[str]) -> dict[str, float]:
    pages = client.get_paginator(operation).paginate(ServiceCode="sagemaker")
    return {
        q["QuotaName"]: q["Value"]
        for page in pages
        for q in page.get("Quotas", [])
        if q["QuotaName"] in wanted
    }


def check_quota(name: str, need: int, value: float | None) -> Check:
    """One quota: enough for what the settings run at once?"""
    if value is None:
        return not_checked("quota", f"Service Quotas lists no '{name}'")
    if value < need:
        return fail("quota", f"{name}: {value:g}, need {need}", "raise it in Service Quotas")
    return ok("quota", f"{name}: {value:g}, need {need}")


# --- formatting (no AWS) ------------------------------------------------------------------------------


def format_lines(checks: list[Check]) -> list[str]:
    """One line per check (wrapped past WIDTH), then a summary line."""
    lines: list[str] = []
    for check in checks:
        text = f"{_MARKS[check.status]:<4}  {check.name:<11}  {check.found}"
        if check.fix:
            text += f" -> {check.fix}"
        lines += textwrap.wrap(text, WIDTH, subsequent_indent=" " * 19, break_on_hyphens=False)
    return [*lines, summary(checks)]


def summary(checks: list[Check]) -> str:
    """`all N checks passed`, or how many failed and how many could not be checked."""
    failed = sum(c.status == FAIL for c in checks)
    unknown = sum(c.status == NOT_CHECKED for c in checks)
    if not failed and not unknown:
        return f"all {len(checks)} checks passed"
    verdict = f"{failed} failed: fix them and run doctor again" if failed else "nothing failed"
    return f"{verdict}; {unknown} not checked" if unknown else verdict


def as_data(checks: list[Check]) -> dict[str, Any]:
    """The checks as plain data (for --json)."""
    return {"checks": [asdict(c) for c in checks], "failed": sum(c.status == FAIL for c in checks)}


def exit_status(checks: list[Check]) -> int:
    """1 when a check failed, else 0 (`not checked` is not a failure)."""
    return 1 if any(c.status == FAIL for c in checks) else 0
