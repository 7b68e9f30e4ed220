"""New users over many held-out draws (`make bench-newusers`, issue 23 item 4), MovieLens 100K.

1. Draws (`--parts draws`): five held-out draws of users with more than 10 events (`newuser_draws.DRAWS`:
   every tenth user in id order from two offsets, two seeded random 10%, and 10% among the third with
   the longest histories). For each draw the held-out users are removed, the rest go through the real
   `prepare.py` and `train.py` twice (`--model-type sasrec` and `neumf`, defaults but `TRAIN_FLAGS`:
   the model selected on validation is the one exported), and each held-out
   user's first n = 1, 3, 5, 10 events (time order, same-second events by item id ascending, then
   descending: two evaluations per draw) are sent as `history` to the exported model's
   `recommend_from_history` (the endpoint's path; the user id is unknown to the model); the (n+1)-th
   event is the target: HR@10 / NDCG@10 over the full catalog, the history excluded. Rows: SASRec as
   exported (with its short-history blend), the same export with the blend's weight set to 0 (the
   sequence model alone), the NeuMF fold-in, and the anchors popularity and item-kNN on the
   interactions the SASRec export was trained on (`bench_sasrec.Anchors`). The summary is the mean,
   std, min and max over the evaluations; the bar (issue 23): SASRec's HR@10 with 5 events, mean
   >= 1.6x popularity's and >= item-kNN's, and no evaluation below 1.4x popularity.
2. Blend tuning (`--parts tuning`), on validation users only: a seeded 150 users outside every test
   draw are held out, SASRec is trained without them, and every blend weight is scored on their first
   1..20 events (the export's `history_blend.weight` variable set, the threshold lifted, the same
   signature called); `newuser_draws.choose_blend` picks the weight and threshold with the best mean
   NDCG@10 over the event counts: the defaults of `TrainConfig.history_blend_*`.

Results: tests/benchmarks/results/newusers.json (newusers-quick.json with --quick: 3 epochs, two draws,
a coarser grid). Run from the repository root: `.venv/bin/python tests/benchmarks/bench_newusers.py
[--quick] [--parts tuning,draws] [--data DIR]`; the results file keeps the parts not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_sasrec
import common
import newuser_draws
import numpy as np
import pandas as pd

NS = (1, 3, 5, 10)
TUNING_NS = tuple(range(1, 21))
TUNING_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
VALIDATION_USERS = 150
VALIDATION_SEED = 23
BAR = {"row": "sasrec", "events": 5, "mean_ratio": 1.6, "min_ratio": 1.4}
NO_THRESHOLD = 1_000_000  # a blend threshold above any history: every tuning history is blended
# Every model is exported as selected on validation (train split only: each training user's last two
# events left out). The refit and final fit retrain the same epoch count on those 2% more events and
# would triple the cost of each of the eleven trainings; the anchors count the same events as the
# models (`anchors_of`).
TRAIN_FLAGS = ("--refit", "false", "--final-fit", "false")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_newusers.py", description=__doc__.splitlines()[0])
    common.add_run_options(parser, "newusers", "3 epochs, two draws, a coarser grid", "trained models")
    parser.add_argument("--data", type=Path, default=None, help="MovieLens 100K folder (u.data)")
    parser.add_argument("--parts", default="tuning,draws", help="comma-separated: tuning, draws")
    parser.add_argument(
        "--table", action="store_true", help="print the README's table from the results file; run nothing"
    )
    return common.parse_run_args(parser, argv, "newusers")


def train(args: argparse.Namespace, training: pd.DataFrame, name: str, model_type: str) -> Any:
    """The loaded export of `model_type` trained by train.py on `training` (TRAIN_FLAGS)."""
    flags = ("--model-type", model_type, *TRAIN_FLAGS)
    return bench_sasrec.train_without_new_users(args, training, name, *flags)


def signature_of(loaded: Any) -> Callable[..., dict]:
    return loaded.signatures["recommend_from_history"]


def with_blend(loaded: Any, weight: float, max_events: int) -> Callable[..., dict]:
    """The export's `recommend_from_history`, called with its blend variables set to these values
    (restored after each call, so the export serves its own settings otherwise)."""
    blend = loaded.history_blend

    def recommend(**inputs: Any) -> dict:
        saved = blend.weight.numpy(), blend.max_events.numpy()
        blend.weight.assign(weight)
        blend.max_events.assign(max_events)
        try:
            return signature_of(loaded)(**inputs)
        finally:
            blend.weight.assign(saved[0])
            blend.max_events.assign(saved[1])

    return recommend


def served_blend(loaded: Any) -> dict[str, Any]:
    """The blend settings an export serves, read from its variables."""
    blend = loaded.history_blend
    return {
        "weight": round(float(blend.weight.numpy()), 6),
        "max_events": int(blend.max_events.numpy()),
        "neighbours": int(blend.neighbour_ids.shape[1]),
    }


def anchors_of(loaded: Any) -> bench_sasrec.Anchors:
    """Popularity and item-kNN over the interactions the export was trained on (its seen items)."""
    catalog_ids = loaded.item_ids.numpy().astype(str)
    offsets = loaded.seen_offsets.numpy()[:-1]  # the export's last row: an unknown user's empty list
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    seen = pd.DataFrame({"user_id": users, "item_id": catalog_ids[loaded.seen_items.numpy()]})
    return bench_sasrec.Anchors(seen, catalog_ids.tolist())


def counts_of(frame: pd.DataFrame) -> pd.Series:
    return newuser_draws.event_counts(frame, max(NS))


# -- part 1: the draws -------------------------------------------------------------------------


def evaluate_draw(
    args: argparse.Namespace, frame: pd.DataFrame, draw: newuser_draws.Draw, held: np.ndarray
) -> dict[str, Any]:
    """Train both models without the draw's users; evaluate both tie orders through the exports."""
    training = frame[~frame["user_id"].isin(set(held))]
    sasrec = train(args, training, f"{draw.name}-sasrec", "sasrec")
    neumf = train(args, training, f"{draw.name}-neumf", "neumf")
    anchors = anchors_of(sasrec)
    by_ties = {}
    for ties in newuser_draws.TIE_ORDERS:
        sequences = newuser_draws.first_events(frame, held, ties)
        sasrec_rows = {"sasrec": signature_of(sasrec), "sasrec_no_blend": with_blend(sasrec, 0.0, 0)}
        rows = bench_sasrec.new_user_rows(sasrec, sequences, sasrec_rows, anchors, NS)
        foldin = bench_sasrec.new_user_rows(neumf, sequences, {"neumf_foldin": signature_of(neumf)}, None, NS)
        by_ties[ties] = {n: {**rows[n], **foldin[n]} for n in NS}
        print(f"  {draw.name}, ties {ties}: {format_row(by_ties[ties][5])} (5 events)", flush=True)
    return {
        "rule": draw.rule,
        "held_out_users": len(held),
        "training_interactions": len(training),
        "sasrec_blend": served_blend(sasrec),
        "by_ties": by_ties,
    }


def format_row(row: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{name} {hr:.3f}" for name, (hr, _) in row.items())


def draws_benchmark(args: argparse.Namespace, frame: pd.DataFrame) -> dict[str, Any]:
    """Every draw's evaluations, their spread, and the bar."""
    counts = counts_of(frame)
    draws = newuser_draws.DRAWS[:2] if args.quick else newuser_draws.DRAWS
    results = {}
    for draw in draws:
        print(f"draw {draw.name}: {draw.rule}", flush=True)
        results[draw.name] = evaluate_draw(args, frame, draw, np.sort(draw.pick(counts)))
    evaluations = [
        result["by_ties"][ties] for result in results.values() for ties in newuser_draws.TIE_ORDERS
    ]
    return {
        "events": list(NS),
        "evaluations": len(evaluations),
        "summary": newuser_draws.summarise(evaluations),
        "bar": newuser_draws.bar_at(evaluations, **BAR),
        "draws": results,
    }


# -- part 2: the blend's weight and threshold on validation users -------------------------------


def tuning_benchmark(args: argparse.Namespace, frame: pd.DataFrame) -> dict[str, Any]:
    """Blend weights scored on validation users outside every test draw; the choice."""
    counts = counts_of(frame)
    test_users = {u for draw in newuser_draws.DRAWS for u in draw.pick(counts)}
    eligible = newuser_draws.event_counts(frame, max(TUNING_NS))
    held = newuser_draws.validation_users(eligible, test_users, VALIDATION_USERS, VALIDATION_SEED)
    training = frame[~frame["user_id"].isin(set(held))]
    loaded = train(args, training, "tuning-sasrec", "sasrec")
    weights = TUNING_WEIGHTS[::3] if args.quick else TUNING_WEIGHTS
    ns = TUNING_NS[::4] if args.quick else TUNING_NS
    sequences = newuser_draws.first_events(frame, held, "ascending")
    recommend = {weight: with_blend(loaded, weight, NO_THRESHOLD) for weight in weights}
    rows = bench_sasrec.new_user_rows(loaded, sequences, recommend, None, ns)
    scores = {n: {weight: rows[n][weight][1] for weight in weights} for n in ns}
    choice = newuser_draws.choose_blend(scores)
    print(f"  blend chosen on validation: {choice}", flush=True)
    return {
        "validation_users": len(held),
        "disjoint_from_test_draws": not (set(held) & test_users),
        "neighbours": served_blend(loaded)["neighbours"],
        "metric": "NDCG@10",
        "choice": choice,
        "by_events": {n: {str(w): rows[n][w] for w in weights} for n in ns},
    }


def print_table(results_file: Path) -> int:
    """Print the README's new-user table and the bar from a results file written by a draws run."""
    if not results_file.is_file() or "new_users" not in json.loads(results_file.read_text()):
        raise common.BenchError(f"{results_file}: no draws results yet (run --parts draws first)")
    new_users = json.loads(results_file.read_text())["new_users"]
    print(newuser_draws.markdown_table(new_users["summary"]))
    print(json.dumps({"commit": new_users["run"]["commit"], "bar": new_users["bar"]}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",")}
    unknown = parts - {"tuning", "draws"}
    if unknown:
        raise common.BenchError(f"--parts: unknown part(s) {', '.join(sorted(unknown))} (use tuning, draws)")
    if args.table:
        return print_table(args.output)
    frame = bench_sasrec.read_movielens(common.find_movielens_100k(args.data))
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    header = common.run_header("newusers", args.quick, argv)
    results = {**previous, **header}
    if "tuning" in parts:
        results["blend_tuning"] = {"run": header, **tuning_benchmark(args, frame)}
    if "draws" in parts:
        results["new_users"] = {"run": header, **draws_benchmark(args, frame)}
    print(f"results: {common.write_results(args.output, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
