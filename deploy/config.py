"""Every setting of the SageMaker CLI, in one place, with where each value may come from.

Precedence, lowest first: the defaults below, the config file (TOML), environment variables
`NCF_<SETTING>` (e.g. `NCF_BUCKET`, `NCF_ROLE_ARN`, `NCF_SPOT=true`; tables as JSON objects),
then the command line (`--set name=value` and the commands' own flags). Tables (`tags`,
`hyperparameters`, `serving_env`, `tune_ranges`) are merged key by key across the layers.

The config file is `--config PATH`, else `$NCF_CONFIG`, else `deploy/ncf.toml` when it exists;
`deploy/ncf.example.toml` documents every key. A bad value anywhere becomes one `NcfError` that
names the setting and where it came from.

Image versions: training runs in the TensorFlow 2.21 (py312) training image, the newest the
SDK's image table lists and the version `pyproject.toml` pins, so a laptop run and a SageMaker
run use the same TensorFlow. Serving uses the TensorFlow Serving 2.20 image, the newest
inference image the table lists (2.21 is not there yet); a SavedModel exported by TF 2.21 uses
no ops newer than 2.20 serves, which `make train-local` + the local endpoint check.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncf.errors import NcfError
from ncf.train_settings import HYPERPARAMETERS, PATH_SETTINGS, TrainConfig

ENV_PREFIX = "NCF_"
CONFIG_ENV = "NCF_CONFIG"
DEFAULT_CONFIG = Path(__file__).with_name("ncf.toml")

#: The ranges `tune` searches unless the config says otherwise (the hyperparameters of train.py).
DEFAULT_TUNE_RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "continuous", "min": 0.0003, "max": 0.01, "scaling": "Logarithmic"},
    "factors": {"type": "categorical", "values": ["8", "16", "32", "64"]},
    "mlp_layers": {"type": "categorical", "values": ["32,16,8", "64,32,16,8", "128,64,32,16"]},
    "num_neg": {"type": "integer", "min": 2, "max": 10},
    "batch_size": {"type": "categorical", "values": ["512", "2048", "8192"]},
}
TUNE_RANGE_TYPES = ("continuous", "integer", "categorical")
#: Serverless memory comes in steps of 1 GiB (AWS's guide; the API model gives only 1024-6144).
SERVERLESS_MEMORY_STEP_MB = 1024
#: train.py's own default `top_k`, used when the `hyperparameters` table does not set one.
TRAIN_TOP_K = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "top_k")


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one CLI run (see deploy/ncf.example.toml for each key)."""

    # Where: account, region, storage, and the tag that marks this project's resources.
    region: str = ""
    role_arn: str = ""
    bucket: str = ""
    prefix: str = "ncf"
    project: str = "ncf"
    dataset: str = "default"
    tags: dict[str, str] = field(default_factory=dict)
    # Images (empty image URIs: take them from the SDK's image table for these versions).
    framework_version: str = "2.21"
    py_version: str = "py312"
    inference_framework_version: str = "2.20"
    training_image: str = ""
    inference_image: str = ""
    # Training jobs.
    train_instance_type: str = "ml.m5.xlarge"
    train_instance_count: int = 1
    train_volume_gb: int = 30
    shard_train: bool = False
    spot: bool = False
    max_run_seconds: int = 3 * 3600
    max_wait_seconds: int = 6 * 3600
    checkpoints: bool = True
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    # The endpoint.
    endpoint_name: str = ""
    deploy_instance_type: str = "ml.m5.large"
    deploy_instance_count: int = 1
    serverless: bool = False
    serverless_memory_mb: int = 2048
    serverless_max_concurrency: int = 5
    data_capture: bool = False
    data_capture_percent: int = 20
    autoscaling: bool = False
    autoscaling_min_instances: int = 1
    autoscaling_max_instances: int = 4
    autoscaling_target_invocations: float = 300.0
    autoscaling_scale_in_cooldown: int = 300
    autoscaling_scale_out_cooldown: int = 60
    bluegreen_wait_seconds: int = 300
    serving_env: dict[str, str] = field(default_factory=dict)
    deploy_timeout_seconds: int = 3600
    # A/B tests: the share of traffic `deploy --candidate` sends to the candidate variant.
    candidate_share: float = 0.1
    # The retraining schedule (`deploy pipeline schedule`): the role Scheduler assumes, the cron's time zone.
    schedule_role_arn: str = ""
    schedule_timezone: str = "UTC"
    # Batch Transform.
    batch_input: str = ""
    batch_instance_type: str = "ml.m5.large"
    batch_instance_count: int = 1
    batch_max_payload_mb: int = 6
    batch_invocation_timeout_seconds: int = 3600
    # Hyperparameter tuning.
    tune_strategy: str = "Bayesian"
    tune_max_jobs: int = 12
    tune_max_parallel_jobs: int = 2
    tune_early_stopping: bool = True
    tune_ranges: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DEFAULT_TUNE_RANGES))
    # The retraining pipeline (`pipeline ...`) and the Model Registry (`registry`, `deploy --model-package`).
    pipeline_name: str = ""
    raw_data_uri: str = ""
    processing_instance_type: str = "ml.m5.xlarge"
    gate_margin: float = 0.0
    approval_status: str = "PendingManualApproval"
    model_package_group: str = ""
    # How often to ask SageMaker for a status while waiting.
    poll_seconds: int = 30
    # SDK local mode (`--local`): where local jobs and endpoint records go, the endpoint's 127.0.0.1 port.
    local_dir: str = "runs/local-mode"
    local_port: int = 8080

    @property
    def endpoint(self) -> str:
        """The endpoint's name: `endpoint_name`, or `<project>-endpoint`."""
        return self.endpoint_name or f"{self.project}-endpoint"

    @property
    def top_k(self) -> int:
        """The `top_k` train.py runs with: the cut-off in the names of the ranking metrics it prints
        (`validation_ndcg_at_<top_k>`), so in the metric regexes and the tuning objective."""
        return int(str(self.hyperparameters.get("top_k", TRAIN_TOP_K)))

    @property
    def pipeline(self) -> str:
        """The retraining pipeline's name: `pipeline_name`, or `<project>-retrain`."""
        return self.pipeline_name or f"{self.project}-retrain"

    @property
    def package_group(self) -> str:
        """The Model Package Group of the pipeline: `model_package_group`, or `<project>-models`."""
        return self.model_package_group or f"{self.project}-models"

    @property
    def raw_data(self) -> str:
        """The raw interactions the pipeline prepares: `raw_data_uri`, or s3://<bucket>/<prefix>/raw/<dataset>/."""
        return self.raw_data_uri or self.s3_uri("raw", self.dataset) + "/"

    def s3_uri(self, *parts: str) -> str:
        """`s3://<bucket>/<prefix>/<parts...>`: every object this project writes lives under it."""
        path = "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))
        return f"s3://{self.bucket}/{path}"

    def data_uri(self, channel: str = "") -> str:
        """Where `upload` puts the prepared dataset (and `train`/`tune` read it)."""
        return self.s3_uri("data", self.dataset, channel) + "/"


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_TABLES = {name for name, f in FIELDS.items() if f.type.startswith("dict")}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_name(setting: str) -> str:
    """The environment variable that overrides `setting`."""
    return ENV_PREFIX + setting.upper()


def load_settings(
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults < config file < NCF_* environment < `overrides` (the command line), validated."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = _config_file(config_path, environ)
    if path is not None:
        _merge(values, _read_file(path), f"config file {path}")
    env_values = {name: environ[env_name(name)] for name in FIELDS if env_name(name) in environ}
    _merge(values, env_values, "environment")
    _merge(values, dict(overrides or {}), "command line")
    defaults = Settings()
    merged = {
        name: {**getattr(defaults, name), **value} if name in _TABLES else value
        for name, value in values.items()
    }
    if "tune_ranges" in merged:  # an empty table removes a default range
        merged["tune_ranges"] = {k: v for k, v in merged["tune_ranges"].items() if v != {}}
    settings = dataclasses.replace(defaults, **merged)
    settings = dataclasses.replace(settings, prefix=settings.prefix.strip("/"))
    validate(settings)
    return settings


def parse_assignment(text: str, what: str = "--set") -> tuple[str, str]:
    """`name=value` from the command line, or a clear error."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise NcfError(f"{what} expects NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    chosen = explicit or environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            source = "--config" if explicit else CONFIG_ENV
            raise NcfError(f"{source}: config file {path} does not exist")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise NcfError(f"config file {path}: not valid TOML ({exc})") from None


def _merge(values: dict[str, Any], layer: Mapping[str, Any], source: str) -> None:
    """Check each key of `layer` and coerce its value to the setting's type, then add it."""
    for name, raw in layer.items():
        if name not in FIELDS:
            hint = difflib.get_close_matches(name, FIELDS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise NcfError(f"{source}: unknown setting {name!r}{suggestion}")
        value = _coerce(name, raw, source)
        values[name] = {**values.get(name, {}), **value} if name in _TABLES else value


def _coerce(name: str, raw: Any, source: str) -> Any:
    """`raw` (native from TOML, a string from the environment or --set) as the setting's type."""
    kind = FIELDS[name].type
    kind = "dict" if kind.startswith("dict") else kind
    try:
        return _CONVERTERS[kind](raw)
    except (ValueError, TypeError):
        label = env_name(name) if source == "environment" else f"{source}: {name}"
        raise NcfError(f"{label}: expected {_EXPECTED[kind]}, got {raw!r}") from None


def _to_dict(raw: Any) -> dict[str, Any]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise ValueError
    return value


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ValueError
    return lowered in _TRUE


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError
    return int(raw.strip()) if isinstance(raw, str) else int(raw)


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError
    return float(raw)


def _to_str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError
    return raw.strip()


_CONVERTERS = {"dict": _to_dict, "bool": _to_bool, "int": _to_int, "float": _to_float, "str": _to_str}
_EXPECTED = {
    "dict": "a table (a JSON object in the environment)",
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "str": "a string",
}

#: Rules of this project for string settings that no API model states (S3 and region names, the
#: project's naming). The API's own limits (names, ARNs, instance types) are in deploy/api_limits.py.
_PATTERNS = {
    "region": (r"[a-z]{2}(-[a-z]+)+-\d", "an AWS region such as eu-west-1"),
    "bucket": (
        r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        "an S3 bucket name (3-63 lowercase letters, digits, '.', '-')",
    ),
    "prefix": (r"[A-Za-z0-9!_.*'()/-]*", "an S3 key prefix of letters, digits and !_.*'()/-"),
    "project": (
        r"[a-z][a-z0-9-]*",
        "lowercase letters, digits or '-', starting with a letter (the names it starts must fit the API)",
    ),
    "dataset": (r"[A-Za-z0-9._-]+", "a dataset name of letters, digits, '.', '_' or '-'"),
    "py_version": (r"py3\d+", "a Python tag such as py312"),
    "approval_status": (r"Approved|PendingManualApproval", "Approved or PendingManualApproval"),
    "framework_version": (r"\d+\.\d+(\.\d+)?", "a TensorFlow version such as 2.21"),
    "inference_framework_version": (r"\d+\.\d+(\.\d+)?", "a TensorFlow version such as 2.20"),
}
_OPTIONAL = {"region", "bucket", "prefix"}
#: This project's own bounds (low, high; None: open), where the API's are wider or absent: a job or
#: fleet needs an instance, the API leaves autoscaling and cooldowns unbounded, AWS's guide caps
#: MaxPayloadInMB at 100 (the model does not), and the rest are not API fields.
PROJECT_BOUNDS: dict[str, tuple[int | None, int | None]] = {
    "train_instance_count": (1, None),
    "train_volume_gb": (1, None),
    "autoscaling_min_instances": (1, None),
    "autoscaling_max_instances": (1, None),
    "autoscaling_scale_in_cooldown": (1, None),
    "autoscaling_scale_out_cooldown": (1, None),
    "batch_max_payload_mb": (1, 100),
    "deploy_timeout_seconds": (1, None),
    "poll_seconds": (1, None),
    "local_port": (1, 65535),
}


def validate(settings: Settings) -> None:
    """Refuse values AWS would reject (or that make no sense together), naming the setting.

    The project's own rules come first, then the limits of the API members the settings become
    (`deploy.api_limits`, read from botocore's service models), then combinations of settings.
    """
    for name, (pattern, expected) in _PATTERNS.items():
        value = getattr(settings, name)
        if (value or name not in _OPTIONAL) and not re.fullmatch(pattern, value):
            raise NcfError(f"setting {name}: expected {expected}, got {value!r}")
    for name, (low, high) in PROJECT_BOUNDS.items():
        value = getattr(settings, name)
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise NcfError(f"setting {name}: must be {allowed}, got {value}")
    _check_tables(settings)
    check_tune_ranges(settings.tune_ranges)
    from deploy import api_limits  # imports deploy.aws, which imports this module

    api_limits.check(settings)
    _check_combinations(settings)


def _check_combinations(s: Settings) -> None:
    problems = [
        (
            s.spot and s.max_wait_seconds < s.max_run_seconds,
            "max_wait_seconds must be >= max_run_seconds with spot",
        ),
        (not s.local_dir.strip(), "local_dir must not be empty"),
        (
            s.gate_margin < 0,
            "gate_margin must be >= 0 (how much worse than the approved model a candidate may be)",
        ),
        (
            s.serverless_memory_mb % SERVERLESS_MEMORY_STEP_MB,
            f"serverless_memory_mb must be a multiple of {SERVERLESS_MEMORY_STEP_MB}",
        ),
        (s.serverless and s.data_capture, "serverless endpoints do not support data capture (data_capture)"),
        (s.serverless and s.autoscaling, "serverless endpoints scale by themselves: turn autoscaling off"),
        (
            s.autoscaling_min_instances > s.autoscaling_max_instances,
            "autoscaling_min_instances > autoscaling_max_instances",
        ),
        (s.autoscaling_target_invocations <= 0, "autoscaling_target_invocations must be positive"),
        (
            not 0 < s.candidate_share < 1,
            f"candidate_share must be between 0 and 1 (exclusive), got {s.candidate_share}",
        ),
        (s.tune_max_parallel_jobs > s.tune_max_jobs, "tune_max_parallel_jobs must not exceed tune_max_jobs"),
        (
            s.tune_strategy == "Grid" and any(r["type"] != "categorical" for r in s.tune_ranges.values()),
            "tune_strategy Grid needs categorical tune_ranges only",
        ),
        (
            "top_k" in s.tune_ranges,
            "tune_ranges.top_k: top_k names the tuning objective (validation_ndcg_at_<top_k>), which is one"
            " metric for every trial, so it cannot vary: set it in [hyperparameters]",
        ),
    ]
    for failed, message in problems:
        if failed:
            raise NcfError(f"setting {message}")


def check_hyperparameter_name(table: str, name: str) -> None:
    """NcfError unless `name` is a hyperparameter train.py has: a typo would otherwise surface only when a
    paid job starts and train.py refuses its command line."""
    if name in PATH_SETTINGS:
        raise NcfError(
            f"setting {table}.{name}: not a hyperparameter (the job's channels and folders set it)"
        )
    if name not in HYPERPARAMETERS:
        hint = difflib.get_close_matches(name, HYPERPARAMETERS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise NcfError(f"setting {table}.{name}: train.py has no such hyperparameter{suggestion}")


def _check_tables(s: Settings) -> None:
    for name, value in s.hyperparameters.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise NcfError(f"setting hyperparameters: {name!r} is not a snake_case hyperparameter name")
        check_hyperparameter_name("hyperparameters", name)
        if not isinstance(value, str | int | float | bool):
            raise NcfError(f"setting hyperparameters.{name}: expected a string or a number, got {value!r}")
    top_k = s.hyperparameters.get("top_k", TRAIN_TOP_K)
    if isinstance(top_k, bool) or not re.fullmatch(r"[1-9][0-9]*", str(top_k).strip()):
        raise NcfError(
            f"setting hyperparameters.top_k: expected a whole number of at least 1 (it names the metrics"
            f" train.py reports), got {top_k!r}"
        )
    for table in ("tags", "serving_env"):
        for key, value in getattr(s, table).items():
            if not isinstance(value, str) or not key:
                raise NcfError(f"setting {table}.{key}: expected a string value, got {value!r}")
    for key in s.tags:
        if key.lower().startswith("aws:"):
            raise NcfError(f"setting tags.{key}: keys starting with 'aws:' are reserved by AWS")


def check_tune_ranges(ranges: Mapping[str, Any]) -> None:
    """Each range is {type=continuous|integer, min, max[, scaling]} or {type=categorical, values=[...]}."""
    if not ranges:
        raise NcfError("setting tune_ranges: give at least one hyperparameter range")
    for name, spec in ranges.items():
        where = f"setting tune_ranges.{name}"
        check_hyperparameter_name("tune_ranges", name)
        if not isinstance(spec, Mapping) or spec.get("type") not in TUNE_RANGE_TYPES:
            raise NcfError(f"{where}: expected a table with type = one of {', '.join(TUNE_RANGE_TYPES)}")
        if spec["type"] == "categorical":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise NcfError(f"{where}: a categorical range needs a non-empty list 'values'")
            continue
        low, high = spec.get("min"), spec.get("max")
        number = int if spec["type"] == "integer" else int | float
        if not (isinstance(low, number) and isinstance(high, number)) or isinstance(low, bool) or low >= high:
            raise NcfError(f"{where}: needs numbers min < max, got min={low!r} max={high!r}")
        if spec.get("scaling") == "Logarithmic" and low <= 0:
            raise NcfError(f"{where}: Logarithmic scaling needs min > 0")


def require(settings: Settings, *names: str) -> None:
    """Fail with a hint when a setting a command needs (role_arn, bucket, ...) is empty."""
    for name in names:
        if not getattr(settings, name):
            raise NcfError(
                f"no {name} configured: set {name} in the config file, {env_name(name)}=... "
                f"or --{name.replace('_', '-')}"
            )


def describe(settings: Settings) -> dict[str, Any]:
    """The settings as plain data (for `show-config`)."""
    return {
        **dataclasses.asdict(settings),
        "endpoint": settings.endpoint,
        "pipeline": settings.pipeline,
        "package_group": settings.package_group,
    }
