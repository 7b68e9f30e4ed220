"""Prepared channels on disk: atomic writes, overwrite rules, shards, and reading them back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import ncf.data.channels as channels
import numpy as np
import pandas as pd
import pytest
from ncf.data.channels import check_output, read_channel, read_meta, write_csv, write_prepared
from ncf.data.splitting import Split
from ncf.errors import NcfError


def make_split(users: list[str] | None = None) -> Split:
    users = users or ["007", "7", "a,b", 'say "hi"']
    train = pd.DataFrame(
        {
            "user_id": [u for u in users for _ in range(3)],
            "item_id": ["i1", "i2", "NA"] * len(users),
            "rating": [5.0, 3.5, 1.0] * len(users),
            "timestamp": np.arange(3 * len(users), dtype=np.int64),
        }
    )
    held = pd.DataFrame(
        {
            "user_id": [u for u in users for _ in range(3)],
            "item_id": ["i3", "i4", "i5"] * len(users),
            "label": [1, 0, 0] * len(users),
            "rating": [4.0, np.nan, np.nan] * len(users),
        }
    )
    return Split(train=train, validation=held, test=held.copy(), counts={"users": len(users), "items": 5})


def test_round_trip_keeps_ids_as_text_and_numbers_as_numbers(tmp_path: Path) -> None:
    split = make_split()
    meta = write_prepared(tmp_path / "out", split, {"format_version": 1, "counts": split.counts})
    train = read_channel(tmp_path / "out" / "train")
    assert train["user_id"].tolist() == split.train["user_id"].tolist()
    assert train["item_id"].tolist() == split.train["item_id"].tolist()  # "NA" stays text
    np.testing.assert_array_equal(train["rating"].to_numpy(), split.train["rating"].to_numpy())
    assert train["timestamp"].dtype == "int64"
    test = read_channel(tmp_path / "out" / "test", ("user_id", "item_id", "label"))
    assert test["label"].tolist() == split.test["label"].tolist()
    assert test["rating"].isna().tolist() == split.test["rating"].isna().tolist()
    assert meta["channels"]["train"] == {
        "files": ["part-00000.csv"],
        "columns": ["user_id", "item_id", "rating", "timestamp"],
        "rows": 12,
    }
    assert read_meta(tmp_path / "out") == meta
    assert read_meta(tmp_path / "out" / "validation") == meta


def test_csv_is_plain_unless_a_value_needs_quotes(tmp_path: Path) -> None:
    write_csv(pd.DataFrame({"user_id": ["u1"], "item_id": ["007"], "rating": [4.0]}), tmp_path / "plain.csv")
    assert (tmp_path / "plain.csv").read_text() == "user_id,item_id,rating\nu1,007,4\n"
    write_csv(pd.DataFrame({"user_id": ["a,b"], "label": [1]}), tmp_path / "quoted.csv")
    assert (tmp_path / "quoted.csv").read_text() == 'user_id,label\n"a,b",1\n'


def test_shards_split_train_by_user(tmp_path: Path) -> None:
    users = [f"user{k}" for k in range(40)]
    meta = write_prepared(tmp_path / "out", make_split(users), {}, shards=3)
    files = sorted((tmp_path / "out" / "train").iterdir())
    assert [f.name for f in files] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    assert meta["channels"]["train"]["files"] == [f.name for f in files]
    parts = [pd.read_csv(f, dtype=str, keep_default_na=False) for f in files]
    assert all(len(p) for p in parts)
    owners = [set(p["user_id"]) for p in parts]
    assert sum(len(o) for o in owners) == len(set().union(*owners)) == 40  # each user in one shard
    assert len(read_channel(tmp_path / "out" / "train")) == 120
    write_prepared(tmp_path / "again", make_split(users), {}, shards=3)
    for name in meta["channels"]["train"]["files"]:
        assert (tmp_path / "again" / "train" / name).read_bytes() == (
            tmp_path / "out" / "train" / name
        ).read_bytes()


def test_a_failure_leaves_no_output_and_no_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def failing_write(frame: pd.DataFrame, path: Path) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        write_csv(frame, path)

    monkeypatch.setattr(channels, "write_csv", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_prepared(tmp_path / "out", make_split(), {})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_rules(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_prepared(out, make_split(["x"]), {"run": 1})
    with pytest.raises(NcfError, match="already exists; pass --overwrite"):
        write_prepared(out, make_split(["y"]), {"run": 2})
    write_prepared(out, make_split(["y"]), {"run": 2}, overwrite=True)
    assert json.loads((out / "meta.json").read_text())["run"] == 2
    assert set(read_channel(out / "train")["user_id"]) == {"y"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left behind

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(NcfError, match=r"refusing to replace .*no meta\.json"):
        check_output(precious, overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(NcfError, match="not a folder"):
        check_output(tmp_path / "file", overwrite=True)
    (tmp_path / "empty").mkdir()
    write_prepared(tmp_path / "empty", make_split(), {})  # an empty folder is fine


def test_read_channel_reads_csv_gz_and_parquet_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    pd.DataFrame({"user_id": ["c"], "item_id": ["3"]}).to_parquet(folder / "part-2.parquet")
    with gzip.open(folder / "part-1.csv.gz", "wt") as handle:
        handle.write("user_id,item_id\nb,2\n")
    (folder / "part-0.csv").write_text("user_id,item_id\na,01\n")
    (folder / "_SUCCESS").write_text("")
    frame = read_channel(folder)
    assert frame["user_id"].tolist() == ["a", "b", "c"]
    assert frame["item_id"].tolist() == ["01", "2", "3"]


def test_read_channel_errors(tmp_path: Path) -> None:
    with pytest.raises(NcfError, match="channel folder not found"):
        read_channel(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(NcfError, match=r"no \.csv, \.csv\.gz or \.parquet files .*found: notes\.txt"):
        read_channel(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.csv").write_text("user_id,item\nu,i\n")
    with pytest.raises(NcfError, match=r"a\.csv: missing column\(s\) item_id \(columns: user_id, item\)"):
        read_channel(bad)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.csv").write_text("user_id,item_id\nu,i\n")
    (mixed / "b.csv").write_text("user_id,item_id,label\nu,i,1\n")
    with pytest.raises(NcfError, match=r"b\.csv: columns .* differ from those of a\.csv"):
        read_channel(mixed)
    (bad / "a.csv").write_text("")
    with pytest.raises(NcfError, match=r"a\.csv: empty file"):
        read_channel(bad)


def test_a_missing_or_non_integer_timestamp_is_refused_not_read_as_zero(tmp_path: Path) -> None:
    """A timestamp orders a user's history: a row without one used to become time 0 without a word."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.csv").write_text("user_id,item_id,timestamp\nu,i,5\nu,j,\nu,k,7\n")
    with pytest.raises(NcfError, match=r"a\.csv: 1 row\(s\) with a missing or non-integer timestamp .*row 2"):
        read_channel(empty)
    text = tmp_path / "text"
    text.mkdir()
    frame = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["i", "j"], "timestamp": ["5", "yesterday"]})
    frame.to_parquet(text / "a.parquet")
    with pytest.raises(NcfError, match=r"a\.parquet: 1 row\(s\) .*row 2, 'yesterday'"):
        read_channel(text)
    fractional = tmp_path / "fractional"
    fractional.mkdir()
    pd.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [1.5]}).to_parquet(
        fractional / "a.parquet"
    )
    with pytest.raises(NcfError, match="non-integer timestamp"):
        read_channel(fractional)
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.csv").write_text("user_id,item_id,timestamp\nu,i,5\nu,j,6\n")
    assert read_channel(good)["timestamp"].tolist() == [5, 6]


def test_read_meta_errors(tmp_path: Path) -> None:
    with pytest.raises(NcfError, match=r"no meta\.json"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text('{"format_version": 99}')
    with pytest.raises(NcfError, match="format_version 99"):
        read_meta(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(NcfError, match="not a readable JSON"):
        read_meta(tmp_path / "meta.json")


def test_the_vocabulary_lists_every_id_sorted_with_item_training_counts(tmp_path: Path) -> None:
    split = make_split()
    write_prepared(tmp_path / "out", split, {})
    listed = channels.read_vocabulary(tmp_path / "out" / "vocabulary")
    assert listed.users.tolist() == sorted(["007", "7", "a,b", 'say "hi"'])
    assert listed.items.tolist() == ["NA", "i1", "i2", "i3", "i4", "i5"]  # held-out items are in the catalog
    assert listed.item_counts.tolist() == [4, 4, 4, 0, 0, 0]  # training rows only


def test_a_broken_vocabulary_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "vocabulary"
    folder.mkdir()
    with pytest.raises(NcfError, match=r"users.csv not found: the vocabulary channel holds"):
        channels.read_vocabulary(folder)
    (folder / "users.csv").write_text("user_id\nu1\n")
    (folder / "items.csv").write_text("item_id,train_interactions\ni1,-2\n")
    with pytest.raises(NcfError, match=r"items.csv: train_interactions must be counts"):
        channels.read_vocabulary(folder)
    (folder / "items.csv").write_text("item_id\ni1\n")
    with pytest.raises(NcfError, match=r"items.csv: missing column\(s\) train_interactions"):
        channels.read_vocabulary(folder)
