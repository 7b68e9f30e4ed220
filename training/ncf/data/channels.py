"""The prepared data on disk: write the channels and meta.json atomically, read them back.

Layout of a prepared folder OUT (the contract between prepare.py and train.py):

    OUT/train/part-00000.csv        user_id,item_id[,rating][,timestamp][,event_type]; with --shards N the
                                    files part-00000 ... part-<N-1>, users spread over them by a hash of their
                                    id (for SageMaker's ShardedByS3Key), all rows of a user in one file
    OUT/validation/part-00000.csv   user_id,item_id,label[,rating][,timestamp][,event_type]: per held-out user
    OUT/test/part-00000.csv         the positive (label 1) then E negatives (label 0; rating empty), rows of a
                                    user contiguous; timestamp and event type are the held-out interaction's
    OUT/items/part-00000.csv        optional: item features, item_id plus feature columns (ncf.data.features),
                                    every field text; items without interactions are cold-start items
    OUT/vocabulary/users.csv        user_id: every user of the three channels, sorted
    OUT/vocabulary/items.csv        item_id,train_interactions: every item of the three channels, sorted,
                                    with its number of training rows. Workers that read only their own
                                    shards of train (ShardedByS3Key) index ids and rank popularity by these
    OUT/meta.json                   see `build_meta`

Ids are written as they were read and must be read back as text (`read_channel` does).
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ncf.checksums import sha256_file
from ncf.data.interactions import Interactions
from ncf.data.splitting import MIN_HELD_OUT_INTERACTIONS, Split, SplitOptions, stable_sort
from ncf.errors import NcfError

META_FORMAT_VERSION = 1
META_FILE = "meta.json"
CHANNELS = ("train", "validation", "test")
ITEMS_CHANNEL = "items"  # optional: item features (prepare.py --item-features)
VOCABULARY_CHANNEL = "vocabulary"  # the ids of every channel and the items' training counts
USERS_FILE, ITEMS_FILE = "users.csv", "items.csv"
CHANNEL_SUFFIXES = (".csv", ".csv.gz", ".parquet")
ID_COLUMNS = ("user_id", "item_id")
_COLUMN_TYPES = {
    "user_id": pa.string(),
    "item_id": pa.string(),
    "rating": pa.float64(),
    "timestamp": pa.int64(),
    "event_type": pa.string(),
    "label": pa.int64(),
    "train_interactions": pa.int64(),
}


def build_meta(
    interactions: Interactions, input_path: str | Path, options: SplitOptions, counts: dict, settings: dict
) -> dict[str, Any]:
    """meta.json without its "channels" part (added by `write_prepared`).

    Keys: format_version; source {input, format, time_order, columns, files [{path, bytes, sha256}]};
    feedback; seed; split {protocol, order, eval_negatives, min_interactions_to_hold_out};
    options (every prepare.py setting); counts (see ncf.data.splitting.split_interactions);
    vocab {users, items}.
    """
    order = "timestamp, ties in file order" if interactions.time_order == "timestamp" else "file order"
    return {
        "format_version": META_FORMAT_VERSION,
        "source": {
            "input": str(input_path),
            "format": interactions.format,
            "time_order": interactions.time_order,
            "columns": list(interactions.frame.columns),
            "files": [
                {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
                for path in interactions.files
            ],
        },
        "feedback": options.feedback,
        "seed": options.seed,
        "split": {
            "protocol": "leave-one-out",
            "order": order,
            "eval_negatives": options.eval_negatives,
            "min_interactions_to_hold_out": MIN_HELD_OUT_INTERACTIONS,
        },
        "options": settings,
        "counts": counts,
        "vocab": {"users": counts["users"], "items": counts["items"]},
    }


# ---------------------------------------------------------------------------------------------------------
# Writing


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that exists (unless `overwrite`) or that does not look like a prepared folder.

    An empty folder is fine. With `overwrite`, a non-empty folder is replaced only when it holds a
    meta.json: a mistyped --output must not delete someone's files.
    """
    if not output.exists():
        return
    if not output.is_dir():
        raise NcfError(f"output {output} exists and is not a folder")
    if not any(output.iterdir()):
        return
    if not overwrite:
        raise NcfError(f"output {output} already exists; pass --overwrite to replace it")
    if not (output / META_FILE).is_file():
        raise NcfError(
            f"refusing to replace {output}: it is not empty and has no {META_FILE}, "
            "so it is not the output of an earlier prepare"
        )


def write_prepared(
    output: str | Path,
    split: Split,
    meta: dict[str, Any],
    *,
    shards: int = 1,
    overwrite: bool = False,
    items: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Write the channels (and the `items` channel when given) and meta.json to `output`, all or nothing;
    return the meta as written.

    Everything goes to a temporary folder next to `output` that is renamed at the end, so `output` is
    never half-written, and a failure leaves it as it was.
    """
    output = Path(output)
    if shards < 1:
        raise NcfError(f"--shards must be at least 1, not {shards}")
    check_output(output, overwrite)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(output, "tmp")
    try:
        parts = {
            "train": _write_train(split.train, staging / "train", shards),
            "validation": _write_parts([split.validation], staging / "validation"),
            "test": _write_parts([split.test], staging / "test"),
        }
        frames = {"train": split.train, "validation": split.validation, "test": split.test}
        if items is not None:
            parts[ITEMS_CHANNEL] = _write_parts([items], staging / ITEMS_CHANNEL)
            frames[ITEMS_CHANNEL] = items
        _write_vocabulary(split, staging / VOCABULARY_CHANNEL)
        written = dict(meta)
        written["channels"] = {
            name: {"files": parts[name], "columns": list(frames[name].columns), "rows": len(frames[name])}
            for name in frames
        }
        (staging / META_FILE).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
        _replace(staging, output, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _replace(staging: Path, output: Path, overwrite: bool) -> None:
    check_output(output, overwrite)  # again: time has passed since the first check
    if not output.exists():
        staging.rename(output)
        return
    retired = _sibling(output, "old")
    output.rename(retired / output.name)
    try:
        staging.rename(output)
    except BaseException:
        (retired / output.name).rename(output)  # put the old output back
        retired.rmdir()
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _sibling(output: Path, kind: str) -> Path:
    """A new empty hidden folder next to `output` (mkdir, unlike mkdtemp, leaves the umask's permissions)."""
    while True:
        candidate = output.parent / f".{output.name}.{kind}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def _write_train(train: pd.DataFrame, folder: Path, shards: int) -> list[str]:
    if shards == 1:
        return _write_parts([train], folder)
    codes, users = pd.factorize(train["user_id"])
    # pandas' hash of text is a fixed-key SipHash: the same user lands in the same shard on every run.
    shard_of_user = pd.util.hash_array(np.asarray(users, dtype=object)) % np.uint64(shards)
    shard = shard_of_user[codes].astype(np.int64)
    order = stable_sort(shard)[1]
    bounds = np.searchsorted(shard[order], np.arange(shards + 1))
    return _write_parts(
        [train.iloc[order[bounds[k] : bounds[k + 1]]] for k in range(shards)],
        folder,
    )


def _write_vocabulary(split: Split, folder: Path) -> None:
    folder.mkdir()
    channels = (split.train, split.validation, split.test)
    users = pd.concat([frame["user_id"] for frame in channels], ignore_index=True).unique()
    items = pd.concat([frame["item_id"] for frame in channels], ignore_index=True).unique()
    write_csv(pd.DataFrame({"user_id": np.sort(users)}), folder / USERS_FILE)
    counts = split.train["item_id"].value_counts()
    sorted_items = np.sort(items)
    train_interactions = counts.reindex(sorted_items, fill_value=0).to_numpy(np.int64)
    write_csv(
        pd.DataFrame({"item_id": sorted_items, "train_interactions": train_interactions}), folder / ITEMS_FILE
    )


def _write_parts(frames: list[pd.DataFrame], folder: Path) -> list[str]:
    folder.mkdir()
    names = [f"part-{k:05d}.csv" for k in range(len(frames))]
    for frame, name in zip(frames, names, strict=True):
        write_csv(frame, folder / name)
    return names


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as CSV without index: numbers as the shortest exact text, NaN as an empty field.

    Fields are quoted only when a value needs it (a separator, quote or line break in an id).
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    header = (",".join(frame.columns) + "\n").encode()
    with path.open("wb") as handle:
        handle.write(header)
        try:
            pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        except pa.ArrowInvalid:  # a value needs quotes: start again, quoting the text fields
            handle.seek(0)
            handle.truncate()
            handle.write(header)
            pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="needed"))


# ---------------------------------------------------------------------------------------------------------
# Reading


def read_channel(directory: str | Path, required: tuple[str, ...] = ID_COLUMNS) -> pd.DataFrame:
    """All *.csv, *.csv.gz and *.parquet files of a channel folder, in name order, as one DataFrame.

    Ids come back as text, exactly as written; rating/timestamp/label as numbers (rating NaN where empty).
    NcfError for a missing or empty folder, unreadable files, files whose columns differ, or a missing
    `required` column.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NcfError(f"channel folder not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(CHANNEL_SUFFIXES))
    if not files:
        found = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise NcfError(
            f"{directory}: no .csv, .csv.gz or .parquet files in the channel folder (found: {found})"
        )
    frames = [_read_channel_file(path) for path in files]
    columns = list(frames[0].columns)
    missing = [c for c in required if c not in columns]
    if missing:
        raise NcfError(f"{files[0]}: missing column(s) {', '.join(missing)} (columns: {', '.join(columns)})")
    for path, frame in zip(files[1:], frames[1:], strict=True):
        if sorted(frame.columns) != sorted(columns):
            raise NcfError(
                f"{path}: columns {', '.join(frame.columns)} differ from those of {files[0].name} "
                f"({', '.join(columns)})"
            )
    for path, frame in zip(files, frames, strict=True):
        _check_timestamps(path, frame)
    if len(frames) == 1:
        return frames[0]
    return pd.concat([frame[columns] for frame in frames], ignore_index=True)


def _check_timestamps(path: Path, frame: pd.DataFrame) -> None:
    """NcfError for a missing or non-integer timestamp: time orders histories and recency weights,
    so a row without one cannot be placed (prepare.py never writes such a row)."""
    if "timestamp" not in frame.columns:
        return
    values = frame["timestamp"]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy() | (numbers.fillna(0) % 1 != 0).to_numpy()
    if bad.any():
        row = int(bad.argmax())
        raise NcfError(
            f"{path}: {int(bad.sum())} row(s) with a missing or non-integer timestamp (first: data row "
            f"{row + 1}, {values.iloc[row]!r}); give seconds since the epoch, or drop the column"
        )


def _read_channel_file(path: Path) -> pd.DataFrame:
    try:
        if path.name.endswith(".parquet"):
            table = pq.read_table(path)
            table = pa.table(
                {
                    name: table.column(name).cast(pa.string()) if name in ID_COLUMNS else table.column(name)
                    for name in table.column_names
                }
            )
        else:
            if path.stat().st_size == 0:
                raise NcfError(f"{path}: empty file (expected at least a header line)")
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(column_types=_COLUMN_TYPES, strings_can_be_null=False),
            )
    except (pa.ArrowException, OSError) as error:
        raise NcfError(f"{path}: cannot read ({error})") from None
    return table.to_pandas()


@dataclass(frozen=True)
class ListedVocabulary:
    """A vocabulary channel: every user and item id of a dataset, and each item's training rows."""

    users: pd.Series
    items: pd.Series
    item_counts: np.ndarray


def read_vocabulary(directory: str | Path) -> ListedVocabulary:
    """The vocabulary channel in `directory` (users.csv and items.csv, as prepare.py writes them)."""
    directory = Path(directory)
    users = _read_channel_file(_vocabulary_file(directory, USERS_FILE))
    items = _read_channel_file(_vocabulary_file(directory, ITEMS_FILE))
    for frame, name, columns in (
        (users, USERS_FILE, ("user_id",)),
        (items, ITEMS_FILE, ("item_id", "train_interactions")),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise NcfError(f"{directory / name}: missing column(s) {', '.join(missing)}")
    counts = items["train_interactions"]
    if counts.isna().any() or (counts < 0).any():
        raise NcfError(f"{directory / ITEMS_FILE}: train_interactions must be counts (whole numbers ≥ 0)")
    return ListedVocabulary(users["user_id"], items["item_id"], counts.to_numpy(np.int64))


def _vocabulary_file(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise NcfError(
            f"{path} not found: the vocabulary channel holds {USERS_FILE} and {ITEMS_FILE} (prepare.py)"
        )
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """meta.json of a prepared folder; `path` is the file, the prepared folder or one of its channels."""
    path = Path(path)
    candidates = [path] if path.is_file() else [path / META_FILE, path.parent / META_FILE]
    meta_path = next((p for p in candidates if p.is_file()), None)
    if meta_path is None:
        raise NcfError(f"no {META_FILE} at {' or '.join(str(p) for p in candidates)}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NcfError(f"{meta_path}: not a readable JSON file ({error})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or version > META_FORMAT_VERSION:
        raise NcfError(
            f"{meta_path}: format_version {version!r} is not one this code reads (1..{META_FORMAT_VERSION})"
        )
    return meta
