"""prepare.py's settings: one dataclass whose fields generate its command line (see `ncf.settings_cli`).

The options themselves are documented in the README's *Data* section and by `prepare.py --help`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ncf import settings_cli
from ncf.choices import FEEDBACK_MODES
from ncf.data.interactions import ColumnNames
from ncf.data.splitting import SplitOptions
from ncf.errors import NcfError
from ncf.settings_cli import setting

_SPLIT = SplitOptions()
_COLUMNS = "columns"


@dataclass(frozen=True)
class PrepareSettings:
    """Every option of prepare.py; the command line is generated from these fields."""

    input: str | None = setting(
        None,
        "MovieLens folder or ratings file (u.data, ratings.dat, ratings.csv), a folder with "
        "interactions.csv/.tsv/.parquet, or a CSV/TSV(.gz)/Parquet file of interactions",
        required=True,
        metavar="PATH",
    )
    output: str | None = setting(
        None, "folder to create with train/, validation/, test/ and meta.json", required=True, metavar="DIR"
    )
    overwrite: bool = setting(
        False, "replace --output when it exists (only if it holds a meta.json from an earlier run)", flag=True
    )
    feedback: str = setting(
        _SPLIT.feedback,
        "implicit: every kept interaction is a positive; explicit: keep ratings for regression (train and "
        "the held-out positives carry a rating column)",
        choices=FEEDBACK_MODES,
    )
    rating_threshold: float | None = setting(
        None,
        "implicit only: keep interactions rated T or more (the others are dropped, and counted)",
        metavar="T",
        shown_default="keep every rating",
    )
    min_user_interactions: int = setting(
        _SPLIT.min_user_interactions,
        "drop users with fewer interactions; with --min-item-interactions, applied again until nothing "
        "changes (1: off)",
        metavar="N",
    )
    min_item_interactions: int = setting(
        _SPLIT.min_item_interactions, "drop items with fewer interactions (1: off)", metavar="N"
    )
    eval_negatives: int = setting(
        _SPLIT.eval_negatives,
        "negatives sampled per held-out user, among the items the user never interacted with",
        metavar="E",
    )
    seed: int = setting(_SPLIT.seed, "random seed of the negative sampling", metavar="SEED")
    shards: int = setting(
        1, "split train into N files by a hash of the user id, for SageMaker ShardedByS3Key", metavar="N"
    )
    item_features: str | None = setting(
        None,
        "item features (CSV/Parquet: item_id plus categorical, |-separated multi-valued and numeric "
        "columns) to write to the items channel; items without interactions become cold-start items; "
        "'none': no items channel",
        metavar="PATH",
        shown_default="the item file next to the interactions, if any (MovieLens genres and year)",
    )
    user_col: str = setting("user_id", "user id column", metavar="NAME", group=_COLUMNS)
    item_col: str = setting("item_id", "item id column", metavar="NAME", group=_COLUMNS)
    rating_col: str | None = setting(
        None,
        "rating column (the input may have none)",
        metavar="NAME",
        group=_COLUMNS,
        shown_default="'rating' when present",
    )
    timestamp_col: str | None = setting(
        None,
        "timestamp column, integer seconds (without one, the file order is the time order)",
        metavar="NAME",
        group=_COLUMNS,
        shown_default="'timestamp' when present",
    )
    event_type_col: str | None = setting(
        None,
        "event type column (text such as view, cart, purchase): kept in the channels and stored in the"
        " model for interaction filters (Interactions.event_type); generic files only",
        metavar="NAME",
        group=_COLUMNS,
        shown_default="no event types",
    )
    sep: str | None = setting(
        None,
        "field separator: one character, or tab/comma/semicolon/pipe",
        metavar="SEP",
        group=_COLUMNS,
        shown_default="guessed from the header among , tab ; |",
    )

    @property
    def input_path(self) -> Path:
        assert self.input is not None  # required on the command line
        return Path(self.input)

    @property
    def output_path(self) -> Path:
        assert self.output is not None  # required on the command line
        return Path(self.output)

    def split_options(self) -> SplitOptions:
        return SplitOptions(
            feedback=self.feedback,
            rating_threshold=self.rating_threshold,
            min_user_interactions=self.min_user_interactions,
            min_item_interactions=self.min_item_interactions,
            eval_negatives=self.eval_negatives,
            seed=self.seed,
        )

    def columns(self) -> ColumnNames:
        return ColumnNames(
            self.user_col, self.item_col, self.rating_col, self.timestamp_col, self.event_type_col
        )

    def recorded(self, items_path: Path | None) -> dict:
        """The settings as meta.json records them (no paths but the item features')."""
        kept = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("input", "output", "overwrite", "item_features")
        }
        return {**kept, "item_features": str(items_path) if items_path else None}


def build_parser() -> argparse.ArgumentParser:
    """prepare.py's command line, generated from PrepareSettings."""
    return settings_cli.build_parser(
        PrepareSettings,
        prog="prepare.py",
        description=(
            "Split user-item interactions into NCF train/validation/test channels (leave-one-out: per "
            "user the latest interaction is the test item, the one before the validation item, each "
            "with sampled negatives)."
        ),
        groups={
            _COLUMNS: "columns of a generic CSV/TSV/Parquet input (its first line names the columns; "
            "ignored for MovieLens layouts)"
        },
    )


def parse_args(argv: Sequence[str] | None = None) -> PrepareSettings:
    """The settings of a command line.

    Raises:
        SystemExit: status 2 for an unknown option or a missing --input/--output (argparse's message).
        NcfError: a value of the wrong type, an unknown --feedback, --shards below 1.
    """
    given = vars(build_parser().parse_args(argv))
    options = PrepareSettings(**settings_cli.parse_given(PrepareSettings, given, label="--{flag}"))
    settings_cli.check_choices(options, label="--{flag}")
    if options.shards < 1:
        raise NcfError(f"--shards must be at least 1, not {options.shards}")
    return options
