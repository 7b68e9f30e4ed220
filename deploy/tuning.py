"""`tune`: a hyperparameter tuning job (the SDK's `HyperparameterTuner` over the training `ModelTrainer`).

Objective: maximise `validation_ndcg_at_<top_k>` (`validation_ndcg_at_10` with train.py's default
`top_k`), read from train.py's log with the same metric regexes as `train`, whose names follow the
job's `top_k` too (a `top_k` range is refused: one objective name must fit every trial). The ranges
come from the `tune_ranges` setting (learning rate, factors, MLP layers, negatives, batch size by
default); the other hyperparameters stay as configured.

Trials get no checkpoint config: all trials of a tuning job share one CheckpointConfig, and a
trial must never resume from another trial's checkpoint. With spot, an interrupted trial starts
over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import boto3

from deploy.aws import project_tags, text_or, unique_name, wait_for_job
from deploy.config import Settings
from deploy.training import build_trainer, channel_source, metric_definitions, prepare_job

LOG = logging.getLogger("deploy")


@dataclass(frozen=True)
class TuningReport:
    """The tuning job and, once it has finished, its best trial."""

    job_name: str
    status: str
    best_training_job: str = ""
    best_objective: float | None = None
    best_hyperparameters: dict[str, str] | None = None
    best_model_data: str = ""
    objective: str = ""


def objective_metric(settings: Settings) -> str:
    """The metric a tuning job maximises: validation NDCG at the `top_k` its trials run with, as
    train.py names it (and prints it last, for the selected epoch)."""
    return f"validation_ndcg_at_{settings.top_k}"


def parameter_ranges(ranges: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The SDK's ParameterRange objects for the (already validated) `tune_ranges` setting."""
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    built: dict[str, Any] = {}
    for name, spec in ranges.items():
        if spec["type"] == "categorical":
            built[name] = CategoricalParameter([str(v) for v in spec["values"]])
        else:
            kind = ContinuousParameter if spec["type"] == "continuous" else IntegerParameter
            built[name] = kind(spec["min"], spec["max"], scaling_type=spec.get("scaling", "Auto"))
    return built


def trial_channel(settings: Settings, channel: str) -> Any:
    """One channel of every trial, as the API's `Channel`: the SDK tuner sends those as they are, while
    it rebuilds plain URIs and `InputData` as FullyReplicated (sagemaker/train/tuner.py), which would
    give each instance of a `shard_train` trial the whole train channel."""
    from sagemaker.core.shapes import Channel, DataSource

    return Channel(
        channel_name=channel, data_source=DataSource(s3_data_source=channel_source(settings, channel))
    )


def tune(settings: Settings, session: boto3.Session, *, wait: bool) -> TuningReport:
    """Start the tuning job; with `wait`, follow it and report the best trial."""
    from sagemaker.train.tuner import HyperparameterTuner

    inputs = prepare_job(settings, session)
    trainer = build_trainer(settings, session, inputs, checkpoints=False)
    grid = settings.tune_strategy == "Grid"
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=objective_metric(settings),
        objective_type="Maximize",
        hyperparameter_ranges=parameter_ranges(settings.tune_ranges),
        metric_definitions=metric_definitions(settings),
        strategy=settings.tune_strategy,
        max_jobs=None if grid else settings.tune_max_jobs,
        max_parallel_jobs=settings.tune_max_parallel_jobs,
        early_stopping_type="Auto"
        if settings.tune_early_stopping and settings.tune_strategy != "Hyperband"
        else "Off",
        tags=project_tags(settings),
    )
    job_name = unique_name(settings, "tune")
    tuner.tune(inputs=[trial_channel(settings, c) for c in inputs.channels], job_name=job_name, wait=False)
    job = tuner.latest_tuning_job
    LOG.info("tuning job %s started", job_name)
    if not wait:
        return TuningReport(
            job_name, job.hyper_parameter_tuning_job_status, objective=objective_metric(settings)
        )
    wait_for_job(job, "tuning job", "hyper_parameter_tuning_job_status", settings.poll_seconds)
    return _best(settings, session, job)


def _best(settings: Settings, session: boto3.Session, job: Any) -> TuningReport:
    best = job.best_training_job
    name = text_or(getattr(best, "training_job_name", None), "")
    if not name:
        return TuningReport(
            job.hyper_parameter_tuning_job_name,
            job.hyper_parameter_tuning_job_status,
            objective=objective_metric(settings),
        )
    described = session.client("sagemaker").describe_training_job(TrainingJobName=name)
    objective = getattr(best, "final_hyper_parameter_tuning_job_objective_metric", None)
    return TuningReport(
        job.hyper_parameter_tuning_job_name,
        job.hyper_parameter_tuning_job_status,
        best_training_job=name,
        best_objective=getattr(objective, "value", None),
        best_hyperparameters=dict(getattr(best, "tuned_hyper_parameters", None) or {}),
        best_model_data=described.get("ModelArtifacts", {}).get("S3ModelArtifacts", ""),
        objective=objective_metric(settings),
    )
