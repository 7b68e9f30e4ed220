"""deploy/api_limits.py: settings checked against the limits in botocore's own service models.

Each boundary below is read from the model too (min-1, min, max, max+1), so these tests follow a
botocore upgrade the way the validation does; what the project adds is `PROJECT_BOUNDS`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy_helpers import BUCKET, REGION, Recorder, write_model_archive
from ncf.errors import NcfError
from ncf.reporting import metric_regex

from deploy import api_limits
from deploy.api_limits import LIMITS, TRIAL_HYPERPARAMETERS, member_shape, python_pattern, violation
from deploy.cli import main
from deploy.config import FIELDS, PROJECT_BOUNDS, Settings, load_settings

pytest_plugins = ["deploy_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
#: Keeps cross-field rules out of the boundary walk (a 1-job tuning budget with 2 in parallel, ...).
BASE = {"bucket": BUCKET, "tune_max_parallel_jobs": "1"}
API_ERROR = "sagemaker"  # every API limit's message cites its service, operation and member


def shape_of(setting: str) -> tuple[api_limits.Limit, Any]:
    """The one table entry that carries `setting` itself, and its shape in the model."""
    (limit,) = [entry for entry in LIMITS if entry.setting == setting and not entry.what]
    return limit, member_shape(limit.service, limit.operation, limit.member)


def accepted(**overrides: Any) -> bool:
    """Whether `load_settings` accepts the overrides (on top of BASE); re-raises nothing else."""
    try:
        load_settings(overrides={**BASE, **overrides}, environ={})
    except NcfError:
        return False
    return True


def refusal(**overrides: Any) -> str:
    with pytest.raises(NcfError) as caught:
        load_settings(overrides={**BASE, **overrides}, environ={})
    return str(caught.value)


def api_refusal(**overrides: Any) -> str:
    """What the API-limit check alone says of the tables in `overrides` ('' when it accepts them): the
    counts and lengths the API allows are far beyond the names train.py has, so made-up names test them."""
    settings = dataclasses.replace(load_settings(overrides=BASE, environ={}), **overrides)
    try:
        api_limits.check(settings)
    except NcfError as error:
        return str(error)
    return ""


def number_cases() -> list[tuple[str, int, bool]]:
    """(setting, value, accepted?) at every model bound of every number setting in the table."""
    cases = []
    for limit in LIMITS:
        if limit.what or limit.setting not in FIELDS or FIELDS[limit.setting].type != "int":
            continue
        shape = member_shape(limit.service, limit.operation, limit.member)
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        own_low, own_high = PROJECT_BOUNDS.get(limit.setting, (None, None))
        for bound, step in ((low, -1), (low, 0), (high, 0), (high, 1)):
            if bound is not None:
                value = bound + step
                inside_api = (low is None or value >= low) and (high is None or value <= high)
                inside_own = (own_low is None or value >= own_low) and (own_high is None or value <= own_high)
                cases.append((limit.setting, value, inside_api and inside_own))
    return cases


def test_number_cases_cover_the_settings_the_api_bounds() -> None:
    walked = {setting for setting, _, _ in number_cases()}
    assert {
        "bluegreen_wait_seconds",
        "data_capture_percent",
        "serverless_memory_mb",
        "serverless_max_concurrency",
        "batch_invocation_timeout_seconds",
        "max_run_seconds",
        "deploy_instance_count",
        "tune_max_jobs",
        "train_volume_gb",
    } <= walked


@pytest.mark.parametrize(("setting", "value", "ok"), number_cases())
def test_number_settings_at_the_models_bounds(setting: str, value: int, ok: bool) -> None:
    if ok:
        assert accepted(**{setting: str(value)})
    else:
        message = refusal(**{setting: str(value)})
        assert message.startswith(f"setting {setting}: must be ") and f"got {value}" in message


def test_bluegreen_wait_is_capped_by_termination_wait_in_seconds() -> None:
    assert accepted(bluegreen_wait_seconds="3600")
    assert refusal(bluegreen_wait_seconds="3601") == (
        "setting bluegreen_wait_seconds: must be between 0 and 3600, got 3601 (sagemaker UpdateEndpoint"
        " DeploymentConfig.BlueGreenUpdatePolicy.TerminationWaitInSeconds)"
    )


ENUM_SETTINGS = ["train_instance_type", "deploy_instance_type", "batch_instance_type", "tune_strategy"]


@pytest.mark.parametrize("setting", ENUM_SETTINGS)
def test_enum_settings_take_the_models_values_only(setting: str) -> None:
    limit, shape = shape_of(setting)
    assert all(accepted(**{setting: value}) for value in shape.enum[:3])
    message = refusal(**{setting: "ml.nope.xlarge"})
    assert message.startswith(f"setting {setting}: must be one of ") and "'ml.nope.xlarge'" in message
    assert message.endswith(f"({limit.api})")


@pytest.mark.parametrize(
    ("setting", "other"),
    [("train_instance_type", "deploy_instance_type"), ("batch_instance_type", "deploy_instance_type")],
)
def test_instance_types_are_checked_against_their_own_operation(setting: str, other: str) -> None:
    mine, theirs = set(shape_of(setting)[1].enum), set(shape_of(other)[1].enum)
    serving_only = sorted(theirs - mine)[0]
    assert accepted(**{other: serving_only})
    assert f"got {serving_only!r}" in refusal(**{setting: serving_only})


def test_typos_in_an_instance_type_get_a_suggestion() -> None:
    assert "(did you mean 'ml.m5.xlarge'?)" in refusal(train_instance_type="ml.m5.xlarg")


def test_project_length_follows_the_tuning_job_name_limit() -> None:
    limit = next(entry for entry in LIMITS if entry.member == "HyperParameterTuningJobName")
    longest = member_shape(limit.service, limit.operation, limit.member).metadata["max"]
    stamp = len(api_limits.unique_name(Settings(project="x"), "tune")) - len("x-tune-")
    fits = longest - len("-tune-") - stamp
    assert accepted(project="p" * fits)
    message = refusal(project="p" * (fits + 1))
    assert message.startswith(
        f"setting project: the tuning job name must be between 1 and {longest} characters"
    )
    assert message.endswith("(sagemaker CreateHyperParameterTuningJob HyperParameterTuningJobName)")


def test_training_job_name_is_the_one_the_sdk_makes() -> None:
    from sagemaker.train.utils import _get_unique_name

    settings = Settings(project="shop")
    ours, sdks = api_limits.training_job_name(settings), _get_unique_name("shop-train")
    assert len(ours) == len(sdks) and ours[:-4] == sdks[:-4]  # seconds may tick between the two


def test_endpoint_name_length_and_pattern() -> None:
    assert accepted(endpoint_name="e" * 63)
    assert "must be at most 63 characters long, got 64" in refusal(endpoint_name="e" * 64)
    assert "must match the API's pattern" in refusal(endpoint_name="shop_endpoint")


def test_role_arn_pattern_comes_from_the_model() -> None:
    assert accepted(role_arn="arn:aws:iam::123456789012:role/path/ncf-execution")
    assert "RoleArn" in refusal(role_arn="arn:aws:iam::1234:role/too-short-account")


def test_tags_count_keys_and_values() -> None:
    (limit,) = [entry for entry in LIMITS if entry.member == "Tags"]
    most = member_shape(limit.service, limit.operation, limit.member).metadata["max"]
    extra = {f"k{i}": "v" for i in range(most - 1)}  # plus the project tag
    assert accepted(tags=extra)
    too_many = refusal(tags={**extra, "one": "more"})
    assert "the tags (with the project tag) must have at most 50 entries, got 51" in too_many
    assert accepted(tags={"k" * 128: "v" * 256})
    assert "a tag key must be between 1 and 128 characters long" in refusal(tags={"k" * 129: "v"})
    assert "a tag value must be at most 256 characters long" in refusal(tags={"k": "v" * 257})
    assert accepted(tags={"team": "Équipe recsys: ünïcode 42"})  # \p{L}, \p{Z} and \p{N}
    assert "a tag value must match the API's pattern" in refusal(tags={"team": "a|b"})


def test_hyperparameters_leave_room_for_a_tuning_trials_own() -> None:
    (limit,) = [entry for entry in LIMITS if entry.member == "HyperParameters"]
    most = member_shape(limit.service, limit.operation, limit.member).metadata["max"]
    room = {f"h{i}": i for i in range(most - len(TRIAL_HYPERPARAMETERS))}
    assert api_refusal(hyperparameters=room) == ""
    assert f"must have at most {most} entries, got {most + 1}" in api_refusal(
        hyperparameters={**room, "one": 1}
    )
    assert api_refusal(hyperparameters={"h" * 256: "v" * 2500}) == ""
    assert "a name must be at most 256" in api_refusal(hyperparameters={"h" * 257: "v"})
    assert "a value must be at most 2500" in refusal(hyperparameters={"seed": "v" * 2501})


def test_serving_env_entries_names_and_values() -> None:
    assert accepted(serving_env={f"V{i}": "x" for i in range(100)})
    assert "must have at most 100 entries, got 101" in refusal(serving_env={f"V{i}": "x" for i in range(101)})
    assert "a name must match the API's pattern" in refusal(serving_env={"1BAD": "x"})
    assert accepted(serving_env={"NCF_MAX_K": "v" * 1024})
    assert "a value must be at most 1024" in refusal(serving_env={"NCF_MAX_K": "v" * 1025})


def test_tune_ranges_counts_values_and_scaling() -> None:
    categorical = [name for name, spec in Settings().tune_ranges.items() if spec["type"] == "categorical"]
    more = {f"c{i}": {"type": "categorical", "values": ["1"]} for i in range(30 - len(categorical))}
    defaults = Settings().tune_ranges
    assert api_refusal(tune_ranges={**defaults, **more}) == ""
    assert "the categorical ranges must have at most 30 entries, got 31" in api_refusal(
        tune_ranges={**defaults, **more, "one": {"type": "categorical", "values": ["1"]}}
    )
    assert accepted(tune_ranges={"seed": {"type": "categorical", "values": [str(i) for i in range(30)]}})
    many = {"seed": {"type": "categorical", "values": [str(i) for i in range(31)]}}
    assert "a categorical range's values must have between 1 and 30 entries, got 31" in refusal(
        tune_ranges=many
    )
    too_long = {"seed": {"type": "categorical", "values": ["v" * 257]}}
    assert "must be at most 256" in refusal(tune_ranges=too_long)
    nope = {"seed": {"type": "integer", "min": 1, "max": 2, "scaling": "Nope"}}
    assert "a scaling must be one of Auto, Linear, Logarithmic, ReverseLogarithmic" in refusal(
        tune_ranges=nope
    )


def test_s3_uris_fit_the_api_members() -> None:
    uri = f"s3://{BUCKET}/{{}}/data-capture/ncf-endpoint"  # DestinationS3Uri: at most 512 characters
    fits = 512 - len(uri.format(""))
    assert accepted(prefix="p" * fits)
    message = refusal(prefix="p" * (fits + 1))
    assert "the data capture URI must be at most 512 characters long, got 513" in message
    assert message.startswith("setting bucket, prefix, endpoint_name: ")
    assert "batch input URI" in refusal(batch_input=f"s3://{BUCKET}/" + "k" * 1024)


def test_top_k_range_and_bad_top_k_are_refused() -> None:
    message = refusal(tune_ranges={"top_k": {"type": "integer", "min": 5, "max": 20}})
    assert message.startswith("setting tune_ranges.top_k: top_k names the tuning objective")
    assert "hyperparameters.top_k: expected a whole number" in refusal(hyperparameters={"top_k": "ten"})
    assert load_settings(overrides={"hyperparameters": {"top_k": "5"}}, environ={}).top_k == 5
    assert Settings().top_k == 10  # train.py's default


def test_every_member_path_exists_in_botocores_model() -> None:
    for limit in LIMITS:
        member_shape(limit.service, limit.operation, limit.member)  # KeyError on a typo
    with pytest.raises(KeyError):
        member_shape("sagemaker", "CreateTrainingJob", "ResourceConfig.InstanceTipe")
    with pytest.raises(KeyError):
        member_shape("sagemaker", "CreateTrainingJob", "Tags.Key")  # a list walked without []


def test_every_pattern_in_the_table_is_one_python_can_check() -> None:
    settings = load_settings(overrides={**BASE, "role_arn": "arn:aws:iam::123456789012:role/r"}, environ={})
    checked = 0
    for limit in LIMITS:
        shape = member_shape(limit.service, limit.operation, limit.member)
        pattern = shape.metadata.get("pattern")
        for value in limit.values(settings):
            if pattern and isinstance(value, str):
                assert python_pattern(pattern, value) is not None, (limit.api, pattern)
                checked += 1
    assert checked > 20


def test_unicode_classes_decide_the_match_exactly() -> None:
    tag_value = member_shape("sagemaker", "CreateTrainingJob", "Tags[].Value")
    assert violation(tag_value, "Zürich 2024 ٣") is None  # a letter, a separator, Arabic-Indic digit
    assert violation(tag_value, "tab\there") is not None  # \t is no \p{Z}
    assert violation(tag_value, "emoji 🙂") is not None  # So is none of L, Z, N
    assert python_pattern(r"\p{Alpha}+", "abc") is None  # a class Python cannot read: not checked
    outside = python_pattern(r"\p{L}+-\p{N}", "ab-1")  # outside brackets: a class of its own
    assert outside is not None and outside.fullmatch("ab-1")
    assert not python_pattern(r"\p{L}+", "ab1").fullmatch("ab1")
    assert not python_pattern(r"x\p{N}", "x").fullmatch("x")  # no digit in the value: nothing matches


def test_validation_does_not_import_the_sagemaker_sdk() -> None:
    code = (
        "import sys, deploy.config as c; c.load_settings(environ={}, overrides={'bucket': 'b-b'});"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sagemaker', 'tensorflow'}))"
    )
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "training"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- the requests actually sent ------------------------------------------------------------------


@pytest.fixture
def cli(moto_aws: None, recorder: Recorder, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process against moto; returns (exit status, stderr)."""

    def run(*argv: str) -> tuple[int, str]:
        status = main(list(argv), session_factory=recorder)
        return status, capsys.readouterr().err

    return run


def sent_bodies(recorder: Recorder, operation: str) -> list[dict[str, Any]]:
    """Collects the serialized request bodies of `operation` (after every SDK and botocore step)."""
    bodies: list[dict[str, Any]] = []
    recorder.hooks.append(
        (f"before-call.sagemaker.{operation}", lambda params, **_: bodies.append(json.loads(params["body"])))
    )
    return bodies


def test_zero_data_capture_percent_reaches_the_request(cli, recorder: Recorder, tmp_path: Path) -> None:
    archive = write_model_archive(tmp_path / "model.tar.gz", with_code=True)
    boto3.client("s3", region_name=REGION).upload_file(str(archive), BUCKET, "ncf/models/job/model.tar.gz")
    bodies = sent_bodies(recorder, "CreateEndpointConfig")
    status, err = cli(
        "deploy", "--model-data", f"s3://{BUCKET}/ncf/models/job/model.tar.gz", "--data-capture",
        "--set", "data_capture_percent=0",
    )  # fmt: skip
    assert status == 0, err
    (body,) = bodies
    assert body["DataCaptureConfig"]["InitialSamplingPercentage"] == 0
    assert body["DataCaptureConfig"]["EnableCapture"] is True


def test_tuning_objective_and_metric_names_follow_top_k(cli, recorder: Recorder, tiny_channels: Path) -> None:
    assert cli("upload", "--prepared", str(tiny_channels))[0] == 0
    bodies = sent_bodies(recorder, "CreateHyperParameterTuningJob")
    status, err = cli("tune", "--hp", "top_k=5")
    assert status == 0, err
    (config,) = bodies
    objective = config["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    assert objective == "validation_ndcg_at_5"
    definitions = config["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    names = {d["Name"] for d in definitions}
    assert objective in names and not any("_at_10" in name for name in names)
    regex = next(d["Regex"] for d in definitions if d["Name"] == objective)
    assert regex == metric_regex("validation_ndcg_at_5")
