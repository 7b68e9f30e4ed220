"""Sequence-model benchmark (`make bench-sasrec`): new users from their first events, and training speed.

1. New users (MovieLens 100K). A seeded 20% of the users with at least 11 interactions are held out of
   training entirely; the other users' interactions go through the real `training/prepare.py` and
   `training/train.py --model-type sasrec` with default hyperparameters (selection on validation, refit,
   final fit). For each held-out user, in time order (ties in file order), the first n = 1, 3, 5, 10
   interactions are sent as `history` to the exported model's `recommend_from_history` signature (the
   user id is unknown to it), and the (n+1)-th is the target: HR@10 and NDCG@10 over the full catalog,
   the history's items excluded. Anchors on the same users and histories: popularity (training counts),
   and item-kNN (the sum of the cosine similarities, over training users, of each item to the history's
   items). Bar (issue 11): HR@10 with 5 events >= 1.6x popularity's, and above item-kNN's.
2. Training speed. Synthetic data the size of MovieLens 1M (6,040 users, 3,706 items, 1,000,000
   interactions) with sequential structure (each user walks a fixed item graph: the next item is one of
   a few successors of the current one), trained in-process with the default settings: the second
   epoch's wall time (windows, shuffling and the compiled step loop; the first epoch also traces).
   Bar: one epoch <= 60 s on 2 cores.
3. NeuMF fold-in (`--parts foldin`, `ncf.serving.foldin`): a default NeuMF trained by train.py on the same
   training users, the same histories sent to its `recommend_from_history`: a `neumf_foldin` row beside
   SASRec's in part 1's table.
4. Fold-in settings (`--parts foldin-tuning`), on validation users only: the same seeded rule holds out a
   share of the remaining (training) users, a NeuMF is trained without them, and a grid of fold-in
   settings (steps, step size, proximity; then the chosen ones with a sampled softmax) is scored on them.

Results: tests/benchmarks/results/sasrec.json (sasrec-quick.json with --quick). Run from the repository
root: `.venv/bin/python tests/benchmarks/bench_sasrec.py [--quick] [--data DIR]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd

NS = (1, 3, 5, 10)
K = 10
HOLDOUT_FRACTION = 0.2
SEED = 11
BAR_RATIO_AT_5 = 1.6
BAR_EPOCH_SECONDS = 60.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_sasrec.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few epochs, a tenth of the data")
    parser.add_argument("--data", type=Path, default=None, help="MovieLens 100K folder (u.data)")
    parser.add_argument("--work-dir", type=Path, default=common.REPO / "runs" / "bench" / "sasrec")
    parser.add_argument(
        "--parts",
        default="speed,new-users",
        help="comma-separated parts to run (speed, new-users, foldin, foldin-tuning); the results file keeps"
        " the others' figures",
    )
    args = parser.parse_args(argv)
    args.output = common.results_path("sasrec", args.quick)
    return args


# -- new users -------------------------------------------------------------------------------------


def read_movielens(folder: Path) -> pd.DataFrame:
    """u.data as (user_id, item_id, rating, timestamp) strings/numbers, in file order."""
    frame = pd.read_csv(
        folder / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"], dtype=str
    )
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    return frame


def split_new_users(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(training interactions, {held-out user: items in time order}) for a seeded share of active users."""
    counts = frame.groupby("user_id").size()
    eligible = np.sort(counts[counts > max(NS)].index.to_numpy())
    rng = np.random.default_rng(SEED)
    held = set(rng.choice(eligible, size=int(len(eligible) * HOLDOUT_FRACTION), replace=False))
    ordered = frame.assign(row=np.arange(len(frame))).sort_values(["timestamp", "row"], kind="stable")
    sequences = {
        user: group["item_id"].tolist() for user, group in ordered.groupby("user_id") if user in held
    }
    return frame[~frame["user_id"].isin(held)], sequences


def ranked_metrics(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """HR@K and NDCG@K of each row's target column (pessimistic ties); excluded columns are -inf."""
    positive = scores[np.arange(len(targets)), targets]
    ranks = (scores > positive[:, None]).sum(axis=1) + (scores == positive[:, None]).sum(axis=1) - 1
    hits = ranks < K
    return float(hits.mean()), float(np.where(hits, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


class Anchors:
    """Popularity and item-kNN scores over the training interactions, indexed by the catalog order."""

    def __init__(self, training: pd.DataFrame, catalog: list[str]) -> None:
        position = {item: i for i, item in enumerate(catalog)}
        users = pd.factorize(training["user_id"])[0]
        items = training["item_id"].map(position).to_numpy()
        matrix = np.zeros((users.max() + 1, len(catalog)), np.float32)
        matrix[users, items] = 1.0
        self.popularity = matrix.sum(axis=0)
        norms = np.sqrt(np.maximum(self.popularity, 1.0))
        self.similarity = (matrix.T @ matrix) / norms[:, None] / norms[None, :]
        np.fill_diagonal(self.similarity, 0.0)

    def scores(self, name: str, histories: list[list[int]]) -> np.ndarray:
        if name == "popularity":
            return np.tile(self.popularity, (len(histories), 1)).astype(np.float64)
        return np.stack([self.similarity[h].sum(axis=0) for h in histories]).astype(np.float64)


def history_cases(
    sequences: dict[str, list[str]], n: int, catalog: dict[str, int]
) -> tuple[list, list, list]:
    """(user ids, histories of the first n items, target catalog positions or -1) of every held-out user."""
    users = sorted(sequences)
    histories = [sequences[u][:n] for u in users]
    targets = [catalog.get(sequences[u][n], -1) for u in users]
    return users, histories, targets


def model_metrics(
    recommend: Any, users: list, histories: list, targets: list, catalog_ids: list[str]
) -> tuple[float, float]:
    """HR@K / NDCG@K of the exported model's `recommend_from_history` top-K lists."""
    import tensorflow as tf

    answer = recommend(user_id=tf.constant(users), history=tf.constant(histories), k=tf.constant(K))
    top = answer["item_ids"].numpy().astype(str)
    hits, gains = [], []
    for row, target in zip(top, targets, strict=True):
        found = [i for i, item in enumerate(row) if target >= 0 and item == catalog_ids[target]]
        hits.append(bool(found))
        gains.append(1.0 / np.log2(found[0] + 2.0) if found else 0.0)
    return float(np.mean(hits)), float(np.mean(gains))


def anchor_metrics(
    anchors: Anchors, name: str, histories: list, targets: list, catalog_ids: list[str]
) -> tuple[float, float]:
    """HR@K / NDCG@K of an anchor, history items excluded, unknown targets counted as misses."""
    positions = {item: i for i, item in enumerate(catalog_ids)}
    indexed = [[positions[i] for i in h if i in positions] for h in histories]
    scores = anchors.scores(name, indexed)
    for row, history in enumerate(indexed):
        scores[row, history] = -np.inf
    known = np.array(targets) >= 0
    hr, ndcg = ranked_metrics(scores[known], np.array(targets)[known])
    share = known.mean()
    return hr * share, ndcg * share


def train_without_new_users(args: argparse.Namespace, training: pd.DataFrame, name: str, *flags: str) -> Any:
    """Prepare `training` (the held-out users are not in it), train with `flags` and load the export."""
    import tensorflow as tf

    work = args.work_dir / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    training.to_csv(work / "interactions.csv", index=False)
    common.prepare(work / "interactions.csv", work / "prepared", work)
    flags = ("--package", "false", *flags, *(["--epochs", "3"] if args.quick else []))
    command = common.train_command(work / "prepared", work / "model", work / "output", *flags)
    run = common.run_measured(command, work / "train.log", prefix="  ")
    common.check_success(run, "train.py", work / "train.log")
    return tf.saved_model.load(str(work / "model" / "1"))


def new_user_rows(
    loaded: Any,
    sequences: dict[str, list[str]],
    recommend: dict[Any, Any],
    anchors: Anchors | None,
    ns: tuple[int, ...] = NS,
) -> dict[int, dict[Any, tuple[float, float]]]:
    """{n: {row name: (HR@K, NDCG@K)}} of each `recommend_from_history` function (and the anchors), from
    each user's first n events, for every n of `ns`."""
    catalog_ids = loaded.item_ids.numpy().astype(str).tolist()
    catalog = {item: i for i, item in enumerate(catalog_ids)}
    rows = {}
    for n in ns:
        users, histories, targets = history_cases(sequences, n, catalog)
        new_users = [f"new-{u}" for u in users]
        rows[n] = {
            name: model_metrics(f, new_users, histories, targets, catalog_ids)
            for name, f in recommend.items()
        }
        for name in ("popularity", "item_knn") if anchors is not None else ():
            rows[n][name] = anchor_metrics(anchors, name, histories, targets, catalog_ids)
    return rows


def new_user_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Train on the other users, then score every held-out user's next item from their first n events."""
    training, sequences = split_new_users(read_movielens(common.find_movielens_100k(args.data)))
    loaded = train_without_new_users(args, training, "new-users", "--model-type", "sasrec")
    catalog_ids = loaded.item_ids.numpy().astype(str).tolist()
    anchors = Anchors(training[training["item_id"].isin(set(catalog_ids))], catalog_ids)
    recommend = {"sasrec": loaded.signatures["recommend_from_history"]}
    rows = new_user_rows(loaded, sequences, recommend, anchors)
    return {"held_out_users": len(sequences), "training_interactions": len(training), "by_events": rows}


# -- NeuMF fold-in (ncf.serving.foldin): the same new users, and its settings chosen on validation users ----

FOLDIN_FLAGS = ("--model-type", "neumf")
FOLDIN_SAMPLES = (256, 512, 1024)
FOLDIN_GRID = {"steps": (3, 10, 30), "step_size": (0.01, 0.03, 0.1, 0.3), "proximity": (1.0, 3.0, 10.0, 30.0)}


def foldin_benchmark(args: argparse.Namespace) -> dict[int, tuple[float, float]]:
    """{n: (HR@K, NDCG@K)} of a NeuMF export's fold-in on the new-user benchmark's users and split."""
    training, sequences = split_new_users(read_movielens(common.find_movielens_100k(args.data)))
    loaded = train_without_new_users(args, training, "foldin", *FOLDIN_FLAGS)
    rows = new_user_rows(
        loaded, sequences, {"neumf_foldin": loaded.signatures["recommend_from_history"]}, None
    )
    return {n: row["neumf_foldin"] for n, row in rows.items()}


def foldin_tuning(args: argparse.Namespace) -> dict[str, Any]:
    """The fold-in settings grid on validation users only: the benchmark's test users are removed first,
    then the same seeded rule holds out a share of the remaining users; a NeuMF trained without both is
    folded in with every setting, ranked by the mean NDCG@K over n = 1, 3, 5, 10 events."""
    import dataclasses
    import itertools

    from ncf.serving.foldin import FoldInSettings
    from ncf.serving.history import history_signatures

    training, _ = split_new_users(read_movielens(common.find_movielens_100k(args.data)))
    inner, validation = split_new_users(training)
    loaded = train_without_new_users(args, inner, "foldin-tuning", *FOLDIN_FLAGS)

    def trial(settings: FoldInSettings) -> dict[str, Any]:
        recommend = history_signatures(rebuilt_recommender(loaded, settings))["recommend_from_history"]
        rows = new_user_rows(loaded, validation, {"foldin": recommend}, None)
        ndcg = float(np.mean([row["foldin"][1] for row in rows.values()]))
        print(f"  fold-in {settings}: mean NDCG@{K} {ndcg:.4f}", flush=True)
        return {**dataclasses.asdict(settings), "ndcg": ndcg, "by_events": rows}

    no_steps = (0, 0.0, 1.0)  # the starting point itself (the mean user): what the steps must beat
    grid = [no_steps, *itertools.product(*FOLDIN_GRID.values())]
    trials = [trial(FoldInSettings(**dict(zip(FOLDIN_GRID, values, strict=True)))) for values in grid]
    # The defaults with a sampled softmax (the catalog has 1.6k items: below 2,048 the softmax is exact).
    sampled = [trial(dataclasses.replace(FoldInSettings(), candidates=n)) for n in FOLDIN_SAMPLES]
    best = max(trials, key=lambda result: result["ndcg"])
    return {"validation_users": len(validation), "best": best, "trials": trials, "sampled_softmax": sampled}


def rebuilt_recommender(loaded: Any, settings: Any) -> Any:
    """An in-process `Recommender` over a loaded NeuMF export's weights (trained with the default shape,
    FOLDIN_FLAGS) and its vocabularies, seen items and popularity, with other fold-in settings."""
    from ncf.data.vocab import UserItemSets, Vocabulary
    from ncf.models.ncf_models import ModelSpec, NcfModel
    from ncf.serving.export import Recommender
    from ncf.serving.retrieval import choose
    from ncf.train_settings import TrainConfig

    users, items = (
        Vocabulary(v.numpy().astype(str).astype(object)) for v in (loaded.user_ids, loaded.item_ids)
    )
    spec = ModelSpec("neumf", len(users), len(items), TrainConfig.factors, TrainConfig.mlp_layers)
    model = NcfModel(spec, seed=0)
    for group, saved in ((model.embeddings, loaded.model.embeddings), (model.dense, loaded.model.dense)):
        for name, variable in group.items():
            variable.assign(saved[name])
    seen = UserItemSets(loaded.seen_offsets.numpy()[:-1], loaded.seen_items.numpy().astype(np.int32))
    popularity = loaded.popularity.numpy()
    retrieval = choose("neumf", len(items), 0, 0)  # exhaustive, as the ML-100K export is
    return Recommender(model, users, items, seen, popularity, True, retrieval=retrieval, foldin=settings)


# -- training speed --------------------------------------------------------------------------------


def training_data(
    train_users: np.ndarray, train_items: np.ndarray, recency: np.ndarray, users: int, items: int
) -> Any:
    """Implicit TrainingData over ids u00000.. / i00000.. with no held-out splits (timing, not evaluation)."""
    from ncf.data.heldout import HeldOut
    from ncf.data.training_data import TrainingData
    from ncf.data.vocab import UserItemSets, Vocabulary

    empty = HeldOut(np.zeros(0, np.int32), np.zeros((0, 2), np.int32), None)
    return TrainingData(
        users=Vocabulary(np.array([f"u{u:05d}" for u in range(users)], dtype=object)),
        items=Vocabulary(np.array([f"i{i:05d}" for i in range(items)], dtype=object)),
        train_users=train_users,
        train_items=train_items,
        train_targets=np.ones(len(train_users), np.float32),
        train_recency=recency,
        seen=UserItemSets.build(train_users, train_items, users),
        item_counts=np.bincount(train_items, minlength=items),
        validation=empty,
        test=empty,
    )


def sequential_data(users: int, items: int, interactions: int, seed: int = 7) -> Any:
    """TrainingData of `users` walks over a fixed item graph (4 successors per item): ML-1M-sized."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, items, (items, 4))
    lengths = np.maximum(20, rng.lognormal(0.0, 1.0, users) / 1.6487 * interactions / users).astype(np.int64)
    lengths = np.minimum(lengths, 2000)
    item_rows = [rng.integers(0, items, users)]
    for _ in range(int(lengths.max()) - 1):
        item_rows.append(successors[item_rows[-1], rng.integers(0, 4, users)])
    walks = np.stack(item_rows, axis=1)
    keep = np.arange(walks.shape[1])[None, :] < lengths[:, None]
    train_users = np.repeat(np.arange(users, dtype=np.int32), lengths)
    train_items = walks[keep].astype(np.int32)
    within = np.arange(len(train_users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    recency = (np.repeat(lengths, lengths) - 1 - within).astype(np.int32)
    return training_data(train_users, train_items, recency, users, items)


def speed_benchmark(quick: bool) -> dict[str, Any]:
    """Seconds of an epoch with the default settings, and with the sampled softmax (large catalogs)."""
    scale = 10 if quick else 1
    data = sequential_data(6_040 // scale, 3_706, 1_000_000 // scale)
    default = epoch_seconds(data, {})
    sampled = epoch_seconds(data, {"sequence_loss": "sampled_softmax", "num_neg": 256})
    return {
        "users": len(data.users),
        "items": len(data.items),
        "interactions": len(data.train_users),
        "default": default,
        "sampled_softmax_256": sampled,
        "epoch_seconds": default["epoch_seconds"],
        "bar_epoch_seconds": BAR_EPOCH_SECONDS,
        "passed": bool(default["epoch_seconds"] <= BAR_EPOCH_SECONDS),
    }


def epoch_seconds(data: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Seconds of the first epoch (it also traces) and the second (windows + compiled step loop)."""
    from ncf.fit.sequence_epochs import SequenceRunner, SequenceSource
    from ncf.models.sasrec import build_sasrec

    config = sasrec_config(**settings)
    model = build_sasrec(config, data)
    source, runner = SequenceSource(data, config), SequenceRunner(model, config)
    seconds = []
    for epoch in range(2):
        started = time.perf_counter()
        runner.train_epoch(source.batches(epoch), lambda: False)
        seconds.append(time.perf_counter() - started)
    return {
        "settings": {k: v for k, v in config.hyperparameters().items() if k in SPEED_SETTINGS},
        "model_length": model.spec.max_len,
        "objective": runner.loss,
        "first_epoch_seconds": seconds[0],
        "epoch_seconds": seconds[1],
    }


SPEED_SETTINGS = (
    "factors",
    "max_len",
    "attention_blocks",
    "batch_size",
    "sequence_loss",
    "num_neg",
    "softmax_max_items",
    "mixed_precision",
)


def sasrec_config(**settings: Any) -> Any:
    """The sequence model's defaults as train.py resolves them (its type's own applied), and `settings`."""
    from ncf.models import registry
    from ncf.train_settings import TrainConfig

    return TrainConfig(model_type="sasrec", **{**registry.model_type("sasrec").defaults, **settings})


def sasrec_bar(by_events: dict) -> dict[str, Any]:
    """Issue 11's bar: SASRec's HR@K with 5 events >= 1.6x popularity's, and above item-kNN's."""
    at_5 = by_events[5] if 5 in by_events else by_events["5"]
    ratio = at_5["sasrec"][0] / max(at_5["popularity"][0], 1e-9)
    return {
        "hr_ratio_to_popularity_at_5": ratio,
        "passed": bool(ratio >= BAR_RATIO_AT_5 and at_5["sasrec"][0] > at_5["item_knn"][0]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",")}
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    header = common.run_header("sasrec", args.quick, argv)
    # The top-level header describes the sasrec parts; the fold-in parts record their own run.
    results = {**previous, **header} if parts & {"speed", "new-users"} else {**header, **previous}
    if "speed" in parts:
        results["speed"] = speed_benchmark(args.quick)
        print(f"speed: one epoch {results['speed']['epoch_seconds']:.1f} s", flush=True)
    if "new-users" in parts:
        results["new_users"] = new_user_benchmark(args)
    if "foldin-tuning" in parts:
        results["foldin_tuning"] = {"run": header, **foldin_tuning(args)}
    if "foldin" in parts:
        foldin = foldin_benchmark(args)
        for n, row in results["new_users"]["by_events"].items():
            row["neumf_foldin"] = foldin[int(n)]
        results["new_users"]["neumf_foldin_run"] = header
    if "new_users" in results:
        results["new_users"]["bar"] = sasrec_bar(results["new_users"]["by_events"])
    print(f"results: {common.write_results(args.output, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
