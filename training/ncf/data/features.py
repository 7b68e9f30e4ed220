"""Item features for hybrid NCF: read and check a features table, then encode it for the model.

A features table has one row per item: an `item_id` column and any number of feature columns of
three kinds.

- `categorical`: one value per item (a studio, a brand). Each distinct value gets an embedding.
- `multi`: several values separated by `|` (MovieLens `genres`: `Action|Comedy`). The embeddings of
  an item's values are averaged (mean pooling), so an item with three genres weighs as much as one
  with a single genre.
- `numeric`: a number (a year, a price), standardised to mean 0 and standard deviation 1 over the
  table and fed through a small linear layer. An empty field is a missing value: it becomes the
  mean (0 after standardisation).

Column kinds are inferred unless declared (`item_feature_columns`, e.g. `genres:multi,year:numeric`;
a declaration also selects the columns: the others are ignored). Inference, per column: numeric when
every non-empty value is a number; `multi` when some value contains `|`; categorical otherwise,
except that a text column with more distinct values than half the items (a title, a URL) is skipped:
such a value names one item or two and would only repeat the id embedding. Declare a column to
force its kind (integer codes are inferred numeric). Empty categorical values are errors (write a
placeholder such as `unknown`): an empty field is more often a broken export than a category.

This module is pure numpy/pandas (no TensorFlow), so prepare.py uses it to check a features file
before anything is written, and every error names the file, the line and the column.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ncf.errors import NcfError
from ncf.train_settings import TrainConfig

ITEM_ID = "item_id"
COLUMN_KINDS = ("categorical", "multi", "numeric")
MULTI_SEPARATOR = "|"
FEATURE_SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass(frozen=True)
class FeatureColumn:
    """A feature column and how its values are read."""

    name: str
    kind: str


@dataclass(frozen=True)
class ItemFeatures:
    """A checked features table: item ids in file order and each column's parsed values.

    `values[name]` is, per item, a tuple of values for categorical and multi columns (one value for
    categorical) and a float array (NaN for missing) for numeric columns.
    """

    source: str
    item_ids: np.ndarray
    columns: tuple[FeatureColumn, ...]
    values: dict[str, list[tuple[str, ...]] | np.ndarray]

    def __len__(self) -> int:
        return len(self.item_ids)

    def describe(self) -> str:
        """One line for the training log."""
        listed = ", ".join(f"{c.name} ({c.kind})" for c in self.columns)
        return f"{len(self):,} items from {self.source}: {listed}"


@dataclass(frozen=True)
class FeatureMatrix:
    """Item features aligned to the item vocabulary, as the model's feature tower reads them.

    Row i belongs to vocabulary item i. `tokens[i]` lists the item's categorical values as indices
    into `token_names`, padded with `num_tokens` (a row of the token table that is never used);
    `weights[i]` holds each value's weight (1 for categorical, 1/n for the n values of a multi
    column, 0 for padding). `numeric` is standardised. `has_id[i]` is 1 for items with an id
    embedding (the items of the interaction channels) and 0 for cold-start items, which are
    represented by their features alone.
    """

    tokens: np.ndarray
    weights: np.ndarray
    numeric: np.ndarray
    has_id: np.ndarray
    token_names: tuple[str, ...]
    numeric_names: tuple[str, ...]

    @property
    def num_tokens(self) -> int:
        return len(self.token_names)

    @property
    def num_items(self) -> int:
        return len(self.tokens)

    def fingerprint(self) -> str:
        """A digest of the encoded features, so a checkpoint is not resumed with other features."""
        digest = hashlib.sha256("\n".join(self.token_names + self.numeric_names).encode())
        for part in (self.tokens, self.weights, self.numeric, self.has_id):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()[:16]


# -- declarations -----------------------------------------------------------------------------------


def parse_declaration(text: str) -> tuple[FeatureColumn, ...]:
    """`genres:multi,year:numeric` -> columns; an empty text declares nothing (infer every column)."""
    columns = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, kind = (s.strip() for s in part.partition(":"))
        if not sep or not name or kind not in COLUMN_KINDS:
            raise NcfError(
                f"item_feature_columns: expected NAME:KIND with KIND one of {', '.join(COLUMN_KINDS)}, "
                f"got {part!r}"
            )
        if name == ITEM_ID or any(c.name == name for c in columns):
            raise NcfError(f"item_feature_columns: column {name!r} cannot be declared (twice or as the id)")
        columns.append(FeatureColumn(name, kind))
    return tuple(columns)


# -- reading -----------------------------------------------------------------------------------------


def feature_files(path: str | Path) -> list[Path]:
    """The file itself, or every CSV/Parquet file of a folder (an items channel) in name order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NcfError(f"item features not found: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(FEATURE_SUFFIXES))
    if not files:
        raise NcfError(f"{path}: no .csv, .csv.gz or .parquet item features files in this folder")
    return files


def read_text_table(path: Path) -> pd.DataFrame:
    """Every field as text ("" when empty), whatever the format."""
    try:
        if path.name.endswith(".parquet"):
            frame = pd.read_parquet(path)
            return frame.apply(lambda c: c.map(lambda v: "" if v is None or v != v else str(v))).astype(str)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise NcfError(f"{path}: cannot read item features ({error})") from None


def _line(path: Path, row: int) -> str:
    """How an editor names a data row: CSV lines count the header; Parquet rows start at 1."""
    return f"row {row + 1}" if path.name.endswith(".parquet") else f"line {row + 2}"


def _is_number(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").notna().to_numpy() & (values.str.strip() != "").to_numpy()


def _infer_columns(frame: pd.DataFrame) -> tuple[FeatureColumn, ...]:
    columns = []
    for name in frame.columns:
        if name == ITEM_ID:
            continue
        text = frame[name].str.strip()
        present = text[text != ""]
        if len(present) and _is_number(present).all():
            columns.append(FeatureColumn(name, "numeric"))
        elif present.str.contains(MULTI_SEPARATOR, regex=False).any():
            columns.append(FeatureColumn(name, "multi"))
        elif present.nunique() <= len(frame) / 2:
            columns.append(FeatureColumn(name, "categorical"))
    return tuple(columns)


def _parse_column(
    path: Path, frame: pd.DataFrame, column: FeatureColumn
) -> list[tuple[str, ...]] | np.ndarray:
    text = frame[column.name].str.strip()
    if column.kind == "numeric":
        numbers = pd.to_numeric(text.where(text != ""), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(np.isnan(numbers) & (text != "").to_numpy() | np.isinf(numbers))
        if len(bad):
            row = int(bad[0])
            raise NcfError(
                f"{path}: {_line(path, row)}, column {column.name!r}: not a number: {text.iloc[row]!r}"
            )
        return numbers
    if column.kind == "multi":
        values = [tuple(v for v in (p.strip() for p in t.split(MULTI_SEPARATOR)) if v) for t in text]
    else:
        values = [(t,) if t else () for t in text]
    empty = next((row for row, v in enumerate(values) if not v), None)
    if empty is not None:
        raise NcfError(
            f"{path}: {_line(path, empty)}, column {column.name!r}: empty {column.kind} value "
            "(every item needs one; write a placeholder such as 'unknown')"
        )
    return values


def _check_ids(path: Path, frame: pd.DataFrame) -> None:
    if ITEM_ID not in frame.columns:
        raise NcfError(
            f"{path}: item features need an {ITEM_ID!r} column (columns: {', '.join(frame.columns)})"
        )
    empty = np.flatnonzero((frame[ITEM_ID] == "").to_numpy())
    if len(empty):
        raise NcfError(f"{path}: {_line(path, int(empty[0]))}, column {ITEM_ID!r}: empty item id")


def read_item_features(path: str | Path, declared: str = "") -> ItemFeatures:
    """Read and check the item features at `path` (a file, or a folder of files with the same columns)."""
    files = feature_files(path)
    return parse_item_features([(f, read_text_table(f)) for f in files], declared, str(path))


def parse_item_features(
    tables: Sequence[tuple[Path, pd.DataFrame]], declared: str = "", source: str = ""
) -> ItemFeatures:
    """Check text tables (file, all fields as text) of item features and parse their columns.

    NcfError naming file, line and column for: no item_id column, an empty or repeated item id, a
    declared column the file lacks, a non-numeric value in a numeric column, an empty categorical
    value, or files whose columns differ.
    """
    files = [f for f, _ in tables]
    frames = [fr for _, fr in tables]
    for file, frame in tables:
        _check_ids(file, frame)
        if list(frame.columns) != list(frames[0].columns):
            raise NcfError(
                f"{file}: columns {', '.join(frame.columns)} differ from those of {files[0].name} "
                f"({', '.join(frames[0].columns)})"
            )
    columns = parse_declaration(declared) or _infer_columns(pd.concat(frames, ignore_index=True))
    for column in columns:
        if column.name not in frames[0].columns:
            raise NcfError(
                f"{files[0]}: item feature column {column.name!r} (declared in item_feature_columns) "
                f"is not in the file (columns: {', '.join(frames[0].columns)})"
            )
    parsed = [{c.name: _parse_column(f, fr, c) for c in columns} for f, fr in tables]
    _check_unique_ids(files, frames)
    values: dict[str, list[tuple[str, ...]] | np.ndarray] = {}
    for column in columns:
        parts = [p[column.name] for p in parsed]
        values[column.name] = (
            np.concatenate(parts) if column.kind == "numeric" else [v for part in parts for v in part]
        )
    item_ids = np.concatenate([fr[ITEM_ID].to_numpy(dtype=object) for fr in frames])
    return ItemFeatures(source or str(files[0]), item_ids, columns, values)


def configured_item_features(config: TrainConfig) -> ItemFeatures | None:
    """The item features a training run uses (`item_features`, the items channel), or None."""
    path = config.item_features_path
    if path is None:
        if config.item_feature_columns:
            raise NcfError(
                "item_feature_columns is set but there are no item features "
                "(pass --items DIR, --item-features PATH or the SageMaker channel 'items')"
            )
        return None
    return read_item_features(path, config.item_feature_columns)


def _check_unique_ids(files: Sequence[Path], frames: Sequence[pd.DataFrame]) -> None:
    ids = pd.concat([fr[ITEM_ID] for fr in frames], ignore_index=True)
    repeated = ids.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return
    where = [(f, row) for f, fr in zip(files, frames, strict=True) for row in range(len(fr))]
    second = int(np.flatnonzero(repeated)[0])
    first = int(np.flatnonzero((ids == ids.iloc[second]).to_numpy())[0])
    (file, row), (first_file, first_row) = where[second], where[first]
    origin = _line(first_file, first_row) + ("" if first_file == file else f" of {first_file}")
    raise NcfError(
        f"{file}: {_line(file, row)}, column {ITEM_ID!r}: item id {ids.iloc[second]!r} repeats {origin}"
    )


# -- encoding ----------------------------------------------------------------------------------------


def encode_features(features: ItemFeatures, item_ids: np.ndarray, has_id: np.ndarray) -> FeatureMatrix:
    """Align `features` to the vocabulary `item_ids` (sorted); items without a row get no features.

    `has_id` marks the vocabulary items that have an id embedding (see FeatureMatrix).
    """
    order = np.argsort(item_ids)
    rows = order[np.searchsorted(item_ids, features.item_ids, sorter=order)]
    categorical = [c for c in features.columns if c.kind != "numeric"]
    numeric_columns = [c for c in features.columns if c.kind == "numeric"]
    names = sorted({f"{c.name}={v}" for c in categorical for vs in features.values[c.name] for v in vs})
    token_of = {name: index for index, name in enumerate(names)}
    per_item: list[list[tuple[int, float]]] = [[] for _ in range(len(features))]
    for column in categorical:
        for entry, item_values in zip(per_item, features.values[column.name], strict=True):
            unique = list(dict.fromkeys(item_values))
            entry.extend((token_of[f"{column.name}={v}"], 1.0 / len(unique)) for v in unique)
    width = max((len(e) for e in per_item), default=0)
    tokens = np.full((len(item_ids), width), len(names), np.int32)
    weights = np.zeros((len(item_ids), width), np.float32)
    for row, entry in zip(rows, per_item, strict=True):
        if entry:
            tokens[row, : len(entry)] = [t for t, _ in entry]
            weights[row, : len(entry)] = [w for _, w in entry]
    numeric = np.zeros((len(item_ids), len(numeric_columns)), np.float32)
    for index, column in enumerate(numeric_columns):
        numeric[rows, index] = standardise(features.values[column.name])
    return FeatureMatrix(
        tokens=tokens,
        weights=weights,
        numeric=numeric,
        has_id=has_id.astype(np.float32).reshape(-1, 1),
        token_names=tuple(names),
        numeric_names=tuple(c.name for c in numeric_columns),
    )


def standardise(values: np.ndarray) -> np.ndarray:
    """Mean 0 and standard deviation 1 over the present values; missing values (NaN) become 0."""
    present = values[~np.isnan(values)]
    if not len(present):
        return np.zeros(len(values), np.float32)
    spread = float(present.std())
    scaled = (values - float(present.mean())) / (spread if spread > 0 and math.isfinite(spread) else 1.0)
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32)


# -- served item fields ---------------------------------------------------------------------------------


def configured_item_fields(config: TrainConfig) -> pd.DataFrame | None:
    """`item_id` and the columns to store (`item_fields`) from the items channel; None for none."""
    if config.item_fields == "none":
        return None
    source = config.items or config.item_features_path
    if source is None:
        if config.item_fields != "auto":
            raise NcfError(
                "item_fields needs the items channel (pass --items DIR or the SageMaker channel 'items')"
            )
        return None
    table = pd.concat([read_text_table(path) for path in feature_files(source)], ignore_index=True)
    if ITEM_ID not in table.columns:
        raise NcfError(
            f"{source}: item fields need an {ITEM_ID!r} column (columns: {', '.join(table.columns)})"
        )
    available = [c for c in table.columns if c != ITEM_ID]
    wanted = available if config.item_fields == "auto" else [c.strip() for c in config.item_fields.split(",")]
    missing = [c for c in wanted if c not in available]
    if missing:
        raise NcfError(f"item_fields: no column {missing[0]!r} in {source} (columns: {', '.join(available)})")
    return table[[ITEM_ID, *wanted]].drop_duplicates(ITEM_ID)
