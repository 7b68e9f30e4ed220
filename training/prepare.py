"""Prepare interactions for NCF training: read, filter, split leave-one-out, write the channels.

    python training/prepare.py --input data/default --output runs/local/prepared

The inputs it reads, the options (`ncf.data.prepare_settings`, or `--help`), the split and what it writes
are described in the README's *Data* section. Needs only the standard library, numpy, pandas and
pyarrow, so it also runs in the SageMaker TensorFlow training container. Bad input prints one line
`error: ...` and exits with status 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # run as a script with a safe path (python -P): make `import ncf` work
    sys.path.insert(0, _HERE)

from ncf.data.channels import build_meta, check_output, write_prepared  # noqa: E402
from ncf.data.features import parse_item_features  # noqa: E402
from ncf.data.interactions import load_interactions  # noqa: E402
from ncf.data.item_sources import find_item_features, load_item_table  # noqa: E402
from ncf.data.prepare_settings import PrepareSettings, parse_args  # noqa: E402
from ncf.data.splitting import split_interactions  # noqa: E402
from ncf.errors import NcfError  # noqa: E402

_SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def _separator(value: str | None) -> str | None:
    if value is None:
        return None
    sep = _SEPARATOR_NAMES.get(value.lower(), value)
    if len(sep) != 1:
        raise NcfError(f"--sep must be one character or one of {', '.join(_SEPARATOR_NAMES)}, not {value!r}")
    return sep


def prepare(args: PrepareSettings) -> dict:
    """Run the whole preparation; return the meta.json written.

    Raises:
        NcfError: bad input (unreadable or malformed files, impossible options, an existing output).
    """
    started = time.monotonic()
    check_output(args.output_path, args.overwrite)  # fail before the slow part
    interactions = load_interactions(args.input_path, args.columns(), _separator(args.sep))
    options = args.split_options()
    split = split_interactions(interactions.frame, options)
    items_path = _item_features_path(args.item_features, interactions.files[0])
    items = load_item_table(items_path) if items_path else None
    if items is not None:
        parse_item_features([(items_path, items)])  # refuse a broken features file before writing
    meta = build_meta(interactions, args.input_path, options, split.counts, args.recorded(items_path))
    if items is not None:
        kept = set(split.train["item_id"]) | set(split.validation["item_id"]) | set(split.test["item_id"])
        meta["item_features"] = {
            "source": str(items_path),
            "columns": list(items.columns),
            "items": len(items),
            "cold_items": int((~items["item_id"].isin(kept)).sum()),
        }
    written = write_prepared(
        args.output_path, split, meta, shards=args.shards, overwrite=args.overwrite, items=items
    )
    print(summary(written, args.output_path, time.monotonic() - started))
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
    """Run prepare.py on `argv`: 0 on success, 2 for bad input (one `error:` line), 130 on Ctrl-C."""
    try:
        prepare(parse_args(argv))
    except NcfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the output was not written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
