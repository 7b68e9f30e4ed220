"""Recognise the MovieLens file layouts, so `--input` can point straight at an unpacked MovieLens folder.

GroupLens ships its ratings in three layouts:

- ml-100k: `u.data`, tab-separated, no header: user, item, rating, timestamp.
- ml-1m, ml-10m: `ratings.dat`, `::`-separated, no header: UserID::MovieID::Rating::Timestamp.
- ml-20m, ml-25m, ml-latest, ml-latest-small: `ratings.csv` with the header userId,movieId,rating,timestamp.

This module only describes those files (a `DelimitedSpec`); `ncf.data.interactions` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CANONICAL = ("user_id", "item_id", "rating", "timestamp")


@dataclass(frozen=True)
class DelimitedSpec:
    """Everything needed to read one delimited interactions file.

    `fields` are the names of all fields of a line in file order (from the header, or assigned when the
    file has none); `columns` maps each canonical column (user_id, item_id, rating, timestamp) present
    in the file to its field name.
    """

    path: Path
    sep: str
    header: bool
    fields: tuple[str, ...]
    columns: dict[str, str]
    format: str


def _u_data(path: Path) -> DelimitedSpec:
    return DelimitedSpec(path, "\t", False, CANONICAL, {c: c for c in CANONICAL}, "MovieLens 100K (u.data)")


def _ratings_dat(path: Path) -> DelimitedSpec:
    # `::` is split on ":" so the fast C parsers can read it: every second field is the empty string between
    # the two colons. Ids, ratings and timestamps never contain ":" in these files.
    fields = ("user_id", "_gap1", "item_id", "_gap2", "rating", "_gap3", "timestamp")
    return DelimitedSpec(
        path, ":", False, fields, {c: c for c in CANONICAL}, "MovieLens 1M/10M (ratings.dat)"
    )


_RATINGS_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")


def _ratings_csv(path: Path) -> DelimitedSpec:
    return DelimitedSpec(
        path,
        ",",
        True,
        _RATINGS_CSV_HEADER,
        dict(zip(CANONICAL, _RATINGS_CSV_HEADER, strict=True)),
        "MovieLens 20M/25M/latest (ratings.csv)",
    )


def _has_ratings_csv_header(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError:  # reported by the generic reader
        return False
    return tuple(first.split(",")) == _RATINGS_CSV_HEADER


def spec_for_file(path: Path) -> DelimitedSpec | None:
    """The MovieLens layout of `path` judged by its name (and its header for ratings.csv), or None."""
    if path.name == "u.data":
        return _u_data(path)
    if path.name == "ratings.dat":
        return _ratings_dat(path)
    if path.name == "ratings.csv" and _has_ratings_csv_header(path):
        return _ratings_csv(path)
    return None


# The ratings file of each layout, in the order a folder is searched for them.
MOVIELENS_FILES = ("u.data", "ratings.dat", "ratings.csv")
