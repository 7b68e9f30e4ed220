"""Quality benchmark (`make bench`): every model type on MovieLens 100K, next to popularity and tuned iALS.

One run, one split. MovieLens 100K is prepared by the real `training/prepare.py` (its defaults, seed 42:
leave-one-out, 99 sampled negatives per held-out user). Then:

1. Each model type is trained by the real `training/train.py`, in a subprocess, with DEFAULT
   hyperparameters: only --model-type (and --pretrain for the pretrained NeuMF) is passed, so the
   figures follow ncf/config.py. train.py selects the epoch count on validation, refits on
   train + validation and evaluates test once; its metrics.json is read back.
2. Popularity and iALS (tests/benchmarks/baselines.py) on the same prepared channels: iALS
   hyperparameters are chosen by a grid on the validation split only (train.py's selection metric),
   then the chosen setting is refitted on train + validation and evaluated once on test, as train.py does.
   All metrics, models and baselines alike, come from ncf.evaluation.

Results go to tests/benchmarks/results/quality.json (quality-quick.json with --quick) and a Markdown
table for the README is printed. The bar for the default model (NeuMF): test HR@10 >= 0.66 and
NDCG@10 >= 0.38; pass or fail is reported as measured.

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_quality.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import common
from baselines import (
    FactorModel,
    IalsGrid,
    PopularityModel,
    Trial,
    evaluate,
    fit_ials,
    refit_and_test,
    trial_summary,
    tune_ials,
)
from ncf.config import TrainConfig
from ncf.dataset import TrainingData, load_training_data
from ncf.errors import NcfError

# Model name -> the only train.py flags that differ from the defaults.
MODELS: dict[str, tuple[str, ...]] = {
    "neumf": (),
    "gmf": ("--model-type", "gmf"),
    "mlp": ("--model-type", "mlp"),
    "mf": ("--model-type", "mf"),
    "neumf-pretrain": ("--pretrain", "true"),
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
    "sasrec": "SASRec (sequence model)",
}
PREPARE_SEED = 42
IALS_SEED = 42
IALS_GRID = IalsGrid(
    factors=(16, 32, 64), regularization=(1.0, 10.0, 50.0), alpha=(1.0, 3.0, 10.0), iterations=(5, 10, 15)
)
QUICK_IALS_GRID = IalsGrid(factors=(32,), regularization=(10.0,), alpha=(1.0, 3.0), iterations=(5, 10))
K = TrainConfig().top_k
BAR = {f"test_hr_at_{K}": 0.66, f"test_ndcg_at_{K}": 0.38}
SASREC_BAR = {f"test_hr_at_{K}": 0.75, f"test_ndcg_at_{K}": 0.47}  # issue 11, the sequence model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_quality.py",
        description="Train every NCF model type on MovieLens 100K with default hyperparameters and compare "
        "them with popularity and tuned iALS on the same split (NCF leave-one-out protocol).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="MovieLens 100K folder holding u.data [default: the first of "
        + ", ".join(str(p) for p in common.MOVIELENS_100K_PLACES)
        + "]",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: only {', '.join(QUICK_MODELS)} and a {QUICK_IALS_GRID.size}-point iALS grid; "
        "results go to "
        "quality-quick.json (never replaces quality.json)",
    )
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {','.join(MODELS)} [default: all; with --quick: "
        f"{','.join(QUICK_MODELS)}]",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=common.REPO / "runs" / "bench" / "quality",
        help="prepared data, trained models and logs (replaced on each run) [default: runs/bench/quality]",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="results file [default: results/quality.json]"
    )
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = list(QUICK_MODELS if args.quick else MODELS)
    else:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.models if m not in MODELS]
        if unknown or not args.models:
            named = ", ".join(unknown) or "(none given)"
            parser.error(f"--models: unknown {named}; choose from {', '.join(MODELS)}")
    args.output = args.output or common.results_path("quality", args.quick)
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


def ials_baseline(data: TrainingData, grid: IalsGrid, selection_key: str) -> dict[str, Any]:
    print(f"iALS: {grid.size} grid points, selected on {selection_key}", flush=True)
    started = time.perf_counter()
    trials = tune_ials(data, grid, selection_key, IALS_SEED, K)
    tuning_seconds = time.perf_counter() - started
    best: Trial = trials[0]

    def fit(training: TrainingData) -> FactorModel:
        return fit_ials(training.seen, len(training.items), best.params, IALS_SEED)

    test, seconds = refit_and_test(fit, data, K)
    print(
        f"iALS: chose {asdict(best.params)} after {tuning_seconds:.1f} s of tuning; test HR@{K} "
        f"{test[f'test_hr_at_{K}']:.3f}, NDCG@{K} {test[f'test_ndcg_at_{K}']:.3f}",
        flush=True,
    )
    return {
        "hyperparameters": asdict(best.params),
        "validation": best.validation,
        "test": test,
        "refit_seconds": round(seconds, 2),
        "tuning_seconds": round(tuning_seconds, 1),
        "grid": asdict(grid),
        "selection_metric": selection_key,
        "seed": IALS_SEED,
        "trials": [trial_summary(t) for t in trials],
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
    ials = results["baselines"]["ials"]
    p = ials["hyperparameters"]
    rows.append(
        [
            f"iALS (f={p['factors']}, λ={p['regularization']:g}, α={p['alpha']:g}, {p['iterations']} it.)",
            *_cells(ials),
            "–",
            f"{ials['refit_seconds']:.1f}",
        ]
    )
    popularity = results["baselines"]["popularity"]
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
        "are the model selected on validation. Default hyperparameters for every NCF model; iALS tuned on "
        f"validation ({len(ials['trials'])} grid points, {ials['tuning_seconds']:.0f} s). fit s: the whole "
        "train.py run (training with validation, refit, test, export) for NCF models; the final refit for "
        "baselines.",
        f"Bar for the default model: HR@{K} >= {BAR[f'test_hr_at_{K}']} and NDCG@{K} >= "
        f"{BAR[f'test_ndcg_at_{K}']}: {verdict}.",
    ]
    return common.markdown_table(headers, rows) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def run(args: argparse.Namespace) -> int:
    header = common.run_header("quality", args.quick)
    data_dir = common.find_movielens_100k(args.data)
    work = args.work_dir.resolve()
    prepared = work / "prepared"
    print(f"preparing {data_dir} -> {prepared}", flush=True)
    meta = common.prepare(data_dir, prepared, work, "--seed", str(PREPARE_SEED))

    selection_key = TrainConfig().selection_key
    try:
        data = load_training_data(
            str(prepared / "train"), str(prepared / "validation"), str(prepared / "test"), implicit=True
        )
    except NcfError as error:
        raise common.BenchError(f"reading the prepared channels: {error}") from None
    baselines = {
        "popularity": popularity_baseline(data),
        "ials": ials_baseline(data, QUICK_IALS_GRID if args.quick else IALS_GRID, selection_key),
    }
    models = {name: train_model(name, prepared, work) for name in args.models}

    results = {
        **header,
        "dataset": {
            "name": "MovieLens 100K",
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
            "metrics": "ncf.evaluation.evaluate (pessimistic ties)",
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
