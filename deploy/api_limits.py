"""Settings checked against the AWS APIs' own limits, read from botocore's service models.

Every setting that ends up in an API request, and every value the CLI derives from settings (the
names it generates, the tags, the S3 URIs, the hyperparameter and environment maps), is listed in
`LIMITS` with the request member it becomes. `check` reads that member's constraints from botocore's
service model when it runs, so a botocore upgrade moves the limits with the API:
- numbers: the model's `min`/`max` (a range);
- strings: `min`/`max` (a length), `enum`, `pattern` (the whole value must match it);
- lists and maps: `min`/`max` (a number of entries).
Where the model says nothing (no maximum run time, no autoscaling bounds), the project's own rules in
deploy/config.py are all there is. The models are loaded once, on first use, with botocore's loader
(about 0.1 s; the SageMaker SDK is not imported).

Member paths: `A.B` walks structure members, `List[]` a list's items, `Map{key}` / `Map{value}` a
map's keys / values; a bare list or map is checked for its number of entries.

Required members are botocore's own client-side check of every request (a ParamValidationError
before anything is sent); the one a setting could lose on the way, a 0 InitialSamplingPercentage
that sagemaker-core drops, is put back in deploy/hosting.py.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.model import ServiceModel, Shape
from ncf.errors import NcfError

from deploy.aws import project_tags, unique_name
from deploy.upload import CHANNELS, OPTIONAL_CHANNELS

if TYPE_CHECKING:
    from deploy.config import Settings

SAGEMAKER = "sagemaker"
AUTOSCALING = "application-autoscaling"
TRAIN = "CreateTrainingJob"
TUNE = "CreateHyperParameterTuningJob"
MODEL = "CreateModel"
CONFIG = "CreateEndpointConfig"
TRANSFORM = "CreateTransformJob"
POLICY = "PutScalingPolicy"
SCHEDULER = "scheduler"
SCHEDULE = "CreateSchedule"
PROCESS = "CreateProcessingJob"
PACKAGE = "CreateModelPackage"
RANGES = "HyperParameterTuningJobConfig.ParameterRanges"
#: What a tuning trial's hyperparameters hold besides the configured ones: the SDK's tuner adds the
#: first two (sagemaker/train/tuner.py), SageMaker the third to each trial.
TRIAL_HYPERPARAMETERS = ("sagemaker_program", "sagemaker_submit_directory", "_tuning_objective_metric")
#: Enums this short are listed in full in an error message.
_LISTED_ENUM = 8


@dataclass(frozen=True)
class Limit:
    """One setting (or a value derived from settings) and the request member it becomes."""

    setting: str  # the setting(s) an error names
    service: str  # botocore's service name
    operation: str
    member: str  # path in the operation's input shape (see the module docstring)
    values: Callable[[Settings], Iterable[Any]]  # what the CLI puts in that member
    what: str = ""  # names a derived value in an error ("the tuning job name")

    @property
    def api(self) -> str:
        """`service Operation Member.Path`, as error messages cite it."""
        return f"{self.service} {self.operation} {self.member}"


def check(settings: Settings) -> None:
    """Refuse the first value the API would refuse, naming its setting, the limit and the API member.

    Raises:
        NcfError: `setting <name>: [<what>] must be <limit>, got <value> (<service> <Operation> <Member>)`.
    """
    for limit in LIMITS:
        shape = member_shape(limit.service, limit.operation, limit.member)
        for value in limit.values(settings):
            problem = violation(shape, value)
            if problem:
                what = f"{limit.what} " if limit.what else ""
                raise NcfError(f"setting {limit.setting}: {what}{problem} ({limit.api})")


_STEPS = {"[]": ("list", "member"), "{key}": ("map", "key"), "{value}": ("map", "value")}


@functools.cache
def _service_model(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


@functools.cache
def member_shape(service: str, operation: str, member: str) -> Shape:
    """The model's shape of `member` in `operation`'s request (cached: each model loads once).

    Raises:
        KeyError: the model has no such member, or the path walks a list or map the wrong way.
    """
    shape = _service_model(service).operation_model(operation).input_shape
    for part in member.split("."):
        parsed = re.fullmatch(r"(\w+)(\[\]|\{key\}|\{value\})?", part)
        if parsed is None or shape.type_name != "structure" or parsed[1] not in shape.members:
            raise KeyError(f"{service} {operation} has no member {member} (at {part!r})")
        shape = shape.members[parsed[1]]
        if parsed[2]:
            kind, attribute = _STEPS[parsed[2]]
            if shape.type_name != kind:
                raise KeyError(
                    f"{service} {operation} {member}: {parsed[1]} is a {shape.type_name}, not a {kind}"
                )
            shape = getattr(shape, attribute)
    return shape


def violation(shape: Shape, value: Any) -> str | None:
    """How `value` breaks `shape`'s constraints (`must be ..., got ...`), or None when it does not."""
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if shape.type_name in ("list", "map"):
        return _outside(len(value), low or None, high, "must have {} entries", str(len(value)))
    if shape.type_name == "string":
        text = str(value)
        return (
            _outside(len(text), low or None, high, "must be {} characters long", f"{len(text)} ({text!r})")
            or _off_enum(getattr(shape, "enum", None) or [], text)
            or _mismatch(shape.metadata.get("pattern"), text)
        )
    if shape.type_name in ("integer", "long", "float", "double"):
        return _outside(value, low, high, "must be {}", str(value))
    return None


def _outside(amount: float, low: float | None, high: float | None, rule: str, shown: str) -> str | None:
    """`rule` with the bounds filled in and the value shown, when `amount` is outside [low, high]."""
    if (low is None or amount >= low) and (high is None or amount <= high):
        return None
    if low is not None and high is not None:
        bounds = f"between {low} and {high}"
    else:
        bounds = f"at least {low}" if low is not None else f"at most {high}"
    return f"{rule.format(bounds)}, got {shown}"


def _off_enum(allowed: list[str], value: str) -> str | None:
    if not allowed or value in allowed:
        return None
    if len(allowed) <= _LISTED_ENUM:
        return f"must be one of {', '.join(allowed)}, got {value!r}"
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"must be one of the {len(allowed)} values the API accepts, got {value!r}{hint}"


def _mismatch(pattern: str | None, value: str) -> str | None:
    compiled = python_pattern(pattern, value) if pattern else None
    if compiled is None or compiled.fullmatch(value):
        return None
    return f"must match the API's pattern {pattern}, got {value!r}"


_UNICODE_CLASS = re.compile(r"\\p\{(\w+)\}")


def python_pattern(pattern: str, value: str) -> re.Pattern[str] | None:
    """The model's (Java-syntax) `pattern` as a Python regex for checking `value`, or None when Python
    cannot express it (then only the lengths and the enum are checked).

    Python's `re` has no Unicode classes: each `\\p{X}` (a general category such as L, N, Z or Lu)
    becomes the characters of `value` that belong to it, which decides the match for `value` exactly.
    """
    try:
        return re.compile(_UNICODE_CLASS.sub(lambda m: _class_of(m, pattern, value), pattern))
    except re.error:
        return None


def _class_of(match: re.Match[str], pattern: str, value: str) -> str:
    category = match[1]
    if not re.fullmatch(r"[A-Z][a-z]?", category):
        raise re.error(f"unsupported Unicode class {category}")
    chars = "".join(re.escape(c) for c in sorted(set(value)) if unicodedata.category(c).startswith(category))
    if _inside_brackets(pattern[: match.start()]):
        return chars
    return f"[{chars}]" if chars else "(?!)"


def _inside_brackets(before: str) -> bool:
    """Whether a pattern position, preceded by `before`, is inside a `[...]` character class."""
    inside = False
    for escaped, char in re.findall(r"(\\.)|(.)", before, flags=re.DOTALL):
        if not escaped and char in "[]":
            inside = char == "["
    return inside


# --- what the CLI sends, derived from the settings ----------------------------------------------


def _setting(name: str) -> Callable[[Settings], list[Any]]:
    return lambda s: [getattr(s, name)]


def _if_set(name: str) -> Callable[[Settings], list[Any]]:
    return lambda s: [getattr(s, name)] if getattr(s, name) else []


def _uri(build: Callable[[Settings], str]) -> Callable[[Settings], list[str]]:
    """An S3 URI built from the settings (none while no bucket is configured: commands then refuse)."""
    return lambda s: [build(s)] if s.bucket else []


def _data_uris(settings: Settings) -> list[str]:
    return [settings.data_uri(c) for c in CHANNELS + OPTIONAL_CHANNELS] if settings.bucket else []


def training_job_name(settings: Settings) -> str:
    """The name the SDK gives a `train` job: its base name plus a second-resolution timestamp
    (`sagemaker.train.utils._get_unique_name`; tests compare the two)."""
    return f"{settings.project}-train-{datetime.now(UTC):%Y%m%d%H%M%S}"


def trial_hyperparameters(settings: Settings) -> dict[str, str]:
    """The hyperparameters as strings, the way the SDK sends them, with a tuning trial's extra entries."""
    sent = {k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.hyperparameters.items()}
    return {**dict.fromkeys(TRIAL_HYPERPARAMETERS, ""), **sent}


def _ranges(settings: Settings, *types: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, spec) for name, spec in settings.tune_ranges.items() if spec["type"] in types]


def _batch_input_uri(settings: Settings) -> list[str]:
    """The transform job's input: `batch_input` when it is in S3, else where `batch` uploads the file."""
    source = settings.batch_input
    if source.startswith("s3://"):
        return [source]
    if not source or not settings.bucket:
        return []
    return [settings.s3_uri("batch", "input", unique_name(settings, "batch"), Path(source).name)]


def _direct(*pairs: tuple[str, str, str, str]) -> list[Limit]:
    """Limits of settings that are themselves the member's value."""
    return [
        Limit(name, service, operation, member, _setting(name)) for name, service, operation, member in pairs
    ]


_DIRECT = _direct(
    ("train_instance_type", SAGEMAKER, TRAIN, "ResourceConfig.InstanceType"),
    ("train_instance_count", SAGEMAKER, TRAIN, "ResourceConfig.InstanceCount"),
    ("train_volume_gb", SAGEMAKER, TRAIN, "ResourceConfig.VolumeSizeInGB"),
    ("max_run_seconds", SAGEMAKER, TRAIN, "StoppingCondition.MaxRuntimeInSeconds"),
    ("max_wait_seconds", SAGEMAKER, TRAIN, "StoppingCondition.MaxWaitTimeInSeconds"),
    ("deploy_instance_type", SAGEMAKER, CONFIG, "ProductionVariants[].InstanceType"),
    ("deploy_instance_count", SAGEMAKER, CONFIG, "ProductionVariants[].InitialInstanceCount"),
    (
        "serverless_memory_mb",
        SAGEMAKER,
        CONFIG,
        "ProductionVariants[].ServerlessConfig.MemorySizeInMB",
    ),
    (
        "serverless_max_concurrency",
        SAGEMAKER,
        CONFIG,
        "ProductionVariants[].ServerlessConfig.MaxConcurrency",
    ),
    (
        "data_capture_percent",
        SAGEMAKER,
        CONFIG,
        "DataCaptureConfig.InitialSamplingPercentage",
    ),
    (
        "bluegreen_wait_seconds",
        SAGEMAKER,
        "UpdateEndpoint",
        "DeploymentConfig.BlueGreenUpdatePolicy.TerminationWaitInSeconds",
    ),
    ("autoscaling_min_instances", AUTOSCALING, "RegisterScalableTarget", "MinCapacity"),
    ("autoscaling_max_instances", AUTOSCALING, "RegisterScalableTarget", "MaxCapacity"),
    (
        "autoscaling_target_invocations",
        AUTOSCALING,
        POLICY,
        "TargetTrackingScalingPolicyConfiguration.TargetValue",
    ),
    (
        "autoscaling_scale_in_cooldown",
        AUTOSCALING,
        POLICY,
        "TargetTrackingScalingPolicyConfiguration.ScaleInCooldown",
    ),
    (
        "autoscaling_scale_out_cooldown",
        AUTOSCALING,
        POLICY,
        "TargetTrackingScalingPolicyConfiguration.ScaleOutCooldown",
    ),
    ("candidate_share", SAGEMAKER, CONFIG, "ProductionVariants[].InitialVariantWeight"),
    ("schedule_timezone", SCHEDULER, SCHEDULE, "ScheduleExpressionTimezone"),
    ("batch_instance_type", SAGEMAKER, TRANSFORM, "TransformResources.InstanceType"),
    ("batch_instance_count", SAGEMAKER, TRANSFORM, "TransformResources.InstanceCount"),
    ("batch_max_payload_mb", SAGEMAKER, TRANSFORM, "MaxPayloadInMB"),
    (
        "batch_invocation_timeout_seconds",
        SAGEMAKER,
        TRANSFORM,
        "ModelClientConfig.InvocationsTimeoutInSeconds",
    ),
    ("processing_instance_type", SAGEMAKER, PROCESS, "ProcessingResources.ClusterConfig.InstanceType"),
    ("approval_status", SAGEMAKER, PACKAGE, "ModelApprovalStatus"),
    ("tune_strategy", SAGEMAKER, TUNE, "HyperParameterTuningJobConfig.Strategy"),
    (
        "tune_max_jobs",
        SAGEMAKER,
        TUNE,
        "HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs",
    ),
    (
        "tune_max_parallel_jobs",
        SAGEMAKER,
        TUNE,
        "HyperParameterTuningJobConfig.ResourceLimits.MaxParallelTrainingJobs",
    ),
)

_NAMES = [
    Limit(
        "pipeline_name",
        SAGEMAKER,
        "CreatePipeline",
        "PipelineName",
        lambda s: [s.pipeline],
        "the pipeline name",
    ),
    Limit(
        "model_package_group",
        SAGEMAKER,
        "CreateModelPackageGroup",
        "ModelPackageGroupName",
        lambda s: [s.package_group],
        "the model package group name",
    ),
    Limit("role_arn", SAGEMAKER, TRAIN, "RoleArn", _if_set("role_arn")),
    Limit(
        "training_image", SAGEMAKER, TRAIN, "AlgorithmSpecification.TrainingImage", _if_set("training_image")
    ),
    Limit("inference_image", SAGEMAKER, MODEL, "PrimaryContainer.Image", _if_set("inference_image")),
    Limit("schedule_role_arn", SCHEDULER, SCHEDULE, "Target.RoleArn", _if_set("schedule_role_arn")),
    Limit(
        "project",
        SCHEDULER,
        SCHEDULE,
        "Name",
        lambda s: [f"{s.project}-retrain"],
        "the schedule name",
    ),
    Limit(
        "endpoint_name",
        SAGEMAKER,
        "CreateEndpoint",
        "EndpointName",
        lambda s: [s.endpoint],
        "the endpoint name",
    ),
    Limit(
        "project",
        SAGEMAKER,
        TRAIN,
        "TrainingJobName",
        lambda s: [training_job_name(s)],
        "the training job name",
    ),
    Limit(
        "project",
        SAGEMAKER,
        TUNE,
        "HyperParameterTuningJobName",
        lambda s: [unique_name(s, "tune")],
        "the tuning job name",
    ),
    Limit(
        "project",
        SAGEMAKER,
        MODEL,
        "ModelName",
        lambda s: [unique_name(s, "model")],
        "the model name",
    ),
    Limit(
        "project",
        SAGEMAKER,
        CONFIG,
        "EndpointConfigName",
        lambda s: [unique_name(s, "config")],
        "the endpoint config name",
    ),
    Limit(
        "project",
        SAGEMAKER,
        TRANSFORM,
        "TransformJobName",
        lambda s: [unique_name(s, "batch")],
        "the transform job name",
    ),
]

_TABLES = [
    Limit("tags", SAGEMAKER, TRAIN, "Tags", lambda s: [project_tags(s)], "the tags (with the project tag)"),
    Limit("tags", SAGEMAKER, TRAIN, "Tags[].Key", lambda s: [t["Key"] for t in project_tags(s)], "a tag key"),
    Limit(
        "project, tags",
        SAGEMAKER,
        TRAIN,
        "Tags[].Value",
        lambda s: [t["Value"] for t in project_tags(s)],
        "a tag value",
    ),
    Limit(
        "hyperparameters",
        SAGEMAKER,
        TRAIN,
        "HyperParameters",
        lambda s: [trial_hyperparameters(s)],
        f"a tuning trial's hyperparameters (these plus {', '.join(TRIAL_HYPERPARAMETERS)})",
    ),
    Limit(
        "hyperparameters",
        SAGEMAKER,
        TRAIN,
        "HyperParameters{key}",
        lambda s: list(s.hyperparameters),
        "a name",
    ),
    Limit(
        "hyperparameters",
        SAGEMAKER,
        TRAIN,
        "HyperParameters{value}",
        lambda s: [v for k, v in trial_hyperparameters(s).items() if k in s.hyperparameters],
        "a value",
    ),
    Limit("serving_env", SAGEMAKER, MODEL, "PrimaryContainer.Environment", lambda s: [s.serving_env]),
    Limit(
        "serving_env",
        SAGEMAKER,
        MODEL,
        "PrimaryContainer.Environment{key}",
        lambda s: list(s.serving_env),
        "a name",
    ),
    Limit(
        "serving_env",
        SAGEMAKER,
        MODEL,
        "PrimaryContainer.Environment{value}",
        lambda s: list(s.serving_env.values()),
        "a value",
    ),
]

_TUNE_RANGES = [
    *(
        Limit(
            "tune_ranges",
            SAGEMAKER,
            TUNE,
            f"{RANGES}.{kind.capitalize()}ParameterRanges",
            lambda s, kind=kind: [_ranges(s, kind)],
            f"the {kind} ranges",
        )
        for kind in ("continuous", "integer", "categorical")
    ),
    Limit(
        "tune_ranges",
        SAGEMAKER,
        TUNE,
        f"{RANGES}.IntegerParameterRanges[].Name",
        lambda s: list(s.tune_ranges),
        "a range's name",
    ),
    Limit(
        "tune_ranges",
        SAGEMAKER,
        TUNE,
        f"{RANGES}.IntegerParameterRanges[].ScalingType",
        lambda s: [spec.get("scaling", "Auto") for _, spec in _ranges(s, "continuous", "integer")],
        "a scaling",
    ),
    Limit(
        "tune_ranges",
        SAGEMAKER,
        TUNE,
        f"{RANGES}.CategoricalParameterRanges[].Values",
        lambda s: [spec["values"] for _, spec in _ranges(s, "categorical")],
        "a categorical range's values",
    ),
    Limit(
        "tune_ranges",
        SAGEMAKER,
        TUNE,
        f"{RANGES}.CategoricalParameterRanges[].Values[]",
        lambda s: [str(v) for _, spec in _ranges(s, "categorical") for v in spec["values"]],
        "a categorical value",
    ),
]

_S3_URIS = [
    Limit(
        "raw_data_uri, bucket, prefix, dataset",
        SAGEMAKER,
        PROCESS,
        "ProcessingInputs[].S3Input.S3Uri",
        lambda s: [s.raw_data] if s.bucket or s.raw_data_uri else [],
        "the pipeline's raw data URI",
    ),
    Limit(
        "bucket, prefix, dataset",
        SAGEMAKER,
        TRAIN,
        "InputDataConfig[].DataSource.S3DataSource.S3Uri",
        _data_uris,
        "a data channel's URI",
    ),
    Limit(
        "bucket, prefix, project",
        SAGEMAKER,
        TRAIN,
        "CheckpointConfig.S3Uri",
        _uri(lambda s: s.s3_uri(f"{s.project}-train", training_job_name(s), "checkpoints")),
        "the checkpoint URI",
    ),
    Limit(
        "bucket, prefix, project",
        SAGEMAKER,
        MODEL,
        "PrimaryContainer.ModelDataUrl",
        _uri(lambda s: s.s3_uri("models", training_job_name(s), "output", "model.tar.gz")),
        "the model artifact's URI",
    ),
    Limit(
        "bucket, prefix, endpoint_name",
        SAGEMAKER,
        CONFIG,
        "DataCaptureConfig.DestinationS3Uri",
        _uri(lambda s: s.s3_uri("data-capture", s.endpoint)),
        "the data capture URI",
    ),
    Limit(
        "bucket, prefix, project",
        SAGEMAKER,
        TRANSFORM,
        "TransformOutput.S3OutputPath",
        _uri(lambda s: s.s3_uri("batch", "output", unique_name(s, "batch")) + "/"),
        "the batch output URI",
    ),
    Limit(
        "batch_input",
        SAGEMAKER,
        TRANSFORM,
        "TransformInput.DataSource.S3DataSource.S3Uri",
        _batch_input_uri,
        "the batch input URI",
    ),
]

#: Every value a request carries that comes from the settings, with the API member it becomes.
LIMITS: tuple[Limit, ...] = (*_DIRECT, *_NAMES, *_TABLES, *_TUNE_RANGES, *_S3_URIS)
