"""Each AWS API request the CLI makes, as the IAM request(s) AWS authorizes it with.

The table follows AWS's Service Authorization Reference (the actions, resource types and condition
keys of each operation) and the services' own documentation of what a call checks:
- S3 HeadBucket is `s3:ListBucket` on the bucket with no `s3:prefix` in the context; ListObjects(V2)
  is the same action with `s3:prefix` (and `s3:max-keys`) set from the request; HeadObject is
  `s3:GetObject`, and on a missing key also `s3:ListBucket` without a prefix (S3 answers 403, not
  404, without it); the multipart upload calls are `s3:PutObject`; DeleteObjects checks
  `s3:DeleteObject` on every key.
- Creating a training or tuning job or a model passes a role: `iam:PassRole` on it with
  `iam:PassedToService = sagemaker.amazonaws.com`. Tags in a SageMaker create request are
  authorized as `aws:RequestTag/<key>` / `aws:TagKeys`, and also need `sagemaker:AddTags` on the new
  resource (tag-on-create).
- CreateEndpoint and UpdateEndpoint check both the endpoint and the endpoint config.
- Application Auto Scaling: registering the first SageMaker target creates its service-linked role
  (`iam:CreateServiceLinkedRole`), and a target-tracking policy creates and deletes CloudWatch alarms
  in the caller's name.
- `sts:GetCallerIdentity` needs no permission.
- EventBridge Scheduler: CreateSchedule and UpdateSchedule act on the schedule ARN
  (`schedule/<group>/<name>`) and pass the target's role (`iam:PassedToService = scheduler.amazonaws.com`).
An operation missing from `RULES` raises `Unmapped`: a new call cannot slip past the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Context = dict[str, str | list[str]]
SCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"


@dataclass(frozen=True)
class IamRequest:
    """One authorization AWS makes for an API request: action, resource ARN (or `*`), context keys."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class Where:
    """What a rule's ARN and context are built from: the request and the account it is made in."""

    params: dict[str, Any]
    region: str
    account: str
    error: str = ""  # the error code of the answer, if it was one


# A rule turns one API request into the IAM requests of one action (one per resource it names).
Rule = Callable[[Where], list[IamRequest]]


class Unmapped(Exception):
    """An API operation that `RULES` does not know (add it, following the Service Authorization Reference)."""


def to_iam(service: str, operation: str, where: Where) -> list[IamRequest]:
    """Every IAM request AWS authorizes for this API request (none for sts:GetCallerIdentity)."""
    try:
        rules = RULES[(service, operation)]
    except KeyError:
        raise Unmapped(f"{service} {operation} has no IAM mapping in tests/iam_requests.py") from None
    return [request for rule in rules for request in rule(where)]


# --- resources ------------------------------------------------------------------------------------


def sagemaker_arn(where: Where, kind: str, name: str) -> str:
    """SageMaker ARNs spell the resource name in lower case."""
    return f"arn:aws:sagemaker:{where.region}:{where.account}:{kind}/{name.lower()}"


def _named(kind: str, param: str) -> Callable[[Where], list[str]]:
    return lambda w: [sagemaker_arn(w, kind, w.params[param])]


def _param(name: str) -> Callable[[Where], list[str]]:
    return lambda w: [w.params[name]]


def _bucket(where: Where) -> list[str]:
    return [f"arn:aws:s3:::{where.params['Bucket']}"]


def _object(where: Where) -> list[str]:
    return [f"arn:aws:s3:::{where.params['Bucket']}/{where.params['Key']}"]


def _objects(where: Where) -> list[str]:
    bucket = where.params["Bucket"]
    return [f"arn:aws:s3:::{bucket}/{o['Key']}" for o in where.params["Delete"]["Objects"]]


def _anything(_: Where) -> list[str]:
    return ["*"]


def _scalable_target(where: Where) -> list[str]:
    """Application Auto Scaling names a target by an id it assigns; any id stands for it here."""
    return [f"arn:aws:application-autoscaling:{where.region}:{where.account}:scalable-target/0example"]


def _alarms(where: Where) -> list[str]:
    """The alarms a target-tracking policy creates are named TargetTracking-<resource id>-..."""
    resource = where.params["ResourceId"]
    return [f"arn:aws:cloudwatch:{where.region}:{where.account}:alarm:TargetTracking-{resource}-AlarmHigh-0"]


def _log_group(where: Where) -> list[str]:
    return [f"arn:aws:logs:{where.region}:{where.account}:log-group:{where.params['logGroupName']}"]


def _log_stream(where: Where) -> list[str]:
    group, stream = where.params["logGroupName"], where.params["logStreamName"]
    return [f"arn:aws:logs:{where.region}:{where.account}:log-group:{group}:log-stream:{stream}"]


def _ecr_repository(where: Where) -> list[str]:
    registry = where.params.get("registryId", where.account)
    return [f"arn:aws:ecr:{where.region}:{registry}:repository/{where.params['repositoryName']}"]


def _service_linked_role(where: Where) -> list[str]:
    return [
        f"arn:aws:iam::{where.account}:role/aws-service-role/{SCALING_SERVICE}/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    ]


# --- context --------------------------------------------------------------------------------------


def _schedule(where: Where) -> list[str]:
    group = where.params.get("GroupName", "default")
    return [f"arn:aws:scheduler:{where.region}:{where.account}:schedule/{group}/{where.params['Name']}"]


def _target_role(where: Where) -> list[str]:
    return [where.params["Target"]["RoleArn"]]


def _passed_to_scheduler(_: Where) -> Context:
    return {"iam:PassedToService": "scheduler.amazonaws.com"}


def _no_context(_: Where) -> Context:
    return {}


def _request_tags(where: Where) -> Context:
    tags = where.params.get("Tags") or []
    context: Context = {f"aws:RequestTag/{t['Key']}": t["Value"] for t in tags}
    if tags:
        context["aws:TagKeys"] = [t["Key"] for t in tags]
    return context


def _listing(where: Where) -> Context:
    """ListObjects(V2): `s3:prefix` (and `s3:max-keys`) only when the request sets them."""
    context: Context = {}
    if "Prefix" in where.params:
        context["s3:prefix"] = where.params["Prefix"]
    if "MaxKeys" in where.params:
        context["s3:max-keys"] = str(where.params["MaxKeys"])
    return context


def _passed_to_sagemaker(_: Where) -> Context:
    return {"iam:PassedToService": "sagemaker.amazonaws.com"}


def _scaling_target_keys(where: Where) -> Context:
    return {
        "application-autoscaling:service-namespace": where.params["ServiceNamespace"],
        "application-autoscaling:scalable-dimension": where.params["ScalableDimension"],
    }


def _service_linked_role_name(_: Where) -> Context:
    return {"iam:AWSServiceName": SCALING_SERVICE}


def rule(
    action: str,
    resources: Callable[[Where], list[str]] = _anything,
    context: Callable[[Where], Context] = _no_context,
) -> Rule:
    """`action` on each resource that `resources` names in the request, with `context`."""
    return lambda where: [IamRequest(action, arn, context(where)) for arn in resources(where)]


def _tagged(action: str, kind: str, param: str) -> Rule:
    """A SageMaker create request with tags: the action, and `sagemaker:AddTags` when it has tags."""
    create, add_tags = (rule(a, _named(kind, param), _request_tags) for a in (action, "sagemaker:AddTags"))
    return lambda where: create(where) + (add_tags(where) if where.params.get("Tags") else [])


def _if_missing(inner: Rule) -> Rule:
    """S3 answers a request for a missing key with 404 only when the caller may also list the bucket
    (AWS's HeadObject/GetObject documentation); that check carries no `s3:prefix`."""
    return lambda where: inner(where) if where.error in ("404", "NoSuchKey", "NotFound") else []


def _passes_role(path: str) -> Rule:
    """`iam:PassRole` on the role at `path` (dotted, e.g. TrainingJobDefinition.RoleArn)."""

    def role(where: Where) -> list[str]:
        value: Any = where.params
        for part in path.split("."):
            value = value[part]
        return [value]

    return rule("iam:PassRole", role, _passed_to_sagemaker)


def _sagemaker(action: str, kind: str, param: str) -> Rule:
    return rule(f"sagemaker:{action}", _named(kind, param))


def _s3(
    action: str, resources: Callable[[Where], list[str]], context: Callable[[Where], Context] = _no_context
) -> Rule:
    return rule(f"s3:{action}", resources, context)


def _scaling(action: str) -> Rule:
    return rule(f"application-autoscaling:{action}", _scalable_target, _scaling_target_keys)


# The API's noun of each SageMaker resource -> its resource type in ARNs.
_JOBS = {
    "TrainingJob": "training-job",
    "HyperParameterTuningJob": "hyper-parameter-tuning-job",
    "TransformJob": "transform-job",
}
_HOSTING = {"Model": "model", "EndpointConfig": "endpoint-config", "Endpoint": "endpoint"}

RULES: dict[tuple[str, str], tuple[Rule, ...]] = {
    # S3: the bucket, the project's prefix, and the objects under it.
    ("s3", "HeadBucket"): (_s3("ListBucket", _bucket),),
    ("s3", "ListObjectsV2"): (_s3("ListBucket", _bucket, _listing),),
    ("s3", "ListObjects"): (_s3("ListBucket", _bucket, _listing),),
    ("s3", "ListBuckets"): (_s3("ListAllMyBuckets", _anything),),
    ("s3", "GetBucketLocation"): (_s3("GetBucketLocation", _bucket),),
    ("s3", "HeadObject"): (_s3("GetObject", _object), _if_missing(_s3("ListBucket", _bucket))),
    ("s3", "GetObject"): (_s3("GetObject", _object), _if_missing(_s3("ListBucket", _bucket))),
    ("s3", "PutObject"): (_s3("PutObject", _object),),
    ("s3", "CreateMultipartUpload"): (_s3("PutObject", _object),),
    ("s3", "UploadPart"): (_s3("PutObject", _object),),
    ("s3", "CompleteMultipartUpload"): (_s3("PutObject", _object),),
    ("s3", "AbortMultipartUpload"): (_s3("AbortMultipartUpload", _object),),
    ("s3", "DeleteObject"): (_s3("DeleteObject", _object),),
    ("s3", "DeleteObjects"): (_s3("DeleteObject", _objects),),
    # SageMaker: creating passes the role and tags the new resource.
    ("sagemaker", "CreateTrainingJob"): (
        _tagged("sagemaker:CreateTrainingJob", "training-job", "TrainingJobName"),
        _passes_role("RoleArn"),
    ),
    ("sagemaker", "CreateHyperParameterTuningJob"): (
        _tagged(
            "sagemaker:CreateHyperParameterTuningJob",
            "hyper-parameter-tuning-job",
            "HyperParameterTuningJobName",
        ),
        _passes_role("TrainingJobDefinition.RoleArn"),
    ),
    ("sagemaker", "CreateTransformJob"): (
        _tagged("sagemaker:CreateTransformJob", "transform-job", "TransformJobName"),
    ),
    ("sagemaker", "CreateModel"): (
        _tagged("sagemaker:CreateModel", "model", "ModelName"),
        _passes_role("ExecutionRoleArn"),
    ),
    ("sagemaker", "CreateEndpointConfig"): (
        _tagged("sagemaker:CreateEndpointConfig", "endpoint-config", "EndpointConfigName"),
    ),
    ("sagemaker", "CreateEndpoint"): (
        _tagged("sagemaker:CreateEndpoint", "endpoint", "EndpointName"),
        _sagemaker("CreateEndpoint", "endpoint-config", "EndpointConfigName"),
    ),
    ("sagemaker", "UpdateEndpoint"): (
        _sagemaker("UpdateEndpoint", "endpoint", "EndpointName"),
        _sagemaker("UpdateEndpoint", "endpoint-config", "EndpointConfigName"),
    ),
    ("sagemaker", "UpdateEndpointWeightsAndCapacities"): (
        _sagemaker("UpdateEndpointWeightsAndCapacities", "endpoint", "EndpointName"),
    ),
    **{
        ("sagemaker", f"{verb}{noun}"): (_sagemaker(f"{verb}{noun}", kind, f"{noun}Name"),)
        for verbs, nouns in ((("Describe", "Stop"), _JOBS), (("Describe", "Delete"), _HOSTING))
        for noun, kind in nouns.items()
        for verb in verbs
    },
    ("sagemaker", "ListTrainingJobsForHyperParameterTuningJob"): (
        _sagemaker(
            "ListTrainingJobsForHyperParameterTuningJob",
            "hyper-parameter-tuning-job",
            "HyperParameterTuningJobName",
        ),
    ),
    ("sagemaker", "AddTags"): (rule("sagemaker:AddTags", _param("ResourceArn"), _request_tags),),
    ("sagemaker", "ListTags"): (rule("sagemaker:ListTags", _param("ResourceArn")),),
    **{("sagemaker", f"List{noun}s"): (rule(f"sagemaker:List{noun}s"),) for noun in {**_JOBS, **_HOSTING}},
    ("sagemaker-runtime", "InvokeEndpoint"): (_sagemaker("InvokeEndpoint", "endpoint", "EndpointName"),),
    # The retraining pipeline: creating or updating it passes the role it runs as.
    ("sagemaker", "CreatePipeline"): (
        _tagged("sagemaker:CreatePipeline", "pipeline", "PipelineName"),
        _passes_role("RoleArn"),
    ),
    ("sagemaker", "UpdatePipeline"): (
        _sagemaker("UpdatePipeline", "pipeline", "PipelineName"),
        _passes_role("RoleArn"),
    ),
    **{
        ("sagemaker", action): (_sagemaker(action, "pipeline", "PipelineName"),)
        for action in ("DescribePipeline", "StartPipelineExecution", "ListPipelineExecutions")
    },
    **{
        ("sagemaker", action): (rule(f"sagemaker:{action}", _param("PipelineExecutionArn")),)
        for action in ("DescribePipelineExecution", "ListPipelineExecutionSteps")
    },
    # The Model Registry: the project's group and its versions (ListModelPackages takes no resource).
    ("sagemaker", "CreateModelPackageGroup"): (
        _tagged("sagemaker:CreateModelPackageGroup", "model-package-group", "ModelPackageGroupName"),
    ),
    ("sagemaker", "DescribeModelPackageGroup"): (
        _sagemaker("DescribeModelPackageGroup", "model-package-group", "ModelPackageGroupName"),
    ),
    ("sagemaker", "ListModelPackages"): (rule("sagemaker:ListModelPackages"),),
    ("sagemaker", "DescribeModelPackage"): (
        rule("sagemaker:DescribeModelPackage", _param("ModelPackageName")),
    ),
    ("sagemaker", "UpdateModelPackage"): (rule("sagemaker:UpdateModelPackage", _param("ModelPackageArn")),),
    # Autoscaling of the endpoint's variant.
    ("application-autoscaling", "RegisterScalableTarget"): (
        _scaling("RegisterScalableTarget"),
        rule("iam:CreateServiceLinkedRole", _service_linked_role, _service_linked_role_name),
    ),
    ("application-autoscaling", "PutScalingPolicy"): (
        _scaling("PutScalingPolicy"),
        rule("cloudwatch:PutMetricAlarm", _alarms),
        rule("cloudwatch:DescribeAlarms", _alarms),
    ),
    ("application-autoscaling", "DeleteScalingPolicy"): (
        _scaling("DeleteScalingPolicy"),
        rule("cloudwatch:DeleteAlarms", _alarms),
    ),
    ("application-autoscaling", "DeregisterScalableTarget"): (_scaling("DeregisterScalableTarget"),),
    ("application-autoscaling", "DescribeScalableTargets"): (
        rule("application-autoscaling:DescribeScalableTargets"),
    ),
    ("application-autoscaling", "DescribeScalingPolicies"): (
        rule("application-autoscaling:DescribeScalingPolicies"),
    ),
    # The retraining schedule: creating or updating one passes its role to Scheduler.
    **{
        ("scheduler", f"{verb}Schedule"): (rule(f"scheduler:{verb}Schedule", _schedule),)
        for verb in ("Get", "Delete")
    },
    **{
        ("scheduler", f"{verb}Schedule"): (
            rule(f"scheduler:{verb}Schedule", _schedule),
            rule("iam:PassRole", _target_role, _passed_to_scheduler),
        )
        for verb in ("Create", "Update")
    },
    # The job's logs, while `--wait` follows it.
    ("logs", "DescribeLogStreams"): (rule("logs:DescribeLogStreams", _log_group),),
    ("logs", "GetLogEvents"): (rule("logs:GetLogEvents", _log_stream),),
    # ModelTrainer asks whether the role may write to the staging bucket (a denial only logs).
    ("iam", "SimulatePrincipalPolicy"): (rule("iam:SimulatePrincipalPolicy", _param("PolicySourceArn")),),
    # What `doctor` checks: identity (no permission needed), the role, AWS's image registry, quotas.
    ("sts", "GetCallerIdentity"): (),
    ("iam", "GetRole"): (
        rule("iam:GetRole", lambda w: [f"arn:aws:iam::{w.account}:role/{w.params['RoleName']}"]),
    ),
    ("ecr", "DescribeImages"): (rule("ecr:DescribeImages", _ecr_repository),),
    ("service-quotas", "ListServiceQuotas"): (rule("servicequotas:ListServiceQuotas"),),
    ("service-quotas", "ListAWSDefaultServiceQuotas"): (rule("servicequotas:ListAWSDefaultServiceQuotas"),),
}
