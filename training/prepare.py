"""Prepare interactions for NCF training: read, filter, split leave-one-out, write the channels.

    python training/prepare.py --input data/default --output runs/local/prepared

--input is a MovieLens folder or ratings file (ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-latest[-small];
detected automatically), a folder holding interactions.csv/.tsv/.parquet, or a CSV/TSV (optionally .gz) or
Parquet file with the columns user_id, item_id[, rating][, timestamp]. The output folder gets train/,
validation/, test/ and meta.json (see ncf.channels), written all at once, plus items/ (item features for
hybrid NCF, see ncf.features) from --item-features or, without it, from the item file next to the
interactions (MovieLens u.item / movies.dat / movies.csv, or items.csv / items.parquet).

Needs only the standard library, numpy, pandas and pyarrow, so it also runs in the SageMaker TensorFlow
training container. Problems with the input print one line `error: ...` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run as a script with a safe path (python -P): make `import ncf` work
    sys.path.insert(0, _HERE)

from ncf.channels import build_meta, check_output, write_prepared  # noqa: E402
from ncf.errors import NcfError  # noqa: E402
from ncf.features import parse_item_features  # noqa: E402
from ncf.interactions import ColumnNames, load_interactions  # noqa: E402
from ncf.item_sources import find_item_features, load_item_table  # noqa: E402
from ncf.splitting import FEEDBACK_MODES, SplitOptions, split_interactions  # noqa: E402

_SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SplitOptions()
    parser = argparse.ArgumentParser(
        prog="prepare.py",
        description=(
            "Split user-item interactions into NCF train/validation/test channels (leave-one-out: per "
            "user the latest interaction is the test item, the one before the validation item, each "
            "with sampled negatives)."
        ),
    )
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        help="MovieLens folder or ratings file (u.data, ratings.dat, ratings.csv), a folder with "
        "interactions.csv/.tsv/.parquet, or a CSV/TSV(.gz)/Parquet file of interactions",
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="folder to create with train/, validation/, test/ and meta.json",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output when it exists (only if it holds a meta.json from an earlier run)",
    )
    parser.add_argument(
        "--feedback",
        choices=FEEDBACK_MODES,
        default=defaults.feedback,
        help="implicit: every kept interaction is a positive; explicit: keep ratings for regression "
        "(train and the held-out positives carry a rating column); default: %(default)s",
    )
    parser.add_argument(
        "--rating-threshold",
        type=float,
        default=None,
        metavar="T",
        help="implicit only: keep interactions rated T or more (the others are dropped, and counted)",
    )
    parser.add_argument(
        "--min-user-interactions",
        type=int,
        default=defaults.min_user_interactions,
        metavar="N",
        help="drop users with fewer interactions; with --min-item-interactions, applied again until "
        "nothing changes (default %(default)s: off)",
    )
    parser.add_argument(
        "--min-item-interactions",
        type=int,
        default=defaults.min_item_interactions,
        metavar="N",
        help="drop items with fewer interactions (default %(default)s: off)",
    )
    parser.add_argument(
        "--eval-negatives",
        type=int,
        default=defaults.eval_negatives,
        metavar="E",
        help="negatives sampled per held-out user, among the items the user never interacted with "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="random seed of the negative sampling (default: %(default)s)",
    )
    parser.add_argument(
        "--shards",
        type=_positive_int,
        default=1,
        metavar="N",
        help="split train into N files by a hash of the user id, for SageMaker ShardedByS3Key "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--item-features",
        default=None,
        metavar="PATH",
        help="item features (CSV/Parquet: item_id plus categorical, |-separated multi-valued and numeric "
        "columns) to write to the items channel; items without interactions become cold-start items. "
        "Default: the item file next to the interactions, if any (MovieLens genres and year); "
        "'none': no items channel",
    )
    columns = parser.add_argument_group(
        "columns of a generic CSV/TSV/Parquet input (its first line names the columns; ignored for "
        "MovieLens layouts)"
    )
    columns.add_argument(
        "--user-col", default="user_id", metavar="NAME", help="user id column (default: %(default)s)"
    )
    columns.add_argument(
        "--item-col", default="item_id", metavar="NAME", help="item id column (default: %(default)s)"
    )
    columns.add_argument(
        "--rating-col",
        default=None,
        metavar="NAME",
        help="rating column (default: 'rating' when present; the input may have none)",
    )
    columns.add_argument(
        "--timestamp-col",
        default=None,
        metavar="NAME",
        help="timestamp column, integer seconds (default: 'timestamp' when present; without one, the "
        "file order is the time order)",
    )
    columns.add_argument(
        "--sep",
        default=None,
        help="field separator: one character, or tab/comma/semicolon/pipe (default: guessed from the "
        "header among , tab ; |)",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _separator(value: str | None) -> str | None:
    if value is None:
        return None
    sep = _SEPARATOR_NAMES.get(value.lower(), value)
    if len(sep) != 1:
        raise NcfError(f"--sep must be one character or one of {', '.join(_SEPARATOR_NAMES)}, not {value!r}")
    return sep


def prepare(args: argparse.Namespace) -> dict:
    """Run the whole preparation for parsed arguments; return the meta.json written."""
    started = time.monotonic()
    check_output(args.output, args.overwrite)  # fail before the slow part
    columns = ColumnNames(args.user_col, args.item_col, args.rating_col, args.timestamp_col)
    interactions = load_interactions(args.input, columns, _separator(args.sep))
    options = SplitOptions(
        feedback=args.feedback,
        rating_threshold=args.rating_threshold,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions,
        eval_negatives=args.eval_negatives,
        seed=args.seed,
    )
    split = split_interactions(interactions.frame, options)
    items_path = _item_features_path(args.item_features, interactions.files[0])
    items = load_item_table(items_path) if items_path else None
    if items is not None:
        parse_item_features([(items_path, items)])  # refuse a broken features file before writing
    settings = {
        "feedback": args.feedback,
        "rating_threshold": args.rating_threshold,
        "min_user_interactions": args.min_user_interactions,
        "min_item_interactions": args.min_item_interactions,
        "eval_negatives": args.eval_negatives,
        "seed": args.seed,
        "shards": args.shards,
        "user_col": args.user_col,
        "item_col": args.item_col,
        "rating_col": args.rating_col,
        "timestamp_col": args.timestamp_col,
        "sep": args.sep,
        "item_features": str(items_path) if items_path else None,
    }
    meta = build_meta(interactions, args.input, options, split.counts, settings)
    if items is not None:
        kept = set(split.train["item_id"]) | set(split.validation["item_id"]) | set(split.test["item_id"])
        meta["item_features"] = {
            "source": str(items_path),
            "columns": list(items.columns),
            "items": len(items),
            "cold_items": int((~items["item_id"].isin(kept)).sum()),
        }
    written = write_prepared(
        args.output, split, meta, shards=args.shards, overwrite=args.overwrite, items=items
    )
    print(summary(written, args.output, time.monotonic() - started))
    return written


def _item_features_path(option: str | None, interactions_file: Path) -> Path | None:
    if option is None:
        return find_item_features(interactions_file)
    return None if option.lower() == "none" else Path(option)


def summary(meta: dict, output: Path, seconds: float) -> str:
    """A few lines of counts for the terminal and the SageMaker log."""
    counts = meta["counts"]
    dropped = counts["rows_dropped"]
    train_only = counts["train_only_users"]
    source = meta["source"]
    files = ", ".join(f["path"] for f in source["files"])
    negatives = meta["split"]["eval_negatives"]
    items = meta.get("item_features")
    item_lines = []
    if items:
        columns = ", ".join(items["columns"])
        item_lines.append(
            f"item features: {items['items']:,} items ({columns}) from {items['source']}, "
            f"{items['cold_items']:,} of them without interactions (cold-start items)"
        )
    return "\n".join(
        [
            f"read {counts['rows_read']:,} interactions from {files} ({source['format']}; "
            f"time order: {source['time_order'].replace('_', ' ')})",
            f"dropped {sum(dropped.values()):,}: {dropped['duplicate_user_item']:,} repeated user-item pairs "
            f"(latest kept), {dropped['below_rating_threshold']:,} below the rating threshold, "
            f"{dropped['min_interactions']:,} by the minimum-interactions filters",
            f"kept {counts['rows_kept']:,} interactions: {counts['users']:,} users, "
            f"{counts['items']:,} items ({meta['feedback']} feedback)",
            f"train {counts['train_rows']:,} rows; validation and test {counts['test_users']:,} users each "
            f"(1 positive + {negatives} negatives); train only: "
            f"{train_only['fewer_than_3_interactions']:,} users with < 3 interactions, "
            f"{train_only['too_few_unseen_items']:,} with < {negatives} unseen items",
            *item_lines,
            f"wrote {output} in {seconds:.1f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        prepare(args)
    except NcfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the output was not written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
