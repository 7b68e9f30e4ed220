"""Where prepare.py finds item features, and how MovieLens item files become a features table.

Without `--item-features`, prepare.py looks next to the interactions file:

- MovieLens 100K `u.item` (pipe-separated, no header: id|title|release date|video date|url|19 genre
  flags) -> genres from the flags, year from the release date;
- MovieLens 1M/10M `movies.dat` (`MovieID::Title::Genres`) and 20M/25M/latest `movies.csv`
  (`movieId,title,genres`) -> genres as given, year from the "(1995)" at the end of the title;
- a generic folder's `items.csv` / `items.csv.gz` / `items.parquet` (read as it is).

Every table comes out with text fields only: `item_id,title,genres,year` for MovieLens (year empty
where unknown), the file's own columns otherwise. `ncf.data.features` checks it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ncf.data.features import read_text_table
from ncf.errors import NcfError

MOVIELENS_ITEM_FILES = {"u.data": "u.item", "ratings.dat": "movies.dat", "ratings.csv": "movies.csv"}
GENERIC_ITEM_FILES = ("items.csv", "items.csv.gz", "items.parquet")
ML_100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_TITLE_YEAR = r"\((\d{4})\)\s*$"


def find_item_features(interactions_file: Path) -> Path | None:
    """The item features file that belongs with an interactions file, if there is one."""
    folder = interactions_file.parent
    movielens = MOVIELENS_ITEM_FILES.get(interactions_file.name)
    for name in (*([movielens] if movielens else []), *GENERIC_ITEM_FILES):
        if (folder / name).is_file():
            return folder / name
    return None


def load_item_table(path: Path) -> pd.DataFrame:
    """The features table of `path`, all fields text: MovieLens item files converted, others as read."""
    if not path.is_file():
        raise NcfError(f"item features file not found: {path}")
    readers = {"u.item": _u_item, "movies.dat": _movies_dat}
    if path.name in readers:
        return readers[path.name](path)
    frame = read_text_table(path)
    if path.name == "movies.csv" and list(frame.columns[:3]) == ["movieId", "title", "genres"]:
        return _movies(frame["movieId"], frame["title"], frame["genres"])
    return frame


def _u_item(path: Path) -> pd.DataFrame:
    fields = ["item_id", "title", "release", "video_release", "url", *ML_100K_GENRES]
    frame = _read_fixed(path, "|", fields)
    flags = frame[list(ML_100K_GENRES)] == "1"
    genres = flags.apply(lambda row: "|".join(row.index[row.to_numpy()]), axis=1)
    return pd.DataFrame(
        {
            "item_id": frame["item_id"],
            "title": frame["title"],
            "genres": genres.where(genres != "", "unknown"),
            "year": frame["release"].str.extract(r"(\d{4})\s*$", expand=False).fillna(""),
        }
    )


def _movies_dat(path: Path) -> pd.DataFrame:
    # `::` split on ":" (as for ratings.dat) would break titles with colons: split each line once by hand.
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as error:
        raise NcfError(f"{path}: cannot read ({error})") from None
    rows = [line.split("::", 2) for line in lines if line.strip()]
    bad = next((n for n, row in enumerate(rows) if len(row) != 3), None)
    if bad is not None:
        raise NcfError(f"{path}: line {bad + 1}: expected MovieID::Title::Genres")
    frame = pd.DataFrame(rows, columns=["item_id", "title", "genres"], dtype=str)
    return _movies(frame["item_id"], frame["title"], frame["genres"])


def _movies(ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": titles,
            "genres": genres.where(genres.str.strip() != "", "(no genres listed)"),
            "year": titles.str.extract(_TITLE_YEAR, expand=False).fillna(""),
        }
    )


def _read_fixed(path: Path, sep: str, fields: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path, sep=sep, header=None, names=fields, dtype=str, keep_default_na=False, encoding="latin-1"
        )
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise NcfError(f"{path}: cannot read MovieLens items ({error})") from None
