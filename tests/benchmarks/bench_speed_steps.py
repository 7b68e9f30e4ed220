"""NeuMF training speed, technique by technique (`make bench-speed-steps`): what each one gains.

On the ML-1M-sized synthetic set of `bench_speed.py` (the same data, prepared the same way), with
train.py's defaults but `num_neg` 4 (as `bench_speed.py`):

1. **The step loop: TensorFlow's graph executor against XLA** (`jit_compile`). Two copies of the same
   NeuMF, each in its own `ncf.fit.step_loop.EpochRunner`, one compiled with XLA; timed in alternating
   windows of the same steps in one process, so load from other processes hits both alike. The
   figure is the median of the windows' paired ratios.
2. **Thread pools** (`ncf.fit.threads`): the same comparison in one process per thread setting
   (derived from the machine, TensorFlow's default, and fixed ones), the processes run in turns,
   each setting `--rounds` times; the XLA loop's median samples/s per setting.
3. **Sampling**: the numpy epoch build (`ncf.fit.pair_epochs`: negatives, shuffle, batches) per epoch,
   beside the seconds the XLA loop takes for the same epoch.

Results: tests/benchmarks/results/speed-steps.json (`-quick` with --quick); a Markdown table is printed.
The end-to-end figures (train.py against a plain Keras fit) are `bench_speed.py`'s.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_speed_steps.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common
from bench_speed import NUM_NEG, synthetic_channels
from ncf import reporting

RUNNERS = ("graph", "xla")
# Thread settings compared: derived from the machine (ncf.fit.threads), TensorFlow's own default, fixed.
THREAD_SETTINGS = ("derived", "tf-default", "1x1", "2x1", "2x2")
WINDOW_STEPS = {"full": 96, "quick": 16}
WINDOWS = {"full": 7, "quick": 2}
ROUNDS = {"full": 2, "quick": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_speed_steps.py",
        description="NeuMF training speed per technique: XLA step loop, thread pools, sampling.",
    )
    common.add_run_options(parser, "speed-steps", "short windows, one round", "synthetic data and logs")
    parser.add_argument("--rounds", type=int, default=None, help="processes per thread setting [2]")
    # Internal: one thread setting's measurements, in its own process (thread pools are per process).
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="derived", help=argparse.SUPPRESS)
    parser.add_argument("--window-steps", type=int, default=WINDOW_STEPS["full"], help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, default=WINDOWS["full"], help=argparse.SUPPRESS)
    return common.parse_run_args(parser, argv, "speed-steps")


# -- the worker: one thread setting ------------------------------------------------------------------


def set_threads(setting: str) -> tuple[int, int] | None:
    """Apply a THREAD_SETTINGS entry before TensorFlow starts; the (intra, inter) set (None: TF's default)."""
    from ncf.fit import threads

    if setting == "tf-default":
        return None
    intra, inter = (0, 0) if setting == "derived" else (int(n) for n in setting.split("x"))
    return threads.configure(intra, inter, lambda line: print(line, flush=True))


def worker(prepared: Path, setting: str, window_steps: int, windows: int) -> int:
    """Time the graph and the XLA step loops in turns on the same steps; print metric lines."""
    counts = set_threads(setting)
    import tensorflow as tf
    from bench_speed import _epoch_arrays, _load
    from ncf.fit.step_loop import EpochRunner
    from ncf.models.ncf_models import ModelSpec, NcfModel

    data, config = _load(prepared)
    started = time.perf_counter()
    batches = _epoch_arrays(data, config, 0)
    print(reporting.metric_line("sampling_seconds", time.perf_counter() - started), flush=True)
    inputs = [tf.constant(values) for values in batches.step_inputs()]
    spec = ModelSpec(config.model_type, len(data.users), len(data.items), config.factors, config.mlp_layers)
    runners = {
        name: EpochRunner(NcfModel(spec, config.seed), config.learning_rate, config.l2, True, jit_compile=jit)
        for name, jit in zip(RUNNERS, (False, True), strict=True)
    }
    for name, runner in runners.items():
        started = time.perf_counter()
        runner.run_window(0, window_steps, *inputs)  # traces (and compiles) the loop
        print(reporting.metric_line(f"{name}_compile_seconds", time.perf_counter() - started), flush=True)
    for window in range(1, windows + 1):
        start, stop = window * window_steps, (window + 1) * window_steps
        samples = int(batches.weights[start:stop].astype(bool).sum())
        for name, runner in runners.items():
            started = time.perf_counter()
            runner.run_window(start, stop, *inputs)
            rate = samples / (time.perf_counter() - started)
            print(reporting.metric_line(f"{name}_samples_per_sec", rate), flush=True)
    print(reporting.metric_line("samples_per_epoch", batches.num_samples), flush=True)
    if counts is not None:
        print(reporting.metric_line("intra_op_threads", counts[0]), flush=True)
        print(reporting.metric_line("inter_op_threads", counts[1]), flush=True)
    return 0


# -- the driver ----------------------------------------------------------------------------------------


def measure_setting(prepared: Path, work: Path, setting: str, args: argparse.Namespace, run: int) -> dict:
    """One worker process; its paired graph/XLA windows and sampling time."""
    windows, steps = WINDOWS[args.size], WINDOW_STEPS[args.size]
    command = [sys.executable, __file__, "--worker", str(prepared), "--threads", setting]
    command += ["--window-steps", str(steps), "--windows", str(windows)]
    print(f"\n== threads {setting}, round {run + 1}", flush=True)
    log_path = work / f"steps-{setting}-{run + 1}.log"
    measured = common.run_measured(
        command, log_path, show=lambda line: line.startswith("threads:"), prefix="  "
    )
    common.check_success(measured, "the step-loop comparison", log_path)
    rates = {name: list(measured.metric_values(f"{name}_samples_per_sec")) for name in RUNNERS}
    threads = measured.metric_values("intra_op_threads"), measured.metric_values("inter_op_threads")
    return {
        **rates,
        "ratios": [x / g for g, x in zip(rates["graph"], rates["xla"], strict=True)],
        "sampling_seconds": measured.metric_values("sampling_seconds")[0],
        "samples_per_epoch": int(measured.metric_values("samples_per_epoch")[0]),
        "xla_compile_seconds": measured.metric_values("xla_compile_seconds")[0],
        "threads": [int(threads[0][0]), int(threads[1][0])] if len(threads[0]) else "TensorFlow's default",
    }


def summarise(setting: str, runs: list[dict]) -> dict[str, Any]:
    """Medians over every window of every round of one thread setting."""
    xla = [rate for run in runs for rate in run["xla"]]
    graph = [rate for run in runs for rate in run["graph"]]
    ratios = [ratio for run in runs for ratio in run["ratios"]]
    return {
        "threads": runs[0]["threads"],
        "median_graph_samples_per_sec": round(statistics.median(graph)),
        "median_xla_samples_per_sec": round(statistics.median(xla)),
        "median_xla_speedup": round(statistics.median(ratios), 2),
        "xla_samples_per_sec": [round(r) for r in xla],
        "graph_samples_per_sec": [round(r) for r in graph],
        "median_xla_compile_seconds": round(statistics.median(r["xla_compile_seconds"] for r in runs), 1),
        "median_sampling_seconds_per_epoch": round(statistics.median(r["sampling_seconds"] for r in runs), 2),
    }


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for setting, entry in results["thread_settings"].items():
        shown = (
            entry["threads"]
            if isinstance(entry["threads"], str)
            else "{} intra, {} inter".format(*entry["threads"])
        )
        rows.append(
            [
                f"{setting} ({shown})",
                f"{entry['median_graph_samples_per_sec']:,}",
                f"{entry['median_xla_samples_per_sec']:,}",
                f"{entry['median_xla_speedup']}x",
                f"{entry['median_sampling_seconds_per_epoch']:.2f}",
            ]
        )
    headers = ["threads", "graph loop samples/s", "XLA loop samples/s", "XLA / graph", "numpy epoch build s"]
    return common.markdown_table(headers, rows) + f"\n\n- {results['setup']}"


def run(args: argparse.Namespace) -> int:
    args.size = "quick" if args.quick else "full"
    rounds = args.rounds or ROUNDS[args.size]
    header = common.run_header("speed-steps", args.quick)
    work = args.work_dir.resolve()
    prepared, meta = synthetic_channels(work)
    runs: dict[str, list[dict]] = {setting: [] for setting in THREAD_SETTINGS}
    for run_index in range(rounds):  # settings in turns, so a burst of load spreads over all of them
        for setting in THREAD_SETTINGS:
            runs[setting].append(measure_setting(prepared, work, setting, args, run_index))
    results = {
        **header,
        "dataset": {"train_rows": meta["counts"]["train_rows"], "num_neg": NUM_NEG},
        "thread_settings": {setting: summarise(setting, measured) for setting, measured in runs.items()},
        "setup": f"NeuMF (train.py defaults, num_neg {NUM_NEG}), graph and XLA step loops timed in turns in "
        f"one process: {WINDOWS[args.size]} windows of {WINDOW_STEPS[args.size]} steps after a traced "
        f"warm-up, {rounds} process(es) per thread setting run in turns; XLA / graph is the median of paired "
        "windows' ratios; numpy epoch build = negatives, shuffle and batching of one epoch",
    }
    path = common.write_results(args.output, results)
    print(f"\n{markdown(results)}\n\nresults: {path}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.threads, args.window_steps, args.windows)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
