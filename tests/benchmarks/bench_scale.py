"""Scale benchmark (`make bench-scale`): prepare.py and one train.py epoch on ML-20M-sized data.

Data: `synthetic` (tests/benchmarks/synthetic.py) with the size of MovieLens 20M (138,493 users, 26,744
items, 20,000,263 distinct user-item pairs), popularity only (Zipf-like items, log-normal users of at
least 20 items, random timestamps), written with pyarrow's CSV writer.

1. `training/prepare.py --shards 8` (train channel in 8 part files, ShardedByS3Key-friendly):
   wall time and peak RSS (the child's own `ru_maxrss`).
2. `training/train.py` for one epoch with the defaults except `--num-neg 4` (as bench_speed.py) and
   the run-length flags `--epochs 1 --patience 0 --refit false`: samples/s and epoch time (negative
   sampling + training), validation time on all 138k validation users (sampled metrics over every
   user; full-catalog metrics over `eval_max_users`, 10,000 by default), wall time, peak RSS.

Bar: both steps finish on 2 cores within 24 GiB. Results: tests/benchmarks/results/scale.json
(`--quick`: a 1/20-size smoke run into scale-quick.json). Heavy: run it alone on the machine.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_scale.py [--quick]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import common
import pyarrow as pa
import pyarrow.csv as pa_csv
from synthetic import SyntheticSpec, generate

MEMORY_BAR_GIB = 24
NUM_NEG = 4
SHARDS = 8
QUICK_FRACTION = 20


# ML-20M-sized: 138,493 users, 26,744 items, 20,000,263 distinct pairs (popularity only, no ratings).
SCALE_SPEC = SyntheticSpec(users=138_493, items=26_744, interactions=20_000_263, seed=20_000_263)


def write_interactions(spec: SyntheticSpec, path: Path) -> int:
    """The synthetic interactions as CSV (user_id, item_id, timestamp); returns the row count."""
    data = generate(spec)
    table = pa.table({"user_id": data.users, "item_id": data.items, "timestamp": data.timestamps})
    path.parent.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(table, path)
    return len(data.users)


def train_summary(run: common.MeasuredRun, output_dir: Path) -> dict[str, Any]:
    """The epoch's figures from the metric lines, the validation time from history.json."""

    def first(name: str) -> float | None:
        values = run.metric_values(name)
        return values[0] if values else None

    history = json.loads((output_dir / "history.json").read_text())["history"]
    return {
        "samples_per_sec": first("samples_per_sec"),
        "epoch_seconds": first("epoch_seconds"),
        "validation_seconds": history[0].get("evaluation_seconds"),
        "validation_hr_at_10": first("validation_hr_at_10"),
        "validation_ndcg_at_10": first("validation_ndcg_at_10"),
        "test_hr_at_10": first("test_hr_at_10"),
        "wall_seconds": round(run.seconds, 1),
        "peak_rss_mib": round(run.peak_rss_mib),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_scale.py",
        description="Measure prepare.py and one train.py epoch on ML-20M-sized synthetic data.",
    )
    common.add_run_options(
        parser,
        "scale",
        f"1/{QUICK_FRACTION} of the size",
        "synthetic data, prepared channels, model and logs",
    )
    return common.parse_run_args(parser, argv, "scale")


def run(args: argparse.Namespace) -> int:
    header = common.run_header("scale", args.quick)
    work = args.work_dir.resolve()
    spec = SCALE_SPEC.scaled_down(QUICK_FRACTION) if args.quick else SCALE_SPEC
    print(f"generating {spec.interactions:,} synthetic interactions", flush=True)
    started = time.perf_counter()
    source = work / "interactions.csv"
    rows = write_interactions(spec, source)
    generated = time.perf_counter() - started
    print(f"  wrote {source} in {generated:.1f} s", flush=True)

    prepared = work / "prepared"
    prepare = common.prepare_measured(source, prepared, work, "--shards", str(SHARDS))

    flags = ["--epochs", "1", "--patience", "0", "--refit", "false", "--num-neg", str(NUM_NEG)]
    flags += ["--package", "false"]
    command = common.train_command(prepared, work / "model", work / "output", *flags)
    train = common.run_measured(command, work / "train.log", show=common.is_progress_line, prefix="  ")
    common.check_success(train, "train.py", work / "train.log")

    prepare_gib = prepare.peak_rss_mib / 1024
    trained = train_summary(train, work / "output")
    train_gib = trained["peak_rss_mib"] / 1024
    results = {
        **header,
        "dataset": {**dataclasses.asdict(spec), "rows": rows, "train_shards": SHARDS},
        "generate_seconds": round(generated, 1),
        "prepare": {"wall_seconds": round(prepare.seconds, 1), "peak_rss_mib": round(prepare.peak_rss_mib)},
        "train_one_epoch": {"num_neg": NUM_NEG, **trained},
        "bar": {
            "memory_gib": MEMORY_BAR_GIB,
            "peak_gib": round(max(prepare_gib, train_gib), 2),
            "passed": max(prepare_gib, train_gib) <= MEMORY_BAR_GIB,
        },
    }
    path = common.write_results(args.output, results)
    table = common.markdown_table(
        ["step", "wall s", "peak RSS MiB", "samples/s", "epoch s", "validation s"],
        [
            [
                "prepare.py",
                results["prepare"]["wall_seconds"],
                results["prepare"]["peak_rss_mib"],
                "",
                "",
                "",
            ],
            [
                "train.py (1 epoch)",
                trained["wall_seconds"],
                trained["peak_rss_mib"],
                f"{trained['samples_per_sec'] or 0:,.0f}",
                f"{trained['epoch_seconds'] or 0:.1f}",
                f"{trained['validation_seconds'] or 0:.1f}",
            ],
        ],
    )
    print(f"\n{table}\n\nresults: {path}", flush=True)
    return 0


main = common.script_main(parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
