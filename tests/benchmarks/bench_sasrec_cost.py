"""Sequence-model cost benchmark (`make bench-sasrec-cost`): an epoch on a sparse catalog, and what it costs
in quality on MovieLens 100K.

1. Epoch time (`--parts epoch`). A synthetic sparse set shaped like e-commerce review sequences, from
   `synthetic.py` (popularity-only structure): 30,000 users, 20,000 items, 250,000 events, at least 3
   and a median of 7 per user (log-normal activity). Trained in-process with the defaults as train.py
   resolves them (`sequence_loss` auto: the catalog is above `softmax_max_items`, so the logQ-corrected
   sampled softmax), the second epoch timed (the first also traces); beside it, the full softmax and
   bfloat16 mixed precision on the same data, in the same process. Bar (issue 23): <= 10 s on 2 cores.
2. Quality (`--parts quality`). MovieLens 100K prepared as `bench_quality.py` prepares it (seed 42,
   leave-one-out, 99 sampled negatives), trained by the real `train.py` with the defaults (auto: the
   full softmax on 1,682 items) and with `--sequence-loss sampled_softmax` (num_neg 1,024 drawn by
   popularity, logQ-corrected): validation NDCG@10 of the selection stage (what chooses between them)
   and test HR@10 / NDCG@10 after the refit. Bar: the default's test within 0.01 of 0.765 / 0.496 or
   better (quality-sasrec.json before this change).

Results: tests/benchmarks/results/sasrec-cost.json (sasrec-cost-quick.json with --quick). Run from the
repository root: `.venv/bin/python tests/benchmarks/bench_sasrec_cost.py [--quick] [--parts epoch,quality]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import common
import numpy as np
from bench_quality import PREPARE_SEED
from bench_sasrec import epoch_seconds, training_data
from synthetic import SyntheticSpec, generate

SPARSE = SyntheticSpec(
    users=30_000, items=20_000, seed=5, interactions=250_000, min_per_user=3, activity_sigma=1.0
)
BAR_EPOCH_SECONDS = 10.0
BEFORE = {"test_hr_at_10": 0.765, "test_ndcg_at_10": 0.496}  # quality-sasrec.json, full softmax, padded
BAR_TOLERANCE = 0.01
OBJECTIVES = {"default": (), "sampled_softmax": ("--sequence-loss", "sampled_softmax")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_sasrec_cost.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a tenth of the data, 3 epochs")
    parser.add_argument("--data", type=Path, default=None, help="MovieLens 100K folder (u.data)")
    parser.add_argument("--work-dir", type=Path, default=common.REPO / "runs" / "bench" / "sasrec-cost")
    parser.add_argument("--parts", default="epoch,quality", help="epoch, quality (comma-separated)")
    args = parser.parse_args(argv)
    args.output = common.results_path("sasrec-cost", args.quick)
    return args


# -- epoch time on a sparse catalog -----------------------------------------------------------------


def sparse_data(spec: SyntheticSpec) -> Any:
    """The synthetic set as TrainingData, each user's events in timestamp order."""
    drawn = generate(spec)
    order = np.lexsort((drawn.timestamps, drawn.users))
    users, items = drawn.users[order].astype(np.int32), drawn.items[order].astype(np.int32)
    counts = np.bincount(users, minlength=spec.users)
    within = np.arange(len(users)) - np.repeat(np.cumsum(counts) - counts, counts)
    recency = (np.repeat(counts, counts) - 1 - within).astype(np.int32)
    return training_data(users, items, recency, spec.users, spec.items)


def packing_figures(data: Any) -> dict[str, Any]:
    """How the default packing fills an epoch: slots, real predictions, rows and steps."""
    from bench_sasrec import sasrec_config
    from ncf.fit.sequence_epochs import SequenceSource

    batches = SequenceSource(data, sasrec_config()).batches(0)
    slots = batches.targets.size
    return {
        "model_length": int(batches.targets.shape[2]),
        "steps": int(batches.targets.shape[0]),
        "rows_per_step": int(batches.targets.shape[1]),
        "predictions": batches.num_samples,
        "slots": int(slots),
        "fill": round(batches.num_samples / slots, 4),
        "padded_layout_slots": len(data.users) * sasrec_config().max_len,
    }


def epoch_benchmark(quick: bool) -> dict[str, Any]:
    """Epoch seconds with the defaults, the full softmax and bfloat16, on the sparse set."""
    spec = SPARSE.scaled_down(10) if quick else SPARSE
    data = sparse_data(spec)
    counts = np.bincount(data.train_users, minlength=len(data.users))
    runs = {
        "default": epoch_seconds(data, {}),
        "full_softmax": epoch_seconds(data, {"sequence_loss": "softmax"}),
        "default_bfloat16": epoch_seconds(data, {"mixed_precision": "on"}),
    }
    for name, run in runs.items():
        print(f"  {name}: one epoch {run['epoch_seconds']:.1f} s", flush=True)
    seconds = runs["default"]["epoch_seconds"]
    return {
        "data": {
            "spec": {k: v for k, v in vars(spec).items() if k != "genre_weights"},
            "users": len(data.users),
            "items": len(data.items),
            "events": len(data.train_users),
            "median_events_per_user": float(np.median(counts)),
        },
        "packing": packing_figures(data),
        **runs,
        "epoch_seconds": seconds,
        "bar_epoch_seconds": BAR_EPOCH_SECONDS,
        "passed": bool(seconds <= BAR_EPOCH_SECONDS),
    }


# -- quality on MovieLens 100K ----------------------------------------------------------------------


def train_objective(name: str, prepared: Path, work: Path, quick: bool) -> dict[str, Any]:
    """train.py with one objective's flags (no final fit: it comes after the test and changes nothing)."""
    run_dir = work / "models" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    flags = ("--model-type", "sasrec", *OBJECTIVES[name], "--final-fit", "false", "--package", "false")
    flags += ("--epochs", "3") if quick else ()
    command = common.train_command(prepared, run_dir / "model", run_dir / "output", *flags)
    print(f"\n== {name}: {common.shell_command(command)}", flush=True)
    run = common.run_measured(command, run_dir / "train.log", show=common.is_progress_line, prefix="  ")
    common.check_success(run, f"train.py ({name})", run_dir / "train.log")
    metrics = json.loads((run_dir / "output" / "metrics.json").read_text())
    return {
        "command": common.shell_command(command),
        "objective": metrics["hyperparameters"]["sequence_loss"],
        "num_neg": metrics["hyperparameters"]["num_neg"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "validation": metrics["validation"],
        "test": metrics["test"],
        "training_seconds": round(metrics["seconds"], 1),
    }


def quality_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Both objectives on the bench_quality split; the choice by validation NDCG@10, the bar on test."""
    work = args.work_dir.resolve()
    prepared = work / "prepared"
    common.prepare(common.find_movielens_100k(args.data), prepared, work, "--seed", str(PREPARE_SEED))
    runs = {name: train_objective(name, prepared, work, args.quick) for name in OBJECTIVES}
    chosen = max(runs, key=lambda name: runs[name]["validation"]["validation_ndcg_at_10"])
    test = runs["default"]["test"]
    return {
        **runs,
        "chosen_on_validation": chosen,
        "before": BEFORE,
        "passed": bool(all(test[key] >= value - BAR_TOLERANCE for key, value in BEFORE.items())),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",")}
    header = common.run_header("sasrec-cost", args.quick, argv)
    measured = {}  # each part keeps the run (command, commit, load) it came from
    if "epoch" in parts:
        measured["epoch"] = {"run": header, **epoch_benchmark(args.quick)}
    if "quality" in parts:
        measured["quality"] = {"run": header, **quality_benchmark(args)}
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}  # read last: parts
    results = {**previous, **header, **measured}  # may run at the same time in two processes
    print(f"results: {common.write_results(args.output, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
