"""`deploy pipeline schedule` against in-process moto (which implements EventBridge Scheduler), and the
cron checks that run before any request."""

from __future__ import annotations

import json

import boto3
import pytest
from deploy_helpers import ACCOUNT, PROJECT, REGION, Recorder
from ncf.errors import NcfError

from deploy import schedule
from deploy.cli import main

pytest_plugins = ["deploy_fixtures"]

SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ncf-test-scheduler"
NAME = f"{PROJECT}-retrain"


@pytest.fixture
def run(moto_aws: None, recorder: Recorder, capsys: pytest.CaptureFixture[str]):
    def call(*argv: str) -> tuple[int, str, str]:
        with recorder.recording():
            status = main(["pipeline", "schedule", *argv], session_factory=recorder)
        out, err = capsys.readouterr()
        return status, out, err

    return call


def test_creates_then_updates_the_schedule_that_starts_the_pipeline(run, recorder: Recorder) -> None:
    status, out, err = run("--cron", "cron(0 3 * * ? *)", "--schedule-role-arn", SCHEDULER_ROLE)
    assert status == 0, err
    assert out.splitlines()[0] == f"schedule {NAME} created: cron(0 3 * * ? *) (UTC)"
    scheduler = boto3.client("scheduler", region_name=REGION)
    stored = scheduler.get_schedule(Name=NAME)
    assert stored["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert stored["Target"]["Arn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{NAME}"
    assert stored["Target"]["RoleArn"] == SCHEDULER_ROLE
    assert stored["FlexibleTimeWindow"] == {"Mode": "OFF"}

    status, out, err = run(
        "--cron",
        "30 2 ? * MON-FRI *",
        "--timezone",
        "Europe/Paris",
        "--parameter",
        "Epochs=1",
        "--schedule-role-arn",
        SCHEDULER_ROLE,
        "--json",
    )
    assert status == 0, err
    assert json.loads(out)["action"] == "updated"
    update = recorder.only("UpdateSchedule")
    assert update["ScheduleExpression"] == "cron(30 2 ? * MON-FRI *)"
    assert update["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert update["Target"]["SageMakerPipelineParameters"] == {
        "PipelineParameterList": [{"Name": "Epochs", "Value": "1"}]
    }
    assert scheduler.get_schedule(Name=NAME)["ScheduleExpressionTimezone"] == "Europe/Paris"


def test_delete_removes_it_and_a_second_delete_says_absent(run) -> None:
    assert run("--cron", "cron(0 3 * * ? *)", "--schedule-role-arn", SCHEDULER_ROLE)[0] == 0
    status, out, _ = run("--delete")
    assert (status, out.strip()) == (0, f"schedule {NAME}: deleted")
    assert boto3.client("scheduler", region_name=REGION).list_schedules()["Schedules"] == []
    assert run("--delete")[1].strip() == f"schedule {NAME}: absent"


def test_the_role_is_required(run) -> None:
    status, _, err = run("--cron", "cron(0 3 * * ? *)")
    assert status == 2 and err.startswith("error: no schedule_role_arn configured")


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * * *", "six fields, got 5"),
        ("cron(0 3 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 3 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(61 3 * * ? *)", "minutes must be between 0 and 59, got 61"),
        ("cron(0 24 * * ? *)", "hours must be between 0 and 23, got 24"),
        ("cron(0 3 * 13 ? *)", "month must be between 1 and 12, got 13"),
        ("cron(0/0 3 * * ? *)", "minutes must be between 0 and 59, got 0"),
        ("cron(0 3 * * ? 1900)", "year must be between 1970 and 2199, got 1900"),
        ("cron(0 3 $ * ? *)", "day-of-month '$' has characters Scheduler refuses: $"),
    ],
)
def test_bad_cron_expressions_are_refused_before_any_request(
    run, recorder: Recorder, cron: str, message: str
) -> None:
    status, _, err = run("--cron", cron, "--schedule-role-arn", SCHEDULER_ROLE)
    assert status == 2 and message in err, err
    assert not recorder.calls


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("cron(0/15 * * * ? *)", "cron(0/15 * * * ? *)"),
        ("0 12 ? * 2#1 *", "cron(0 12 ? * 2#1 *)"),
        ("cron(0 8 L * ? 2027)", "cron(0 8 L * ? 2027)"),
        ("cron(0 18 ? * MON-FRI *)", "cron(0 18 ? * MON-FRI *)"),
    ],
)
def test_scheduler_cron_forms_are_accepted(cron: str, expected: str) -> None:
    assert schedule.cron_expression(cron) == expected


def test_a_pipeline_parameter_name_is_checked_against_the_api() -> None:
    with pytest.raises(NcfError, match=r"--parameter bad name: name must match"):
        schedule.pipeline_parameters({"bad name": "1"})


def test_an_unknown_time_zone_is_refused_before_any_request(run, recorder: Recorder) -> None:
    status, _, err = run(
        "--cron", "cron(0 3 * * ? *)", "--timezone", "Mars/Olympus", "--schedule-role-arn", SCHEDULER_ROLE
    )
    assert status == 2 and "schedule_timezone: expected an IANA time zone" in err
    assert not recorder.requests("CreateSchedule")
