"""Every AWS request of every command, authorized the way AWS would under `iam-policy`'s OperatorPolicy.

Each test drives one command's flow against in-process moto, in an account that also holds another
team's endpoint, endpoint config, models and jobs. Every request the CLI and the SageMaker SDK made
(recorded from botocore, see deploy_helpers.Recorder) is mapped to its IAM request(s) by
tests/iam_requests.py and evaluated by an IAM simulator built on AWS's authorization data
(tests/iam_simulator.py): each must be allowed, and none may name another team's resource.
A new command's flow is one more test that runs it and ends with `audit()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from deploy_helpers import (
    ACCOUNT,
    BUCKET,
    PROJECT,
    REGION,
    ROLE_ARN,
    Call,
    Recorder,
    sagemaker_backend,
    shim_requests,
    write_model_archive,
)
from iam_requests import IamRequest, Unmapped, Where, to_iam
from iam_simulator import decisions, require_simulator

from deploy import iam
from deploy.aws import PROJECT_TAG, s3_object_exists
from deploy.cli import main
from deploy.config import load_settings

pytest_plugins = ["deploy_fixtures"]

OPERATOR = f"arn:aws:iam::{ACCOUNT}:user/ncf-operator"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.20-cpu-py312"
MODEL_URI = f"s3://{BUCKET}/ncf/models/external/output/model.tar.gz"
ENDPOINT = f"{PROJECT}-endpoint"
# Another team's tags, and names that NameContains="<project>-" also matches (it matches anywhere).
TEAM_B_TAGS = [{"Key": PROJECT_TAG, "Value": "team-b"}, {"Key": "team", "Value": "b"}]
TEAM_B = {
    "model": ["team-b-model", f"team-b-{PROJECT}-model"],
    "endpoint-config": ["team-b-config", f"team-b-{PROJECT}-config"],
    "endpoint": ["team-b-endpoint", f"team-b-{PROJECT}-endpoint"],
    "training-job": [f"team-b-{PROJECT}-train-1"],
    "transform-job": [f"team-b-{PROJECT}-batch-1"],
    "hyper-parameter-tuning-job": [f"team-b-{PROJECT}-tune-1"],
}


@pytest.fixture(scope="module")
def node() -> str:
    return require_simulator()


def test_the_simulator_applies_missing_key_semantics(node: str) -> None:
    """A ListBucket allowed only under a `StringLike s3:prefix` condition denies HeadBucket (no prefix)."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{BUCKET}",
                "Condition": {"StringLike": {"s3:prefix": ["ncf/*"]}},
            }
        ],
    }
    bucket = f"arn:aws:s3:::{BUCKET}"
    requests = [
        IamRequest("s3:ListBucket", bucket),
        IamRequest("s3:ListBucket", bucket, {"s3:prefix": "ncf/data/"}),
        IamRequest("s3:ListBucket", bucket, {"s3:prefix": "other/"}),
    ]
    answers = [a["decision"] for a in decisions(OPERATOR, {"p": policy}, requests)]
    assert answers == ["ImplicitlyDenied", "Allowed", "ImplicitlyDenied"]


def test_an_operation_without_a_mapping_fails_the_check() -> None:
    with pytest.raises(Unmapped, match="s3 PutBucketPolicy has no IAM mapping"):
        to_iam("s3", "PutBucketPolicy", Where({"Bucket": BUCKET}, REGION, ACCOUNT))


def test_without_a_prefix_the_whole_bucket_may_be_listed(node: str, aws_env: Path) -> None:
    policy = iam.operator_policy(load_settings(None, {"prefix": ""}), ACCOUNT, [])
    listing = next(s for s in policy["Statement"] if s["Sid"] == "ListProjectPrefix")
    assert "Condition" not in listing
    head_bucket = to_iam("s3", "HeadBucket", Where({"Bucket": BUCKET}, REGION, ACCOUNT))
    assert [a["decision"] for a in decisions(OPERATOR, {"p": policy}, head_bucket)] == ["Allowed"]


# --- the account and the CLI --------------------------------------------------------------------


def _create_team_b(sagemaker: Any) -> None:
    """Another team's hosting resources and jobs, created as that team would (plain boto3)."""
    for model in TEAM_B["model"]:
        sagemaker.create_model(
            ModelName=model, ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": IMAGE}, Tags=TEAM_B_TAGS
        )
    for config, endpoint in zip(TEAM_B["endpoint-config"], TEAM_B["endpoint"], strict=True):
        variant = {"VariantName": "v", "ModelName": TEAM_B["model"][0], "InstanceType": "ml.m5.large"}
        sagemaker.create_endpoint_config(
            EndpointConfigName=config, ProductionVariants=[variant], Tags=TEAM_B_TAGS
        )
        sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=TEAM_B_TAGS)
    job = {
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE_ARN,
        "OutputDataConfig": {"S3OutputPath": "s3://team-b-bucket/models"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    sagemaker.create_training_job(TrainingJobName=TEAM_B["training-job"][0], Tags=TEAM_B_TAGS, **job)
    sagemaker.create_transform_job(
        TransformJobName=TEAM_B["transform-job"][0],
        ModelName=TEAM_B["model"][0],
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://team-b/in"}}
        },
        TransformOutput={"S3OutputPath": "s3://team-b/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        Tags=TEAM_B_TAGS,
    )
    sagemaker.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TEAM_B["hyper-parameter-tuning-job"][0],
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
        },
        TrainingJobDefinition={k: v for k, v in job.items() if k != "Tags"},
        Tags=TEAM_B_TAGS,
    )


def team_b_resources() -> dict[str, set[str]]:
    """The other team's resources that exist now, by kind (their ARNs)."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    listings = {
        "model": ("list_models", "Models", "ModelArn"),
        "endpoint-config": ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigArn"),
        "endpoint": ("list_endpoints", "Endpoints", "EndpointArn"),
        "training-job": ("list_training_jobs", "TrainingJobSummaries", "TrainingJobArn"),
        "transform-job": ("list_transform_jobs", "TransformJobSummaries", "TransformJobArn"),
        "hyper-parameter-tuning-job": (
            "list_hyper_parameter_tuning_jobs",
            "HyperParameterTuningJobSummaries",
            "HyperParameterTuningJobArn",
        ),
    }
    found = {}
    for kind, (method, key, arn) in listings.items():
        arns = {s[arn] for s in getattr(sagemaker, method)()[key]}
        found[kind] = {a for a in arns if a.rsplit("/", 1)[1] in TEAM_B[kind]}
    return found


@pytest.fixture
def account(moto_aws: None) -> dict[str, set[str]]:
    """The project's bucket, and another team's resources in the same account and region."""
    _create_team_b(boto3.client("sagemaker", region_name=REGION))
    existing = team_b_resources()
    assert all(len(existing[kind]) == len(names) for kind, names in TEAM_B.items())
    return existing


@dataclass
class Cli:
    """Runs `python -m deploy ...` in-process; requests are recorded while it runs."""

    recorder: Recorder
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *argv: str) -> str:
        with self.recorder.recording():
            status = main(list(argv), session_factory=self.recorder)
        out, err = self.capsys.readouterr()
        assert status == 0, f"exit {status}\nstdout: {out}\nstderr: {err}"
        return out


@pytest.fixture
def cli(account: dict[str, set[str]], recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(recorder, capsys)


def operator_policy(cli: Cli, *settings: str) -> dict[str, Any]:
    """The OperatorPolicy that `iam-policy` prints for the test account's settings (and `settings`)."""
    return json.loads(cli("iam-policy", "--which", "operator", *settings))


def iam_requests(calls: list[Call]) -> list[tuple[str, IamRequest]]:
    """(API request, IAM request) for every recorded request (an unmapped operation raises)."""
    return [
        (f"{call.service} {call.operation}", request)
        for call in calls
        for request in to_iam(
            call.service, call.operation, Where(call.params, call.region, ACCOUNT, call.error)
        )
    ]


def strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a request's parameters."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


Audit = Callable[..., None]


@pytest.fixture
def audit(node: str, cli: Cli, account: dict[str, set[str]]) -> Audit:
    """Check every request recorded so far (or `calls`): allowed by the OperatorPolicy that `iam-policy`
    prints with the same `settings` flags, and none names team B's resources."""

    def check(calls: list[Call] | None = None, settings: tuple[str, ...] = ()) -> None:
        calls = list(cli.recorder.calls if calls is None else calls)
        assert calls, "no request was recorded"
        policy = operator_policy(cli, *settings)
        foreign = {name for names in TEAM_B.values() for name in names} | set().union(*account.values())
        for call in calls:
            named = foreign.intersection(strings(call.params))
            assert not named, f"{call.service} {call.operation} names another team's {named}"
        mapped = iam_requests(calls)
        answers = decisions(OPERATOR, {"OperatorPolicy": policy}, [r for _, r in mapped])
        denied = [
            f"{api}: {r.action} on {r.resource} {r.context or ''} -> {a['decision']} {a.get('errors', '')}"
            for (api, r), a in zip(mapped, answers, strict=True)
            if a["decision"] != "Allowed"
        ]
        assert not denied, "denied under the OperatorPolicy:\n" + "\n".join(denied)

    return check


# --- flows ----------------------------------------------------------------------------------------


@pytest.fixture
def uploaded(cli: Cli, tiny_channels: Path) -> None:
    cli("upload", "--prepared", str(tiny_channels))


@pytest.fixture
def model_data(account: dict[str, set[str]], tmp_path: Path) -> str:
    """A model.tar.gz without code/ in the project's bucket (deploy repackages it)."""
    archive = write_model_archive(tmp_path / "model.tar.gz", with_code=False)
    boto3.client("s3", region_name=REGION).upload_file(str(archive), BUCKET, MODEL_URI.split("/", 3)[3])
    return MODEL_URI


@pytest.fixture
def deployed(cli: Cli, model_data: str) -> None:
    cli("deploy", "--model-data", model_data, "--autoscaling")


def test_an_object_exists_only_under_its_exact_key(account: dict[str, set[str]]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    uri = f"s3://{BUCKET}/ncf/code/abc/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key="ncf/code/abc/sourcedir.tar.gz.partial", Body=b"")
    assert not s3_object_exists(s3, uri)
    s3.put_object(Bucket=BUCKET, Key="ncf/code/abc/sourcedir.tar.gz", Body=b"")
    assert s3_object_exists(s3, uri)


def test_doctor(cli: Cli, uploaded: None, audit: Audit) -> None:
    """Every question `deploy doctor` asks is allowed, whatever it finds: the role exists (so its trust
    and its passing are asked about too); AWS's image repositories do
    not exist in the test account, and the two APIs moto lacks answer with empty results."""
    boto3.client("iam").create_role(
        RoleName=ROLE_ARN.rsplit("/", 1)[-1], AssumeRolePolicyDocument=json.dumps(iam.trust_policy(ACCOUNT))
    )
    empty = {"SimulatePrincipalPolicy": {"EvaluationResults": []}, "ListServiceQuotas": {"Quotas": []}}
    for operation, parsed in empty.items():
        service = "iam" if operation.startswith("Simulate") else "service-quotas"
        answer = (AWSResponse("", 200, {}, None), parsed)
        cli.recorder.hooks.append((f"before-call.{service}.{operation}", lambda answer=answer, **_: answer))

    def as_the_operator(parsed: dict[str, Any], **_: Any) -> None:  # moto answers with its own user
        parsed["Arn"] = OPERATOR

    cli.recorder.hooks.append(("after-call.sts.GetCallerIdentity", as_the_operator))
    with cli.recorder.recording():
        status = main(["doctor"], session_factory=cli.recorder)
    out = cli.capsys.readouterr().out
    assert status in (0, 1), out
    for check in ("credentials", "bucket", "role", "train image", "serve image", "quota"):
        assert check in out, out
    called = {c.operation for c in cli.recorder.calls}
    assert {
        "GetCallerIdentity",
        "GetRole",
        "DescribeImages",
        "ListServiceQuotas",
        "SimulatePrincipalPolicy",
    } <= called
    audit()


def test_upload(cli: Cli, tiny_channels: Path, tmp_path: Path, audit: Audit) -> None:
    cli("upload", "--prepared", str(tiny_channels))
    cli("upload", "--prepared", str(tiny_channels))  # unchanged files: the digests are read back
    audit()


def test_train_with_spot_and_checkpoints(cli: Cli, uploaded: None, audit: Audit) -> None:
    cli("train", "--wait", "--spot")
    assert "CheckpointConfig" in cli.recorder.only("CreateTrainingJob")
    audit()


def name_the_best_trial(parsed: dict[str, Any], **_: Any) -> None:
    """moto names every tuning job's best trial "FakeTrainingJobName"; SageMaker names a trial
    `<tuning job>-NNN-<hash>` and tags it like its tuning job. Make moto's look like that."""
    name = parsed["HyperParameterTuningJobArn"].rsplit("/", 1)[1]
    job = sagemaker_backend().hyper_parameter_tuning_jobs[name]
    trial = f"{name}-001-0a1b2c3d"
    job.best_training_job = {**job.best_training_job, "TrainingJobName": trial, "TuningJobName": name}
    definition = job.training_job_definition
    with shim_requests():
        boto3.client("sagemaker", region_name=REGION).create_training_job(
            TrainingJobName=trial,
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            RoleArn=definition["RoleArn"],
            OutputDataConfig=definition["OutputDataConfig"],
            ResourceConfig=definition["ResourceConfig"],
            StoppingCondition={"MaxRuntimeInSeconds": 60},
            Tags=job.tags,
        )


def test_tune(cli: Cli, uploaded: None, audit: Audit) -> None:
    cli.recorder.hooks.append(("after-call.sagemaker.CreateHyperParameterTuningJob", name_the_best_trial))
    assert "best training job: " in cli("tune", "--wait")
    audit()


def test_deploy_the_latest_training_job_on_instances(
    cli: Cli, uploaded: None, model_data: str, audit: Audit
) -> None:
    cli("train")
    job = cli.recorder.only("CreateTrainingJob")["TrainingJobName"]
    key = f"ncf/models/{job}/output/model.tar.gz"  # SageMaker would write it; moto does not
    s3 = boto3.client("s3", region_name=REGION)
    s3.copy_object(Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": model_data.split("/", 3)[3]})
    cli("deploy")
    audit()


def test_deploy_serverless(cli: Cli, model_data: str, audit: Audit) -> None:
    cli("deploy", "--model-data", model_data, "--serverless")
    audit()


def test_deploy_with_autoscaling(cli: Cli, deployed: None, audit: Audit) -> None:
    assert cli.recorder.requests("PutScalingPolicy")
    audit()


def test_deploy_with_data_capture(cli: Cli, model_data: str, audit: Audit) -> None:
    cli("deploy", "--model-data", model_data, "--data-capture")
    audit()


def test_blue_green_update(cli: Cli, deployed: None, model_data: str, audit: Audit) -> None:
    cli("deploy", "--model-data", model_data, "--autoscaling")
    assert cli.recorder.requests("UpdateEndpoint") and cli.recorder.requests("DeleteEndpointConfig")
    audit()


def test_invoke(cli: Cli, deployed: None, audit: Audit) -> None:
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    answer = {"predictions": [{"user_id": "u1", "items": [], "fallback": True}]}
    results = sagemakerruntime_backends[ACCOUNT][REGION].results_queue
    results.append((json.dumps(answer), "application/json", "AllTraffic", ""))
    assert json.loads(cli("invoke", "--user", "u1", "--format", "json")) == answer
    audit()


def test_batch(cli: Cli, model_data: str, tmp_path: Path, audit: Audit) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": "u1"}\n')
    cli("batch", "--input", str(users), "--model-data", model_data, "--wait")
    audit()


def test_status(cli: Cli, uploaded: None, deployed: None, audit: Audit) -> None:
    cli("train")
    cli("tune")
    listed = {(r["kind"], r["name"]) for r in json.loads(cli("status", "--json"))["resources"]}
    assert ("endpoint", ENDPOINT) in listed
    assert not {name for _, name in listed} & {n for names in TEAM_B.values() for n in names}
    assert {kind for kind, _ in listed} == {
        "endpoint",
        "endpoint-config",
        "model",
        "training-job",
        "tuning-job",
    }
    audit()


def test_teardown(cli: Cli, deployed: None, account: dict[str, set[str]], audit: Audit) -> None:
    assert f"endpoint {ENDPOINT}: deleted" in cli("teardown")
    assert "nothing to delete" in cli("teardown")
    assert team_b_resources() == account
    audit()


def test_status_and_teardown_of_an_endpoint_not_named_after_the_project(
    cli: Cli, model_data: str, audit: Audit
) -> None:
    named = ("--set", "endpoint_name=recs-live")
    cli("deploy", "--model-data", model_data, *named)
    listed = {(r["kind"], r["name"]) for r in json.loads(cli("status", "--json", *named))["resources"]}
    assert ("endpoint", "recs-live") in listed
    assert "endpoint recs-live: deleted" in cli("teardown", *named)
    audit(settings=named)


# --- retraining schedule and A/B tests (issue #21) --------------------------------------------------

SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ncftest-scheduler"
SCHEDULE_SETTINGS = ("--set", f"schedule_role_arn={SCHEDULER_ROLE}")


def test_pipeline_schedule(cli: Cli, audit: Audit) -> None:
    """Create, update and delete the project's schedule; another team's schedule is left alone."""
    scheduler = boto3.client("scheduler", region_name=REGION)
    team_b = {
        "Name": f"team-b-{PROJECT}-retrain",
        "ScheduleExpression": "rate(1 day)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": "arn:aws:sagemaker:us-east-1:123456789012:pipeline/b", "RoleArn": ROLE_ARN},
    }
    scheduler.create_schedule(**team_b)
    cli("pipeline", "schedule", "--cron", "cron(0 3 * * ? *)", *SCHEDULE_SETTINGS)
    cli("pipeline", "schedule", "--cron", "cron(0 4 * * ? *)", *SCHEDULE_SETTINGS)
    cli("pipeline", "schedule", "--delete", *SCHEDULE_SETTINGS)
    assert {c.operation for c in cli.recorder.calls} >= {"CreateSchedule", "UpdateSchedule", "DeleteSchedule"}
    assert [s["Name"] for s in scheduler.list_schedules()["Schedules"]] == [team_b["Name"]]
    audit(settings=SCHEDULE_SETTINGS)


def test_the_evaluate_step_may_find_and_read_the_approved_model(cli: Cli, node: str) -> None:
    """A run nobody resolved CurrentModel for (a schedule's) makes training/evaluate.py, as the execution
    role, list the group's Approved versions, describe the newest and read its model.tar.gz."""
    documents = json.loads(cli("iam-policy"))
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    requests = [
        IamRequest("sagemaker:ListModelPackages", "*"),
        IamRequest("sagemaker:DescribeModelPackage", f"{arn}:model-package/{PROJECT}-models/3"),
        IamRequest("s3:GetObject", f"arn:aws:s3:::{BUCKET}/ncf/models/job/output/model.tar.gz"),
        IamRequest("sagemaker:DescribeModelPackage", f"{arn}:model-package/team-b-models/1"),
    ]
    policy = {"ExecutionRolePolicy": documents["ExecutionRolePolicy"]}
    answers = [a["decision"] for a in decisions(ROLE_ARN, policy, requests)]
    assert answers == ["Allowed", "Allowed", "Allowed", "ImplicitlyDenied"]


def test_the_scheduler_role_may_only_start_the_pipeline(cli: Cli, node: str) -> None:
    documents = json.loads(cli("iam-policy", *SCHEDULE_SETTINGS))
    trust = documents["SchedulerTrustPolicy"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    pipeline = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{PROJECT}-retrain"
    requests = [
        IamRequest("sagemaker:StartPipelineExecution", pipeline),
        IamRequest("sagemaker:StartPipelineExecution", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/b"),
        IamRequest("sagemaker:DeletePipeline", pipeline),
    ]
    policy = {"SchedulerRolePolicy": documents["SchedulerRolePolicy"]}
    answers = [a["decision"] for a in decisions(SCHEDULER_ROLE, policy, requests)]
    assert answers == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_candidate_and_promote(cli: Cli, deployed: None, model_data: str, audit: Audit) -> None:
    cli("deploy", "--candidate", model_data, "--candidate-share", "0.2")
    assert "Candidate 20%" in cli("status")
    cli("promote", "--variant", "Candidate")
    assert cli.recorder.requests("UpdateEndpointWeightsAndCapacities")
    audit()


def test_ab_report_from_the_endpoint_capture_in_s3(
    cli: Cli, account: dict[str, set[str]], tmp_path: Path, audit: Audit
) -> None:
    """The default --capture is the endpoint's data capture prefix; the interactions are in S3 too."""
    from datetime import UTC, datetime

    from deploy import capture

    s3 = boto3.client("s3", region_name=REGION)
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    answer = {"predictions": [{"user_id": "u1", "items": [{"item_id": "i1", "score": 1.0}]}]}
    for variant in ("AllTraffic", "Candidate"):
        record = capture.record(
            b'{"user_id": "u1"}', "application/json", json.dumps(answer).encode(), "application/json", at
        )
        key = f"ncf/data-capture/{ENDPOINT}/" + capture.relative_path(ENDPOINT, variant, at, "c.jsonl")
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(record).encode())
    later = int(at.timestamp()) + 60
    s3.put_object(
        Bucket=BUCKET, Key="ncf/ab/interactions.csv", Body=f"user_id,item_id,timestamp\nu1,i1,{later}\n"
    )
    out = cli("ab-report", "--interactions", f"s3://{BUCKET}/ncf/ab/interactions.csv", "--json")
    assert [v["variant"] for v in json.loads(out)["variants"]] == ["AllTraffic", "Candidate"]


def test_pipeline_upsert_start_status_describe(cli: Cli, audit: Audit) -> None:
    """Another team's pipeline exists in the account; the flow names only this project's."""
    boto3.client("sagemaker", region_name=REGION).create_pipeline(
        PipelineName="team-b-retrain",
        PipelineDefinition='{"Version": "2020-12-01", "Steps": []}',
        RoleArn=ROLE_ARN,
    )
    cli("pipeline", "upsert")
    cli("pipeline", "upsert")  # the update path: UpdatePipeline, then the tags read back and added
    cli("pipeline", "start", "--epochs", "1")
    cli("pipeline", "status")
    cli("pipeline", "describe")
    called = {c.operation for c in cli.recorder.calls}
    assert {"CreatePipeline", "UpdatePipeline", "CreateModelPackageGroup", "StartPipelineExecution"} <= called
    assert not any("team-b-retrain" in s for c in cli.recorder.calls for s in strings(c.params))
    audit()


def test_registry_and_deploy_from_it(cli: Cli, model_data: str, audit: Audit) -> None:
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for group in (f"{PROJECT}-models", "team-b-models"):
        sagemaker.create_model_package_group(ModelPackageGroupName=group)
        sagemaker.create_model_package(
            ModelPackageGroupName=group,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
    cli("registry", "list")
    cli("registry", "approve", "1", "--reason", "gate passed")
    cli("deploy", "--model-package", "latest-approved")
    cli("registry", "reject", "1")
    assert not any("team-b-models" in s for c in cli.recorder.calls for s in strings(c.params))
    audit()
