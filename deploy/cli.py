"""`python -m deploy <command>` (or `ncf-deploy`): drive SageMaker for this project.

    upload      prepared channels -> s3://<bucket>/<prefix>/data/<dataset>/ (unchanged files skipped)
    train       training job running training/train.py (script mode); --wait follows it
    deploy      model + endpoint config + endpoint; updates an existing endpoint blue/green
    invoke      recommendations for users from the endpoint (or a local one with --endpoint-url)
    batch       Batch Transform over a JSON Lines file of users
    tune        hyperparameter tuning job, objective validation NDCG@10
    promote     A/B test over: all traffic to one variant, the other removed
    ab-report   per variant: hit rate, NDCG, coverage of the captured answers, with 95 % intervals
    pipeline    the retraining pipeline: upsert, start (--local: in Docker), status, describe, schedule
    registry    the Model Package Group's versions: list, approve, reject
    status      this project's resources (found by tag)
    teardown    delete this project's endpoints, endpoint configs, models and scaling policies
    iam-policy  the least-privilege execution role, trust and operator policies (JSON)
    show-config the resolved settings
    doctor      check credentials, region, bucket, role, images, local mode and quotas before a first run

Results go to stdout (`--json` for machine-readable output), progress to stderr. Exit status: 0 done,
1 AWS-side failure (a job or endpoint failed, an API call was refused), 2 a problem with the input
(settings, files, arguments). Both print one `error: ...` line and no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from ncf.errors import NcfError

from deploy import config as cfg
from deploy.aws import (
    RemoteFailure,
    SessionFactory,
    default_session_factory,
    describe_client_error,
    open_session,
)
from deploy.config import Settings

Handler = Callable[[argparse.Namespace, Settings, SessionFactory], int]


def main(
    argv: Sequence[str] | None = None, *, session_factory: SessionFactory = default_session_factory
) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_invoke="invoke" in arguments)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exit_:  # --help, or a usage error argparse has already explained
        return int(exit_.code or 0)
    _configure_logging(args.verbose)
    # The SDK's client-side role check simulates VPC (ec2:*) permissions that a least-privilege
    # role without VPC access lacks, and would refuse it; SageMaker itself checks the role anyway.
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")
    try:
        settings = cfg.load_settings(args.config, _overrides(args))
        return args.handler(args, settings, session_factory)
    except NcfError as exc:
        return _fail(str(exc), 2)
    except RemoteFailure as exc:
        return _fail(str(exc), 1)
    except ClientError as exc:
        return _fail(describe_client_error(exc), 1)
    except (NoCredentialsError, PartialCredentialsError):
        return _fail("no AWS credentials found: configure a profile, SSO or AWS_ACCESS_KEY_ID", 2)
    except NoRegionError:
        return _fail("no AWS region configured: set region, NCF_REGION, --region or AWS_REGION", 2)
    except EndpointConnectionError as exc:
        return _fail(f"cannot reach AWS: {exc}", 1)
    except Exception as exc:
        if _is_sdk_role_error(exc):
            return _fail(str(exc).strip().splitlines()[0], 2)
        raise


def build_parser(*, with_invoke: bool = True) -> argparse.ArgumentParser:
    """The CLI. `invoke`'s own options come from deploy.invoke, imported only when needed."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description="Train, deploy and run the NCF recommender on Amazon SageMaker.",
        epilog="Settings: deploy/ncf.example.toml. `python -m deploy <command> --help` for each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, handler: Handler, summary: str, **extra: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=summary, description=summary, **extra)
        sub.set_defaults(handler=handler)
        return sub

    _upload_options(command("upload", _upload, "Upload prepared channels to S3, skipping unchanged files."))
    _train_options(command("train", _train, "Launch a SageMaker training job running training/train.py."))
    _deploy_options(command("deploy", _deploy, "Create or update (blue/green) the SageMaker endpoint."))
    invoke = command(
        "invoke",
        _invoke,
        "Recommendations, similar items or similar users from the endpoint.",
        conflict_handler="resolve",
    )
    _local_option(invoke, "ask the endpoint that `deploy --local` runs")
    if with_invoke:
        from deploy import invoke as invoke_module

        invoke_module.add_arguments(invoke)
    _batch_options(command("batch", _batch, "Batch Transform over a JSON Lines file of users in S3."))
    _tune_options(command("tune", _tune, "Hyperparameter tuning job (objective: validation NDCG@10)."))
    _ab_test_commands(command)
    _pipeline_commands(commands, common)
    _registry_commands(commands, common)
    status = command("status", _status, "List this project's SageMaker resources (found by tag).")
    status.add_argument("--limit", type=int, default=10, help="jobs of each kind to show, newest first")
    _json_option(status)
    teardown = command(
        "teardown", _teardown, "Delete this project's endpoints, endpoint configs, models, scaling policies."
    )
    teardown.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    _local_option(teardown, "stop the endpoints that `deploy --local` runs")
    iam = command("iam-policy", _iam_policy, "Print the least-privilege IAM policies (JSON).")
    iam.add_argument("--account-id", help="AWS account id (default: taken from role_arn)")
    iam.add_argument(
        "--which",
        choices=("all", "execution-role", "trust", "operator", "scheduler-role", "scheduler-trust"),
        default="all",
        help="print one document only",
    )
    command("show-config", _show_config, "Print the resolved settings (defaults, file, NCF_*, flags).")
    doctor = command(
        "doctor", _doctor, "Check what a first run needs (credentials to quotas) and say what to fix."
    )
    doctor.add_argument(
        "--local", action="store_true", help="also require what `--local` runs need (Docker, local images)"
    )
    _json_option(doctor)
    return parser


# --- options -----------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (override the config file and NCF_* variables)")
    group.add_argument("--config", help=f"TOML config file (default: ${cfg.CONFIG_ENV} or deploy/ncf.toml)")
    _setting(group, "--region", "region", "AWS region")
    _setting(group, "--role-arn", "role_arn", "SageMaker execution role ARN")
    _setting(group, "--bucket", "bucket", "S3 bucket for data, code and models")
    _setting(group, "--prefix", "prefix", "S3 key prefix of everything this project writes")
    _setting(group, "--project", "project", "project name: resource name prefix and tag value")
    group.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="any setting (repeatable)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="also show the SDK's progress messages")
    return common


def _setting(parser: Any, flag: str, field: str, help: str, **extra: Any) -> None:
    """A flag whose value, when given, overrides the setting `field`."""
    metavar = None if extra.get("action") else flag.lstrip("-").upper().replace("-", "_")
    parser.add_argument(flag, dest=field, default=argparse.SUPPRESS, help=help, metavar=metavar, **extra)


def _switch(parser: Any, flag: str, field: str, help: str) -> None:
    """`--x/--no-x` for a boolean setting."""
    _setting(parser, flag, field, help, action=argparse.BooleanOptionalAction)


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _model_source_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--training-job",
        help="serve this training job's model (default: the latest `train` job; with --local: the latest "
        "local job)",
    )
    source.add_argument("--model-data", help="serve this model.tar.gz (s3://...; with --local a local path)")
    parser.add_argument(
        "--repackage",
        action="store_true",
        help="replace the artifact's code/ with the current inference/ (automatic when it has none)",
    )


def _upload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, type=Path, help="folder written by training/prepare.py")
    _setting(parser, "--dataset", "dataset", "dataset name in S3 (data/<dataset>/)")
    _json_option(parser)


def _local_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--local", action="store_true", help=f"{what} with SDK local mode in Docker (`make local-images`)"
    )


def _train_options(parser: argparse.ArgumentParser) -> None:
    _local_option(parser, "run the job on this machine")
    parser.add_argument(
        "--prepared", type=Path, help="with --local: the folder training/prepare.py wrote (local channels)"
    )
    parser.add_argument(
        "--tuning-style",
        action="store_true",
        help="with --local: run it as a tuning trial runs (the image's default `train`, no entrypoint)",
    )
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=False, help="follow the job")
    parser.add_argument(
        "--logs", action=argparse.BooleanOptionalAction, default=True, help="stream its logs while waiting"
    )
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE", help="hyperparameter")
    _setting(parser, "--dataset", "dataset", "dataset to train on (data/<dataset>/ in S3)")
    _setting(parser, "--instance-type", "train_instance_type", "training instance type")
    _instance_options(parser)
    _switch(parser, "--spot", "spot", "managed spot training (resumes from checkpoints)")
    _setting(parser, "--max-run", "max_run_seconds", "maximum training seconds", type=int)
    _setting(parser, "--max-wait", "max_wait_seconds", "maximum seconds incl. waiting for spot", type=int)
    _json_option(parser)


def _instance_options(parser: argparse.ArgumentParser) -> None:
    """Instances of a training job or of each tuning trial, and how the train channel reaches them."""
    _setting(parser, "--instance-count", "train_instance_count", "instances (> 1: multi-worker)", type=int)
    _switch(
        parser,
        "--shard-train",
        "shard_train",
        "each instance gets only its own files of the train channel (ShardedByS3Key)",
    )


def _deploy_options(parser: argparse.ArgumentParser) -> None:
    _local_option(parser, "serve in the foreground until Ctrl-C or `teardown --local`,")
    _setting(parser, "--port", "local_port", "with --local: the endpoint's port on 127.0.0.1", type=int)
    _model_source_options(parser)
    parser.add_argument(
        "--model-package", help="serve a registered model: latest-approved, a version number or an ARN"
    )
    _setting(parser, "--endpoint-name", "endpoint_name", "endpoint name (default: <project>-endpoint)")
    parser.add_argument(
        "--candidate",
        metavar="MODEL_DATA_OR_TRAINING_JOB",
        help="A/B test: serve this model (s3://.../model.tar.gz or a training job) as a second variant",
    )
    _setting(parser, "--candidate-share", "candidate_share", "the candidate's share of traffic", type=float)
    _setting(parser, "--instance-type", "deploy_instance_type", "endpoint instance type")
    _setting(parser, "--instance-count", "deploy_instance_count", "endpoint instances", type=int)
    _switch(parser, "--serverless", "serverless", "serverless endpoint instead of instances")
    _setting(parser, "--memory-mb", "serverless_memory_mb", "serverless memory (1024-6144)", type=int)
    _setting(parser, "--max-concurrency", "serverless_max_concurrency", "serverless concurrency", type=int)
    _switch(parser, "--data-capture", "data_capture", "capture requests/responses to S3")
    _setting(parser, "--capture-percent", "data_capture_percent", "share of requests captured", type=int)
    _switch(parser, "--autoscaling", "autoscaling", "target-tracking autoscaling on invocations/instance")
    _setting(parser, "--min-instances", "autoscaling_min_instances", "autoscaling minimum", type=int)
    _setting(parser, "--max-instances", "autoscaling_max_instances", "autoscaling maximum", type=int)
    _json_option(parser)


def _ab_test_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`promote` and `ab-report` (the candidate itself is `deploy --candidate`)."""
    promote = command("promote", _promote, "Shift all traffic to one variant and remove the other.")
    promote.add_argument("--variant", required=True, help="the variant that keeps the endpoint")
    _setting(promote, "--endpoint-name", "endpoint_name", "endpoint name (default: <project>-endpoint)")
    _json_option(promote)
    _ab_report_options(
        command("ab-report", _ab_report, "Compare the endpoint's variants on what users did next.")
    )


def _ab_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--capture",
        help="data capture folder or s3:// prefix (default: the endpoint's, s3://<bucket>/<prefix>/"
        "data-capture/<endpoint>/)",
    )
    parser.add_argument(
        "--interactions", required=True, help="user_id,item_id,timestamp file (local or s3://)"
    )
    parser.add_argument("--k", type=int, default=10, help="cut-off of hit rate and NDCG (default 10)")
    parser.add_argument(
        "--window-days", type=float, default=7.0, help="interactions this long after a request count"
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap replicates (default 1000)")
    _setting(parser, "--endpoint-name", "endpoint_name", "endpoint name (default: <project>-endpoint)")
    _json_option(parser)


def _group(
    commands: Any, common: argparse.ArgumentParser, name: str, summary: str
) -> Callable[[str, Handler, str], argparse.ArgumentParser]:
    """A command with actions (`pipeline start`, ...); returns the function that adds one action."""
    group = commands.add_parser(name, help=summary, description=summary)
    actions = group.add_subparsers(dest="action", required=True, metavar="action")

    def action(verb: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(verb, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    return action


def _pipeline_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    action = _group(commands, common, "pipeline", "The retraining pipeline (prepare, train, evaluate, gate).")
    _json_option(action("upsert", _pipeline_upsert, "Create or update the pipeline on SageMaker."))
    start = action("start", _pipeline_start, "Start an execution (with --local: run it in Docker).")
    _local_option(start, "run the pipeline on this machine (no Register step)")
    start.add_argument(
        "--input-data", help="raw interactions: s3://... (with --local a folder; data/default)"
    )
    start.add_argument("--model-type", help="ModelType parameter (train.py's model_type)")
    start.add_argument("--epochs", help="Epochs parameter")
    start.add_argument("--gate-margin", type=float, help="GateMargin parameter (default: gate_margin)")
    start.add_argument("--approval-status", choices=("Approved", "PendingManualApproval"))
    start.add_argument("--current-model", type=Path, help="with --local: the model.tar.gz to beat")
    start.add_argument("--wait", action=argparse.BooleanOptionalAction, default=False, help="follow it")
    _json_option(start)
    status = action("status", _pipeline_status, "Recent executions and the newest one's steps.")
    status.add_argument("--limit", type=int, default=5, help="executions to show, newest first")
    _json_option(status)
    _json_option(action("describe", _pipeline_describe, "The pipeline, its parameters and steps."))
    schedule = action(
        "schedule",
        _schedule,
        "Start the retraining pipeline on a cron schedule (EventBridge Scheduler), or stop that.",
    )
    what = schedule.add_mutually_exclusive_group(required=True)
    what.add_argument("--cron", help='Scheduler cron, e.g. "cron(0 3 * * ? *)": every day at 03:00')
    what.add_argument("--delete", action="store_true", help="delete the schedule")
    schedule.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter each scheduled run gets (repeatable; default: the pipeline's)",
    )
    _setting(schedule, "--timezone", "schedule_timezone", "time zone of the cron expression")
    _setting(schedule, "--schedule-role-arn", "schedule_role_arn", "role EventBridge Scheduler assumes")
    _json_option(schedule)


def _registry_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    action = _group(commands, common, "registry", "This project's Model Package Group.")
    _json_option(action("list", _registry_list, "The group's versions, newest first."))
    for verb in ("approve", "reject"):
        sub = action(verb, _registry_decide, f"{verb.title()} a version (then `deploy --model-package`).")
        sub.add_argument("package", help="latest-approved, a version number of the group, or its ARN")
        sub.add_argument("--reason", default="", help="recorded as the approval description")
        _json_option(sub)


def _batch_options(parser: argparse.ArgumentParser) -> None:
    _model_source_options(parser)
    _setting(parser, "--input", "batch_input", "users file, JSON Lines (local path or s3://...)")
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=False, help="follow the job")
    _setting(parser, "--instance-type", "batch_instance_type", "transform instance type")
    _setting(parser, "--instance-count", "batch_instance_count", "transform instances", type=int)
    _json_option(parser)


def _tune_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=False, help="follow the job")
    parser.add_argument(
        "--hp", action="append", default=[], metavar="NAME=VALUE", help="static hyperparameter"
    )
    _setting(parser, "--strategy", "tune_strategy", "Bayesian, Random, Hyperband or Grid")
    _setting(parser, "--max-jobs", "tune_max_jobs", "training jobs in total", type=int)
    _setting(parser, "--max-parallel-jobs", "tune_max_parallel_jobs", "training jobs at once", type=int)
    _instance_options(parser)
    _json_option(parser)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Settings given on the command line: --set first, then the dedicated flags, then --hp."""
    overrides: dict[str, Any] = dict(cfg.parse_assignment(item) for item in args.set)
    overrides.update({k: v for k, v in vars(args).items() if k in cfg.FIELDS and v is not None})
    hyperparameters = dict(cfg.parse_assignment(item, "--hp") for item in getattr(args, "hp", []))
    if hyperparameters:
        overrides["hyperparameters"] = hyperparameters
    return overrides


# --- commands ----------------------------------------------------------------------------------


def _upload(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy.upload import upload

    cfg.require(settings, "bucket")
    report = upload(settings, open_session(settings, factory).client("s3"), args.prepared)
    _emit(
        args,
        vars(report),
        [
            f"{report.destination}: {len(report.uploaded)} uploaded, {len(report.unchanged)} unchanged, "
            f"{len(report.removed)} removed"
        ],
    )
    return 0


def _train(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import training

    if args.local:
        from deploy.localmode import commands

        data, lines = commands.train(args, settings)
        _emit(args, data, lines)
        return 0
    if args.prepared is not None or args.tuning_style:
        raise NcfError(
            "--prepared and --tuning-style go with --local (SageMaker jobs read the uploaded data)"
        )
    cfg.require(settings, "role_arn", "bucket")
    with _job_logs(args.wait and args.logs):
        result = training.train(settings, open_session(settings, factory), wait=args.wait, logs=args.logs)
    lines = [f"training job: {result.job_name}", f"status: {result.status}", f"model: {result.model_data}"]
    if not args.wait:
        lines.append("follow it with `python -m deploy status`; deploy it with `python -m deploy deploy`")
    _emit(args, vars(result), lines)
    return 0


def _serving_model_data(args: argparse.Namespace, settings: Settings, session: Any) -> str:
    from deploy import hosting, registry

    package = getattr(args, "model_package", None)
    if package and (args.training_job or args.model_data):
        raise NcfError("--model-package cannot be combined with --training-job or --model-data")
    if package:
        client = session.client("sagemaker")
        model_data = registry.model_data(client, registry.package_arn(client, settings, package))
    else:
        model_data = hosting.resolve_model_data(
            settings, session, training_job=args.training_job, model_data=args.model_data
        )
    return hosting.ensure_serving_code(settings, session.client("s3"), model_data, force=args.repackage)


def _candidate_model_data(args: argparse.Namespace, settings: Settings, session: Any) -> str:
    """--candidate's model: an s3:// model.tar.gz, else a training job's (with serving code)."""
    from deploy import hosting

    if args.training_job or args.model_data:
        raise NcfError("--candidate names the candidate's model: --training-job/--model-data go without it")
    source = args.candidate
    model_data = hosting.resolve_model_data(
        settings,
        session,
        training_job=None if source.startswith("s3://") else source,
        model_data=source if source.startswith("s3://") else None,
    )
    return hosting.ensure_serving_code(settings, session.client("s3"), model_data, force=args.repackage)


def _deploy(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import hosting

    if args.local:
        from deploy.localmode import commands

        if args.model_package:
            raise NcfError("--model-package serves from SageMaker's Model Registry: not with --local")
        return commands.deploy(args, settings)
    cfg.require(settings, "role_arn", "bucket")
    session = open_session(settings, factory)
    if args.candidate:
        report = hosting.deploy_candidate(settings, session, _candidate_model_data(args, settings, session))
    else:
        report = hosting.deploy(settings, session, _serving_model_data(args, settings, session))
    lines = [
        f"endpoint {report.endpoint} {report.action}: InService",
        f"endpoint config: {report.endpoint_config}",
        f"model: {report.model} ({report.model_data})",
    ]
    if report.removed:
        lines.append(f"removed the previous {', '.join(report.removed)}")
    _emit(args, vars(report), lines)
    return 0


def _invoke(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import invoke

    client = None
    if args.local:
        from deploy.localmode import commands

        if args.endpoint_url:
            raise NcfError("--local and --endpoint-url cannot be combined")
        client = commands.runtime_client(settings, args.endpoint_name)
    return invoke.run(
        args, default_endpoint_name=settings.endpoint, region=settings.region or None, client=client
    )


def _batch(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy.batch import run_batch

    cfg.require(settings, "role_arn", "bucket")
    session = open_session(settings, factory)
    model_data = _serving_model_data(args, settings, session)
    report = run_batch(settings, session, source=settings.batch_input, model_data=model_data, wait=args.wait)
    lines = [
        f"transform job: {report.job_name} ({report.status})",
        f"input: {report.input_uri}",
        f"output: {report.output_uri}",
    ]
    _emit(args, vars(report), lines)
    return 0


def _tune(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy.tuning import tune

    cfg.require(settings, "role_arn", "bucket")
    report = tune(settings, open_session(settings, factory), wait=args.wait)
    lines = [f"tuning job: {report.job_name} ({report.status})"]
    if report.best_training_job:
        lines += [
            f"best training job: {report.best_training_job} ({report.objective} {report.best_objective})",
            f"best hyperparameters: {json.dumps(report.best_hyperparameters, sort_keys=True)}",
            f"model: {report.best_model_data}",
        ]
    _emit(args, vars(report), lines)
    return 0


def _promote(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import hosting

    report = hosting.promote(settings, open_session(settings, factory), args.variant)
    lines = [
        f"endpoint {report.endpoint}: all traffic on {report.variant}, now its only variant",
        f"endpoint config: {report.endpoint_config}",
    ]
    if report.removed:
        lines.append(f"removed the previous {', '.join(report.removed)}")
    _emit(args, vars(report), lines)
    return 0


def _ab_report(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    import dataclasses

    from deploy import abreport_io, abtest

    if args.capture is None:
        cfg.require(settings, "bucket")
    capture = args.capture or settings.s3_uri("data-capture", settings.endpoint) + "/"
    remote = any(source.startswith("s3://") for source in (capture, args.interactions))
    s3_client = open_session(settings, factory).client("s3") if remote else None
    variants, comparisons = abreport_io.run(
        capture,
        args.interactions,
        s3_client,
        k=args.k,
        window_days=args.window_days,
        resamples=args.resamples,
    )
    data = {
        "k": args.k,
        "window_days": args.window_days,
        "variants": [dataclasses.asdict(v) for v in variants],
        "comparisons": [dataclasses.asdict(c) for c in comparisons],
    }
    _emit(args, data, abtest.format_lines(variants, comparisons, args.k))
    return 0


def _schedule(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import schedule

    if args.delete:
        report = schedule.delete(settings, open_session(settings, factory))
        _emit(args, vars(report), [f"schedule {report.schedule}: {report.action}"])
        return 0
    cfg.require(settings, "schedule_role_arn")
    parameters = dict(cfg.parse_assignment(item, "--parameter") for item in args.parameter)
    report = schedule.upsert(settings, open_session(settings, factory), args.cron, parameters)
    lines = [
        f"schedule {report.schedule} {report.action}: {report.expression} ({report.timezone})",
        f"starts pipeline {report.pipeline}",
    ]
    _emit(args, vars(report), lines)
    return 0


def _pipeline_values(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline parameters given on the command line (--gate-margin and --approval-status also set,
    and so validate, the settings of the same names)."""
    given = {
        "ModelType": args.model_type,
        "Epochs": args.epochs,
        "GateMargin": args.gate_margin,
        "ApprovalStatus": args.approval_status,
    }
    return {name: value for name, value in given.items() if value is not None}


def _pipeline_upsert(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import pipeline

    cfg.require(settings, "role_arn", "bucket")
    report = pipeline.upsert(settings, open_session(settings, factory))
    lines = [
        f"pipeline {report.pipeline}: {report.arn}",
        f"source: {report.source}",
        f"model package group: {report.model_package_group}",
        "start it with `python -m deploy pipeline start --wait`",
    ]
    _emit(args, vars(report), lines)
    return 0


def _pipeline_start(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import pipeline

    values = _pipeline_values(args)
    if args.local:
        return _pipeline_start_local(args, settings, values)
    if args.current_model is not None:
        raise NcfError("--current-model goes with --local (on SageMaker it is the latest Approved package)")
    cfg.require(settings, "role_arn", "bucket")
    if args.input_data:
        values["InputData"] = args.input_data
    summary = pipeline.start(settings, open_session(settings, factory), values, wait=args.wait)
    lines = [f"pipeline execution {summary['execution']}: {summary['status']}"]
    lines += [f"  {s['name']}: {s['status']}" for s in summary["steps"]]
    _emit(args, summary, lines)
    return 0


def _pipeline_start_local(args: argparse.Namespace, settings: Settings, values: dict[str, Any]) -> int:
    from deploy.localmode.pipeline import run_local
    from deploy.packaging import REPO_ROOT

    source = Path(args.input_data) if args.input_data else REPO_ROOT / "data" / "default"
    result = run_local(settings, source, values, args.current_model)
    lines = [f"local pipeline execution {result.execution}: {result.status}"]
    lines += [f"  {s['name']}: {s['status']}" for s in result.steps]
    if result.gate:
        lines.append(f"gate: {result.gate['summary']}")
    lines.append(f"files: {result.folder}")
    if result.approved_model:
        lines.append(f"approved (the next local run's current model): {result.approved_model}")
    _emit(args, vars(result), lines)
    if result.status != "Succeeded":
        raise RemoteFailure(f"local pipeline execution {result.execution} failed: {result.failure_reason}")
    return 0


def _pipeline_status(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import pipeline

    executions = pipeline.status(settings, open_session(settings, factory), args.limit)
    lines = [f"{e['execution']}  {e['status']}  {e['started']}" for e in executions]
    if executions:
        lines += [
            f"  {s['name']}: {s['status']} {s['failure_reason']}".rstrip() for s in executions[0]["steps"]
        ]
    _emit(args, {"pipeline": settings.pipeline, "executions": executions}, lines or ["no executions yet"])
    return 0


def _pipeline_describe(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import pipeline

    described = pipeline.describe(settings, open_session(settings, factory))
    lines = [f"pipeline {described['pipeline']}: {described['arn']} ({described['status']})"]
    lines += [f"parameter {name} = {value}" for name, value in described["parameters"].items()]
    lines += [f"step {step}" for step in described["steps"]]
    _emit(args, described, lines)
    return 0


def _registry_list(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import registry

    packages = registry.list_packages(open_session(settings, factory).client("sagemaker"), settings)
    rows = [
        (
            str(p.version),
            p.approval,
            p.status,
            p.created.strftime("%Y-%m-%d %H:%M") if p.created else "-",
            p.arn,
        )
        for p in packages
    ]
    text = (
        _table([("VERSION", "APPROVAL", "STATUS", "CREATED", "ARN"), *rows])
        if rows
        else [f"no model packages in {settings.package_group}"]
    )
    _emit(args, {"group": settings.package_group, "packages": [vars(p) for p in packages]}, text)
    return 0


def _registry_decide(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import registry

    client = open_session(settings, factory).client("sagemaker")
    arn = registry.decide(client, settings, args.package, args.action, args.reason)
    status = registry.DECISIONS[args.action]
    _emit(args, {"package": arn, "approval": status}, [f"{arn}: {status}"])
    return 0


def _status(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import inventory

    session = open_session(settings, factory)
    sagemaker_client = session.client("sagemaker")
    found = inventory.find(
        sagemaker_client,
        settings.project,
        tuple(inventory.KINDS),
        limit=args.limit,
        endpoint=settings.endpoint,
    )
    found = inventory.with_endpoint_details(
        sagemaker_client, session.client("application-autoscaling"), found
    )
    rows = [
        (
            r.kind,
            r.name,
            r.status or "-",
            r.created.strftime("%Y-%m-%d %H:%M") if r.created else "-",
            r.detail,
        )
        for r in found
    ]
    header = ("KIND", "NAME", "STATUS", "CREATED", "DETAIL")
    text = (
        _table([header, *rows])
        if rows
        else [f"no resources tagged {settings.project!r} in {session.region_name}"]
    )
    _emit(args, {"project": settings.project, "resources": [vars(r) for r in found]}, text)
    return 0


def _teardown(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import inventory

    if args.local:
        from deploy.localmode import commands

        return commands.teardown(settings)
    session = open_session(settings, factory)
    sagemaker_client = session.client("sagemaker")
    found = inventory.find(sagemaker_client, settings.project, inventory.HOSTING, endpoint=settings.endpoint)
    if not found:
        print(f"nothing to delete: no endpoints, endpoint configs or models tagged {settings.project!r}")
        return 0
    if args.dry_run:
        print("\n".join(f"would delete {r.kind} {r.name}" for r in found))
        return 0
    outcomes = inventory.delete(sagemaker_client, session.client("application-autoscaling"), found)
    print("\n".join(f"{o.resource.kind} {o.resource.name}: {o.result}" for o in outcomes))
    failed = [o for o in outcomes if o.result.startswith("failed")]
    if failed:
        raise RemoteFailure(
            f"{len(failed)} of {len(outcomes)} deletions failed (see above); run teardown again"
        )
    return 0


def _iam_policy(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import iam, images

    cfg.require(settings, "bucket")
    account = args.account_id or (settings.role_arn.split(":")[4] if settings.role_arn else "")
    if not account.isdigit() or len(account) != 12:
        raise NcfError("iam-policy needs the 12-digit account id: set role_arn or pass --account-id")
    region = open_session(settings, factory).region_name
    image_uris = [
        images.training_image(settings, region),
        images.inference_image(settings, region),
        images.inference_image(settings, region, settings.batch_instance_type),
    ]
    documents = iam.policies(settings, account, image_uris)
    names = {
        "execution-role": "ExecutionRolePolicy",
        "trust": "TrustPolicy",
        "operator": "OperatorPolicy",
        "scheduler-role": "SchedulerRolePolicy",
        "scheduler-trust": "SchedulerTrustPolicy",
    }
    chosen = documents if args.which == "all" else documents[names[args.which]]
    print(json.dumps(chosen, indent=2))
    return 0


def _show_config(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    print(json.dumps(cfg.describe(settings), indent=2, sort_keys=True))
    return 0


def _doctor(args: argparse.Namespace, settings: Settings, factory: SessionFactory) -> int:
    from deploy import doctor

    checks = doctor.run(settings, factory, local=args.local)
    _emit(args, doctor.as_data(checks), doctor.format_lines(checks))
    return doctor.exit_status(checks)


# --- output and errors --------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    """Print the result: JSON with --json, else the human-readable lines."""
    print(json.dumps(data, indent=2, default=str) if args.json else "\n".join(lines))


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def _is_sdk_role_error(exc: Exception) -> bool:
    """The SDK's RoleValidationError (only when SAGEMAKER_VALIDATE_ROLE is turned back on)."""
    module = sys.modules.get("sagemaker.core.helper.iam_role_resolver")
    return module is not None and isinstance(exc, module.RoleValidationError)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (so redirected or captured output works)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


@contextmanager
def _job_logs(enabled: bool) -> Iterator[None]:
    """Let the SDK's wait loop print the job's CloudWatch log lines (it logs them at INFO)."""
    logger = logging.getLogger("sagemaker.core.resources")
    previous = logger.level
    if enabled:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _configure_logging(verbose: bool) -> None:
    """Our progress messages at INFO; the SDK's only from WARNING unless --verbose."""
    sdk_level = logging.INFO if verbose else logging.WARNING
    for name, level in (("deploy", logging.INFO), ("sagemaker", sdk_level)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            logger.addHandler(_StderrHandler())
    # The SDK sets this child to INFO itself when it is unset; it still reports through "sagemaker".
    logging.getLogger("sagemaker.config").setLevel(sdk_level)
