"""Load user-item interactions into one tidy DataFrame, from a MovieLens folder or a CSV/TSV/Parquet file.

The result has the columns user_id (str), item_id (str), rating (float64, when the input has ratings),
timestamp (int64, when the input has timestamps) and event_type (str, when a column is named for it: the
kind of interaction, e.g. "view" or "purchase", read by interaction filters at serving time), one row per
input line, in file order.

- Ids are opaque strings: "007" and "7" are different users, and no id is ever parsed as a number or used
  as an index (integer ids in a Parquet file become their decimal text).
- Without a timestamp column the file order is the time order: a later line is a later interaction.
  `Interactions.time_order` says which of the two applies, and prepare.py records it in meta.json.

Reading is fast (pyarrow's multi-threaded CSV reader) and strict: any problem raises `NcfError` with one
line naming the file, the line (1-based, counting the header, as an editor shows it; "row" for Parquet)
and the column. To name the line, a file that fails is read a second time, slowly, as text.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ncf.data.movielens import CANONICAL, MOVIELENS_FILES, DelimitedSpec, spec_for_file
from ncf.errors import NcfError

# Files a folder may hold when it is not a MovieLens folder, looked for in this order (after MOVIELENS_FILES;
# a ratings.csv without the MovieLens header is read as a generic file).
INTERACTION_FILES = (
    "interactions.csv",
    "interactions.csv.gz",
    "interactions.tsv",
    "interactions.tsv.gz",
    "interactions.parquet",
)
PARQUET_SUFFIXES = (".parquet", ".pq")
SEPARATORS = (",", "\t", ";", "|")

_ARROW_TYPES = {
    "user_id": pa.string(),
    "item_id": pa.string(),
    "rating": pa.float64(),
    "timestamp": pa.int64(),
    "event_type": pa.string(),
}
# The columns of a loaded frame: MovieLens' four, and an event type that only generic files can have.
FRAME_COLUMNS = (*CANONICAL, "event_type")
_DIAGNOSE_CHUNK_ROWS = 1_000_000
_INTEGER_TEXT = r"[-+]?\d+"


@dataclass(frozen=True)
class ColumnNames:
    """The column names to look for in a generic (non-MovieLens) interactions file.

    `rating` and `timestamp` left as None mean: use the column named "rating" / "timestamp" when the file
    has one, and go without otherwise. A name given explicitly must exist. `event_type` is read only when
    named (None: no event types), so a file's unrelated column never changes what is trained.
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str | None = None
    timestamp: str | None = None
    event_type: str | None = None


@dataclass(frozen=True)
class Interactions:
    """Loaded interactions plus where they came from (for meta.json)."""

    frame: pd.DataFrame
    files: tuple[Path, ...]
    format: str
    time_order: str  # "timestamp" or "file_order"


def load_interactions(
    path: str | Path, columns: ColumnNames | None = None, sep: str | None = None
) -> Interactions:
    """Read the interactions at `path`: a MovieLens folder or file, a folder holding one of
    INTERACTION_FILES, or a CSV/TSV (optionally .gz) or Parquet file.

    `columns` and `sep` apply to generic files only (the MovieLens layouts are fixed); without `sep` the
    separator is the one of SEPARATORS that splits the header into the expected column names.
    """
    columns = columns or ColumnNames()
    path = Path(path)
    if not path.exists():
        raise NcfError(f"input not found: {path}")
    if path.is_dir():
        path = _file_in_folder(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame = _read_parquet(path, columns)
        file_format = "Parquet"
    else:
        movielens = spec_for_file(path)
        if movielens is not None and columns.event_type is not None:
            raise NcfError(
                f"{path}: --event-type-col {columns.event_type!r}: {movielens.format} has no event types"
                " (its layout is fixed: user, item, rating, timestamp)"
            )
        spec = movielens or _generic_spec(path, columns, sep)
        frame = _read_delimited(spec)
        file_format = spec.format
    time_order = "timestamp" if "timestamp" in frame.columns else "file_order"
    return Interactions(frame=frame, files=(path,), format=file_format, time_order=time_order)


def _file_in_folder(folder: Path) -> Path:
    """The interactions file of a folder: a MovieLens ratings file first, else one of INTERACTION_FILES."""
    for name in (*MOVIELENS_FILES, *INTERACTION_FILES):
        if (folder / name).is_file():
            return folder / name
    found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    raise NcfError(
        f"{folder}: no interactions file in this folder (looked for {', '.join(MOVIELENS_FILES)}, "
        f"{', '.join(INTERACTION_FILES)}; found: {found}); pass the file itself to --input"
    )


# ---------------------------------------------------------------------------------------------------------
# Column names


def _resolve_columns(path: Path, fields: list[str], columns: ColumnNames, where: str) -> dict[str, str]:
    """Map each canonical column to its field in `fields`; NcfError naming what exists when one is missing."""
    listed = ", ".join(repr(f) for f in fields)
    mapping: dict[str, str] = {}
    wanted = [
        ("user_id", columns.user, True, "--user-col"),
        ("item_id", columns.item, True, "--item-col"),
        ("rating", columns.rating or "rating", columns.rating is not None, "--rating-col"),
        ("timestamp", columns.timestamp or "timestamp", columns.timestamp is not None, "--timestamp-col"),
    ]
    if columns.event_type is not None:
        wanted.append(("event_type", columns.event_type, True, "--event-type-col"))
    for canonical, name, required, option in wanted:
        if fields.count(name) > 1:
            raise NcfError(f"{path}: {where}: column {name!r} appears {fields.count(name)} times ({listed})")
        if name in fields:
            mapping[canonical] = name
        elif required:
            raise NcfError(
                f"{path}: {where}: missing column {name!r} for {canonical} (columns found: {listed}); "
                f"name the right column with {option}"
            )
    return mapping


# ---------------------------------------------------------------------------------------------------------
# Delimited text


def _first_line(path: Path) -> str:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            line = handle.readline()
    except (OSError, UnicodeDecodeError) as error:
        raise NcfError(f"{path}: cannot read the header line ({error})") from None
    if not line:
        raise NcfError(f"{path}: the file is empty")
    if not line.strip():
        raise NcfError(f"{path}: line 1: expected a header line with column names, found a blank line")
    return line.rstrip("\r\n")


def _split_header(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep))


def _generic_spec(path: Path, columns: ColumnNames, sep: str | None) -> DelimitedSpec:
    header = _first_line(path)
    if sep is not None:
        candidates: tuple[str, ...] = (sep,)
    elif ".tsv" in path.suffixes:
        candidates = ("\t", *SEPARATORS)
    else:
        candidates = SEPARATORS
    splits = {candidate: _split_header(header, candidate) for candidate in candidates}
    chosen = next(
        (c for c, fields in splits.items() if columns.user in fields and columns.item in fields),
        max(candidates, key=lambda c: len(splits[c])),
    )
    hint = (
        "line 1 (header)" if sep is not None else f"line 1 (header, separator {chosen!r} guessed; see --sep)"
    )
    mapping = _resolve_columns(path, splits[chosen], columns, hint)
    return DelimitedSpec(
        path, chosen, True, tuple(splits[chosen]), mapping, f"delimited text (separator {chosen!r})"
    )


def _read_delimited(spec: DelimitedSpec) -> pd.DataFrame:
    """Fast path: pyarrow with the final column types. Any failure re-reads the file to name the line."""
    fields = list(spec.columns.values())
    if spec.path.stat().st_size == 0:
        raise NcfError(f"{spec.path}: the file is empty")
    try:
        table = pacsv.read_csv(
            spec.path,
            read_options=pacsv.ReadOptions(column_names=None if spec.header else list(spec.fields)),
            parse_options=pacsv.ParseOptions(delimiter=spec.sep),
            convert_options=pacsv.ConvertOptions(
                include_columns=fields,
                column_types={spec.columns[c]: _ARROW_TYPES[c] for c in spec.columns},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        _diagnose_delimited(spec)
        raise NcfError(f"{spec.path}: cannot parse the file ({error})") from None
    if table.num_rows == 0:
        raise NcfError(f"{spec.path}: no data rows (the file holds only a header)")
    frame = _canonical_frame(table, spec.columns)
    problem = _first_problem(frame, spec.columns if spec.header else None)
    if problem is not None:
        _diagnose_delimited(spec)
        row, canonical, message = problem
        raise NcfError(f"{spec.path}: data row {row + 1}, column {spec.columns[canonical]!r}: {message}")
    return frame


def _canonical_frame(table: pa.Table, mapping: dict[str, str]) -> pd.DataFrame:
    columns = {c: table.column(mapping[c]) for c in FRAME_COLUMNS if c in mapping}
    return pa.table(columns).to_pandas()


def _first_problem(frame: pd.DataFrame, header: dict[str, str] | None) -> tuple[int, str, str] | None:
    """(row index, canonical column, message) of the first invalid value of a typed frame, or None.

    With `header` (the field names of a delimited file's header) a row equal to the header counts as a
    problem too: it is a second header line, e.g. from concatenated files.
    """
    checks: list[tuple[str, np.ndarray, str]] = []
    if header is not None:
        repeated = (frame["user_id"] == header["user_id"]) & (frame["item_id"] == header["item_id"])
        checks.append(("user_id", repeated.to_numpy(dtype=bool), _REPEATED_HEADER))
    for canonical in ("user_id", "item_id", "event_type"):
        if canonical in frame.columns:
            empty = frame[canonical].isna() | (frame[canonical] == "")
            checks.append((canonical, empty.to_numpy(dtype=bool), f"empty {canonical}"))
    if "rating" in frame.columns:
        finite = np.isfinite(frame["rating"].to_numpy(dtype=np.float64, na_value=np.nan))
        checks.append(("rating", ~finite, "missing or non-finite rating"))
    if "timestamp" in frame.columns:
        checks.append(("timestamp", frame["timestamp"].isna().to_numpy(), "missing timestamp"))
    found = [
        (int(np.argmax(bad)), priority, canonical, message)
        for priority, (canonical, bad, message) in enumerate(checks)
        if bad.any()
    ]
    if not found:
        return None
    row, _, canonical, message = min(found)
    return row, canonical, message


_REPEATED_HEADER = "the header line appears again inside the data (concatenated files?)"


def _diagnose_delimited(spec: DelimitedSpec) -> None:
    """Re-read `spec.path` as text, chunk by chunk, and raise NcfError naming the first bad line.

    Returns without raising when it finds nothing (the caller then reports what it knows).
    """
    options: dict = {
        "sep": spec.sep,
        "dtype": str,
        "keep_default_na": False,
        "na_filter": False,
        "skip_blank_lines": False,  # keeps line numbers right; blank lines are skipped below
        "chunksize": _DIAGNOSE_CHUNK_ROWS,
        "encoding": "utf-8-sig",
    }
    if spec.header:
        options["header"] = 0
    else:
        options.update(header=None, names=list(spec.fields))
    line = 2 if spec.header else 1
    try:
        with pd.read_csv(spec.path, **options) as reader:
            for chunk in reader:
                problem = _first_text_problem(chunk, spec)
                if problem is not None:
                    row, message = problem
                    raise NcfError(f"{spec.path}: line {line + row}, {message}")
                line += len(chunk)
    except pd.errors.ParserError as error:
        detail = str(error).strip().removeprefix("Error tokenizing data. C error: ")
        raise NcfError(f"{spec.path}: {detail} (wrong separator? see --sep)") from None
    except UnicodeDecodeError as error:
        raise NcfError(f"{spec.path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (OSError, ValueError) as error:
        raise NcfError(f"{spec.path}: cannot read the file ({error})") from None


def _first_text_problem(chunk: pd.DataFrame, spec: DelimitedSpec) -> tuple[int, str] | None:
    """(row in chunk, message) of the first bad line of a chunk read as text; blank lines are skipped."""
    blank = np.logical_and.reduce([chunk[f].to_numpy() == "" for f in spec.columns.values()])
    user, item = spec.columns["user_id"], spec.columns["item_id"]
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = []
    if spec.header:
        repeated = (chunk[user].to_numpy() == user) & (chunk[item].to_numpy() == item)
        checks.append((repeated, lambda _row: _REPEATED_HEADER))
    for canonical, field in spec.columns.items():
        text = chunk[field]
        checks.append((_invalid_text(canonical, text), partial(_describe_text, canonical, field, text)))
    found = []
    for priority, (bad, describe) in enumerate(checks):
        bad = bad & ~blank
        if bad.any():
            row = int(np.argmax(bad))
            found.append((row, priority, describe(row)))
    if not found:
        return None
    row, _, message = min(found)
    return row, message


def _invalid_text(canonical: str, text: pd.Series) -> np.ndarray:
    if canonical in ("user_id", "item_id", "event_type"):
        return text.to_numpy() == ""
    if canonical == "rating":
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return ~np.isfinite(numbers)
    return ~text.str.fullmatch(_INTEGER_TEXT).to_numpy(dtype=bool, na_value=False)


def _describe_text(canonical: str, field: str, text: pd.Series, row: int) -> str:
    value = text.iloc[row]
    if canonical in ("user_id", "item_id", "event_type"):
        return f"column {field!r}: empty {canonical}"
    if value == "":
        return f"column {field!r}: missing {canonical}"
    if canonical == "rating":
        return f"column {field!r}: rating {value!r} is not a number"
    return f"column {field!r}: timestamp {value!r} is not an integer (seconds since the epoch)"


# ---------------------------------------------------------------------------------------------------------
# Parquet


def _read_parquet(path: Path, columns: ColumnNames) -> pd.DataFrame:
    try:
        schema = pq.read_schema(path)
        mapping = _resolve_columns(path, list(schema.names), columns, "Parquet schema")
        table = pq.read_table(path, columns=list(mapping.values()))
    except (pa.ArrowException, OSError) as error:
        raise NcfError(f"{path}: cannot read as Parquet ({error})") from None
    if table.num_rows == 0:
        raise NcfError(f"{path}: no rows")
    converted = pa.table(
        {
            c: _parquet_column(path, mapping[c], c, table.column(mapping[c]))
            for c in FRAME_COLUMNS
            if c in mapping
        }
    )
    frame = converted.to_pandas()
    problem = _first_problem(frame, None)
    if problem is not None:
        row, canonical, message = problem
        raise NcfError(f"{path}: row {row + 1}, column {mapping[canonical]!r}: {message}")
    return frame


def _parquet_column(path: Path, field: str, canonical: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Cast one Parquet column to its canonical type: ids and event types to text, rating to float64,
    timestamp to int64."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    try:
        if canonical in ("user_id", "item_id", "event_type") and (
            pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
        ):
            return column.cast(pa.string())
        if canonical == "rating" and (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        ):
            return column.cast(pa.float64())
        if canonical == "timestamp" and pa.types.is_timestamp(kind):
            return pc.cast(column, pa.timestamp("s", tz=kind.tz), safe=False).cast(pa.int64())
        if canonical == "timestamp" and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            return column.cast(pa.int64())
    except pa.ArrowInvalid:
        values = column.to_numpy(zero_copy_only=False)
        row = int(np.argmax(~np.isfinite(values) | (values != np.floor(values))))
        raise NcfError(
            f"{path}: row {row + 1}, column {field!r}: timestamp {values[row]!r} is not an integer "
            "(seconds since the epoch)"
        ) from None
    expected = {
        "rating": "numbers",
        **dict.fromkeys(("user_id", "item_id", "event_type"), "text or integers"),
    }
    raise NcfError(
        f"{path}: column {field!r} has type {kind}; {canonical} must be "
        f"{expected.get(canonical, 'integers (seconds since the epoch) or timestamps')}"
    )
