"""Item features benchmark: NeuMF on MovieLens 100K with and without genre + year features, and cold start.

MovieLens 100K is prepared by the real `training/prepare.py` (defaults, seed 42), which also writes the
items channel from `u.item` (genres, release year). Then, with DEFAULT hyperparameters:

1. NCF protocol (leave-one-out, 99 sampled negatives): train.py without features, then with
   `--items prepared/items`; test HR@10 / NDCG@10, the selected epoch count and training speed.
2. Cold start: every interaction of 5 % of the items (seeded) is removed before preparing; the model
   is trained with features (the held-out items are in the features file only), and its exported
   SavedModel scores, for each user who interacted with a held-out item, that item against the other
   held-out items the user did not interact with (AUC, 0.5 = chance; see tests/benchmarks/cold_start.py).

Results go to tests/benchmarks/results/features.json (features-quick.json with --quick, 2 epochs), and a
Markdown snippet for the README is printed.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_features.py [--quick]`.
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
from cold_start import cold_start_auc, hold_out_items
from ncf.data.interactions import load_interactions
from ncf.train_settings import TrainConfig

SEED = 42
COLD_FRACTION = 0.05
K = TrainConfig().top_k
QUICK_FLAGS = ("--epochs", "2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_features.py",
        description="NeuMF on MovieLens 100K with and without item features (genres, year), and the "
        "cold-start AUC of items known only by their features.",
    )
    parser.add_argument("--data", type=Path, default=None, help="MovieLens 100K folder (u.data, u.item)")
    parser.add_argument("--work", type=Path, default=common.REPO / "runs" / "bench" / "features")
    parser.add_argument("--quick", action="store_true", help="2 epochs: a smoke test of the benchmark")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: results/)")
    args = parser.parse_args(argv)
    args.output = args.output or common.results_path("features", args.quick)
    return args


def train(name: str, prepared: Path, work: Path, quick: bool, *flags: str) -> dict[str, Any]:
    """Run train.py with default hyperparameters plus `flags`; its metrics.json and measured speed."""
    run_dir = work / name
    command = common.train_command(
        prepared, run_dir / "model", run_dir / "output", *flags, *(QUICK_FLAGS if quick else ())
    )
    print(f"\n== {name}: {common.shell_command(command)}", flush=True)
    log_path = run_dir / "train.log"
    run = common.run_measured(command, log_path, show=common.is_progress_line, prefix="  ")
    common.check_success(run, f"train.py ({name})", log_path)
    metrics = json.loads((run_dir / "output" / "metrics.json").read_text())
    speeds = run.metric_values("samples_per_sec")
    return {
        "flags": list(flags),
        "test": metrics["test"],
        "best_epoch": metrics["best_epoch"],
        "samples_per_sec_median": float(np.median(speeds)) if speeds else None,
        "seconds": round(run.seconds, 1),
        "model_dir": str(run_dir / "model"),
    }


def cold_start(data_dir: Path, work: Path, quick: bool) -> dict[str, Any]:
    """Hide every interaction of COLD_FRACTION of the items, train with features, measure the AUC."""
    import tensorflow as tf

    interactions = load_interactions(data_dir).frame
    kept, hidden, cold = hold_out_items(interactions, COLD_FRACTION, SEED)
    source = work / "cold-source"
    source.mkdir(parents=True, exist_ok=True)
    kept.to_csv(source / "interactions.csv", index=False)
    prepared = work / "cold-prepared"
    common.prepare(
        source, prepared, work / "cold-logs", "--seed", str(SEED), "--item-features", str(data_dir / "u.item")
    )
    result = train("cold-start", prepared, work, quick, "--items", str(prepared / "items"))
    loaded = tf.saved_model.load(str(Path(result["model_dir"]) / "1"))

    def score(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = loaded.signatures["score"](
            user_id=tf.constant(users.astype(str)), item_id=tf.constant(items.astype(str))
        )
        if out["fallback"].numpy().any():
            raise common.BenchError("a held-out item or user fell back to popularity: it is not in the model")
        return out["score"].numpy()

    auc = cold_start_auc(hidden, cold, score)
    return {
        **result,
        "cold_items": len(cold),
        "hidden_interactions": len(hidden),
        "users_with_hidden_interactions": int(hidden["user_id"].nunique()),
        "auc": auc,
    }


def markdown(results: dict[str, Any]) -> str:
    rows = []
    for name, label in (("no-features", "NeuMF, ids only (default)"), ("features", "NeuMF + genres, year")):
        entry = results["ncf_protocol"][name]
        rows.append(
            [
                label,
                f"{entry['test'][f'test_hr_at_{K}']:.3f}",
                f"{entry['test'][f'test_ndcg_at_{K}']:.3f}",
                entry["best_epoch"],
                f"{entry['samples_per_sec_median']:,.0f}",
            ]
        )
    table = common.markdown_table(["model", f"test HR@{K}", f"test NDCG@{K}", "epochs", "samples/s"], rows)
    cold = results["cold_start"]
    note = (
        f"Cold start: all {cold['hidden_interactions']:,} interactions of {cold['cold_items']} items "
        f"(5 %, seed {SEED}) removed before training; for the {cold['users_with_hidden_interactions']:,} "
        "users who had "
        f"them, a held-out item they interacted with scores above a held-out item they did not with "
        f"probability **{cold['auc']:.3f}** (AUC; chance 0.5), the items known by genres and year alone."
    )
    return f"{table}\n\n{note}"


def run(args: argparse.Namespace) -> int:
    header = common.run_header("features", args.quick)
    data_dir = common.find_movielens_100k(args.data)
    if args.work.exists():
        shutil.rmtree(args.work)
    prepared = args.work / "prepared"
    meta = common.prepare(data_dir, prepared, args.work, "--seed", str(SEED))
    if "items" not in meta["channels"]:
        raise common.BenchError(f"prepare.py wrote no items channel: is there a u.item in {data_dir}?")
    protocol = {
        "no-features": train("no-features", prepared, args.work, args.quick),
        "features": train("features", prepared, args.work, args.quick, "--items", str(prepared / "items")),
    }
    results = {
        **header,
        "data": str(data_dir),
        "features": meta["item_features"],
        "ncf_protocol": protocol,
        "cold_start": cold_start(data_dir, args.work, args.quick),
    }
    results["markdown"] = markdown(results)
    path = common.write_results(args.output, results)
    print(f"\n{results['markdown']}\n\nresults: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
