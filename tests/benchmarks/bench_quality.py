"""Quality benchmark (`make bench`): every NCF model type on MovieLens 100K, next to tuned baselines.

One split: MovieLens 100K prepared by the real `training/prepare.py` (seed 42, leave-one-out, 99 sampled
negatives). Each NCF model is trained by the real `training/train.py` in a subprocess with default
hyperparameters (plus two ablations of the default NeuMF: without recency weighting, without refit);
popularity, iALS (`implicit`) and EASE come from `baselines.py`, tuned on validation only and refitted
on train + validation. Every row is scored by `ncf.evaluation.protocol`. Results: results/quality.json
(quality-quick.json with --quick) and a Markdown table; what they mean: the README's *Results*.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_quality.py [--quick]`.
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
from baselines import (
    Axis,
    Ease,
    Family,
    Grid,
    Ials,
    PopularityModel,
    Tuning,
    evaluate,
    refit_and_test,
    tune,
)
from ncf.data.training_data import TrainingData, load_training_data
from ncf.errors import NcfError
from ncf.train_settings import TrainConfig

# Model name -> the only train.py flags that differ from the defaults. The last two are ablations of the
# default NeuMF: what recency weighting and the refit on train + validation bring.
MODELS: dict[str, tuple[str, ...]] = {
    "neumf": (),
    "gmf": ("--model-type", "gmf"),
    "mlp": ("--model-type", "mlp"),
    "mf": ("--model-type", "mf"),
    "neumf-pretrain": ("--pretrain", "true"),
    "neumf-no-recency": ("--recency-boost", "0"),
    "neumf-no-refit": ("--refit", "false"),
    "sasrec": ("--model-type", "sasrec"),
}
DEFAULT_MODEL = "neumf"
QUICK_MODELS = (DEFAULT_MODEL,)
LABELS = {
    "neumf": "NeuMF (default)",
    "gmf": "GMF",
    "mlp": "MLP",
    "mf": "MF (dot product + biases)",
    "neumf-pretrain": "NeuMF, pretrained GMF + MLP",
    "neumf-no-recency": "NeuMF, --recency-boost 0",
    "neumf-no-refit": "NeuMF, --refit false",
    "sasrec": "SASRec (sequence model)",
}
PREPARE_SEED = 42
BASELINE_SEED = 42
RECENCY_BOOST = TrainConfig().recency_boost
# Starting grids; `baselines.tune` widens a numeric axis (by its step) while the best point is on its edge.
IALS_GRID = Grid(
    (
        Axis("factors", (32, 64, 128), step=2, integer=True, minimum=1),
        Axis("regularization", (5.0, 10.0, 20.0), step=2),
        Axis("alpha", (0.5, 1.0, 2.0), step=2),
        Axis("iterations", (5, 10, 20), step=2, integer=True, minimum=1),
        Axis("recency_boost", (0.0, RECENCY_BOOST)),
    )
)
EASE_GRID = Grid((Axis("regularization", (100.0, 200.0, 400.0), step=2),))
QUICK_IALS_GRID = Grid(
    (
        Axis("factors", (32,)),
        Axis("regularization", (10.0,)),
        Axis("alpha", (1.0,)),
        Axis("iterations", (5, 10)),
        Axis("recency_boost", (0.0, RECENCY_BOOST)),
    )
)
QUICK_EASE_GRID = Grid((Axis("regularization", (200.0,)),))
K = TrainConfig().top_k
BAR = {f"test_hr_at_{K}": 0.66, f"test_ndcg_at_{K}": 0.38}
SASREC_BAR = {f"test_hr_at_{K}": 0.75, f"test_ndcg_at_{K}": 0.47}  # issue 11, the sequence model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_quality.py",
        description="Train every NCF model type on MovieLens 100K with default hyperparameters and compare "
        "them with popularity, tuned iALS and tuned EASE on the same split (NCF leave-one-out protocol).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="MovieLens 100K folder holding u.data [default: the first of "
        + ", ".join(str(p) for p in common.MOVIELENS_100K_PLACES)
        + "]",
    )
    common.add_run_options(
        parser,
        "quality",
        f"only {', '.join(QUICK_MODELS)}, a {QUICK_IALS_GRID.size}-point iALS grid and one EASE point",
        "prepared data, trained models and logs",
    )
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {','.join(MODELS)} [default: all; with --quick: "
        f"{','.join(QUICK_MODELS)}]",
    )
    parser.add_argument(
        "--shuffle-time",
        action="store_true",
        help="permute each user's timestamps first (seeded), so the order of interactions carries no"
        " signal: checks that the sequence model holds NeuMF's level on data with weak order; write it"
        " with --output, e.g. tests/benchmarks/results/quality-weak-order.json",
    )
    args = common.parse_run_args(parser, argv, "quality")
    if args.models is None:
        args.models = list(QUICK_MODELS if args.quick else MODELS)
    else:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.models if m not in MODELS]
        if unknown or not args.models:
            named = ", ".join(unknown) or "(none given)"
            parser.error(f"--models: unknown {named}; choose from {', '.join(MODELS)}")
    return args


# -- the NCF models, through train.py ---------------------------------------------------------------


def train_model(name: str, prepared: Path, work: Path) -> dict[str, Any]:
    """Run train.py for one model type with default hyperparameters; return its results entry."""
    run_dir = work / "models" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    command = common.train_command(prepared, run_dir / "model", run_dir / "output", *MODELS[name])
    log_path = run_dir / "train.log"
    shown = common.shell_command(command)
    print(f"\n== {LABELS[name]}: {shown}", flush=True)
    run = common.run_measured(command, log_path, show=common.is_progress_line, prefix="  ")
    common.check_success(run, f"train.py ({name})", log_path)
    metrics = json.loads((run_dir / "output" / "metrics.json").read_text())
    return {
        "command": shown,
        "flags": list(MODELS[name]),
        "hyperparameters": metrics["hyperparameters"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "refit": metrics["refit"],
        "validation": metrics["validation"],
        "test": metrics["test"],
        "training_seconds": round(metrics["seconds"], 1),
        "process_wall_seconds": round(run.seconds, 1),
        "peak_rss_mib": round(run.peak_rss_mib),
    }


# -- the baselines, in this process ------------------------------------------------------------------


def popularity_baseline(data: TrainingData) -> dict[str, Any]:
    validation = evaluate(PopularityModel.fit(data), data, "validation", K)
    test, seconds = refit_and_test(PopularityModel.fit, data, K)
    print(f"popularity: test HR@{K} {test[f'test_hr_at_{K}']:.3f}, NDCG@{K} {test[f'test_ndcg_at_{K}']:.3f}")
    return {"validation": validation, "test": test, "refit_seconds": round(seconds, 3)}


def tuned_baseline(family: Family, data: TrainingData, grid: Grid, selection_key: str) -> dict[str, Any]:
    """Tune `family` on validation (widening `grid` until its best point is interior), refit, test once."""
    print(f"{family.name}: tuning on {grid.size} grid points, selected on {selection_key}", flush=True)
    started = time.perf_counter()
    tuning = tune(family, data, grid, selection_key, K)
    tuning_seconds = time.perf_counter() - started
    best = tuning.best
    test, seconds = refit_and_test(lambda training: family.fit(training, best.params), data, K)
    print(
        f"{family.name}: chose {best.params} ({'interior' if tuning.interior else 'on the edge'} of "
        f"{len(tuning.trials)} points) after {tuning_seconds:.1f} s; test HR@{K} "
        f"{test[f'test_hr_at_{K}']:.3f}, NDCG@{K} {test[f'test_ndcg_at_{K}']:.3f}",
        flush=True,
    )
    return {
        "hyperparameters": best.params,
        "validation": best.validation,
        "test": test,
        "refit_seconds": round(seconds, 2),
        "tuning_seconds": round(tuning_seconds, 1),
        "grid": tuning.grids[0].describe(),
        "final_grid": tuning.grids[-1].describe(),
        "widenings": len(tuning.grids) - 1,
        "interior": tuning.interior,
        "still_on_edge": tuning.edges,
        "selection_metric": selection_key,
        "seed": BASELINE_SEED,
        **_recency_comparison(tuning, selection_key),
        "trials": [t.summary() for t in tuning.trials],
    }


def _recency_comparison(tuning: Tuning, selection_key: str) -> dict[str, Any]:
    """For a grid with a recency_boost option: the best validation score with and without it."""
    if "recency_boost" not in tuning.best.params:
        return {}
    options = sorted({t.params["recency_boost"] for t in tuning.trials})
    best = {str(b): tuning.best_where("recency_boost", b) for b in options}
    return {
        "recency_boost_options": {
            boost: {"hyperparameters": t.params, selection_key: t.validation[selection_key]}
            for boost, t in best.items()
        },
        "recency_boost_chosen": tuning.best.params["recency_boost"],
    }


# -- report -----------------------------------------------------------------------------------------


def check_bar(
    models: dict[str, Any], model: str = DEFAULT_MODEL, bar: dict[str, float] = BAR
) -> dict[str, Any]:
    """Whether `model`'s test metrics reach `bar` (None when it was not run)."""
    if model not in models:
        return {"model": model, "thresholds": bar, "passed": None, "note": f"{model} not run"}
    test = models[model]["test"]
    measured = {name: test[name] for name in bar}
    passed = all(measured[name] >= threshold for name, threshold in bar.items())
    return {"model": model, "thresholds": bar, "measured": measured, "passed": passed}


def _cells(entry: dict[str, Any]) -> list[str]:
    test, validation = entry["test"], entry["validation"]
    return [
        f"{test[f'test_hr_at_{K}']:.3f}",
        f"{test[f'test_ndcg_at_{K}']:.3f}",
        f"{test[f'test_recall_at_{K}_full']:.3f}",
        f"{test[f'test_ndcg_at_{K}_full']:.3f}",
        f"{validation[f'validation_hr_at_{K}']:.3f}",
        f"{validation[f'validation_ndcg_at_{K}']:.3f}",
    ]


def baseline_label(name: str, p: dict[str, Any]) -> str:
    """The table label of a tuned baseline, with its chosen hyperparameters."""
    if name == "ease":
        return f"EASE (λ={p['regularization']:g})"
    recency = f", recency boost {p['recency_boost']:g}" if p["recency_boost"] else ""
    settings = f"f={p['factors']}, λ={p['regularization']:g}, α={p['alpha']:g}, {p['iterations']} it."
    return f"iALS ({settings}{recency})"


def _tuning_note(baselines: dict[str, Any]) -> str:
    notes = []
    for name, label in (("ials", "iALS"), ("ease", "EASE")):
        entry = baselines[name]
        where = "interior" if entry["interior"] else f"on the edge of {', '.join(entry['still_on_edge'])}"
        notes.append(
            f"{label}: {len(entry['trials'])} points after {entry['widenings']} widenings, best {where}, "
            f"{entry['tuning_seconds']:.0f} s"
        )
    return "; ".join(notes)


def markdown(results: dict[str, Any]) -> str:
    headers = [
        "Model",
        f"HR@{K}",
        f"NDCG@{K}",
        f"Recall@{K} (full)",
        f"NDCG@{K} (full)",
        f"val HR@{K}",
        f"val NDCG@{K}",
        "best epoch",
        "fit s",
    ]
    rows = [
        [LABELS[name], *_cells(entry), entry["best_epoch"], f"{entry['training_seconds']:.0f}"]
        for name, entry in results["models"].items()
    ]
    baselines = results["baselines"]
    for name in ("ials", "ease"):
        entry = baselines[name]
        rows.append(
            [
                baseline_label(name, entry["hyperparameters"]),
                *_cells(entry),
                "–",
                f"{entry['refit_seconds']:.1f}",
            ]
        )
    popularity = baselines["popularity"]
    rows.append(["Popularity", *_cells(popularity), "–", f"{popularity['refit_seconds']:.1f}"])
    bar = results["bar"]
    if bar["passed"] is None:
        verdict = "not checked (the default model was not run)"
    else:
        got = bar["measured"]
        verdict = (
            f"{'PASS' if bar['passed'] else 'FAIL'} (HR@{K} {got[f'test_hr_at_{K}']:.3f}, "
            f"NDCG@{K} {got[f'test_ndcg_at_{K}']:.3f})"
        )
    dataset = results["dataset"]["counts"]
    notes = [
        f"MovieLens 100K, {dataset['users']:,} users, {dataset['items']:,} items; leave-one-out (latest "
        "interaction per user is test, the one before validation), each held-out item ranked among 99 "
        "sampled unseen items (HR/NDCG) and among all items the user has not interacted with (full).",
        "Test columns are the test split, evaluated once after refitting on train + validation; val columns "
        "are the model selected on validation. Default hyperparameters for every NCF model; iALS and EASE "
        f"tuned on validation ({_tuning_note(baselines)}). fit s: the whole train.py run (training with "
        "validation, refit, test, export) for NCF models; the final refit for baselines.",
        f"Bar for the default model: HR@{K} >= {BAR[f'test_hr_at_{K}']} and NDCG@{K} >= "
        f"{BAR[f'test_ndcg_at_{K}']}: {verdict}.",
    ]
    return common.markdown_table(headers, rows) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def shuffled_times(data_dir: Path, work: Path) -> Path:
    """A copy of MovieLens 100K's ratings with each user's timestamps permuted (seed PREPARE_SEED).

    Every user keeps their items and their set of timestamps, so the split's sizes are unchanged, but
    which item is "next" is random: the order of interactions carries no signal (issue 11's check that
    the sequence model does not lose to NeuMF where order is weak).
    """
    ratings = pd.read_csv(
        data_dir / common.MOVIELENS_100K_FILE, sep="\t", names=["user_id", "item_id", "rating", "timestamp"]
    )
    rng = np.random.default_rng(PREPARE_SEED)
    permuted = ratings.groupby("user_id")["timestamp"].transform(lambda t: rng.permutation(t.to_numpy()))
    ratings["timestamp"] = permuted
    work.mkdir(parents=True, exist_ok=True)
    path = work / "ratings-shuffled-time.csv"
    ratings.to_csv(path, index=False)
    return path


def run(args: argparse.Namespace) -> int:
    header = common.run_header("quality", args.quick)
    data_dir = common.find_movielens_100k(args.data)
    work = args.work_dir.resolve()
    prepared = work / "prepared"
    source = shuffled_times(data_dir, work) if args.shuffle_time else data_dir
    print(f"preparing {source} -> {prepared}", flush=True)
    meta = common.prepare(source, prepared, work, "--seed", str(PREPARE_SEED))

    selection_key = TrainConfig().selection_key
    try:
        data = load_training_data(
            str(prepared / "train"), str(prepared / "validation"), str(prepared / "test"), implicit=True
        )
    except NcfError as error:
        raise common.BenchError(f"reading the prepared channels: {error}") from None
    baselines = {
        "popularity": popularity_baseline(data),
        "ials": tuned_baseline(
            Ials(BASELINE_SEED), data, QUICK_IALS_GRID if args.quick else IALS_GRID, selection_key
        ),
        "ease": tuned_baseline(Ease(), data, QUICK_EASE_GRID if args.quick else EASE_GRID, selection_key),
    }
    models = {name: train_model(name, prepared, work) for name in args.models}

    results = {
        **header,
        "dataset": {
            "name": "MovieLens 100K" + (", each user's timestamps permuted" if args.shuffle_time else ""),
            "path": str(data_dir),
            "files": meta["source"]["files"],
            "counts": meta["counts"],
            "split": meta["split"],
            "seed": meta["seed"],
        },
        "protocol": {
            "k": K,
            "selection_metric": selection_key,
            "refit": "every model is refitted on train + validation before its single test evaluation",
            "metrics": "ncf.evaluation.protocol.evaluate (pessimistic ties)",
        },
        "models": models,
        "baselines": baselines,
        "bar": check_bar(models),
        "sasrec_bar": check_bar(models, "sasrec", SASREC_BAR),
    }
    path = common.write_results(args.output, results)
    table = markdown(results)
    print(f"\n{table}\n\nresults: {path}", flush=True)
    return 0


main = common.script_main(parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
