"""Multi-worker benchmark (`make bench-distributed`): how training throughput scales with workers.

Data: the scale benchmark's synthetic generator (bench_scale.py) at 1/20 of ML-20M: 6,924 users,
5,348 items, 1,000,013 interactions; prepared with `--shards 4`.

Every run is train.py with `--epochs 2 --patience 0 --refit false --num-neg 4`; the figure is the
second epoch's samples/s (the first includes tracing), counted over all workers. Workers are separate
processes on 127.0.0.1 with their own fake SageMaker environment (SM_HOSTS, SM_CURRENT_HOST,
NCF_WORKER_ADDRESSES), pinned to one core each with `taskset`, so that "1 worker" and "2 workers" compare
one core with two:

1. one worker on one core;
2. two workers, one core each, both reading the whole train channel (FullyReplicated);
3. the same with a sharded train channel: each worker gets 2 of the 4 train files, as ShardedByS3Key
   gives them (`SM_INPUT_DATA_CONFIG`), plus the vocabulary channel;
4. one worker on both cores (what a single 2-core instance does without distribution).

Runs 1 and 2 are repeated at `batch_size` 8192 (fewer all-reduces per sample). The two workers talk
over loopback: between SageMaker instances each all-reduce also crosses the network, so this is the
upper bound of what a second instance brings at these settings.

Results: tests/benchmarks/results/distributed.json (`--quick`: 1/4 of the data into
distributed-quick.json). Needs at least 2 cores; run it alone on the machine.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_distributed.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bench_scale
import common
from ncf.fit.distribute import local_worker_addresses

FRACTION = 20
QUICK_FRACTION = 4 * FRACTION
SHARDS = 4
NUM_NEG = 4
HOSTS = ("algo-1", "algo-2")


def train_flags(batch_size: int) -> list[str]:
    return [
        *("--epochs", "2", "--patience", "0", "--refit", "false", "--num-neg", str(NUM_NEG)),
        *("--batch-size", str(batch_size), "--package", "false"),
    ]


def second_epoch(output_dir: Path) -> dict[str, float]:
    history = json.loads((output_dir / "history.json").read_text())["history"]
    epoch = history[-1]
    return {
        "samples_per_sec": round(epoch["samples_per_sec"]),
        "epoch_seconds": round(epoch["epoch_seconds"], 2),
        "validation_ndcg_at_10": round(epoch["validation_ndcg_at_10"], 4),
    }


def run_single(prepared: Path, work: Path, cores: str, batch_size: int) -> dict[str, Any]:
    """train.py alone, pinned to `cores` (taskset's list syntax)."""
    command = ["taskset", "-c", cores, *common.train_command(prepared, work / "model", work / "output")]
    command += train_flags(batch_size)
    run = common.run_measured(command, work / "train.log", show=common.is_progress_line, prefix="    ")
    common.check_success(run, "train.py", work / "train.log")
    return {**second_epoch(work / "output"), "peak_rss_mib": [round(run.peak_rss_mib)]}


def run_workers(prepared: Path, work: Path, batch_size: int, sharded: bool) -> dict[str, Any]:
    """Two train.py workers on 127.0.0.1, worker i pinned to core i; with `sharded`, each gets half the
    train files and the vocabulary channel, as a ShardedByS3Key job gives them."""
    addresses = local_worker_addresses(len(HOSTS))
    parts = sorted((prepared / "train").iterdir())

    def start(index: int) -> common.MeasuredRun:
        host = HOSTS[index]
        train = prepared / "train"
        env = {
            "SM_HOSTS": json.dumps(list(HOSTS)),
            "SM_CURRENT_HOST": host,
            "NCF_WORKER_ADDRESSES": addresses,
            "NCF_COLLECTIVE_TIMEOUT": "120",
        }
        if sharded:
            train = work / host / "train"
            train.mkdir(parents=True)
            for part in parts[index :: len(HOSTS)]:
                shutil.copy(part, train)
            env["SM_CHANNEL_VOCABULARY"] = str(prepared / "vocabulary")
            env["SM_INPUT_DATA_CONFIG"] = json.dumps({"train": {"S3DistributionType": "ShardedByS3Key"}})
        host_dir = work / host
        command = common.train_command(
            prepared, host_dir / "model", host_dir / "output", *train_flags(batch_size), train=train
        )
        command = ["taskset", "-c", str(index), *command]
        show = common.is_progress_line if index == 0 else (lambda line: False)
        return common.run_measured(command, work / f"{host}.log", show=show, prefix="    ", env=env)

    with ThreadPoolExecutor(len(HOSTS)) as pool:
        runs = list(pool.map(start, range(len(HOSTS))))
    for host, run in zip(HOSTS, runs, strict=True):
        common.check_success(run, f"train.py on {host}", work / f"{host}.log")
    return {
        **second_epoch(work / HOSTS[0] / "output"),
        "peak_rss_mib": [round(run.peak_rss_mib) for run in runs],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_distributed.py", description="Measure training throughput with one and two workers."
    )
    common.add_run_options(parser, "distributed", "1/4 of the data", "data, channels, models and logs")
    return common.parse_run_args(parser, argv, "distributed")


def measure_plan(prepared: Path, work: Path) -> dict[str, dict[str, Any]]:
    """Every run of the plan, by name ("<workers and cores>, batch <size>")."""
    runs: dict[str, dict[str, Any]] = {}
    plan = [
        ("1 worker, 1 core", 2048, lambda w, b: run_single(prepared, w, "0", b)),
        ("2 workers, 1 core each", 2048, lambda w, b: run_workers(prepared, w, b, sharded=False)),
        (
            "2 workers, 1 core each, sharded train",
            2048,
            lambda w, b: run_workers(prepared, w, b, sharded=True),
        ),
        ("1 worker, 2 cores", 2048, lambda w, b: run_single(prepared, w, "0,1", b)),
        ("1 worker, 1 core", 8192, lambda w, b: run_single(prepared, w, "0", b)),
        ("2 workers, 1 core each", 8192, lambda w, b: run_workers(prepared, w, b, sharded=False)),
    ]
    for number, (name, batch_size, measure) in enumerate(plan, start=1):
        print(f"run {number}/{len(plan)}: {name}, batch_size {batch_size}", flush=True)
        runs[f"{name}, batch {batch_size}"] = {
            "batch_size": batch_size,
            **measure(work / f"run-{number}", batch_size),
        }
    return runs


def speedups_of(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Throughput of each multi-worker or multi-core run relative to one worker on one core."""

    def speedup(workers: str, batch_size: int) -> float:
        base = runs[f"1 worker, 1 core, batch {batch_size}"]["samples_per_sec"]
        return round(runs[f"{workers}, batch {batch_size}"]["samples_per_sec"] / base, 2)

    return {
        "2 workers / 1 worker, batch 2048": speedup("2 workers, 1 core each", 2048),
        "2 workers sharded / 1 worker, batch 2048": speedup("2 workers, 1 core each, sharded train", 2048),
        "1 worker on 2 cores / 1 core, batch 2048": speedup("1 worker, 2 cores", 2048),
        "2 workers / 1 worker, batch 8192": speedup("2 workers, 1 core each", 8192),
    }


def run(args: argparse.Namespace) -> int:
    if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
        raise common.BenchError("needs at least 2 usable cores and taskset (util-linux)")
    header = common.run_header("distributed", args.quick)
    work = args.work_dir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    spec = bench_scale.SCALE_SPEC.scaled_down(QUICK_FRACTION if args.quick else FRACTION)
    source = work / "interactions.csv"
    rows = bench_scale.write_interactions(spec, source)
    print(f"{rows:,} synthetic interactions in {source}", flush=True)
    prepared = work / "prepared"
    common.prepare(source, prepared, work, "--shards", str(SHARDS))

    runs = measure_plan(prepared, work)
    speedups = speedups_of(runs)
    results = {
        **header,
        "dataset": {"users": spec.users, "items": spec.items, "rows": rows, "train_shards": SHARDS},
        "num_neg": NUM_NEG,
        "runs": runs,
        "speedup": speedups,
    }
    path = common.write_results(args.output, results)
    table = common.markdown_table(
        ["run", "samples/s (epoch 2)", "epoch s", "validation NDCG@10", "peak RSS MiB"],
        [
            [
                name,
                f"{r['samples_per_sec']:,}",
                r["epoch_seconds"],
                r["validation_ndcg_at_10"],
                " + ".join(map(str, r["peak_rss_mib"])),
            ]
            for name, r in runs.items()
        ],
    )
    lines = "\n".join(f"{name}: {value}x" for name, value in speedups.items())
    print(f"\n{table}\n\n{lines}\n\nresults: {path}", flush=True)
    return 0


main = common.script_main(parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
