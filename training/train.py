"""Train, evaluate and export an NCF recommender: on a laptop, or as a SageMaker script-mode job.

Locally:
    python training/train.py --train DIR/train --validation DIR/validation --test DIR/test --model-dir OUT

In the SageMaker TensorFlow training container the same script reads SM_CHANNEL_*, SM_MODEL_DIR,
SM_OUTPUT_DATA_DIR, SM_HPS and /opt/ml/checkpoints; command-line flags override them. It writes
the SavedModel to MODEL_DIR/1 and the serving handler to MODEL_DIR/code, so the model.tar.gz
SageMaker makes of MODEL_DIR deploys as-is on the TensorFlow Serving container.

With several instances (SM_HOSTS) it trains with MultiWorkerMirroredStrategy, and on one instance
with several GPUs with MirroredStrategy (see ncf/distribute.py; NCF_WORKER_ADDRESSES overrides the
worker addresses for local runs, NCF_DEVICES the devices mirrored over). On SIGTERM (spot interruption)
it stops within seconds, keeps the last completed epoch's checkpoint and exits with status 143.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ncf import interruption
from ncf.config import TrainConfig, load_config
from ncf.errors import NcfError


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
    """The whole job; returns what it wrote to metrics.json."""
    import numpy as np
    from ncf import reporting
    from ncf.dataset import TrainingData, load_training_data
    from ncf.distribute import connect, resolve_cluster
    from ncf.features import configured_item_features

    started = time.perf_counter()
    # Data problems are reported before TensorFlow is imported: fast, and without its start-up noise.
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

    from ncf.export import Recommender, copy_inference_code, save_recommender, write_model_archive
    from ncf.models import ModelSpec, NcfModel
    from ncf.trainer import FitResult, ModelScorer, evaluate, fit

    workers = connect(cluster, os.environ, log)
    # After importing TensorFlow and starting the strategy: both install SIGTERM handlers of their own.
    interruption.install()

    here = (
        f" (this worker's shard: {np.count_nonzero(np.diff(data.seen.offsets)):,} users)" if sharded else ""
    )
    log(
        f"data: {len(data.users):,} users, {len(data.items):,} items, {len(data.train_users):,} training "
        f"interactions{here}, {len(data.validation.users):,} validation and {len(data.test.users):,} test"
        " users"
    )
    log(f"hyperparameters: {config.hyperparameters()}")
    if features is not None and data.item_features is not None:
        cold = int((data.item_features.has_id == 0).sum())
        log(f"item features: {features.describe()}; {cold:,} cold-start items (features only)")

    def build(model_type: str) -> NcfModel:
        spec = ModelSpec(model_type, len(data.users), len(data.items), config.factors, config.mlp_layers)
        with workers.scope():
            return NcfModel(spec, seed=config.seed, item_features=data.item_features)

    checkpoints = Path(config.checkpoint_dir) if config.checkpoint_dir else None

    def train_model(
        training: TrainingData, epochs: int, select: bool, suffix: str
    ) -> tuple[NcfModel, FitResult]:
        """Build and fit the configured model, pretraining NeuMF's towers first when asked."""

        def fit_stage(model: NcfModel, epochs: int, stage: str) -> FitResult:
            return fit(
                model,
                training,
                config,
                epochs=epochs,
                checkpoint_dir=checkpoints,
                log=log,
                stage=f"{stage}{suffix}",
                select=select,
                workers=workers,
                stop_requested=interruption.requested,
            )

        model = build(config.model_type)
        if config.pretrain:
            towers = {tower: build(tower) for tower in ("gmf", "mlp")}
            for tower, tower_model in towers.items():
                fit_stage(tower_model, config.pretrain_epochs, f"pretrain-{tower}")
            model.load_pretrained(towers["gmf"], towers["mlp"])
        result = fit_stage(model, epochs, config.model_type)
        return model, result

    model, result = train_model(data, config.epochs, select=True, suffix="")
    served_data = data
    if config.refit:
        log(f"refit: training on train + validation for the selected {result.best_epoch} epochs")
        served_data = data.with_validation_positives(config.is_implicit)
        model, _ = train_model(served_data, result.best_epoch, select=False, suffix="-refit")

    test_metrics = evaluate(ModelScorer(model), served_data, "test", config, workers)
    if served_data.sharded:
        with workers.failures_reported():
            served_data = served_data.with_seen_of_everyone(workers.gather_rows)
    if not workers.is_chief:
        log(f"worker {workers.index}: done; the chief (worker 0) exports the model and writes the metrics")
        return {"best_epoch": result.best_epoch, "test": test_metrics}
    for name, value in {**test_metrics, "best_epoch": result.best_epoch}.items():
        log(reporting.metric_line(name, value))

    model_dir = Path(config.model_dir)
    recommender = Recommender(
        model,
        served_data.users,
        served_data.items,
        served_data.seen,
        served_data.popularity,
        config.is_implicit,
        similarity=config.similarity,
    )
    saved = save_recommender(recommender, model_dir)
    code = find_inference_code(config)
    if code is None:
        log(
            "warning: no inference/ folder found next to train.py; MODEL_DIR has no code/ "
            "(deploy repackages the artifact with the handler)"
        )
    else:
        copy_inference_code(code, model_dir)
    archive = write_model_archive(model_dir, model_dir.parent / "model.tar.gz") if config.package else None

    output_dir = config.resolved_output_dir
    summary = {
        "model_type": config.model_type,
        "feedback": config.feedback,
        "hyperparameters": config.hyperparameters(),
        "best_epoch": result.best_epoch,
        "validation": {k: v for k, v in result.best_metrics.items() if k.startswith("validation_")},
        "test": test_metrics,
        "data": {
            "users": len(data.users),
            "items": len(data.items),
            "train_interactions": int(data.item_counts.sum()),
            "validation_users": len(data.validation.users),
            "test_users": len(data.test.users),
        },
        "epochs_run": len(result.history),
        "refit": config.refit,
        "seconds": time.perf_counter() - started,
    }
    reporting.write_json(output_dir / "metrics.json", summary)
    reporting.write_json(output_dir / "history.json", {"history": result.history})
    if result.history:
        reporting.write_history_csv(output_dir / "history.csv", result.history)
        reporting.plot_training_curve(output_dir / "training_curve.png", result.history, config.selection_key)
    log(f"saved model: {saved}")
    if archive:
        log(f"model archive: {archive}")
    log(f"metrics: {output_dir / 'metrics.json'}")
    return summary


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
