"""deploy/config.py: where settings come from, and how bad values are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from ncf.errors import NcfError

from deploy.config import DEFAULT_TUNE_RANGES, FIELDS, Settings, env_name, load_settings, require

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "ncf.example.toml"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ncf.toml"
    path.write_text(text)
    return str(path)


def test_example_file_documents_every_setting_with_its_default() -> None:
    assert load_settings(str(EXAMPLE), environ={}) == Settings()
    text = EXAMPLE.read_text()
    for name in FIELDS:
        assert f"\n{name} = " in text or f"\n[{name}]" in text, f"{name} is not documented in {EXAMPLE.name}"


def test_precedence_defaults_file_environment_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'bucket = "from-file"\nprefix = "/file/"\nspot = true\n[tags]\nteam = "a"\nowner = "b"\n'
    )
    environ = {"NCF_BUCKET": "from-env", "NCF_TAGS": '{"team": "env"}', "NCF_TRAIN_INSTANCE_COUNT": "2"}
    settings = load_settings(path, {"bucket": "from-cli", "train_instance_count": "3"}, environ)
    assert settings.bucket == "from-cli"
    assert settings.prefix == "file"  # slashes trimmed
    assert settings.spot is True  # from the file
    assert settings.tags == {"team": "env", "owner": "b"}  # tables merge key by key
    assert settings.train_instance_count == 3
    assert settings.max_run_seconds == Settings().max_run_seconds


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, 'project = "shop"\n')
    settings = load_settings(environ={"NCF_CONFIG": path})
    assert settings.project == "shop" and settings.endpoint == "shop-endpoint"
    assert settings.data_uri("train") == "s3:///ncf/data/default/train/"


def test_tune_ranges_can_be_replaced_or_removed(tmp_path: Path) -> None:
    path = write(tmp_path, '[tune_ranges]\nfactors = {}\nnum_neg = { type = "integer", min = 1, max = 4 }\n')
    ranges = load_settings(path, environ={}).tune_ranges
    assert "factors" not in ranges
    assert ranges["num_neg"] == {"type": "integer", "min": 1, "max": 4}
    assert ranges["learning_rate"] == DEFAULT_TUNE_RANGES["learning_rate"]


@pytest.mark.parametrize(
    ("text", "environ", "overrides", "message"),
    [
        ('bukcet = "x"\n', {}, {}, "unknown setting 'bukcet' (did you mean 'bucket'?)"),
        ("spot = 3\n", {}, {}, ": spot: expected true or false, got 3"),
        (
            "",
            {"NCF_TRAIN_INSTANCE_COUNT": "two"},
            {},
            "NCF_TRAIN_INSTANCE_COUNT: expected a whole number, got 'two'",
        ),
        ("", {"NCF_TAGS": "team=a"}, {}, "NCF_TAGS: expected a table (a JSON object in the environment)"),
        ("", {}, {"region": "Europe"}, "setting region: expected an AWS region"),
        ("", {}, {"bucket": "My_Bucket"}, "setting bucket: expected an S3 bucket name"),
        ("", {}, {"spot": "true", "max_wait_seconds": "60"}, "max_wait_seconds must be >= max_run_seconds"),
        ("", {}, {"serverless": "true", "autoscaling": "true"}, "turn autoscaling off"),
        ("", {}, {"serverless_memory_mb": "1000"}, "serverless_memory_mb: must be between 1024 and 6144"),
        ("", {}, {"serverless_memory_mb": "1500"}, "serverless_memory_mb must be a multiple of 1024"),
        ("", {}, {"autoscaling_min_instances": "5"}, "autoscaling_min_instances > autoscaling_max_instances"),
        ("", {}, {"project": "Has_Capitals"}, "setting project: expected lowercase letters"),
        ("", {}, {"tune_strategy": "Grid"}, "tune_strategy Grid needs categorical tune_ranges only"),
        ("", {}, {"batch_max_payload_mb": "101"}, "batch_max_payload_mb: must be between 1 and 100, got 101"),
        (
            "",
            {},
            {"batch_invocation_timeout_seconds": "3601"},
            "batch_invocation_timeout_seconds: must be between 1 and 3600, got 3601",
        ),
        ("[hyperparameters]\nlearning-rate = 0.1\n", {}, {}, "'learning-rate' is not a snake_case"),
        ("[tags]\n'aws:team' = 'x'\n", {}, {}, "reserved by AWS"),
        (
            "[tune_ranges]\nseed = { type = 'integer', min = 5, max = 1 }\n",
            {},
            {},
            "tune_ranges.seed: needs numbers min < max",
        ),
        (
            "[tune_ranges]\nseed = { type = 'range' }\n",
            {},
            {},
            "tune_ranges.seed: expected a table with type",
        ),
        ("not toml [", {}, {}, "not valid TOML"),
    ],
)
def test_bad_values_name_the_setting_and_source(tmp_path: Path, text, environ, overrides, message) -> None:
    with pytest.raises(NcfError) as caught:
        load_settings(write(tmp_path, text), overrides, environ)
    assert message in str(caught.value)


def test_missing_config_file_and_required_settings(tmp_path: Path) -> None:
    with pytest.raises(NcfError, match=r"--config: config file .* does not exist"):
        load_settings(str(tmp_path / "missing.toml"), environ={})
    with pytest.raises(NcfError, match="NCF_CONFIG: config file"):
        load_settings(environ={"NCF_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(NcfError, match=r"no role_arn configured: .* NCF_ROLE_ARN=\.\.\. or --role-arn"):
        require(Settings(bucket="b"), "bucket", "role_arn")


def test_every_setting_has_an_environment_variable() -> None:
    names = {env_name(f.name) for f in dataclasses.fields(Settings)}
    assert {"NCF_BUCKET", "NCF_ROLE_ARN", "NCF_REGION", "NCF_SPOT", "NCF_HYPERPARAMETERS"} <= names
    assert "NCF_CONFIG" not in names  # the config file's own variable is not a setting


def test_hyperparameter_names_are_train_py_settings_before_any_job_starts() -> None:
    """A misspelt hyperparameter used to reach SageMaker, where the paid job failed on train.py's
    command line; now the settings refuse it, with the nearest name."""
    from ncf.train_settings import HYPERPARAMETERS, TrainConfig

    assert load_settings(overrides={"hyperparameters": {"learning_rate": 0.01}}, environ={})
    with pytest.raises(
        NcfError, match=r"hyperparameters\.learning_rat: .*no such .*did you mean 'learning_rate'"
    ):
        load_settings(overrides={"hyperparameters": {"learning_rat": 0.01}}, environ={})
    with pytest.raises(NcfError, match=r"hyperparameters\.model_dir: not a hyperparameter"):
        load_settings(overrides={"hyperparameters": {"model_dir": "/tmp"}}, environ={})
    with pytest.raises(NcfError, match=r"tune_ranges\.factor: .*did you mean 'factors'"):
        load_settings(
            overrides={"tune_ranges": {"factor": {"type": "categorical", "values": ["8"]}}}, environ={}
        )
    assert set(Settings().tune_ranges) <= set(HYPERPARAMETERS)  # the default ranges are real settings
    assert "learning_rate" in TrainConfig().hyperparameters()  # the same names train.py reports
