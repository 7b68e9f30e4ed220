"""Train, evaluate and export an NCF recommender: on a laptop, or as a SageMaker script-mode job.

Locally:
    python training/train.py --train DIR/train --validation DIR/validation --test DIR/test --model-dir OUT

In the SageMaker TensorFlow training container the same script reads SM_CHANNEL_*, SM_MODEL_DIR,
SM_OUTPUT_DATA_DIR, SM_HPS and /opt/ml/checkpoints; command-line flags override them. It writes
the SavedModel to MODEL_DIR/1 and the serving handler to MODEL_DIR/code, so the model.tar.gz
SageMaker makes of MODEL_DIR deploys as-is on the TensorFlow Serving container.

With several instances (SM_HOSTS) it trains with MultiWorkerMirroredStrategy, and on one instance
with several GPUs with MirroredStrategy (see ncf/fit/distribute.py; NCF_WORKER_ADDRESSES overrides the
worker addresses for local runs, NCF_DEVICES the devices mirrored over). On SIGTERM (spot interruption)
it stops within seconds, keeps the last completed epoch's checkpoint and exits with status 143.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ncf.errors import NcfError
from ncf.fit import interruption
from ncf.models.memory import budget_bytes
from ncf.train_settings import TrainConfig, load_config

if TYPE_CHECKING:  # imported where used: TensorFlow loads only after the data has been checked
    import pandas as pd
    from ncf.data.training_data import TrainingData
    from ncf.fit.distribute import Workers
    from ncf.fit.stage_loop import FitResult
    from ncf.models.base import Model
    from ncf.serving.filter_checks import DeclaredFilters
    from ncf.serving.filters import FilterSet


def log(message: str) -> None:
    print(message, flush=True)


def find_inference_code(config: TrainConfig) -> Path | None:
    """The inference/ folder to ship as code/: given, staged next to this script, or the repo's."""
    if config.inference_code:
        return Path(config.inference_code)
    here = Path(__file__).resolve().parent
    for candidate in (here / "inference", here.parent / "inference"):
        if (candidate / "inference.py").is_file():
            return candidate
    return None


def run(config: TrainConfig) -> dict:
    """The whole job; returns what it wrote to metrics.json.

    Select the epoch count on validation, refit on train + validation and score test once
    (the reported metrics), then train the exported model on every interaction (`final_fit`).
    """
    from ncf import reporting
    from ncf.data.features import configured_item_fields
    from ncf.serving.filter_checks import configured_filters

    started = time.perf_counter()
    # Data problems are reported before TensorFlow is imported: fast, and without its start-up noise.
    filters = configured_filters(config)
    fields = configured_item_fields(config)
    data, join_workers = _load_data(config)
    _check_against_data(config, data, filters)
    stages = _Stages(config, data, join_workers(), _checkpoint_dir(config))
    workers = stages.workers
    model, result, evaluated, test_metrics = _evaluation_phase(stages)
    exported = evaluated
    if config.final_fit:
        model, exported = _final_fit(stages, evaluated, result.best_epoch)
    if exported.sharded:
        with workers.failures_reported():
            exported = exported.with_seen_of_everyone(workers.gather_rows)
    if not workers.is_chief:
        log(f"worker {workers.index}: done; the chief (worker 0) exports the model and writes the metrics")
        return {"best_epoch": result.best_epoch, "test": test_metrics}
    for name, value in {**test_metrics, "best_epoch": result.best_epoch}.items():
        log(reporting.metric_line(name, value))

    retrieval = _export(config, model, exported, filters, fields)
    summary = _summary(config, result, test_metrics, data, exported, time.perf_counter() - started)
    summary["exported_model"]["retrieval"] = retrieval
    _write_reports(config, summary, result.history)
    # Last, for SageMaker: a tuning job ranks a trial by the last value of its objective metric,
    # which must be the selected epoch's, not that of the last epoch early stopping ran.
    log(f"selected model: epoch {result.best_epoch} of the selection stage, on validation")
    for name, value in result.validation_metrics.items():
        log(reporting.metric_line(name, value))
    return summary


def _check_against_data(config: TrainConfig, data: TrainingData, filters: DeclaredFilters | None) -> None:
    """Refuse, before training, what the export would refuse: interaction filters over columns the data
    lacks (no event types, no timestamps) and a popularity window without timestamps."""
    from ncf.serving.filter_checks import InteractionColumns

    if filters is not None:
        filters.checked_for(data.items.ids.astype(str), InteractionColumns.of(data))
    data.popularity_within(config.popularity_window_days)


def _evaluation_phase(stages: _Stages) -> tuple[Model, FitResult, TrainingData, dict[str, float]]:
    """Select the epoch count on validation, refit on train + validation, score test once.

    Returns the evaluated model, the selection stage's result, the data the model was trained on,
    and the test metrics (the ones reported).
    """
    from ncf.evaluation.scoring import ModelScorer
    from ncf.fit.stage_loop import evaluate_split

    config, data = stages.config, stages.data
    model, result = stages.train(data, config.epochs, select=True, suffix="")
    evaluated = data
    if config.refit:
        log(f"refit: training on train + validation for the selected {result.best_epoch} epochs")
        evaluated = data.with_heldout_positives("validation", config.is_implicit)
        model, _ = stages.train(evaluated, result.best_epoch, select=False, suffix="-refit")
    elif model.keeps_histories:  # a sequence model's test-time input: everything before the test item
        model.remember(data.with_heldout_positives("validation", config.is_implicit))
    scorer = ModelScorer(model, budget_bytes(config.memory_budget_mb))
    test_metrics = evaluate_split(scorer, evaluated, "test", config, stages.workers)
    return model, result, evaluated, test_metrics


def _final_fit(stages: _Stages, evaluated: TrainingData, epochs: int) -> tuple[Model, TrainingData]:
    """The production model: trained on every interaction (train + validation + test) for `epochs`."""
    config, implicit = stages.config, stages.config.is_implicit
    log(
        f"final fit: training the exported model on every interaction (train + validation + test) for"
        f" the selected {epochs} epochs; the test metrics above come from the model before it"
    )
    with_validation = evaluated if config.refit else evaluated.with_heldout_positives("validation", implicit)
    everything = with_validation.with_heldout_positives("test", implicit)
    model, _ = stages.train(everything, epochs, select=False, suffix="-final")
    return model, everything


def _summary(
    config: TrainConfig,
    result: FitResult,
    test: dict[str, float],
    data: TrainingData,
    exported: TrainingData,
    seconds: float,
) -> dict:
    """metrics.json: settings, the selected epoch's validation metrics, test metrics, data counts."""
    return {
        "model_type": config.model_type,
        "feedback": config.feedback,
        "hyperparameters": config.hyperparameters(),
        "best_epoch": result.best_epoch,
        "validation": result.validation_metrics,
        "test": test,
        "exported_model": _exported_model_summary(config, result.best_epoch),
        "data": {
            "users": len(data.users),
            "items": len(data.items),
            "train_interactions": int(data.item_counts.sum()),
            "exported_interactions": int(exported.item_counts.sum()),
            "validation_users": len(data.validation.users),
            "test_users": len(data.test.users),
        },
        "epochs_run": len(result.history),
        "refit": config.refit,
        "seconds": seconds,
    }


def _load_data(config: TrainConfig) -> tuple[TrainingData, Callable[[], Workers]]:
    """The channels as training data, and how to join the job's workers (which imports TensorFlow)."""
    import numpy as np
    from ncf.data.features import configured_item_features
    from ncf.data.training_data import load_training_data
    from ncf.fit import threads
    from ncf.fit.distribute import connect, resolve_cluster

    features = configured_item_features(config)
    cluster = resolve_cluster(os.environ)
    sharded = bool(config.train_sharded) and cluster is not None
    data = load_training_data(
        config.train,
        config.validation,
        config.test,
        config.is_implicit,
        features,
        vocabulary_dir=config.vocabulary,
        sharded=sharded,
    )

    def join_workers() -> Workers:
        threads.configure(
            config.intra_op_threads, config.inter_op_threads, log
        )  # before TensorFlow's first op
        workers = connect(cluster, os.environ, log)
        # After importing TensorFlow and starting the strategy: both install SIGTERM handlers of their own.
        interruption.install()
        shard = f" (this worker's shard: {np.count_nonzero(np.diff(data.seen.offsets)):,} users)"
        log(
            f"data: {len(data.users):,} users, {len(data.items):,} items, {len(data.train_users):,} training "
            f"interactions{shard if sharded else ''}, {len(data.validation.users):,} validation and"
            f" {len(data.test.users):,} test users"
        )
        log(f"hyperparameters: {config.hyperparameters()}")
        if features is not None and data.item_features is not None:
            cold = int((data.item_features.has_id == 0).sum())
            log(f"item features: {features.describe()}; {cold:,} cold-start items (features only)")
        return workers

    return data, join_workers


def _checkpoint_dir(config: TrainConfig) -> Path | None:
    return Path(config.checkpoint_dir) if config.checkpoint_dir else None


class _Stages:
    """Builds and fits the configured model: what the selection, refit and final fit share."""

    def __init__(
        self, config: TrainConfig, data: TrainingData, workers: Workers, checkpoints: Path | None
    ) -> None:
        self.config = config
        self.data = data
        self.workers = workers
        self.checkpoints = checkpoints

    def build(self, model_type: str, training: TrainingData) -> Model:
        """A fresh model of the registered `model_type` (`ncf.models.registry`) over `training`."""
        from ncf.models.registry import model_class

        return model_class(model_type).build(model_type, self.config, training, self.workers)

    def fit(self, model: Model, training: TrainingData, epochs: int, stage: str, select: bool) -> FitResult:
        from ncf.fit.stage_loop import fit

        return fit(
            model,
            training,
            self.config,
            epochs=epochs,
            checkpoint_dir=self.checkpoints,
            log=log,
            stage=stage,
            select=select,
            workers=self.workers,
            stop_requested=interruption.requested,
        )

    def train(
        self, training: TrainingData, epochs: int, *, select: bool, suffix: str
    ) -> tuple[Model, FitResult]:
        """Build and fit the configured model, pretraining NeuMF's towers first when asked."""
        config = self.config
        model = self.build(config.model_type, training)
        if config.pretrain:
            towers = {tower: self.build(tower, training) for tower in ("gmf", "mlp")}
            for tower, tower_model in towers.items():
                self.fit(tower_model, training, config.pretrain_epochs, f"pretrain-{tower}{suffix}", select)
            model.load_pretrained(towers["gmf"], towers["mlp"])
        result = self.fit(model, training, epochs, f"{config.model_type}{suffix}", select)
        return model, result


def _exported_model_summary(config: TrainConfig, epochs: int) -> dict[str, object]:
    """What metrics.json says of the exported model, and where its reported test metrics come from."""
    if config.final_fit:
        trained_on = "train+validation+test"
    else:
        trained_on = "train+validation" if config.refit else "train"
    evaluated_on = "train+validation" if config.refit else "train"
    return {
        "final_fit": config.final_fit,
        "trained_on": trained_on,
        "epochs": epochs,
        "test_metrics_from": (
            f"the evaluation phase: a model trained on {evaluated_on} for the selected epochs, scored once on"
            " the test split"
            + (
                "; the exported model was trained afterwards on every interaction and is not evaluated"
                if config.final_fit
                else "; that model is the exported one"
            )
        ),
    }


def _export(
    config: TrainConfig,
    model: Model,
    exported: TrainingData,
    filters: DeclaredFilters | None,
    fields: pd.DataFrame | None,
) -> dict[str, object]:
    """The SavedModel of `model` with what `exported` knows (ids, seen items, popularity), the declared
    `filters` and the item `fields` served on request, plus code/.

    Returns the top-k strategy the export chose by catalog size (`ncf.serving.retrieval.choose`), for
    metrics.json.
    """
    import dataclasses

    from ncf.serving.export import Recommender, copy_inference_code, save_recommender, write_model_archive
    from ncf.serving.history_blend import BlendSettings
    from ncf.serving.item_fields import ItemFieldTable, describe
    from ncf.serving.retrieval import choose

    model_dir = Path(config.model_dir)
    retrieval = choose(
        config.model_type, len(exported.items), config.retrieval_candidates, config.retrieval_min_items
    )
    log(f"top-k: {retrieval.mode} ({retrieval.reason})")
    filter_set = None if filters is None else _filter_set(filters, exported)
    field_table = None if fields is None else ItemFieldTable(fields, exported.items.ids.astype(str))
    if fields is not None:
        log(f"item fields: {describe(fields)}")
    recommender = Recommender(
        model,
        exported.users,
        exported.items,
        exported.seen,
        exported.popularity_within(config.popularity_window_days),
        config.is_implicit,
        similarity=config.similarity,
        retrieval=retrieval,
        filters=filter_set,
        item_fields=field_table,
        memory_budget_bytes=budget_bytes(config.memory_budget_mb),
        history_blend=BlendSettings(
            config.history_blend_weight, config.history_blend_max_events, config.history_blend_neighbours
        ),
    )
    log(f"saved model: {save_recommender(recommender, model_dir)}")
    code = find_inference_code(config)
    if code is None:
        log(
            "warning: no inference/ folder found next to train.py; MODEL_DIR has no code/ "
            "(deploy repackages the artifact with the handler)"
        )
    else:
        copy_inference_code(code, model_dir)
    if config.package:
        log(f"model archive: {write_model_archive(model_dir, model_dir.parent / 'model.tar.gz')}")
    return dataclasses.asdict(retrieval)


def _filter_set(filters: DeclaredFilters, exported: TrainingData) -> FilterSet:
    """The served filters over the exported catalog, with every user's interactions stored when a filter
    compares them (`Interactions.*`)."""
    from ncf.serving.filter_checks import InteractionColumns
    from ncf.serving.filters import FilterSet
    from ncf.serving.interaction_store import InteractionStore

    checked, attributes = filters.checked_for(exported.items.ids.astype(str), InteractionColumns.of(exported))
    log(f"filters: {', '.join(sorted(filters.texts))}")
    store = None
    if any(f.reads_interactions for f in checked):
        interactions = exported.interaction_log()
        store = InteractionStore(interactions, len(exported.items))
        log(f"interaction filters: {len(interactions.items):,} interactions stored in the model")
    return FilterSet(checked, attributes, store, exported.event_types)


def _write_reports(config: TrainConfig, summary: dict, history: list[dict[str, float]]) -> None:
    """metrics.json, history.json/.csv and the training curve in the output folder."""
    from ncf import reporting

    output_dir = config.resolved_output_dir
    reporting.write_json(output_dir / "metrics.json", summary)
    reporting.write_json(output_dir / "history.json", {"history": history})
    if history:
        reporting.write_history_csv(output_dir / "history.csv", history)
        reporting.plot_training_curve(output_dir / "training_curve.png", history, config.selection_key)
    log(f"metrics: {output_dir / 'metrics.json'}")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        config = load_config(
            sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ, log
        )
        run(config)
    except NcfError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except interruption.TrainingInterrupted as stopped:
        log(
            f"interrupted: SIGTERM received; stopped {stopped.stage} with {stopped.epochs_done} completed"
            " epochs checkpointed (the running epoch is discarded); exit status"
            f" {interruption.EXIT_INTERRUPTED}; run again with the same checkpoint folder to resume"
        )
        return interruption.EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
