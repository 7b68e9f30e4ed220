"""Two-stage retrieval benchmark (in `make bench-serve`): latency, overlap and quality of the exported top-k.

1. A NeuMF (default settings) trained for one epoch (`--epochs 1`: the bars are about latency and
   overlap, not accuracy) on synthetic ML-20M-sized data (`bench_scale.SCALE_SPEC`, popularity-only
   `synthetic` (tests/benchmarks/synthetic.py) data: 138,493 users, 26,744 items; `--interactions` and
   `--synthetic-users` scale it down), exported by train.py. Its catalog is
   then padded to 100,000 and 1,000,000 items: each padded item copies the trained vectors of a random
   trained item plus Gaussian noise (0.25 of each table's standard deviation), so the padded items are
   realistic competitors (untrained near-zero rows would never reach a top-10 and make the overlap
   trivial). Popularity of padded items: that of the copied item.
2. For each padded size: top-10 overlap of the two-stage answer with the exhaustive one (same model,
   `serving_default`, seen items excluded) over `--users` known users, for a grid of candidate counts N;
   the smallest N with overlap >= 0.95 is reported (`retrieval_candidates`' default is set from it).
3. At the default N, the SavedModel as the export writes it: export seconds, size on disk, 1-user p50/p99
   and 100-user batch p50 (in-process, `serving_default`), exhaustive 1-user p50 for comparison, and
   serving memory (peak RSS of a fresh process that loads it and calls every signature).
4. TF Serving compatibility: `check_serving_tf.py` under `.venv-tf219/` (tensorflow-cpu 2.19, the
   version of TF Serving in the SageMaker 2.20 serving image) loads the 1M-item export and calls every
   signature; skipped with a message when that venv is absent (`make tf-serving-venv`).
5. MovieLens 100K quality: train.py with defaults, `--final-fit false` (the exported model is the
   evaluated one) and `--item-features none` (the plain NeuMF; prepare.py adds u.item's features): its
   test HR@10/NDCG@10 (sampled, as train.py reports them; the export stays exhaustive by the size rule),
   and full-catalog HR@10/NDCG@10 of the served top-10 (the held-out test item among all unseen items)
   as exported and with retrieval forced on at the default N, plus the overlap curve with it forced on.

Numbers are noisy: the machine has 2 cores shared with other work. Results: results/retrieval.json.
Run from the repository root: `.venv/bin/python tests/benchmarks/bench_retrieval.py [--quick]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench_scale
import common
import numpy as np
import pandas as pd
import tensorflow as tf
from bench_serve import latency_ms
from ncf.data.vocab import UserItemSets, Vocabulary
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.serving.export import Recommender, save_recommender
from ncf.serving.retrieval import RetrievalChoice, choose
from ncf.train_settings import TrainConfig

OVERLAP_BAR = 0.95
LATENCY_BARS_MS = {100_000: 2.0, 1_000_000: 8.0}
CANDIDATE_GRID = (10, 20, 50, 100, 200, 500, 1000, 2000)
TF219_PYTHON = common.REPO / ".venv-tf219" / "bin" / "python"
CHECK_SCRIPT = Path(__file__).resolve().parent / "check_serving_tf.py"


@dataclasses.dataclass
class Served:
    """A trained model and what its export knows: the inputs of `Recommender`."""

    model: NcfModel
    users: Vocabulary
    items: Vocabulary
    seen: UserItemSets
    popularity: np.ndarray

    def recommender(self, choice: RetrievalChoice | None, similarity: str = "cosine") -> Recommender:
        return Recommender(
            self.model, self.users, self.items, self.seen, self.popularity, True, similarity, choice
        )

    def choice(self, candidates: int, min_items: int = TrainConfig.retrieval_min_items) -> RetrievalChoice:
        """The export's choice at `candidates` (0: exhaustive), by default with the default size rule."""
        spec = self.model.spec
        return choose(spec.model_type, spec.num_items, candidates, min_items)


def restore(saved_model: Path) -> Served:
    """The NcfModel and export inputs inside a SavedModel written by train.py (models without features)."""
    loaded = tf.saved_model.load(str(saved_model))
    if hasattr(loaded.model, "feature_tokens"):
        raise common.BenchError(f"{saved_model}: has item features; this benchmark restores plain models")
    emb, dense = loaded.model.embeddings, loaded.model.dense
    widths = [dense["mlp_w0_user"].shape[0] * 2]
    widths += [dense[f"mlp_w{i}"].shape[1] for i in range(1, 99) if f"mlp_w{i}" in dense]
    widths.insert(1, dense["mlp_w0_user"].shape[1])
    spec = ModelSpec(
        "neumf", emb["gmf_user"].shape[0], emb["gmf_item"].shape[0], emb["gmf_user"].shape[1], tuple(widths)
    )
    model = NcfModel(spec, seed=0)
    for mine, theirs in ((model.embeddings, emb), (model.dense, dense)):
        for name, variable in mine.items():
            variable.assign(theirs[name])
    offsets = loaded.seen_offsets.numpy()[:-1]  # the export appends an empty row for unknown users
    seen = UserItemSets(offsets, loaded.seen_items.numpy().astype(np.int32))
    users = Vocabulary(loaded.user_ids.numpy().astype(str).astype(object))
    items = Vocabulary(loaded.item_ids.numpy().astype(str).astype(object))
    return Served(model, users, items, seen, loaded.popularity.numpy())


def padded(served: Served, num_items: int, seed: int = 0) -> Served:
    """`served` with its catalog padded to `num_items` by noisy copies of random trained items."""
    trained = served.model.spec.num_items
    rng = np.random.default_rng(seed)
    source = rng.integers(0, trained, num_items - trained)
    spec = dataclasses.replace(served.model.spec, num_items=num_items)
    model = NcfModel(spec, seed=0)
    for name, variable in model.embeddings.items():
        values = served.model.embeddings[name].numpy()
        if name.endswith("_item"):
            noise = rng.normal(0.0, 0.25 * values.std(), (len(source), values.shape[1]))
            values = np.concatenate([values, values[source] + noise.astype(np.float32)])
        variable.assign(values)
    for name, variable in model.dense.items():
        variable.assign(served.model.dense[name])
    pad_ids = np.array([f"~pad{j:07d}" for j in range(num_items - trained)], dtype=object)
    items = Vocabulary(np.concatenate([served.items.ids, pad_ids]))
    popularity = np.concatenate([served.popularity, served.popularity[source]])
    return Served(model, served.users, items, served.seen, popularity / popularity.sum())


def top10_indices(recommend: Any, user_ids: np.ndarray, batch: int) -> list[set[str]]:
    """Each user's served top-10 item ids (`serving_default`, seen items excluded), in batches."""
    out = []
    for start in range(0, len(user_ids), batch):
        answer = recommend(tf.constant(user_ids[start : start + batch]), tf.constant(10))
        out.extend(set(row) for row in answer["item_ids"].numpy())
    return out


def overlap_curve(served: Served, user_ids: np.ndarray, grid: tuple[int, ...]) -> list[dict[str, float]]:
    """Mean top-10 overlap with exhaustive scoring for each N of `grid` (tf.functions, not exported)."""
    exhaustive = served.recommender(served.choice(0), similarity="jaccard")
    truth = top10_indices(exhaustive.recommend, user_ids, batch=4)
    curve = []
    for candidates in grid:
        two_stage = served.recommender(served.choice(candidates, min_items=0), similarity="jaccard")
        answer = top10_indices(two_stage.recommend, user_ids, batch=100)
        overlap = float(np.mean([len(a & b) / 10 for a, b in zip(answer, truth, strict=True)]))
        curve.append({"candidates": candidates, "overlap_at_10": round(overlap, 4)})
        print(f"    N={candidates:>5}: overlap {overlap:.4f}", flush=True)
    return curve


def smallest_passing(curve: list[dict[str, float]]) -> int | None:
    return next((p["candidates"] for p in curve if p["overlap_at_10"] >= OVERLAP_BAR), None)


def folder_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def export_and_time(served: Served, candidates: int, out: Path) -> tuple[Path, dict[str, Any]]:
    """The SavedModel as train.py's export writes it (default similarity), timed; its size."""
    started = time.perf_counter()
    choice = served.choice(candidates)
    path = save_recommender(served.recommender(choice), out)
    seconds = time.perf_counter() - started
    return path, {
        "export_seconds": round(seconds, 1),
        "saved_model_mib": folder_mib(path),
        "choice": dataclasses.asdict(choice),
    }


def check_in_other_python(python: Path, path: Path, user: str, item: str) -> dict[str, Any]:
    """check_serving_tf.py under `python`: every signature once, and that process's peak RSS."""
    command = [str(python), str(CHECK_SCRIPT), str(path), user, item]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        return {"python": str(python), "ok": False, "error": done.stderr[-2000:]}
    return {"python": str(python), "ok": True, **json.loads(done.stdout.strip().splitlines()[-1])}


def served_hit_metrics(recommend: Any, test_dir: Path) -> dict[str, float]:
    """Full-catalog HR@10/NDCG@10 of the served top-10: each test user's held-out item among all unseen."""
    frame = pd.concat([pd.read_csv(f, dtype=str) for f in sorted(test_dir.glob("*.csv"))])
    held_out = frame[frame["label"].astype(float) > 0]
    users, items = held_out["user_id"].to_numpy(), held_out["item_id"].to_numpy()
    answer = recommend(tf.constant(users), tf.constant(10))["item_ids"].numpy().astype(str)
    ranks = np.array(
        [list(row).index(item) if item in row else -1 for row, item in zip(answer, items, strict=True)]
    )
    hits = ranks >= 0
    ndcg = np.where(hits, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
    return {
        "users": len(users),
        "hr_at_10_full": round(float(hits.mean()), 4),
        "ndcg_at_10_full": round(float(ndcg.mean()), 4),
    }


def train(prepared: Path, run_dir: Path, *flags: str) -> dict[str, Any]:
    """train.py on `prepared` with `flags`; returns its metrics.json."""
    command = common.train_command(
        prepared, run_dir / "model", run_dir / "output", "--package", "false", *flags
    )
    run = common.run_measured(command, run_dir / "train.log", show=common.is_progress_line, prefix="  ")
    common.check_success(run, "train.py", run_dir / "train.log")
    return json.loads((run_dir / "output" / "metrics.json").read_text())


def trained_on_movielens(work: Path, data: Path | None) -> tuple[Served, Path, dict[str, Any]]:
    """ML-100K: prepared channels, train.py with `--final-fit false`; (model, prepared dir, metrics.json)."""
    prepared = work / "ml100k-prepared"
    common.prepare(common.find_movielens_100k(data), prepared, work, "--seed", "42")
    metrics = train(prepared, work / "ml100k", "--final-fit", "false", "--item-features", "none")
    return restore(work / "ml100k" / "model" / "1"), prepared, metrics


def movielens_quality(served: Served, prepared: Path, metrics: dict, candidates: int) -> dict[str, Any]:
    """train.py's test metrics; the served top-10's full-catalog metrics as exported and retrieving."""
    forced = served.choice(candidates, min_items=0)
    result = {"train_py_test": metrics["test"], "export_choice": metrics["exported_model"]["retrieval"]}
    for name, choice in (("as_exported", served.choice(candidates)), ("retrieval_forced", forced)):
        recommender = served.recommender(choice)  # kept alive: its tf.functions hold it weakly
        result[name] = {"choice": choice.mode, **served_hit_metrics(recommender.recommend, prepared / "test")}
    exported, forced_metrics = result["as_exported"], result["retrieval_forced"]
    keys = ("hr_at_10_full", "ndcg_at_10_full")
    result["difference"] = {key: round(abs(exported[key] - forced_metrics[key]), 4) for key in keys}
    return result


def trained_on_synthetic(work: Path, interactions: int, users: int) -> Served:
    """A NeuMF trained one epoch on ML-20M-sized synthetic data (reused from `work` when already there)."""
    saved = work / "synthetic" / "model" / "1"
    if not saved.is_dir():
        spec = dataclasses.replace(bench_scale.SCALE_SPEC, interactions=interactions, users=users)
        print(
            f"generating {spec.interactions:,} interactions, {spec.users:,} users, {spec.items:,} items",
            flush=True,
        )
        bench_scale.write_interactions(spec, work / "synthetic.csv")
        common.prepare(work / "synthetic.csv", work / "synthetic-prepared", work)
        flags = ["--epochs", "1", "--patience", "0", "--refit", "false", "--final-fit", "false"]
        flags += ["--num-neg", str(bench_scale.NUM_NEG), "--eval-max-users", "1000"]
        train(work / "synthetic-prepared", work / "synthetic", *flags)
    return restore(saved)


def id_batches(ids: np.ndarray, size: int, count: int) -> list[tf.Tensor]:
    """`count` batches of `size` real user ids (cycling), built before timing starts."""
    return [tf.constant(ids[(np.arange(size) + i * size) % len(ids)].astype(str)) for i in range(count)]


def user_sample(served: Served, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return served.users.ids[rng.choice(len(served.users), count, replace=False)].astype(str)


def at_catalog_size(served: Served, curve: list[dict], candidates: int, args: argparse.Namespace) -> dict:
    """Export, latency, memory and TF 2.19 loading of `served` (a padded catalog) at `candidates`."""
    size = served.model.spec.num_items
    print(f"catalog of {size:,} items, N = {candidates}", flush=True)
    sample = user_sample(served, args.users, size)
    path, export = export_and_time(served, candidates, args.work_dir.resolve() / f"export-{size}")
    print(f"  export: {export}", flush=True)
    loaded = tf.saved_model.load(str(path))  # kept: its signatures hold only weak references to it
    recommend = loaded.signatures["serving_default"]
    k, batches = tf.constant(10), {n: id_batches(sample, n, 64 if n == 1 else 4) for n in (1, 100)}
    one = latency_ms(lambda i: recommend(user_id=batches[1][i % 64], k=k)["item_ids"].numpy(), args.calls)
    batch = latency_ms(
        lambda i: recommend(user_id=batches[100][i % 4], k=k)["item_ids"].numpy(), 10, warmup=2
    )
    exhaustive = served.recommender(served.choice(0), similarity="jaccard")  # kept alive, as `loaded`
    full = latency_ms(lambda i: exhaustive.recommend(batches[1][i % 64], k)["item_ids"].numpy(), 20, warmup=3)
    overlap = next((p["overlap_at_10"] for p in curve if p["candidates"] == candidates), None)
    result = {
        "items": size,
        "overlap_curve": curve,
        "smallest_candidates_with_overlap_0_95": smallest_passing(curve),
        "overlap_at_default_candidates": overlap,
        **export,
        "one_user": one,
        "batch_100_users": {**batch, "per_user_p50_ms": round(batch["p50_ms"] / 100, 3)},
        "exhaustive_one_user": full,
        "serving_process": [
            check_in_other_python(Path(sys.executable), path, sample[0], served.items.ids[0])
        ],
    }
    print(
        f"  p50: 1 user {one['p50_ms']} ms, 100 users {batch['p50_ms']} ms, exhaustive {full['p50_ms']} ms",
        flush=True,
    )
    if TF219_PYTHON.is_file():
        result["serving_process"].append(
            check_in_other_python(TF219_PYTHON, path, sample[0], served.items.ids[0])
        )
    else:
        print(
            f"  SKIPPED the TensorFlow 2.19 check: {TF219_PYTHON} is absent (make tf-serving-venv)",
            flush=True,
        )
        result["serving_process"].append({"python": str(TF219_PYTHON), "ok": None, "skipped": "venv absent"})
    return result


def bars(sizes: list[dict[str, Any]], quality: dict[str, Any] | None) -> dict[str, bool]:
    passed = {}
    for entry in sizes:
        size, bar = entry["items"], LATENCY_BARS_MS.get(entry["items"])
        if bar is not None:
            passed[f"one_user_p50_at_{size}_items_under_{bar}ms"] = entry["one_user"]["p50_ms"] <= bar
        passed[f"overlap_at_{size}_items_at_least_0.95"] = (
            entry["overlap_at_default_candidates"] or 0
        ) >= OVERLAP_BAR
        passed[f"batch_per_user_not_slower_at_{size}"] = (
            entry["batch_100_users"]["per_user_p50_ms"] <= entry["one_user"]["p50_ms"]
        )
        passed[f"export_under_2_minutes_at_{size}"] = entry["export_seconds"] <= 120
        passed[f"loads_under_tf_2_19_at_{size}"] = entry["serving_process"][-1]["ok"] is True
    if quality is not None:
        passed["ml100k_quality_unchanged_within_0.005"] = max(quality["difference"].values()) <= 0.005
    return passed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_retrieval.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--candidates",
        type=int,
        default=0,
        help="N of the export, latency and quality runs (default: the smallest N of the grid whose overlap"
        " is >= 0.95 on every measured catalog)",
    )
    parser.add_argument(
        "--catalog-sizes", default="100000,1000000", help="comma-separated padded item counts"
    )
    parser.add_argument(
        "--interactions", type=int, default=bench_scale.SCALE_SPEC.interactions, help="synthetic interactions"
    )
    parser.add_argument(
        "--synthetic-users", type=int, default=bench_scale.SCALE_SPEC.users, help="synthetic users"
    )
    parser.add_argument("--users", type=int, default=1000, help="users of the overlap measurement")
    parser.add_argument("--calls", type=int, default=200, help="timed 1-user calls")
    parser.add_argument(
        "--data", type=Path, default=None, help="MovieLens 100K folder (default: the usual places)"
    )
    parser.add_argument("--skip-movielens", action="store_true", help="leave out the ML-100K quality part")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=common.REPO / "runs" / "bench" / "retrieval",
        help="synthetic data and the trained model (reused when there) [default: runs/bench/retrieval]",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run into retrieval-quick.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.interactions, args.synthetic_users, args.users, args.calls = 400_000, 5_000, 100, 30
        args.catalog_sizes, args.work_dir = "100000", args.work_dir.with_name("retrieval-quick")
    return args


def run(args: argparse.Namespace) -> int:
    header = common.run_header("retrieval", args.quick)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    base = trained_on_synthetic(work, args.interactions, args.synthetic_users)
    catalogs = [padded(base, int(size)) for size in args.catalog_sizes.split(",")]
    curves = {}
    for served in catalogs:
        size = served.model.spec.num_items
        print(f"overlap with exhaustive scoring at {size:,} items", flush=True)
        curves[size] = overlap_curve(served, user_sample(served, args.users, size), CANDIDATE_GRID)
    movielens = None if args.skip_movielens else trained_on_movielens(work, args.data)
    if movielens is not None:
        served, prepared, _ = movielens
        grid = tuple(n for n in CANDIDATE_GRID if n < served.model.spec.num_items)
        print("overlap with exhaustive scoring on MovieLens 100K, retrieval forced on", flush=True)
        curves["ml-100k"] = overlap_curve(served, test_users(prepared), grid)
    passing = [smallest_passing(curve) for curve in curves.values()]
    measured = max(passing) if None not in passing else max(CANDIDATE_GRID)
    candidates = args.candidates or measured
    sizes = [
        at_catalog_size(served, curves[served.model.spec.num_items], candidates, args) for served in catalogs
    ]
    quality = None if movielens is None else movielens_quality(*movielens, candidates)
    if quality is not None:
        quality["overlap_curve_retrieval_forced"] = curves["ml-100k"]
    results = {
        **header,
        "model": {"type": "neumf", **dataclasses.asdict(base.model.spec)},
        "synthetic": {"interactions": args.interactions, "users": args.synthetic_users, "epochs": 1},
        "measured_candidates": measured,
        "candidates": candidates,
        "config_default_candidates": TrainConfig.retrieval_candidates,
        "catalogs": sizes,
        "movielens_100k": quality,
        "passed": bars(sizes, quality),
    }
    path = common.write_results(common.results_path("retrieval", args.quick), results)
    print(json.dumps(results["passed"], indent=2), f"\nresults: {path}", flush=True)
    return 0


def test_users(prepared: Path) -> np.ndarray:
    frame = pd.concat([pd.read_csv(f, dtype=str) for f in sorted((prepared / "test").glob("*.csv"))])
    return frame["user_id"].unique()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
