"""Training-speed benchmark (`make bench`): the project's trainer against a plain Keras `Model.fit` NeuMF.

Data: `synthetic` (tests/benchmarks/synthetic.py) with the size of MovieLens 1M (6,040 users, 3,706 items,
1,000,000 interactions; popularity only), split by the real `training/prepare.py`, so train.py runs unchanged.

1. train.py in a subprocess with the default hyperparameters except --num-neg 4 (and the run-length
   flags --epochs, --patience 0, --refit false, which change how many epochs run, not how fast).
   Throughput and epoch time are read from its per-epoch `samples_per_sec=`/`epoch_seconds=` metric
   lines (an epoch's wall time, not validation: the first epoch's negative sampling plus training; each
   later epoch's samples were built during the epoch before, `ncf.fit.prefetch`, so any of their
   sampling left over is counted). The first epoch also traces and compiles the step loop, so the
   reported figure is the median of the epochs after it. Peak RSS of the process is its
   own `ru_maxrss` (training, per-epoch validation and export).
2. The same NeuMF (factors, MLP layers, batch size, learning rate from ncf.train_settings) as a plain Keras 3
   functional model (Embedding + Dense layers, Adam, binary cross-entropy) trained with `Model.fit`, in
   its own subprocess, on the very epochs `ncf.fit.pair_sampling` builds (sampled in numpy beforehand). Its
   throughput covers `fit` alone, after a warm-up call that traces and compiles; the sampling time is
   reported beside it.
3. Lazy Adam against Keras' Adam: the same NeuMF in two compiled step loops that differ only in the
   optimizer, timed in turns (see `optimizer_worker`), with this data's tables and ML-20M-sized ones.

Steps 1 and 2 run in ROUNDS alternating rounds (train.py, then Keras, then train.py again...). A VM's
memory bandwidth comes and goes with its neighbours, and over a minute or two that moves both trainers'
throughput by up to 2x; rounds put both under the same conditions. Each round's speed-up is train.py's
median over Keras' median in that round; the reported speed-up is the median of the rounds', with
the lowest and highest beside it, and the reported throughputs are the medians of the rounds'.

Bars (issue #23): >= 1,000,000 samples/s and >= 2.5x the Keras fit, 2 cores, the defaults.
Results: tests/benchmarks/results/speed.json (1, 2) and optimizer.json (3), `-quick` with --quick;
Markdown tables are printed.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_speed.py [--quick] [--optimizer-only]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from ncf import reporting
from ncf.data.training_data import TrainingData
from ncf.fit.pair_sampling import EpochBatches
from ncf.train_settings import TrainConfig
from synthetic import SyntheticSpec, generate

NUM_NEG = 4
BAR_SAMPLES_PER_SEC = 1_000_000
BAR_SPEEDUP = 2.5
BAR_CORES = 2
EPOCHS = {"ncf": 5, "keras": 3}
QUICK_EPOCHS = {"ncf": 2, "keras": 1}
ROUNDS = {"full": 3, "quick": 1}
KERAS_WARMUP_STEPS = 4
# The optimizer comparison: OPTIMIZER_REPEATS timed windows of this many steps of the first epoch.
OPTIMIZERS = ("lazy", "keras")
OPTIMIZER_STEPS = {"full": 300, "quick": 40}
OPTIMIZER_REPEATS = 5
# Embedding rows (users, items) of the larger comparison: MovieLens 20M's.
TABLE_SIZES = {"ml-20m": (138_493, 26_744)}


# The size of MovieLens 1M: 6,040 users, 3,706 items, 1,000,000 interactions (popularity only).
SPEED_SPEC = SyntheticSpec(users=6_040, items=3_706, interactions=1_000_000, min_per_user=20, seed=20170403)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_speed.py",
        description="Measure training throughput and peak memory of train.py on an ML-1M-sized synthetic "
        "set, next to a plain Keras Model.fit NeuMF.",
    )
    common.add_run_options(
        parser,
        "speed",
        f"{QUICK_EPOCHS['ncf']} train.py epochs, {QUICK_EPOCHS['keras']} Keras epoch, short optimizer runs",
        "synthetic data, prepared channels, model and logs",
    )
    parser.add_argument(
        "--optimizer-only",
        action="store_true",
        help="only the lazy-Adam / Keras-Adam comparison (results/optimizer.json), not speed.json",
    )
    # Internal: the Keras baseline and each optimizer run in their own process (own peak memory).
    parser.add_argument("--keras-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--keras-epochs", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--optimizer-worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--optimizer-tables", choices=("data", *TABLE_SIZES), default="data", help=argparse.SUPPRESS
    )
    parser.add_argument("--optimizer-steps", type=int, default=1, help=argparse.SUPPRESS)
    args = common.parse_run_args(parser, argv, "speed")
    args.epochs = QUICK_EPOCHS if args.quick else EPOCHS
    args.rounds = ROUNDS["quick" if args.quick else "full"]
    return args


# -- the worker processes: the Keras baseline and the optimizer comparison --------------------------


def _load(prepared: Path) -> tuple[TrainingData, TrainConfig]:
    from ncf.data.training_data import load_training_data

    config = TrainConfig(num_neg=NUM_NEG)
    channels = (str(prepared / "train"), str(prepared / "validation"), str(prepared / "test"))
    return load_training_data(*channels, implicit=True), config


def _epoch_arrays(data: TrainingData, config: TrainConfig, epoch: int) -> EpochBatches:
    """One epoch exactly as train.py builds it (ncf.fit.pair_epochs): every trainer sees the same batches."""
    from ncf.fit.pair_epochs import EpochSource

    return EpochSource(data, config).batches(epoch)


def keras_worker(prepared: Path, epochs: int) -> int:
    """Train the Keras NeuMF for a warm-up call plus `epochs` timed epochs; print metric lines."""
    import keras

    data, config = _load(prepared)
    keras.utils.set_random_seed(config.seed)
    model = keras_neumf(keras, len(data.users), len(data.items), config.factors, config.mlp_layers)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )

    def fit(batches: EpochBatches, samples: int | None = None) -> tuple[float, float]:
        """(seconds, mean training loss) of one `fit` call over the first `samples` of the epoch."""
        inputs = [batches.users.reshape(-1)[:samples], batches.items.reshape(-1)[:samples]]
        started = time.perf_counter()
        history = model.fit(
            inputs,
            batches.targets.reshape(-1, 1)[:samples],
            sample_weight=batches.weights.reshape(-1)[:samples],
            batch_size=config.batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        return time.perf_counter() - started, float(history.history["loss"][-1])

    compile_seconds, _ = fit(_epoch_arrays(data, config, 0), KERAS_WARMUP_STEPS * config.batch_size)
    print(reporting.metric_line("compile_seconds", compile_seconds), flush=True)
    for epoch in range(epochs):
        started = time.perf_counter()
        batches = _epoch_arrays(data, config, epoch)
        sampling = time.perf_counter() - started
        seconds, loss = fit(batches)
        _print_epoch(epoch, epochs, loss, batches.num_samples, seconds, sampling, "keras fit")
    return 0


def _print_epoch(
    epoch: int, epochs: int, loss: float, samples: int, seconds: float, sampling: float, who: str
) -> None:
    for name, value in {
        "epoch": epoch + 1,
        "train_loss": loss,
        "samples_per_sec": samples / seconds,
        "epoch_seconds": seconds,
        "sampling_seconds": sampling,
        "samples_per_sec_with_sampling": samples / (seconds + sampling),
    }.items():
        print(reporting.metric_line(name, value), flush=True)
    print(
        f"[{who}] epoch {epoch + 1}/{epochs}  loss {loss:.4f}  {samples / seconds:,.0f} samples/s  "
        f"{seconds:.1f}s",
        flush=True,
    )


def optimizer_worker(prepared: Path, tables: str, steps: int) -> int:
    """Lazy Adam and Keras' Adam, timed in turns on the same batches; print one metric line per window.

    Two copies of the project's NeuMF (ncf.models.ncf_models, same initial weights), each in its own compiled
    step loop with one optimizer; only the optimizer differs. Keras' Adam gets the gradients dense, as it
    treats embedding gradients (every row of every table updated every step). The two are timed in
    alternating windows of `steps` steps, so load from other processes hits both alike. `tables`:
    "data" sizes the embedding tables to the dataset, "ml-20m" to MovieLens 20M's 138,493 users and
    26,744 items (the same batches: only the tables' size, which a dense update pays for, changes).
    """
    data, config = _load(prepared)
    batches = _epoch_arrays(data, config, 0)
    users, items = TABLE_SIZES.get(tables) or (len(data.users), len(data.items))
    loops = {name: _step_loop(name, users, items, config, batches) for name in OPTIMIZERS}
    arrays = (batches.users, batches.items, batches.targets, batches.weights)
    for name, run in loops.items():
        started = time.perf_counter()
        run(*(a[:KERAS_WARMUP_STEPS] for a in arrays))  # traces the graph
        print(reporting.metric_line(f"{name}_compile_seconds", time.perf_counter() - started), flush=True)
    for repeat in range(OPTIMIZER_REPEATS):
        window = slice(KERAS_WARMUP_STEPS + repeat * steps, KERAS_WARMUP_STEPS + (repeat + 1) * steps)
        samples = int(batches.weights[window].astype(bool).sum())
        for name, run in loops.items():
            started = time.perf_counter()
            run(*(a[window] for a in arrays))
            rate = samples / (time.perf_counter() - started)
            print(reporting.metric_line(f"{name}_samples_per_sec", rate), flush=True)
            shown = f"window {repeat + 1}/{OPTIMIZER_REPEATS}: {name} Adam {rate:,.0f} samples/s"
            print(f"[{tables} tables] {shown}", flush=True)
    return 0


def _step_loop(optimizer: str, users: int, items: int, config: TrainConfig, batches: EpochBatches) -> Any:
    """A compiled loop over [steps, batch] arrays training a fresh NeuMF with `optimizer`."""
    import tensorflow as tf
    from ncf.models.ncf_models import ModelSpec, NcfModel

    model = NcfModel(
        ModelSpec(config.model_type, users, items, config.factors, config.mlp_layers), config.seed
    )
    variables = list(model.embeddings.values()) + list(model.dense.values())
    apply = _optimizer(optimizer, variables, config.learning_rate)
    arrays = (batches.users, batches.items, batches.targets, batches.weights)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.as_dtype(a.dtype)) for a in arrays])
    def run(users: tf.Tensor, items: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for step in tf.range(tf.shape(users)[0]):
            with tf.GradientTape() as tape:
                logits = model.logits(users[step], items[step])
                losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets[step], logits=logits)
                loss = tf.reduce_sum(weights[step] * losses) / tf.maximum(tf.reduce_sum(weights[step]), 1.0)
            apply(tape.gradient(loss, variables))
            total += loss
        return total

    return run


def _optimizer(name: str, variables: list, learning_rate: float) -> Callable[[list], None]:
    """`apply(gradients)` of lazy Adam (ncf.fit.optim) or of Keras' Adam (dense gradients)."""
    import keras
    import tensorflow as tf
    from ncf.fit.optim import LazyAdam

    if name == "lazy":
        lazy = LazyAdam(variables, learning_rate)
        return lambda gradients: lazy.apply(gradients, variables)
    adam = keras.optimizers.Adam(learning_rate, epsilon=1e-7)
    adam.build(variables)
    return lambda gradients: adam.apply_gradients(
        [(tf.convert_to_tensor(g), v) for g, v in zip(gradients, variables, strict=True)]
    )


def keras_neumf(keras: Any, num_users: int, num_items: int, factors: int, layers: tuple[int, ...]) -> Any:
    """NeuMF (He et al. 2017) from stock Keras layers: GMF and MLP towers joined by one logit."""
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    gmf = keras.layers.Multiply()(
        [keras.layers.Embedding(num_users, factors)(user), keras.layers.Embedding(num_items, factors)(item)]
    )
    hidden = keras.layers.Concatenate()(
        [
            keras.layers.Embedding(num_users, layers[0] // 2)(user),
            keras.layers.Embedding(num_items, layers[0] // 2)(item),
        ]
    )
    for width in layers[1:]:
        hidden = keras.layers.Dense(width, activation="relu")(hidden)
    logit = keras.layers.Dense(1)(keras.layers.Concatenate()([gmf, hidden]))
    return keras.Model([user, item], logit)


# -- the driver --------------------------------------------------------------------------------------


def steady_epochs(count: int, first_is_warm_up: bool) -> slice:
    """The epochs a median is taken over: all but the first when it includes tracing (and others exist)."""
    return slice(1, None) if first_is_warm_up and count > 1 else slice(None)


def epochs_summary(run: common.MeasuredRun, first_is_warm_up: bool) -> dict[str, Any]:
    """Per-epoch figures from the metric lines, and their medians over the steady epochs."""
    rates = run.metric_values("samples_per_sec")
    seconds = run.metric_values("epoch_seconds")
    if not rates or len(rates) != len(seconds):
        raise common.BenchError(
            f"no per-epoch samples_per_sec/epoch_seconds lines in the output of {run.command}"
        )
    steady = steady_epochs(len(rates), first_is_warm_up)
    return {
        "epochs": [
            {"epoch": i + 1, "samples_per_sec": round(r), "epoch_seconds": round(s, 2)}
            for i, (r, s) in enumerate(zip(rates, seconds, strict=True))
        ],
        "median_samples_per_sec": round(statistics.median(rates[steady])),
        "median_epoch_seconds": round(statistics.median(seconds[steady]), 2),
        "median_over": f"epochs {steady.start + 1 if steady.start else 1} to {len(rates)}",
        "peak_rss_mib": round(run.peak_rss_mib),
        "process_wall_seconds": round(run.seconds, 1),
    }


def measure_ncf(prepared: Path, work: Path, epochs: int) -> dict[str, Any]:
    flags = ("--num-neg", str(NUM_NEG), "--epochs", str(epochs), "--patience", "0", "--refit", "false")
    command = common.train_command(prepared, work / "model", work / "output", *flags)
    shown = common.shell_command(command)
    print(f"\n== {shown}", flush=True)
    log_path = work / "train.log"
    run = common.run_measured(command, log_path, show=common.is_progress_line, prefix="  ")
    common.check_success(run, "train.py", log_path)
    hyperparameters = json.loads((work / "output" / "metrics.json").read_text())["hyperparameters"]
    summary = epochs_summary(run, first_is_warm_up=True)
    return {"command": shown, "flags": list(flags), "hyperparameters": hyperparameters, **summary}


def measure_keras(prepared: Path, work: Path, epochs: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--keras-worker", str(prepared), "--keras-epochs", str(epochs)]
    print("\n== plain keras.Model.fit NeuMF", flush=True)
    log_path = work / "keras.log"
    run = common.run_measured(command, log_path, show=common.is_progress_line, prefix="  ")
    common.check_success(run, "the Keras baseline", log_path)
    # The warm-up call before the timed epochs traced and compiled: every timed epoch counts.
    summary = epochs_summary(run, first_is_warm_up=False)
    sampling = run.metric_values("sampling_seconds")
    with_sampling = run.metric_values("samples_per_sec_with_sampling")
    return {
        **summary,
        "warm_up": f"one fit call of {KERAS_WARMUP_STEPS} steps before the timed epochs",
        "compile_seconds": round(run.metric_values("compile_seconds")[0], 1),
        "median_sampling_seconds": round(statistics.median(sampling), 2),
        "median_samples_per_sec_with_sampling": round(statistics.median(with_sampling)),
        "model": "keras.Model: Embedding x4, Multiply, Concatenate, Dense(relu) per MLP layer, Dense(1); "
        "Adam, BinaryCrossentropy(from_logits=True), fit(batch_size, shuffle=False) on pre-shuffled epochs",
    }


def measure_optimizers(prepared: Path, work: Path, steps: int) -> dict[str, Any]:
    """Lazy Adam against Keras' Adam, in turns in one process, with the dataset's and ML-20M-sized tables.

    Its own results file (optimizer.json): the paired ratios hold on a loaded machine, where the
    absolute throughputs of speed.json do not.
    """
    measured: dict[str, Any] = {}
    for tables in ("data", "ml-20m"):
        command = [
            sys.executable,
            __file__,
            "--optimizer-worker",
            str(prepared),
            "--optimizer-tables",
            tables,
        ]
        command += ["--optimizer-steps", str(steps)]
        print(f"\n== NeuMF step loops, lazy Adam and Keras' Adam in turns, {tables} tables", flush=True)
        log_path = work / f"optimizer-{tables}.log"
        run = common.run_measured(command, log_path, show=common.is_progress_line, prefix="  ")
        common.check_success(run, "the optimizer comparison", log_path)
        rates = {name: run.metric_values(f"{name}_samples_per_sec") for name in OPTIMIZERS}
        ratios = [lazy / keras for lazy, keras in zip(rates["lazy"], rates["keras"], strict=True)]
        measured[tables] = {
            "embedding_rows": "the dataset's"
            if tables == "data"
            else dict(zip(("users", "items"), TABLE_SIZES[tables], strict=True)),
            **{f"{name}_adam_samples_per_sec": [round(r) for r in rates[name]] for name in OPTIMIZERS},
            **{
                f"median_{name}_adam_samples_per_sec": round(statistics.median(rates[name]))
                for name in OPTIMIZERS
            },
            "median_speedup_of_lazy_adam": round(statistics.median(ratios), 2),
        }
    return {
        **measured,
        "setup": f"ncf.models NeuMF (train.py defaults, num_neg {NUM_NEG}), one compiled step loop per "
        f"optimizer; {OPTIMIZER_REPEATS} windows of {steps} steps of the first epoch, lazy and Keras' Adam "
        "in turns after a traced warm-up; Keras' Adam gets dense gradients (it updates every embedding row)",
    }


def markdown(results: dict[str, Any]) -> str:
    ncf, keras = results["ncf"], results["keras_fit"]
    trainers = (("train.py (compiled epoch loop, lazy Adam)", ncf), ("plain keras.Model.fit NeuMF", keras))
    rows = [
        [
            name,
            f"{t['median_samples_per_sec']:,}",
            f"{t['median_epoch_seconds']:.1f}",
            f"{t['peak_rss_mib']:,}",
        ]
        for name, t in trainers
    ]
    table = common.markdown_table(["Trainer", "samples/s", "s / epoch", "peak RSS MiB"], rows)
    data, bar = results["dataset"], results["bar"]
    hp = results["rounds"][0]["ncf"]["hyperparameters"]
    verdict = "PASS" if bar["passed"] else "FAIL"
    notes = [
        f"Synthetic ML-1M-sized set: {data['users']:,} users, {data['items']:,} items, "
        f"{data['interactions']:,} interactions ({data['train_rows']:,} train rows), {NUM_NEG} negatives per "
        f"positive: {data['samples_per_epoch']:,} samples per epoch.",
        f"NeuMF, factors {hp['factors']}, MLP {','.join(map(str, hp['mlp_layers']))}, "
        f"batch {hp['batch_size']}, learning rate {hp['learning_rate']} (train.py defaults, num_neg "
        f"{NUM_NEG}). Medians over {results['median_over']} (epoch 1 traces the graph; Keras had a warm-up "
        "call); train.py's figure includes its negative sampling, Keras' is `fit` alone.",
        f"Speed-up over the Keras fit: {results['speedup_over_keras_fit']}x (rounds: "
        f"{', '.join(str(r['speedup_over_keras_fit']) for r in results['rounds'])}).",
        f"Bars: >= {BAR_SAMPLES_PER_SEC:,} samples/s and >= {BAR_SPEEDUP}x on {BAR_CORES} cores: {verdict} "
        f"on {bar['cores_usable']} cores.",
    ]
    return table + "\n\n" + "\n".join(f"- {note}" for note in notes)


def optimizer_markdown(results: dict[str, Any]) -> str:
    """The optimizer comparison as a table and a note."""
    rows = []
    for tables, size in (("data", "this data's tables"), ("ml-20m", "ML-20M-sized tables")):
        entry = results[tables]
        rows.append(
            [
                size,
                f"{entry['median_lazy_adam_samples_per_sec']:,}",
                f"{entry['median_keras_adam_samples_per_sec']:,}",
                f"{entry['median_speedup_of_lazy_adam']}x",
            ]
        )
    table = common.markdown_table(
        ["embedding tables", "lazy Adam samples/s", "Keras' Adam", "lazy / Keras"], rows
    )
    return f"{table}\n\n- {results['setup']}; lazy / Keras is the median of the paired windows' ratios."


def synthetic_channels(work: Path) -> tuple[Path, dict[str, Any]]:
    """Generate the ML-1M-sized set and prepare it; (the prepared folder, prepare.py's meta.json)."""
    print(f"generating {SPEED_SPEC.interactions:,} synthetic interactions", flush=True)
    started = time.perf_counter()
    source = work / "interactions.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    generate(SPEED_SPEC).frame().to_csv(source, index=False)
    print(f"  wrote {source} in {time.perf_counter() - started:.1f} s", flush=True)
    return work / "prepared", common.prepare(source, work / "prepared", work)


def run(args: argparse.Namespace) -> int:
    header = common.run_header("speed", args.quick)
    work = args.work_dir.resolve()
    prepared, meta = synthetic_channels(work)
    if not args.optimizer_only:
        trainers(args, header, prepared, meta, work)
    optimizer = {
        **common.run_header("optimizer", args.quick),
        **measure_optimizers(prepared, work, OPTIMIZER_STEPS["quick" if args.quick else "full"]),
    }
    path = common.write_results(common.results_path("optimizer", args.quick), optimizer)
    print(f"\n{optimizer_markdown(optimizer)}\n\nresults: {path}", flush=True)
    return 0


def trainers(
    args: argparse.Namespace, header: dict[str, Any], prepared: Path, meta: dict[str, Any], work: Path
) -> None:
    """train.py against a plain Keras Model.fit NeuMF, in alternating rounds; writes speed.json."""
    rounds = []
    for number in range(1, args.rounds + 1):
        print(f"\n== round {number}/{args.rounds}", flush=True)
        ncf = measure_ncf(prepared, work / f"ncf-{number}", args.epochs["ncf"])
        keras = measure_keras(prepared, work / f"keras-{number}", args.epochs["keras"])
        speedup = round(ncf["median_samples_per_sec"] / keras["median_samples_per_sec"], 2)
        rounds.append({"round": number, "ncf": ncf, "keras_fit": keras, "speedup_over_keras_fit": speedup})
    counts = meta["counts"]
    results = {
        **header,
        "dataset": {
            **dataclasses.asdict(SPEED_SPEC),
            "train_rows": counts["train_rows"],
            "validation_users": counts["validation_users"],
            "samples_per_epoch": counts["train_rows"] * (1 + NUM_NEG),
            "generator": "tests/benchmarks/synthetic.py generate",
        },
        **rounds_summary(rounds, header["machine"]["cores_usable"]),
        "rounds": rounds,
    }
    path = common.write_results(args.output, results)
    print(f"\n{markdown(results)}\n\nresults: {path}", flush=True)


def rounds_summary(rounds: list[dict[str, Any]], cores_usable: int) -> dict[str, Any]:
    """The medians over the rounds of each trainer's figures, the speed-ups and the bars."""

    def median_of(trainer: str, key: str) -> float:
        return statistics.median(r[trainer][key] for r in rounds)

    trainers = {
        trainer: {
            key: round(median_of(trainer, key), 2 if key == "median_epoch_seconds" else None)
            for key in ("median_samples_per_sec", "median_epoch_seconds", "peak_rss_mib")
        }
        for trainer in ("ncf", "keras_fit")
    }
    speedups = [r["speedup_over_keras_fit"] for r in rounds]
    speedup = round(statistics.median(speedups), 2)
    throughput = trainers["ncf"]["median_samples_per_sec"]
    return {
        "ncf": {"command": rounds[0]["ncf"]["command"], **trainers["ncf"]},
        "keras_fit": {"model": rounds[0]["keras_fit"]["model"], **trainers["keras_fit"]},
        "speedup_over_keras_fit": speedup,
        "speedup_lowest": min(speedups),
        "speedup_highest": max(speedups),
        "median_over": f"{len(rounds)} alternating round(s); in each, train.py's epochs after the first and "
        "every timed Keras epoch",
        "bar": {
            "samples_per_sec": BAR_SAMPLES_PER_SEC,
            "speedup_over_keras_fit": BAR_SPEEDUP,
            "cores": BAR_CORES,
            "cores_usable": cores_usable,
            "passed": throughput >= BAR_SAMPLES_PER_SEC and speedup >= BAR_SPEEDUP,
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keras_worker is not None:
        return keras_worker(args.keras_worker, args.keras_epochs)
    if args.optimizer_worker is not None:
        return optimizer_worker(args.optimizer_worker, args.optimizer_tables, args.optimizer_steps)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
