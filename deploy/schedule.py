"""`pipeline schedule`: an EventBridge Scheduler schedule that starts the retraining pipeline.

- One schedule per project, `<project>-retrain` in the `default` group, targets the SageMaker pipeline
  `<project>-retrain` with Scheduler's templated SageMaker target (`SageMakerPipelineParameters`: the
  schedule calls StartPipelineExecution with those parameters; none given: the pipeline's defaults).
- Scheduler assumes `schedule_role_arn` to start it; `deploy iam-policy` prints that role's trust policy
  (scheduler.amazonaws.com, this account only) and its one permission (StartPipelineExecution on this
  pipeline), and the operator's right to pass it to Scheduler.
- `--cron` creates the schedule, or updates it when it exists; `--delete` removes it. The expression is
  checked before any request: Scheduler's `cron(minutes hours day-of-month month day-of-week year)`, six
  fields, `?` in exactly one of the two day fields, each value in its field's range, and the API's
  length limit (deploy/api_limits.py).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError
from ncf.errors import NcfError

from deploy import api_limits
from deploy.config import Settings

SERVICE = "scheduler"
GROUP = "default"
#: (field name, lowest, highest, extra characters allowed besides digits , - * /)
_FIELDS = (
    ("minutes", 0, 59, ""),
    ("hours", 0, 23, ""),
    ("day-of-month", 1, 31, "?LW"),
    ("month", 1, 12, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("day-of-week", 1, 7, "?L#ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ("year", 1970, 2199, ""),
)


@dataclass(frozen=True)
class ScheduleReport:
    """What `pipeline schedule` did."""

    schedule: str
    action: str  # "created", "updated", "deleted" or "absent"
    expression: str
    timezone: str
    pipeline: str


def schedule_name(settings: Settings) -> str:
    """The project's one schedule."""
    return f"{settings.project}-retrain"


def pipeline_arn(settings: Settings, region: str, account: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:pipeline/{settings.pipeline}"


def schedule_arn(settings: Settings, region: str, account: str) -> str:
    return f"arn:aws:scheduler:{region}:{account}:schedule/{GROUP}/{schedule_name(settings)}"


def cron_expression(text: str) -> str:
    """`text` as Scheduler's `cron(...)` (six bare fields are wrapped); NcfError says what is wrong."""
    inner = re.fullmatch(r"\s*cron\((.*)\)\s*", text)
    fields = (inner[1] if inner else text).split()
    if len(fields) != len(_FIELDS):
        raise NcfError(
            f"--cron {text!r}: Scheduler wants cron(minutes hours day-of-month month day-of-week year), "
            f"six fields, got {len(fields)}"
        )
    for value, field in zip(fields, _FIELDS, strict=True):
        _check_field(text, value, *field)
    if (fields[2] == "?") == (fields[4] == "?"):
        raise NcfError(f"--cron {text!r}: exactly one of day-of-month and day-of-week must be '?'")
    expression = f"cron({' '.join(fields)})"
    shape = api_limits.member_shape(SERVICE, "CreateSchedule", "ScheduleExpression")
    problem = api_limits.violation(shape, expression)
    if problem:
        raise NcfError(f"--cron: {problem} (scheduler CreateSchedule ScheduleExpression)")
    return expression


def _check_field(text: str, value: str, name: str, low: int, high: int, letters: str) -> None:
    allowed = set("0123456789,-*/") | set(letters)
    bad = set(value.upper()) - allowed
    if bad:
        raise NcfError(
            f"--cron {text!r}: {name} {value!r} has characters Scheduler refuses: {''.join(sorted(bad))}"
        )
    steps = re.findall(r"/(\d+)", value)
    numbers = [int(n) for n in re.findall(r"\d+", re.sub(r"/\d+|#\d", "", value))]
    out = [n for n in numbers if not low <= n <= high] + [int(s) for s in steps if int(s) < 1]
    if out:
        raise NcfError(f"--cron {text!r}: {name} must be between {low} and {high}, got {out[0]}")


def pipeline_parameters(assignments: dict[str, str]) -> list[dict[str, str]]:
    """`SageMakerPipelineParameters.PipelineParameterList` for NAME=VALUE overrides, checked."""
    member = "Target.SageMakerPipelineParameters.PipelineParameterList[]"
    for name, value in assignments.items():
        for part, what in ((name, "Name"), (value, "Value")):
            shape = api_limits.member_shape(SERVICE, "CreateSchedule", f"{member}.{what}")
            problem = api_limits.violation(shape, part)
            if problem:
                raise NcfError(f"--parameter {name}: {what.lower()} {problem} (scheduler {member}.{what})")
    return [{"Name": name, "Value": value} for name, value in assignments.items()]


def check_timezone(name: str) -> str:
    """`name` when it is an IANA time zone (what ScheduleExpressionTimezone takes), else NcfError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise NcfError(
            f"setting schedule_timezone: expected an IANA time zone such as UTC or Europe/Paris, got {name!r}"
        ) from None
    return name


def _request(
    settings: Settings, region: str, expression: str, parameters: list[dict[str, str]]
) -> dict[str, Any]:
    account = settings.schedule_role_arn.split(":")[4]
    return {
        "Name": schedule_name(settings),
        "GroupName": GROUP,
        "ScheduleExpression": expression,
        "ScheduleExpressionTimezone": check_timezone(settings.schedule_timezone),
        "Description": f"starts the {settings.pipeline} pipeline of project {settings.project}",
        "State": "ENABLED",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": pipeline_arn(settings, region, account),
            "RoleArn": settings.schedule_role_arn,
            "SageMakerPipelineParameters": {"PipelineParameterList": parameters},
        },
    }


def upsert(
    settings: Settings, session: boto3.Session, cron: str, parameters: dict[str, str]
) -> ScheduleReport:
    """Create the schedule, or update it in place when it exists (same name, new expression/target)."""
    request = _request(settings, session.region_name, cron_expression(cron), pipeline_parameters(parameters))
    client = session.client(SERVICE)
    try:
        client.create_schedule(**request)
        action = "created"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConflictException":
            raise
        client.update_schedule(**request)
        action = "updated"
    return _report(settings, request, action)


def delete(settings: Settings, session: boto3.Session) -> ScheduleReport:
    """Delete the schedule; a schedule that does not exist is reported as absent."""
    client = session.client(SERVICE)
    try:
        client.delete_schedule(Name=schedule_name(settings), GroupName=GROUP)
        action = "deleted"
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        action = "absent"
    return ScheduleReport(schedule_name(settings), action, "", settings.schedule_timezone, settings.pipeline)


def _report(settings: Settings, request: dict[str, Any], action: str) -> ScheduleReport:
    return ScheduleReport(
        request["Name"],
        action,
        request["ScheduleExpression"],
        request["ScheduleExpressionTimezone"],
        settings.pipeline,
    )
