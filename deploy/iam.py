"""`iam-policy`: the least-privilege IAM documents this project needs, as JSON (pure functions).

- ExecutionRolePolicy: attach to the role in `role_arn`. SageMaker assumes it to run training,
  tuning trials, endpoints and transform jobs: read/write only under s3://<bucket>/<prefix>/, pull
  only the TensorFlow images, write only SageMaker's logs and metrics. The retraining pipeline runs as
  it too: it starts its steps' jobs, registers into the project's Model Package Group and passes itself.
- TrustPolicy: lets only SageMaker, acting for this account, assume the role.
- SchedulerRolePolicy / SchedulerTrustPolicy: the role in `schedule_role_arn`, which EventBridge
  Scheduler assumes (for this account only) to start the retraining pipeline, and may do nothing else.
- OperatorPolicy: for whoever runs this CLI: the SageMaker calls it makes, restricted to resources
  named `<project>-...` (and the endpoint, the pipeline and the Model Package Group), passing only that
  role, the S3 prefix, autoscaling, the project's one schedule (and passing the scheduler role to
  Scheduler only),
  and the read-only questions of `doctor` (`doctor_statements`).
  tests/test_deploy_iam.py evaluates every request each command makes against it.
"""

from __future__ import annotations

from typing import Any

from deploy import schedule
from deploy.config import Settings

SAGEMAKER_JOB_RESOURCES = (
    "training-job",
    "hyper-parameter-tuning-job",
    "transform-job",
    "model",
    "endpoint-config",
)


def policies(settings: Settings, account: str, image_uris: list[str]) -> dict[str, Any]:
    """All three documents, keyed by name."""
    return {
        "ExecutionRolePolicy": execution_role_policy(settings, account, image_uris),
        "TrustPolicy": trust_policy(account),
        "OperatorPolicy": operator_policy(settings, account, image_uris),
        "SchedulerRolePolicy": scheduler_role_policy(settings, account),
        "SchedulerTrustPolicy": scheduler_trust_policy(account),
    }


def scheduler_role_policy(settings: Settings, account: str) -> dict[str, Any]:
    """What the schedule's role may do: start this project's retraining pipeline, nothing else."""
    return _document(
        _statement(
            "StartRetrainingPipeline",
            ["sagemaker:StartPipelineExecution"],
            schedule.pipeline_arn(settings, settings.region or "*", account),
        )
    )


def scheduler_trust_policy(account: str) -> dict[str, Any]:
    """EventBridge Scheduler may assume the schedule's role, only for schedules of this account."""
    return _trust("scheduler.amazonaws.com", account)


def execution_role_policy(settings: Settings, account: str, image_uris: list[str]) -> dict[str, Any]:
    """What SageMaker needs while running this project's jobs and endpoints."""
    region = settings.region or "*"
    return _document(
        _s3_statements(settings, ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")),
        _statement("PullImagesAuth", ["ecr:GetAuthorizationToken"], "*"),
        _statement(
            "PullTensorFlowImages",
            ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            sorted({_repository_arn(uri) for uri in image_uris}),
        ),
        _statement(
            "WriteLogs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*",
        ),
        _statement(
            "WriteMetrics",
            ["cloudwatch:PutMetricData"],
            "*",
            {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}},
        ),
        _pipeline_role_statements(settings, account),
    )


def trust_policy(account: str) -> dict[str, Any]:
    """SageMaker may assume the role, only on behalf of this account (no confused deputy)."""
    return _trust("sagemaker.amazonaws.com", account)


def _trust(service: str, account: str) -> dict[str, Any]:
    """`service` may assume the role, only on behalf of `account` (no confused deputy)."""
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        }
    )


def operator_policy(settings: Settings, account: str, image_uris: list[str]) -> dict[str, Any]:
    """What the CLI's own calls need (see the module docstring)."""
    region = settings.region or "*"
    role = settings.role_arn or f"arn:aws:iam::{account}:role/<role_arn>"
    return _document(
        _sagemaker_statements(settings, f"arn:aws:sagemaker:{region}:{account}"),
        _pipeline_statements(settings, f"arn:aws:sagemaker:{region}:{account}"),
        _statement(
            "PassExecutionRole",
            ["iam:PassRole"],
            role,
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
        _statement("CheckExecutionRole", ["iam:GetRole", "iam:SimulatePrincipalPolicy"], role),
        *_s3_statements(settings, ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")),
        _autoscaling_statements(account),
        _statement(
            "ReadJobLogs",
            ["logs:DescribeLogStreams", "logs:GetLogEvents", "logs:FilterLogEvents"],
            f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*",
        ),
        _schedule_statements(settings, account),
        doctor_statements(settings, account, image_uris),
    )


def _schedule_statements(settings: Settings, account: str) -> tuple[dict[str, Any], ...]:
    """`pipeline schedule`: the project's one schedule, and passing its role to Scheduler only."""
    region = settings.region or "*"
    role = settings.schedule_role_arn or f"arn:aws:iam::{account}:role/<schedule_role_arn>"
    return (
        _statement(
            "ManageRetrainingSchedule",
            [f"scheduler:{verb}Schedule" for verb in ("Create", "Update", "Get", "Delete")],
            schedule.schedule_arn(settings, region, account),
        ),
        _statement(
            "PassSchedulerRole",
            ["iam:PassRole"],
            role,
            {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        ),
    )


def _sagemaker_statements(settings: Settings, arn: str) -> tuple[dict[str, Any], ...]:
    """SageMaker: this project's resources (named `<project>-...`), the endpoint, and listing."""
    named = [f"{arn}:{kind}/{settings.project}-*" for kind in SAGEMAKER_JOB_RESOURCES]
    # Any `<project>-...` endpoint (an earlier endpoint_name that `status` lists and `teardown`
    # deletes), and the configured one.
    endpoints = [f"{arn}:endpoint/{settings.project}-*"]
    if not settings.endpoint.startswith(f"{settings.project}-"):
        endpoints.append(f"{arn}:endpoint/{settings.endpoint}")
    jobs = ("TrainingJob", "HyperParameterTuningJob", "TransformJob")
    hosting = ("Model", "EndpointConfig")
    return (
        _statement(
            "ManageProjectResources",
            [f"sagemaker:{verb}{noun}" for noun in jobs for verb in ("Create", "Describe", "Stop")]
            + [f"sagemaker:{verb}{noun}" for noun in hosting for verb in ("Create", "Describe", "Delete")]
            + ["sagemaker:AddTags", "sagemaker:ListTags"],
            [*named, *endpoints],
        ),
        _statement(
            "ManageEndpoint",
            [
                "sagemaker:CreateEndpoint",
                "sagemaker:DescribeEndpoint",
                "sagemaker:UpdateEndpoint",
                "sagemaker:DeleteEndpoint",
                "sagemaker:InvokeEndpoint",
                "sagemaker:UpdateEndpointWeightsAndCapacities",
            ],
            [*endpoints, f"{arn}:endpoint-config/{settings.project}-*"],
        ),
        _statement(
            "ListForStatusAndTeardown",
            [f"sagemaker:List{noun}s" for noun in ("Endpoint", "EndpointConfig", "Model", *jobs)]
            + ["sagemaker:ListTrainingJobsForHyperParameterTuningJob"],
            "*",
        ),
    )


def _pipeline_statements(settings: Settings, arn: str) -> tuple[dict[str, Any], ...]:
    """`pipeline ...` and `registry ...`: this project's pipeline, its executions, its Model Package Group
    and that group's versions (ListModelPackages takes no resource; the CLI always names the group)."""
    pipeline = f"{arn}:pipeline/{settings.pipeline}"
    group = settings.package_group
    return (
        _statement(
            "ManagePipeline",
            [
                "sagemaker:CreatePipeline",
                "sagemaker:UpdatePipeline",
                "sagemaker:DescribePipeline",
                "sagemaker:StartPipelineExecution",
                "sagemaker:ListPipelineExecutions",
                "sagemaker:AddTags",
                "sagemaker:ListTags",
            ],
            pipeline,
        ),
        _statement(
            "FollowPipelineExecutions",
            ["sagemaker:DescribePipelineExecution", "sagemaker:ListPipelineExecutionSteps"],
            f"{pipeline}/execution/*",
        ),
        _statement(
            "ManageModelRegistry",
            [
                "sagemaker:CreateModelPackageGroup",
                "sagemaker:DescribeModelPackageGroup",
                "sagemaker:DescribeModelPackage",
                "sagemaker:UpdateModelPackage",
                "sagemaker:AddTags",
            ],
            [f"{arn}:model-package-group/{group}", f"{arn}:model-package/{group}/*"],
        ),
        _statement("ListModelPackages", ["sagemaker:ListModelPackages"], "*"),
    )


def _pipeline_role_statements(settings: Settings, account: str) -> tuple[dict[str, Any], ...]:
    """What the retraining pipeline, running as this role, does: start its steps' jobs (SageMaker names
    them `pipelines-<execution>-<step>-...`), find the group's approved model and register passing models
    in it, and pass itself to those jobs."""
    arn = f"arn:aws:sagemaker:{settings.region or '*'}:{account}"
    jobs = [f"{arn}:{kind}/pipelines-*" for kind in ("processing-job", "training-job")]
    group = settings.package_group
    return (
        _statement(
            "RunPipelineSteps",
            [
                f"sagemaker:{verb}{noun}"
                for noun in ("ProcessingJob", "TrainingJob")
                for verb in ("Create", "Describe", "Stop")
            ]
            + ["sagemaker:AddTags"],
            jobs,
        ),
        _statement(
            "RegisterPassingModels",
            ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage", "sagemaker:AddTags"],
            [f"{arn}:model-package-group/{group}", f"{arn}:model-package/{group}/*"],
        ),
        # The Evaluate step of a run started without CurrentModel (a schedule) finds the approved model.
        _statement("FindApprovedModel", ["sagemaker:ListModelPackages"], "*"),
        _statement(
            "PassItselfToPipelineSteps",
            ["iam:PassRole"],
            settings.role_arn or f"arn:aws:iam::{account}:role/<role_arn>",
            {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
    )


def _autoscaling_statements(account: str) -> tuple[dict[str, Any], ...]:
    """Target tracking on the endpoint's variant: the scalable target, its policy and alarms, and the
    service-linked role that registering the first SageMaker target creates."""
    service = "sagemaker.application-autoscaling.amazonaws.com"
    return (
        _statement(
            "Autoscaling",
            [
                *(
                    f"application-autoscaling:{action}"
                    for action in (
                        "RegisterScalableTarget",
                        "DeregisterScalableTarget",
                        "PutScalingPolicy",
                        "DeleteScalingPolicy",
                        "DescribeScalableTargets",
                        "DescribeScalingPolicies",
                    )
                ),
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:DeleteAlarms",
            ],
            "*",
        ),
        _statement(
            "AutoscalingServiceLinkedRole",
            ["iam:CreateServiceLinkedRole"],
            f"arn:aws:iam::{account}:role/aws-service-role/{service}/*",
            {"StringLike": {"iam:AWSServiceName": service}},
        ),
    )


def doctor_statements(settings: Settings, account: str, image_uris: list[str]) -> tuple[dict[str, Any], ...]:
    """What `deploy doctor` asks beyond the commands' own calls, all read-only: the image tags in
    AWS's repositories, the SageMaker quotas (the list actions take no resource), the execution role,
    and a simulation of the caller's own policies. `SimulatePrincipalPolicy` acts on the simulated
    principal: an IAM user may simulate itself (`${aws:username}`, AWS's documented self-service
    pattern); for a role session doctor says "not checked" instead of asking for rights on roles."""
    role = settings.role_arn or f"arn:aws:iam::{account}:role/<role_arn>"
    return (
        _statement(
            "DoctorImageTags", ["ecr:DescribeImages"], sorted({_repository_arn(uri) for uri in image_uris})
        ),
        _statement(
            "DoctorQuotas",
            ["servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas"],
            "*",
        ),
        _statement("DoctorReadRole", ["iam:GetRole"], role),
        _statement(
            "DoctorSimulateSelf",
            ["iam:SimulatePrincipalPolicy"],
            f"arn:aws:iam::{account}:user/${{aws:username}}",
        ),
    )


def _s3_statements(settings: Settings, object_actions: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    """Listing under the prefix, and `object_actions` on the objects under it.

    Every listing the CLI (and the SDK) makes names the prefix (`s3:prefix`); a request without one
    (HeadBucket) is denied by the condition, so the code lists instead. Without a prefix the
    whole bucket is the project's and listing needs no condition.
    """
    bucket = f"arn:aws:s3:::{settings.bucket}"
    keys = f"{settings.prefix}/*" if settings.prefix else "*"
    prefixes = {"StringLike": {"s3:prefix": [settings.prefix, keys]}} if settings.prefix else None
    return (
        _statement("ListProjectPrefix", ["s3:ListBucket"], bucket, prefixes),
        _statement("LocateBucket", ["s3:GetBucketLocation"], bucket),
        _statement("ProjectObjects", list(object_actions), f"{bucket}/{keys}"),
    )


def _repository_arn(image_uri: str) -> str:
    """arn:aws:ecr:<region>:<registry account>:repository/<name> of `<acct>.dkr.ecr.<region>...:tag`."""
    registry, _, rest = image_uri.partition("/")
    account, _, host = registry.partition(".dkr.ecr.")
    region = host.split(".")[0]
    return f"arn:aws:ecr:{region}:{account}:repository/{rest.split(':')[0].split('@')[0]}"


def _statement(
    sid: str, actions: list[str], resource: str | list[str], condition: dict | None = None
) -> dict:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


def _document(*statements: dict[str, Any] | tuple[dict[str, Any], ...]) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for item in statements:
        flat.extend(item if isinstance(item, tuple) else [item])
    return {"Version": "2012-10-17", "Statement": flat}
