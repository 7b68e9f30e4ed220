"""Filters benchmark (issue #20): correctness on MovieLens 100K, never starved and speed at 1M items.

1. MovieLens 100K with genres (the items channel prepare.py writes from u.item: genres, year) and event
   types (each rating read as an event: 5 "loved", 4 "liked", else "watched"; prepare.py
   --event-type-col): a NeuMF trained by train.py with 10 random filters (seeded; with and without
   parameters, selective and broad; three of them interaction filters, `Interactions.event_type` and
   `Interactions.age_days`, alone and with item conditions) in `--filters`. For 200 test users and each
   filter, the served `recommend_filtered` top-10 is compared with the exhaustive top-10 computed outside
   the model: every item's score from the `score` signature, the user's training items (item filters;
   interaction filters keep them, as they are what those decide on) and the items that fail the filter
   removed, then sorted. The filter is evaluated by the plain-Python reference of tests/filter_fixtures.py
   over the items table and, for interaction filters, the user's rows read from the prepared channels
   (ages at `now`, a day after the data's last timestamp), not by the model's masks or stored
   interactions. Equal when the ids are the same, or (ties) their scores are; every returned item must
   pass.
2. 1M items: the synthetic NeuMF of bench_retrieval.py (one epoch) padded to 1,000,000 items, a
   multi-valued genre column where one genre ("rare") is held by 1 % of the items. With two-stage
   retrieval at the default candidates: the filtered top-10 of `--users` users must hold 10 items that
   pass (never starved) and overlap the exhaustive filtered top-10 by >= 0.95; 1-user p50 of the
   filtered and unfiltered top-10 in-process, and of an interaction filter (each user's training rows
   stored with a random event type and age; per-user [1, items] masks).

3. The local HTTPS endpoint (`deploy.local`, boto3, the real inference.py) serving part 1's model: 1-user
   p50 of a request with the `genres_param` filter and its values against the same request unfiltered;
   the bar is filtered <= 1.5x unfiltered.

Timings are noisy on a shared machine: the `--quick` run (fewer epochs, 100,000 padded items) is a smoke
test. Results: results/filters.json (`--quick`: filters-quick.json).
Run from the repository root: `.venv/bin/python tests/benchmarks/bench_filters.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_retrieval
import common
import numpy as np
import pandas as pd
import tensorflow as tf
from bench_serve import latency_ms, runtime_client
from ncf.data.features import parse_item_features
from ncf.data.interaction_log import SECONDS_PER_DAY, InteractionLog
from ncf.serving.export import Recommender
from ncf.serving.filter_checks import InteractionColumns, ItemAttributes, check_filters
from ncf.serving.filters import FilterSet
from ncf.serving.interaction_store import InteractionStore
from ncf.serving.retrieval import EXHAUSTIVE, RetrievalChoice
from ncf.train_settings import TrainConfig

from deploy.local.process import local_endpoint_process

sys.path.insert(0, str(common.REPO / "tests"))
from filter_fixtures import passes

SEED = 20
OVERLAP_BAR = 0.95
LATENCY_BAR_MS = 10.0
EVENT_OF_RATING = {5: "loved", 4: "liked"}  # other ratings: "watched"


def movielens_filters(rng: np.random.Generator, genres: list[str]) -> dict[str, tuple[str, dict]]:
    """Ten named (filter, parameter values) over ML-100K's genres and year."""

    def pick(n: int) -> list[str]:
        return [str(g) for g in rng.choice(genres, n, replace=False)]

    def quoted(names: list[str]) -> str:
        return ", ".join(f'"{g}"' for g in names)

    year = str(int(rng.integers(1960, 1996)))
    days = str(int(rng.integers(20, 120)))
    return {
        "genres_param": ("INCLUDE ItemID WHERE Items.genres IN ($GENRES)", {"GENRES": pick(2)}),
        "not_genres": (f"EXCLUDE ItemID WHERE Items.genres IN ({quoted(pick(3))})", {}),
        "older_than": ("INCLUDE ItemID WHERE Items.year < $YEAR", {"YEAR": [year]}),
        "recent_genre": (
            f"INCLUDE ItemID WHERE Items.year >= 1995 AND Items.genres IN ({quoted(pick(1))})",
            {},
        ),
        "either": (
            "INCLUDE ItemID WHERE Items.year <= $MAX OR Items.genres IN ($G)",
            {"MAX": [year], "G": pick(1)},
        ),
        "two_rules": (
            f"INCLUDE ItemID WHERE Items.genres NOT IN ($G) | EXCLUDE ItemID WHERE Items.year < {year}",
            {"G": pick(2)},
        ),
        "rare": (f"INCLUDE ItemID WHERE Items.genres IN ({quoted(pick(1))}) AND Items.year < 1975", {}),
        "not_loved_lately": (
            "EXCLUDE ItemID WHERE Interactions.event_type IN ($EVENTS) AND Interactions.age_days < $DAYS",
            {"EVENTS": ["loved"], "DAYS": [days]},
        ),
        "liked_or_genre": (
            'INCLUDE ItemID WHERE Interactions.event_type = "liked" OR Items.genres IN ($G)',
            {"G": pick(1)},
        ),
        "no_recent_nineties": (
            "EXCLUDE ItemID WHERE Interactions.age_days < 60 AND Items.year >= 1990 | EXCLUDE ItemID WHERE"
            ' Items.genres IN ("Horror")',
            {},
        ),
    }


def params(values: dict[str, list[str]]) -> tuple[tf.Tensor, tf.Tensor]:
    """Parameters as the signatures take them (one "" name and row when there are none)."""
    width = max([1, *(len(v) for v in values.values())])
    rows = [v + [""] * (width - len(v)) for v in values.values()] or [[""]]
    return tf.constant(list(values) or [""]), tf.constant(rows)


def movielens_with_events(source: Path, work: Path) -> Path:
    """ML-100K's ratings as a CSV with an event type per row (EVENT_OF_RATING), u.item beside it."""
    ratings = pd.read_csv(
        source / "u.data", sep="\t", names=["user_id", "item_id", "rating", "timestamp"], dtype=str
    )
    stars = ratings["rating"].astype(int)
    ratings["event_type"] = [EVENT_OF_RATING.get(r, "watched") for r in stars]
    folder = work / "ml100k-events"
    folder.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(folder / "interactions.csv", index=False)
    (folder / "u.item").write_bytes((source / "u.item").read_bytes())
    return folder


def trained_movielens(work: Path, data: Path | None, epochs: int) -> tuple[Path, pd.DataFrame, dict]:
    """(SavedModel, items table, filters) of a NeuMF trained on ML-100K with the random filters."""
    prepared = work / "ml100k-prepared"
    events = movielens_with_events(common.find_movielens_100k(data), work)
    options = ["--seed", "42", "--event-type-col", "event_type", "--item-features", str(events / "u.item")]
    common.prepare(events / "interactions.csv", prepared, work, *options)
    items = pd.concat(
        pd.read_csv(f, dtype=str, keep_default_na=False) for f in sorted((prepared / "items").glob("*.csv"))
    )
    genres = sorted({g for listed in items["genres"] for g in listed.split("|")})
    filters = movielens_filters(np.random.default_rng(SEED), genres)
    (work / "filters.json").write_text(
        json.dumps({name: text for name, (text, _) in filters.items()}, indent=2)
    )
    flags = [
        "--items",
        str(prepared / "items"),
        "--item-features",
        "none",
        "--filters",
        str(work / "filters.json"),
    ]
    bench_retrieval.train(prepared, work / "ml100k", *flags, "--epochs", str(epochs), "--patience", "0")
    return work / "ml100k" / "model" / "1", items, filters


def expected_top10(scores: np.ndarray, allowed: np.ndarray, seen: list[np.ndarray]) -> list[np.ndarray]:
    """Each row's top-10 over the items `allowed` ([items] or [rows, items]) keeps, `seen` left out."""
    masked = np.where(allowed, scores, -np.inf)
    for row, items in enumerate(seen):
        masked[row, items] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :10]
    return [row[np.isfinite(masked[r, row])] for r, row in enumerate(order)]


def users_interactions(prepared: Path, users: np.ndarray, item_ids: np.ndarray) -> tuple[list[dict], float]:
    """(for each of `users`, {item position: [(event type, age in days)]}, `now`): the rows read from the
    prepared channels (train and the held-out positives: the final fit's data), independently of the
    model, ages at `now`, a day after the data's last timestamp."""
    frames = [pd.read_csv(f, dtype=str) for f in sorted((prepared / "train").glob("*.csv"))]
    for split in ("validation", "test"):
        held = pd.concat(pd.read_csv(f, dtype=str) for f in sorted((prepared / split).glob("*.csv")))
        frames.append(held[held["label"] == "1"])
    rows = pd.concat(frames, ignore_index=True)
    now = float(rows["timestamp"].astype(np.int64).max() + SECONDS_PER_DAY)
    rows = rows[rows["user_id"].isin(set(users))]
    position = {item: i for i, item in enumerate(item_ids)}
    found: dict[str, dict] = {u: {} for u in users}
    for user, item, event, when in rows[["user_id", "item_id", "event_type", "timestamp"]].itertuples(
        index=False
    ):
        age = (now - int(when)) / SECONDS_PER_DAY
        found[user].setdefault(position[item], []).append((event, age))
    return [found[u] for u in users], now


def movielens_correctness(
    saved: Path, prepared: Path, items: pd.DataFrame, filters: dict, users: int
) -> dict[str, Any]:
    """Part 1 (see the module docstring): per filter, the share of users whose answer is the expected one."""
    loaded = tf.saved_model.load(str(saved))
    item_ids = loaded.item_ids.numpy().astype(str)
    user_ids = loaded.user_ids.numpy().astype(str)
    chosen = np.random.default_rng(SEED).choice(len(user_ids), users, replace=False)
    offsets, seen_items = loaded.seen_offsets.numpy(), loaded.seen_items.numpy()
    seen = [seen_items[offsets[u] : offsets[u + 1]] for u in chosen]
    pairs = loaded.signatures["score"](
        user_id=tf.constant(np.repeat(user_ids[chosen], len(item_ids))),
        item_id=tf.constant(np.tile(item_ids, users)),
    )
    scores = pairs["score"].numpy().reshape(users, len(item_ids))
    aligned = items.set_index("item_id").loc[item_ids].reset_index()
    interacted, now = users_interactions(prepared, user_ids[chosen], item_ids)
    position = {item: i for i, item in enumerate(item_ids)}
    results = {}
    for name, (text, values) in filters.items():
        reads_interactions = "Interactions." in text
        allowed = np.stack(
            [passes(text, values, aligned, i if reads_interactions else None) for i in interacted]
        )
        names, rows = params(values)
        answer = loaded.signatures["recommend_filtered"](
            user_id=tf.constant(user_ids[chosen]),
            k=tf.constant(10),
            exclude=tf.constant([[""]] * users),
            exclude_seen=tf.constant(not reads_interactions),
            filter=tf.constant(name),
            filter_names=names,
            filter_values=rows,
            now=tf.constant(now, tf.float64),
        )
        got = [
            np.array([position[x] for x in row.astype(str) if x], int) for row in answer["item_ids"].numpy()
        ]
        want = expected_top10(scores, allowed, [] if reads_interactions else seen)
        results[name] = _agreement(text, values, allowed, scores, got, want)
        results[name]["error"] = answer["filter_error"].numpy()[0].decode()
        results[name]["exclude_seen"] = not reads_interactions
    return results


def _agreement(
    text: str, values: dict, allowed: np.ndarray, scores: np.ndarray, got: list, want: list
) -> dict[str, Any]:
    """How the served top-10s (`got`) agree with the expected ones (`want`), users by rows."""
    equal = [
        len(g) == len(w) and np.allclose(np.sort(scores[r, g]), np.sort(scores[r, w]), atol=1e-6)
        for r, (g, w) in enumerate(zip(got, want, strict=True))
    ]
    return {
        "filter": text,
        "values": values,
        "items_passing_mean": float(allowed.sum(axis=1).mean()),
        "users_equal": float(np.mean(equal)),
        "users_identical_ids": float(np.mean([list(g) == list(w) for g, w in zip(got, want, strict=True)])),
        "all_returned_pass": bool(all(allowed[r, g].all() for r, g in enumerate(got))),
    }


def rare_genre_table(item_ids: np.ndarray, seed: int) -> pd.DataFrame:
    """One to three of 20 genres per item, plus "rare" for exactly 1 % of the items."""
    rng = np.random.default_rng(seed)
    genres = np.array([f"genre{i:02d}" for i in range(20)])
    first = genres[rng.integers(0, 20, len(item_ids))]
    second = genres[rng.integers(0, 20, len(item_ids))]
    listed = np.char.add(np.char.add(first.astype(str), "|"), second.astype(str))
    rare = rng.choice(len(item_ids), len(item_ids) // 100, replace=False)
    listed = listed.astype(object)
    listed[rare] = listed[rare] + "|rare"
    return pd.DataFrame({"item_id": item_ids.astype(str), "genres": listed})


def catalog_1m(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Part 2 (see the module docstring)."""
    base = bench_retrieval.trained_on_synthetic(work, args.interactions, args.synthetic_users)
    served = bench_retrieval.padded(base, args.catalog_size)
    table = rare_genre_table(served.items.ids, SEED)
    attributes = ItemAttributes.from_features(
        parse_item_features([(Path("items.csv"), table)]), served.items.ids
    )
    text = "INCLUDE ItemID WHERE Items.genres IN ($G)"
    filter_set = FilterSet(check_filters({"rare": text}, attributes), attributes)
    candidates = TrainConfig.retrieval_candidates
    two_stage = Recommender(*_inputs(served), retrieval=served.choice(candidates, 0), filters=filter_set)
    exhaustive_choice = RetrievalChoice(EXHAUSTIVE, 0, args.catalog_size, "benchmark reference")
    exhaustive = Recommender(*_inputs(served), retrieval=exhaustive_choice, filters=filter_set)
    names, rows = params({"G": ["rare"]})
    users = bench_retrieval.user_sample(served, args.users, SEED)
    allowed = np.array(["rare" in g for g in table["genres"]])

    def filtered(signature: Any, ids: np.ndarray) -> np.ndarray:
        return (
            signature(
                user_id=tf.constant(ids),
                k=tf.constant(10),
                exclude=tf.constant([[""]] * len(ids)),
                exclude_seen=tf.constant(True),
                filter=tf.constant("rare"),
                filter_names=names,
                filter_values=rows,
                now=NOW,
            )["item_ids"]
            .numpy()
            .astype(str)
        )

    signature = two_stage.signatures()["recommend_filtered"]  # each signatures() call traces anew
    reference = exhaustive.signatures()["recommend_filtered"]
    got = np.concatenate([filtered(signature, users[i : i + 2]) for i in range(0, len(users), 2)])
    want = np.concatenate([filtered(reference, users[i : i + 2]) for i in range(0, len(users), 2)])
    position = {item: i for i, item in enumerate(served.items.ids)}
    passing = [sum(bool(x) and allowed[position[x]] for x in row) for row in got]
    overlap = float(np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)]))
    del exhaustive, reference
    singles = [tf.constant(users[i : i + 1]) for i in range(len(users))]
    timed = two_stage.signatures()
    filtered_ms = latency_ms(filtered_call(timed, singles, "rare", (names, rows), True), args.calls)
    unfiltered_ms = latency_ms(
        lambda i: timed["serving_default"](user_id=singles[i % len(singles)], k=K10), args.calls
    )
    return {
        "items": args.catalog_size,
        "filter": text,
        "items_passing": int(allowed.sum()),
        "candidates": candidates,
        "users": len(users),
        "min_passing_returned": int(min(passing)),
        "overlap_with_exhaustive_filtered": overlap,
        "one_user_filtered_ms": filtered_ms,
        "one_user_unfiltered_ms": unfiltered_ms,
        "interaction_filter": interaction_latency(served, attributes, singles, args.calls),
    }


NOW = tf.constant(0.0, tf.float64)  # `now`: the serving clock
K10 = tf.constant(10)


def filtered_call(signatures: dict, singles: list, name: str, parameters: tuple, exclude_seen: bool) -> Any:
    """One timed call of `recommend_filtered` for the i-th user of `singles` (1-user batches)."""
    names, rows = parameters

    def call(i: int) -> Any:
        return signatures["recommend_filtered"](
            user_id=singles[i % len(singles)],
            k=K10,
            exclude=tf.constant([[""]]),
            exclude_seen=tf.constant(exclude_seen),
            filter=tf.constant(name),
            filter_names=names,
            filter_values=rows,
            now=NOW,
        )

    return call


def interaction_latency(
    served: bench_retrieval.Served, attributes: ItemAttributes, singles: list, calls: int
) -> dict[str, Any]:
    """1-user p50 of an interaction filter through two-stage retrieval: every training row stored with a
    random event type and a time in the last 200 days; seen items allowed (what the filter decides on)."""
    rng = np.random.default_rng(SEED)
    seen, events = served.seen, ("purchase", "view")
    times = 1_700_000_000 - rng.integers(0, 200 * SECONDS_PER_DAY, len(seen.items))
    codes = rng.integers(0, 2, len(seen.items))
    log = InteractionLog.build(seen.row_ids(), seen.items, times, codes, seen.num_users, events)
    text = 'EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase") AND Interactions.age_days < 30'
    checked = check_filters({"bought_lately": text}, attributes, InteractionColumns(events, True))
    store = InteractionStore(log, len(served.items))
    filter_set = FilterSet(checked, attributes, store, events)
    retrieval = served.choice(TrainConfig.retrieval_candidates, 0)
    signatures = Recommender(*_inputs(served), retrieval=retrieval, filters=filter_set).signatures()
    return {
        "filter": text,
        "stored_interactions": len(log.items),
        "one_user_filtered_ms": latency_ms(
            filtered_call(signatures, singles, "bought_lately", params({}), False), calls
        ),
    }


def https_latencies(model_dir: Path, filters: dict, calls: int) -> dict[str, Any]:
    """Part 3 (see the module docstring): 1-user p50 over the local HTTPS endpoint, filtered or not."""
    values = filters["genres_param"][1]
    with (
        tempfile.TemporaryDirectory() as tls,
        local_endpoint_process(model_dir, Path(tls), "--transport", "inprocess") as endpoint,
    ):
        client = runtime_client(endpoint.url, endpoint.cert)

        def request(extra: dict[str, Any]) -> Any:
            def invoke(i: int) -> None:
                body = json.dumps({"user_id": str(1 + i % 900), "k": 10, **extra})
                answer = client.invoke_endpoint(
                    EndpointName="bench", Body=body, ContentType="application/json"
                )
                if not json.loads(answer["Body"].read())["predictions"][0]["items"]:
                    raise common.BenchError("an empty answer from the local endpoint")

            return invoke

        unfiltered = latency_ms(request({}), calls, warmup=30)
        filtered = latency_ms(request({"filter": "genres_param", "filter_values": values}), calls, warmup=30)
        assert endpoint.stop() == 0, endpoint.text()
    return {
        "unfiltered": unfiltered,
        "filtered": filtered,
        "ratio_p50": filtered["p50_ms"] / unfiltered["p50_ms"],
    }


def _inputs(served: bench_retrieval.Served) -> tuple:
    return served.model, served.users, served.items, served.seen, served.popularity, True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_filters.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="MovieLens 100K folder (u.data, u.item)")
    parser.add_argument("--ml-users", type=int, default=200, help="ML-100K users of the correctness check")
    parser.add_argument("--epochs", type=int, default=5, help="ML-100K training epochs")
    parser.add_argument("--catalog-size", type=int, default=1_000_000, help="padded items of part 2")
    parser.add_argument("--interactions", type=int, default=400_000, help="synthetic interactions (part 2)")
    parser.add_argument("--synthetic-users", type=int, default=5_000, help="synthetic users (part 2)")
    parser.add_argument("--users", type=int, default=100, help="users of the 1M overlap check")
    parser.add_argument("--calls", type=int, default=200, help="timed 1-user calls")
    common.add_run_options(parser, "filters", "1 epoch, 100,000 items, 40 users, 30 calls", "data and models")
    args = common.parse_run_args(parser, argv, "filters")
    if args.quick:
        args.epochs, args.catalog_size, args.users, args.calls = 1, 100_000, 40, 30
    return args


def run(args: argparse.Namespace) -> int:
    header = common.run_header("filters", args.quick)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    saved, items, filters = trained_movielens(work, args.data, args.epochs)
    correctness = movielens_correctness(saved, work / "ml100k-prepared", items, filters, args.ml_users)
    large = catalog_1m(work, args)
    https = https_latencies(saved.parent, filters, args.calls)
    passed = {
        "ml100k_filtered_top10_equals_exhaustive": all(r["users_equal"] == 1.0 for r in correctness.values()),
        "ml100k_every_returned_item_passes": all(r["all_returned_pass"] for r in correctness.values()),
        "never_starved": large["min_passing_returned"] == 10,
        "overlap_at_least_0.95": large["overlap_with_exhaustive_filtered"] >= OVERLAP_BAR,
        f"filtered_p50_under_{LATENCY_BAR_MS}ms": large["one_user_filtered_ms"]["p50_ms"] <= LATENCY_BAR_MS,
        f"interaction_filter_p50_under_{LATENCY_BAR_MS}ms": large["interaction_filter"][
            "one_user_filtered_ms"
        ]["p50_ms"]
        <= LATENCY_BAR_MS,
        "https_filtered_within_1.5x_unfiltered": https["ratio_p50"] <= 1.5,
    }
    results = {**header, "movielens_100k": correctness, "catalog": large, "https": https, "passed": passed}
    path = common.write_results(args.output, results)
    print(json.dumps(passed, indent=2), f"\nresults: {path}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
