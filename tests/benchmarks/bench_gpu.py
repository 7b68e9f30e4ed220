"""GPU benchmark (`make bench-gpu`): the training code on a GPU instance, with and without mixed precision.

Meant for a machine with one GPU (a SageMaker GPU training instance or any CUDA machine); it finishes
in well under 10 minutes there. Without a GPU it says so, records that in the results file and
measures nothing (a CPU run has its own benchmarks: bench_sasrec_cost.py, bench_speed.py).

1. `sasrec`: the sequence model on ML-1M-sized synthetic sequences (6,040 users, 3,706 items, 1M events,
   `bench_sasrec.sequential_data`), in-process with the defaults: the second epoch's seconds with
   `mixed_precision` auto (bfloat16 on a GPU of compute capability 8.0 or later) and off (float32).
2. `neumf` (`neumf_case`): NeuMF on ML-20M-sized synthetic data (bench_scale.py's set: 138,493 users,
   26,744 items, 20M events), prepared by prepare.py and trained by train.py for one epoch with
   `--num-neg 4`: samples/s and epoch seconds, as bench_scale.py measures them on CPUs.
   HOOK: the NeuMF-throughput work may replace this function's body (e.g. in-process timing of its
   own step); keep its name and the dict it returns.

Results: tests/benchmarks/results/gpu.json (gpu-quick.json with --quick: a tenth of each set). Run
from the repository root: `.venv/bin/python tests/benchmarks/bench_gpu.py [--quick] [--parts sasrec,neumf]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import common
from bench_sasrec import epoch_seconds, sequential_data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_gpu.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of each dataset")
    parser.add_argument("--parts", default="sasrec,neumf", help="sasrec, neumf (comma-separated)")
    parser.add_argument("--work-dir", type=Path, default=common.REPO / "runs" / "bench" / "gpu")
    args = parser.parse_args(argv)
    args.output = common.results_path("gpu", args.quick)
    return args


def gpus() -> list[dict[str, Any]]:
    """Name and compute capability of every GPU TensorFlow sees ([] without one)."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        found.append(
            {"name": details.get("device_name"), "compute_capability": details.get("compute_capability")}
        )
    return found


def sasrec_case(quick: bool) -> dict[str, Any]:
    """SASRec's epoch seconds on ML-1M-sized sequences, mixed precision auto and off."""
    scale = 10 if quick else 1
    data = sequential_data(6_040 // scale, 3_706, 1_000_000 // scale)
    runs = {mode: epoch_seconds(data, {"mixed_precision": mode}) for mode in ("auto", "off")}
    for mode, run in runs.items():
        print(f"  sasrec, mixed_precision {mode}: one epoch {run['epoch_seconds']:.1f} s", flush=True)
    return {
        "users": len(data.users),
        "items": len(data.items),
        "events": len(data.train_users),
        "mixed_precision_auto": runs["auto"],
        "mixed_precision_off": runs["off"],
        "speedup": runs["off"]["epoch_seconds"] / max(runs["auto"]["epoch_seconds"], 1e-9),
    }


def neumf_case(work: Path, quick: bool) -> dict[str, Any]:
    """NeuMF, one train.py epoch on ML-20M-sized synthetic data (the hook: see the module docstring)."""
    from bench_scale import NUM_NEG, SCALE_SPEC, train_summary, write_interactions

    spec = SCALE_SPEC.scaled_down(10) if quick else SCALE_SPEC
    source = work / "neumf" / "interactions.csv"
    rows = write_interactions(spec, source)
    prepared = work / "neumf" / "prepared"
    prepare = common.prepare_measured(source, prepared, work / "neumf")
    flags = ["--model-type", "neumf", "--epochs", "1", "--patience", "0", "--refit", "false"]
    flags += ["--final-fit", "false", "--num-neg", str(NUM_NEG), "--package", "false"]
    output = work / "neumf" / "output"
    command = common.train_command(prepared, work / "neumf" / "model", output, *flags)
    train = common.run_measured(
        command, work / "neumf" / "train.log", show=common.is_progress_line, prefix="  "
    )
    common.check_success(train, "train.py (neumf)", work / "neumf" / "train.log")
    return {
        "dataset": {**dataclasses.asdict(spec), "rows": rows},
        "prepare_seconds": round(prepare.seconds, 1),
        "command": common.shell_command(command),
        **train_summary(train, output),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",")}
    found = gpus()
    results: dict[str, Any] = {**common.run_header("gpu", args.quick, argv), "gpus": found}
    if not found:
        results["note"] = "no GPU present: nothing was measured (run this on a GPU machine)"
        print(results["note"], flush=True)
    else:
        if "sasrec" in parts:
            results["sasrec"] = sasrec_case(args.quick)
        if "neumf" in parts:
            results["neumf"] = neumf_case(args.work_dir.resolve(), args.quick)
    print(f"results: {common.write_results(args.output, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
