"""Scale benchmark (`make bench-scale`): prepare.py and one train.py epoch on ML-20M-sized data.

Data: synthetic implicit interactions the size of MovieLens 20M (138,493 users, 26,744 items,
20,000,263 distinct user-item pairs), Zipf-like item popularity (1 / (rank + 10)), log-normal user
activity of at least 20 items, random timestamps. Generated in vectorised numpy (no Python object
per row) and written with pyarrow's CSV writer.

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
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

MEMORY_BAR_GIB = 24
NUM_NEG = 4
SHARDS = 8
QUICK_FRACTION = 20


@dataclasses.dataclass(frozen=True)
class ScaleSpec:
    """The generated dataset; the defaults are the size of MovieLens 20M."""

    users: int = 138_493
    items: int = 26_744
    interactions: int = 20_000_263
    min_per_user: int = 20
    zipf_offset: float = 10.0
    activity_sigma: float = 1.0
    seed: int = 20_000_263

    def scaled_down(self, fraction: int) -> ScaleSpec:
        return dataclasses.replace(
            self,
            users=self.users // fraction,
            items=self.items // fraction * 4,
            interactions=self.interactions // fraction,
        )


def synthetic_pairs(spec: ScaleSpec) -> tuple[np.ndarray, np.ndarray]:
    """`spec.interactions` distinct (user, item) index pairs (within 0.001 %), deterministic in `spec.seed`.

    Users' counts are log-normal (at least `min_per_user`, at most 1/8 of the catalog); items are drawn
    with probability 1 / (rank + offset) over a random item order, with replacement (twice as many as
    needed), duplicates dropped, surplus pairs dropped at random, and the shortfall drawn again.
    """
    rng = np.random.default_rng(spec.seed)
    popularity = 1.0 / (rng.permutation(spec.items) + spec.zipf_offset)
    cdf = np.cumsum(popularity / popularity.sum())
    activity = rng.lognormal(0.0, spec.activity_sigma, spec.users)
    extra = spec.interactions - spec.min_per_user * spec.users
    counts = spec.min_per_user + np.floor(activity / activity.sum() * extra).astype(np.int64)
    cap = spec.items // 8
    counts = np.minimum(counts, cap)
    while (short := spec.interactions - int(counts.sum())) > 0:  # the capped users' share to the others
        room = np.flatnonzero(counts < cap)
        counts[room[np.argsort(-activity[room])][:short]] += 1
    keys = np.zeros(0, np.int64)
    missing = counts.copy()
    while missing.sum() > spec.interactions // 100_000:  # the last rare pairs of heavy users: not worth it
        users = np.repeat(np.arange(spec.users, dtype=np.int64), 2 * missing + 8)  # oversample
        items = np.minimum(np.searchsorted(cdf, rng.random(len(users))), spec.items - 1)
        keys = np.unique(np.concatenate([keys, users * spec.items + items]))
        have = np.bincount(keys // spec.items, minlength=spec.users)
        surplus = have - counts
        if surplus.max() > 0:  # drop a user's extra pairs at random
            order = rng.permutation(len(keys))
            owner = keys[order] // spec.items
            rank = np.empty(len(keys), np.int64)
            by_user = np.argsort(owner, kind="stable")
            starts = np.searchsorted(owner[by_user], np.arange(spec.users))
            rank[by_user] = np.arange(len(keys)) - np.repeat(starts, np.bincount(owner, minlength=spec.users))
            keys = np.sort(keys[order][rank < counts[owner]])
            have = np.bincount(keys // spec.items, minlength=spec.users)
        missing = counts - have
    return keys // spec.items, keys % spec.items


def write_interactions(spec: ScaleSpec, path: Path) -> int:
    """The synthetic interactions as CSV (user_id, item_id, timestamp); returns the row count."""
    users, items = synthetic_pairs(spec)
    timestamps = 1_000_000_000 + np.random.default_rng(spec.seed + 1).permutation(len(users))
    table = pa.table({"user_id": users, "item_id": items, "timestamp": timestamps})
    path.parent.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(table, path)
    return len(users)


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
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run at 1/{QUICK_FRACTION} of the size into scale-quick.json (never replaces scale.json)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=common.REPO / "runs" / "bench" / "scale",
        help="synthetic data, prepared channels, model and logs (replaced on each run) "
        "[default: runs/bench/scale]",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="results file [default: results/scale.json]"
    )
    args = parser.parse_args(argv)
    args.output = args.output or common.results_path("scale", args.quick)
    return args


def run(args: argparse.Namespace) -> int:
    header = common.run_header("scale", args.quick)
    work = args.work_dir.resolve()
    spec = ScaleSpec().scaled_down(QUICK_FRACTION) if args.quick else ScaleSpec()
    print(f"generating {spec.interactions:,} synthetic interactions", flush=True)
    started = time.perf_counter()
    source = work / "interactions.csv"
    rows = write_interactions(spec, source)
    generated = time.perf_counter() - started
    print(f"  wrote {source} in {generated:.1f} s", flush=True)

    prepared = work / "prepared"
    prepare_command = [
        sys.executable,
        common.PREPARE_SCRIPT,
        "--input",
        source,
        "--output",
        prepared,
        "--overwrite",
        "--shards",
        str(SHARDS),
    ]
    prepare = common.run_measured(prepare_command, work / "prepare.log", prefix="  ")
    common.check_success(prepare, "prepare.py", work / "prepare.log")

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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
