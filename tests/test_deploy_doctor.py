"""`python -m deploy doctor` against in-process moto: every check's passing and failing path.

The `account` fixture is a ready account: the execution role with the project's own trust policy and
the TensorFlow images in AWS's registry account (763104351884). Moto lacks two APIs doctor calls:
iam SimulatePrincipalPolicy and service-quotas ListServiceQuotas. botocore `before-call` hooks answer
those two from `Account.pass_decision` and `Account.quotas`; other failures AWS would give (access
denied, expired credentials) are injected the same way, with `deny`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from deploy_helpers import ACCOUNT, BUCKET, REGION, ROLE_ARN, Recorder

from deploy import doctor, iam
from deploy.cli import main
from deploy.config import load_settings

pytest_plugins = ["deploy_fixtures"]

AWS_REGISTRY = "763104351884"
TRAINING_REPOSITORY, TRAINING_TAG = "tensorflow-training", "2.21-cpu-py312"
SERVING_REPOSITORY, SERVING_TAG = "tensorflow-inference", "2.20-cpu-py312"
# TEST_CONFIG turns spot on: the training quota is the spot one.
TRAINING_QUOTA = "ml.m5.xlarge for spot training job usage"
ENDPOINT_QUOTA = "ml.m5.large for endpoint usage"
TRANSFORM_QUOTA = "ml.m5.large for transform job usage"


@dataclass
class Account:
    """What the hooks answer for the APIs moto lacks."""

    pass_decision: str = "allowed"
    quotas: dict[str, float] = field(
        default_factory=lambda: {TRAINING_QUOTA: 4, ENDPOINT_QUOTA: 4, TRANSFORM_QUOTA: 2}
    )
    default_quotas: dict[str, float] = field(default_factory=dict)


def answer(parsed: dict[str, Any], status: int = 200) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("", status, {}, None), parsed


def deny(code: str = "AccessDenied", status: int = 403):
    """A before-call hook that answers with an AWS error."""

    def hook(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": code, "Message": f"{code} (injected)"}
        return answer({"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}, status)

    return hook


def put_image(ecr: Any, repository: str, tag: str) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "0" * 64},
        "layers": [],
    }
    ecr.put_image(
        registryId=AWS_REGISTRY, repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag
    )


@pytest.fixture
def account(moto_aws: None, recorder: Recorder) -> Account:
    """The role (trusting SageMaker) and both images exist; the moto gaps are answered."""
    state = Account()
    boto3.client("iam").create_role(
        RoleName=ROLE_ARN.rsplit("/", 1)[-1], AssumeRolePolicyDocument=json.dumps(iam.trust_policy(ACCOUNT))
    )
    ecr = boto3.client("ecr", region_name=REGION)
    for repository, tag in ((TRAINING_REPOSITORY, TRAINING_TAG), (SERVING_REPOSITORY, SERVING_TAG)):
        ecr.create_repository(registryId=AWS_REGISTRY, repositoryName=repository)
        put_image(ecr, repository, tag)

    def simulate(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return answer(
            {"EvaluationResults": [{"EvalActionName": "iam:PassRole", "EvalDecision": state.pass_decision}]}
        )

    def listing(values: dict[str, float]):
        return lambda **_: answer({"Quotas": [{"QuotaName": k, "Value": v} for k, v in values.items()]})

    recorder.hooks += [
        ("before-call.iam.SimulatePrincipalPolicy", simulate),
        ("before-call.service-quotas.ListServiceQuotas", lambda **kw: listing(state.quotas)(**kw)),
    ]
    recorder.hooks.append(  # moto lists defaults for no SageMaker quota: answer only when a test sets some
        (
            "before-call.service-quotas.ListAWSDefaultServiceQuotas",
            lambda **kw: listing(state.default_quotas)(**kw) if state.default_quotas else None,
        )
    )
    return state


@pytest.fixture
def doctor_cli(account: Account, recorder: Recorder, capsys: pytest.CaptureFixture[str]):
    """Run `doctor` in-process; returns (exit status, stdout lines)."""

    def run(*argv: str) -> tuple[int, list[str]]:
        status = main(["doctor", *argv], session_factory=recorder)
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return status, out.splitlines()

    return run


def inject(recorder: Recorder, event: str, hook: Any) -> None:
    """Answer `event` with `hook` before the fixture's own hooks do."""
    recorder.hooks.insert(0, (event, hook))


def unwrapped(lines: list[str]) -> list[str]:
    """The report with each wrapped line joined back to its check's line."""
    joined: list[str] = []
    for text in lines:
        if text.startswith(" ") and joined:
            joined[-1] += " " + text.strip()
        else:
            joined.append(text)
    return joined


def line(lines: list[str], name: str, contains: str = "") -> str:
    """The one report line of check `name` (that contains `contains`), unwrapped."""
    found = [x for x in unwrapped(lines) if x[6:17].rstrip() == name and contains in x]
    assert len(found) == 1, f"no single {name!r} line with {contains!r} in:\n" + "\n".join(lines)
    return found[0]


def fits_one_screen(lines: list[str]) -> None:
    assert len(lines) <= 20, "\n".join(lines)
    assert max(map(len, lines)) <= doctor.WIDTH, "\n".join(lines)


# --- the whole command --------------------------------------------------------------------------------


def test_a_ready_account_passes_every_check_on_one_screen(doctor_cli) -> None:
    status, lines = doctor_cli()
    assert status == 0
    assert [x.split()[0] for x in lines[:-2]] == ["ok"] * (len(lines) - 2)
    assert line(lines, "local mode").startswith("--")  # only with --local
    assert lines[-1] == "nothing failed; 1 not checked"
    fits_one_screen(lines)


def test_a_bad_config_fails_with_fixes_on_one_screen(doctor_cli, fake_docker: dict[str, Any]) -> None:
    fake_docker["problem"] = (
        "Docker is not installed (no `docker` on PATH): as root: apt-get install docker.io"
    )
    status, lines = doctor_cli(
        "--bucket",
        "no-such-bucket-here",
        "--role-arn",
        f"arn:aws:iam::{ACCOUNT}:role/no-such-role-with-a-rather-long-name",
        "--set",
        "framework_version=2.19",
        "--set",
        "deploy_instance_type=ml.p3.2xlarge",
        "--local",
    )
    assert status == 1
    failed = [x for x in lines if x.startswith("FAIL")]
    assert len(failed) == 5, "\n".join(lines)  # bucket, role, both images, Docker
    assert lines[-1].startswith(f"{len(failed)} failed: fix them")
    fits_one_screen(lines)


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Docker as doctor sees it: `problem` (None: the engine answers) and the built image tags."""
    from deploy.localmode import docker

    state: dict[str, Any] = {"problem": None, "built": set()}
    monkeypatch.setattr(docker, "docker_problem", lambda: state["problem"])
    monkeypatch.setattr(docker, "image_exists", lambda tag: tag in state["built"])
    return state


def test_an_unexpected_aws_answer_fails_its_line_and_the_rest_still_run(
    doctor_cli, recorder: Recorder
) -> None:
    inject(recorder, "before-call.ecr.DescribeImages", deny("ThrottlingException", 400))
    status, lines = doctor_cli()
    assert status == 1
    assert "DescribeImages failed: ThrottlingException" in line(lines, "images")
    assert line(lines, "quota", TRAINING_QUOTA).startswith("ok")


def test_json_lists_every_check_and_the_failures(doctor_cli, account: Account) -> None:
    account.pass_decision = "implicitDeny"
    status, lines = doctor_cli("--json")
    data = json.loads("\n".join(lines))
    assert status == 1 and data["failed"] == 1
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["role pass"]["status"] == "fail" and by_name["role pass"]["fix"]
    assert by_name["local mode"]["status"] == "not checked"


# --- credentials and account --------------------------------------------------------------------------


def test_credentials_pass_with_the_caller_and_account(doctor_cli) -> None:
    _, lines = doctor_cli()
    assert line(lines, "credentials") == f"ok    credentials  arn:aws:sts::{ACCOUNT}:user/moto"


def test_no_credentials_fail_and_the_other_aws_checks_wait(doctor_cli, monkeypatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    status, lines = doctor_cli()
    assert status == 1
    assert line(lines, "credentials").startswith("FAIL") and "AWS_ACCESS_KEY_ID" in lines[1]
    assert line(lines, "aws").startswith("--") and "need working credentials" in line(lines, "aws")


def test_expired_credentials_fail_with_what_aws_said(doctor_cli, recorder: Recorder) -> None:
    inject(recorder, "before-call.sts.GetCallerIdentity", deny("ExpiredToken"))
    status, lines = doctor_cli()
    assert status == 1 and "GetCallerIdentity failed: ExpiredToken" in line(lines, "credentials")


def test_a_role_in_another_account_fails(doctor_cli) -> None:
    status, lines = doctor_cli("--role-arn", "arn:aws:iam::999999999999:role/elsewhere")
    assert status == 1
    assert f"account {ACCOUNT}, role_arn's is 999999999999" in line(lines, "credentials")


# --- region -------------------------------------------------------------------------------------------


def test_region_passes_where_sagemaker_is_offered(doctor_cli) -> None:
    _, lines = doctor_cli()
    assert line(lines, "region") == f"ok    region       {REGION}"


def test_a_region_without_sagemaker_fails(doctor_cli) -> None:
    status, lines = doctor_cli("--region", "xx-nowhere-1")
    assert status == 1 and "botocore lists no SageMaker there" in line(lines, "region")
    assert "need a region" in line(lines, "aws")


def test_no_region_fails(account: Account, monkeypatch, capsys) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    status = main(
        ["doctor", "--set", "region="], session_factory=lambda region: boto3.Session(region_name=region)
    )
    lines = capsys.readouterr().out.splitlines()
    assert status == 1 and "none configured -> set region" in line(lines, "region")


# --- bucket -------------------------------------------------------------------------------------------


def test_bucket_passes_when_the_commands_check_passes(doctor_cli) -> None:
    _, lines = doctor_cli()
    assert line(lines, "bucket") == f"ok    bucket       s3://{BUCKET}/ncf/ reachable"


def test_a_missing_bucket_fails(doctor_cli) -> None:
    status, lines = doctor_cli("--bucket", "no-such-bucket-here")
    assert status == 1 and "does not exist" in line(lines, "bucket")


def test_a_bucket_the_operator_may_not_use_fails(doctor_cli, recorder: Recorder) -> None:
    inject(recorder, "before-call.s3", deny())  # whichever S3 call ensure_bucket makes
    status, lines = doctor_cli()
    assert status == 1 and "access denied" in line(lines, "bucket")


def test_no_bucket_configured_fails(doctor_cli) -> None:
    status, lines = doctor_cli("--set", "bucket=")
    assert status == 1 and "none configured -> set bucket" in line(lines, "bucket")


# --- the execution role -------------------------------------------------------------------------------


def test_the_role_passes_exists_trust_and_pass(doctor_cli, recorder: Recorder) -> None:
    _, lines = doctor_cli()
    assert line(lines, "role").startswith("ok") and "ncf-test-execution exists" in line(lines, "role")
    assert line(lines, "role trust").startswith("ok")
    assert line(lines, "role pass").startswith("ok")
    request = recorder.only("SimulatePrincipalPolicy")
    assert request["ActionNames"] == ["iam:PassRole"] and request["ResourceArns"] == [ROLE_ARN]
    assert request["ContextEntries"][0]["ContextKeyName"] == "iam:PassedToService"
    assert request["ContextEntries"][0]["ContextKeyValues"] == ["sagemaker.amazonaws.com"]


def test_a_missing_role_fails_and_its_trust_is_not_asked(doctor_cli, recorder: Recorder) -> None:
    status, lines = doctor_cli("--role-arn", f"arn:aws:iam::{ACCOUNT}:role/absent")
    assert status == 1 and "absent does not exist" in line(lines, "role")
    assert not [x for x in lines if x[6:17].rstrip() in ("role trust", "role pass")]


def test_no_rights_to_read_the_role_is_not_checked(doctor_cli, recorder: Recorder) -> None:
    inject(recorder, "before-call.iam.GetRole", deny())
    status, lines = doctor_cli()
    assert status == 0 and "not checked (no rights to iam:GetRole" in line(lines, "role")
    assert line(lines, "role pass").startswith("ok")


def test_a_role_that_does_not_trust_sagemaker_fails(doctor_cli) -> None:
    ec2_only = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    boto3.client("iam").create_role(RoleName="ec2-role", AssumeRolePolicyDocument=json.dumps(ec2_only))
    status, lines = doctor_cli("--role-arn", f"arn:aws:iam::{ACCOUNT}:role/ec2-role")
    assert status == 1 and "SageMaker may not assume it -> use `deploy iam-policy --which trust`" in line(
        lines, "role trust"
    )


def test_a_role_the_operator_may_not_pass_fails(doctor_cli, account: Account) -> None:
    account.pass_decision = "implicitDeny"
    status, lines = doctor_cli()
    assert (
        status == 1
        and "iam:PassRole: implicitDeny -> attach `deploy iam-policy --which operator`"
        in line(lines, "role pass")
    )


def test_role_pass_without_simulate_rights_is_not_checked(doctor_cli, recorder: Recorder) -> None:
    inject(recorder, "before-call.iam.SimulatePrincipalPolicy", deny())
    status, lines = doctor_cli()
    assert status == 0
    assert "not checked (no rights to iam:SimulatePrincipalPolicy" in line(lines, "role pass")


def test_role_pass_where_the_api_is_missing_is_not_checked(doctor_cli, recorder: Recorder) -> None:
    """As against moto, which does not implement SimulatePrincipalPolicy."""
    inject(recorder, "before-call.iam.SimulatePrincipalPolicy", deny("NotImplemented", 501))
    status, lines = doctor_cli()
    assert status == 0
    assert "not checked (iam:SimulatePrincipalPolicy answered NotImplemented)" in line(lines, "role pass")


def test_an_assumed_role_is_simulated_as_its_role(recorder: Recorder, account: Account) -> None:
    iam = boto3.client("iam")
    arn = iam.create_role(Path="/ops/", RoleName="operator", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    assert doctor.principal_arn(iam, f"arn:aws:sts::{ACCOUNT}:assumed-role/operator/alice") == arn
    assert doctor.principal_arn(iam, f"arn:aws:sts::{ACCOUNT}:assumed-role/gone/bob") == (
        f"arn:aws:iam::{ACCOUNT}:role/gone"
    )
    assert doctor.principal_arn(iam, f"arn:aws:iam::{ACCOUNT}:root") is None
    root = doctor.check_role_pass(iam, f"arn:aws:iam::{ACCOUNT}:root", ROLE_ARN)
    assert root.status == doctor.NOT_CHECKED and "not a user or role IAM can simulate" in root.found


# --- images -------------------------------------------------------------------------------------------


def test_images_pass_when_their_tags_are_in_aws_registry(doctor_cli, recorder: Recorder) -> None:
    _, lines = doctor_cli()
    assert line(lines, "train image").startswith(f"ok    train image  {TRAINING_REPOSITORY}:{TRAINING_TAG}")
    assert line(lines, "serve image").startswith(f"ok    serve image  {SERVING_REPOSITORY}:{SERVING_TAG}")
    asked = recorder.requests("DescribeImages")
    assert {(r["registryId"], r["repositoryName"], r["imageIds"][0]["imageTag"]) for r in asked} == {
        (AWS_REGISTRY, TRAINING_REPOSITORY, TRAINING_TAG),
        (AWS_REGISTRY, SERVING_REPOSITORY, SERVING_TAG),
    }


def test_a_missing_tag_fails_and_names_the_setting(doctor_cli) -> None:
    status, lines = doctor_cli("--set", "framework_version=2.19")
    assert status == 1
    assert "tensorflow-training:2.19-cpu-py312 missing -> set framework_version" in line(lines, "train image")


def test_a_missing_repository_fails(doctor_cli) -> None:
    boto3.client("ecr", region_name=REGION).delete_repository(
        registryId=AWS_REGISTRY, repositoryName=SERVING_REPOSITORY, force=True
    )
    status, lines = doctor_cli()
    assert status == 1 and "-> set inference_framework_version" in line(lines, "serve image")


def test_a_gpu_batch_image_is_checked_too(doctor_cli) -> None:
    status, lines = doctor_cli("--set", "batch_instance_type=ml.g4dn.xlarge")
    assert status == 1 and "tensorflow-inference:2.20-gpu-py312 missing" in line(lines, "batch image")


def test_images_without_describe_rights_are_not_checked(doctor_cli, recorder: Recorder) -> None:
    inject(recorder, "before-call.ecr.DescribeImages", deny("AccessDeniedException", 400))
    status, lines = doctor_cli("--json")
    assert status == 0
    images = [c for c in json.loads("\n".join(lines))["checks"] if c["name"].endswith(" image")]
    assert len(images) == 2
    for check in images:
        assert check["status"] == "not checked"
        assert check["found"].startswith("not checked (no rights to ecr:DescribeImages on 763104351884")


def test_an_image_outside_ecr_is_not_checked(doctor_cli) -> None:
    status, lines = doctor_cli("--set", "training_image=registry.example.com/tf:2.21")
    assert status == 0 and "not checked (registry.example.com/tf:2.21 is not an ECR image)" in line(
        lines, "train image"
    )


# --- local mode ---------------------------------------------------------------------------------------


def test_local_mode_passes_with_docker_and_the_images(doctor_cli, fake_docker: dict[str, Any]) -> None:
    from deploy.localmode.build import image_tags

    fake_docker["built"] = {image_tags().training, image_tags().serving}
    status, lines = doctor_cli("--local")
    assert status == 0 and line(lines, "local mode").startswith("ok")


def test_local_mode_fails_without_docker(doctor_cli, fake_docker: dict[str, Any]) -> None:
    fake_docker["problem"] = "Docker is not installed (no `docker` on PATH)"
    status, lines = doctor_cli("--local")
    assert status == 1 and line(lines, "local mode").startswith("FAIL  local mode   Docker is not installed")


def test_local_mode_fails_without_the_images(doctor_cli, fake_docker: dict[str, Any]) -> None:
    from deploy.localmode.build import image_tags

    fake_docker["built"] = {image_tags().training}
    status, lines = doctor_cli("--local")
    assert status == 1
    assert f"not built: {image_tags().serving} -> run `make local-images`" in line(lines, "local mode")


def test_local_mode_is_not_checked_without_local(doctor_cli, fake_docker: dict[str, Any]) -> None:
    fake_docker["problem"] = "Docker is not installed"
    status, lines = doctor_cli()
    assert status == 0 and "add --local to check it" in line(lines, "local mode")


# --- quotas -------------------------------------------------------------------------------------------


def test_quotas_pass_when_they_cover_the_settings(doctor_cli) -> None:
    _, lines = doctor_cli()
    assert line(lines, "quota", TRAINING_QUOTA).endswith(f"{TRAINING_QUOTA}: 4, need 1")
    assert line(lines, "quota", ENDPOINT_QUOTA).startswith("ok")
    assert line(lines, "quota", TRANSFORM_QUOTA).startswith("ok")


def test_a_quota_below_the_autoscaling_maximum_fails(doctor_cli) -> None:
    status, lines = doctor_cli("--set", "autoscaling=true", "--set", "autoscaling_max_instances=6")
    assert status == 1
    assert f"{ENDPOINT_QUOTA}: 4, need 6 -> raise it in Service Quotas" in line(
        lines, "quota", ENDPOINT_QUOTA
    )


def test_a_zero_quota_fails(doctor_cli, account: Account) -> None:
    account.quotas[TRAINING_QUOTA] = 0
    status, lines = doctor_cli()
    assert status == 1 and line(lines, "quota", TRAINING_QUOTA).startswith("FAIL")


def test_on_demand_training_asks_for_its_own_quota(doctor_cli, account: Account) -> None:
    account.quotas["ml.m5.xlarge for training job usage"] = 2
    _, lines = doctor_cli("--set", "spot=false", "--set", "train_instance_count=2")
    assert line(lines, "quota", "ml.m5.xlarge for training job usage: 2, need 2").startswith("ok")


def test_a_quota_with_no_applied_value_uses_aws_default(doctor_cli, account: Account) -> None:
    del account.quotas[TRANSFORM_QUOTA]
    account.default_quotas[TRANSFORM_QUOTA] = 0
    status, lines = doctor_cli()
    assert status == 1 and f"{TRANSFORM_QUOTA}: 0, need 1" in line(lines, "quota", TRANSFORM_QUOTA)


def test_a_quota_service_quotas_does_not_list_is_not_checked(doctor_cli, account: Account) -> None:
    del account.quotas[TRANSFORM_QUOTA]  # and moto lists no SageMaker defaults
    status, lines = doctor_cli()
    assert status == 0
    assert f"not checked (Service Quotas lists no '{TRANSFORM_QUOTA}')" in line(
        lines, "quota", TRANSFORM_QUOTA
    )


def test_quotas_without_rights_are_not_checked(doctor_cli, recorder: Recorder) -> None:
    inject(recorder, "before-call.service-quotas.ListServiceQuotas", deny("AccessDeniedException", 400))
    status, lines = doctor_cli()
    assert status == 0 and "not checked (no rights to servicequotas:ListServiceQuotas" in line(lines, "quota")


def test_serverless_needs_no_endpoint_quota(aws_env) -> None:
    settings = load_settings(overrides={"serverless": True})
    assert ENDPOINT_QUOTA not in doctor.quota_needs(settings)


# --- the operator policy -----------------------------------------------------------------------------


def iam_request(call: Any, caller: str) -> tuple[str, str]:
    """(IAM action, resource ARN) of one of doctor's own requests (AWS's Service Authorization
    Reference: DescribeImages acts on the repository, SimulatePrincipalPolicy on the simulated
    principal, the Service Quotas lists on no resource)."""
    params = call.params
    if call.operation == "DescribeImages":
        arn = f"arn:aws:ecr:{REGION}:{params['registryId']}:repository/{params['repositoryName']}"
        return "ecr:DescribeImages", arn
    if call.operation == "GetRole":
        role = ROLE_ARN if ROLE_ARN.endswith("/" + params["RoleName"]) else caller
        return "iam:GetRole", role
    if call.operation == "SimulatePrincipalPolicy":
        return "iam:SimulatePrincipalPolicy", params["PolicySourceArn"]
    return f"servicequotas:{call.operation}", "*"


def allows(policy: dict[str, Any], action: str, resource: str, caller: str) -> bool:
    """An Allow statement names the action and, `${aws:PrincipalArn}` resolved, matches the resource."""
    for statement in policy["Statement"]:
        actions, resources = statement["Action"], statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if statement["Effect"] == "Allow" and action in actions and "Condition" not in statement:
            patterns = [r.replace("${aws:PrincipalArn}", caller) for r in resources]
            if any(fnmatch.fnmatchcase(resource, pattern) for pattern in patterns):
                return True
    return False


def test_the_operator_policy_allows_doctors_own_requests(
    doctor_cli, account: Account, recorder: Recorder
) -> None:
    """Every iam, ecr and service-quotas request doctor makes (its reads beyond the commands'
    calls; S3 is the commands' own check) is allowed by `iam-policy`'s OperatorPolicy."""
    account.quotas = {}  # also ask for AWS's defaults
    doctor_cli("--set", "batch_instance_type=ml.g4dn.xlarge")
    settings = load_settings(overrides={"batch_instance_type": "ml.g4dn.xlarge"})
    uris = [uri for uri, _ in doctor.project_images(settings, REGION).values()]
    policy = iam.policies(settings, ACCOUNT, uris)["OperatorPolicy"]
    caller = f"arn:aws:sts::{ACCOUNT}:user/moto"  # moto's caller, simulated as itself
    own = [c for c in recorder.calls if c.service in ("iam", "ecr", "service-quotas")]
    assert {c.operation for c in own} >= {
        "GetRole",
        "SimulatePrincipalPolicy",
        "DescribeImages",
        "ListServiceQuotas",
    }
    for call in own:
        action, resource = iam_request(call, caller)
        assert allows(policy, action, resource, caller), f"{action} on {resource} is not allowed"


# --- formatting ---------------------------------------------------------------------------------------


def test_a_long_line_wraps_under_its_check() -> None:
    check = doctor.fail("bucket", "x" * 70, "set bucket, NCF_BUCKET or --bucket to one this identity may use")
    lines = doctor.format_lines([check])
    assert len(lines) == 3 and lines[1].startswith(" " * 19) and max(map(len, lines)) <= doctor.WIDTH
    assert lines[-1] == "1 failed: fix them and run doctor again"


def test_summary_when_everything_passed() -> None:
    assert doctor.summary([doctor.ok("region", "us-east-1")]) == "all 1 checks passed"
    assert doctor.exit_status([doctor.not_checked("quota", "why")]) == 0
