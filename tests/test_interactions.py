"""Loading interactions: MovieLens layouts, generic CSV/TSV/Parquet, opaque ids, and one-line errors."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ncf.data.interactions import ColumnNames, load_interactions
from ncf.errors import NcfError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_movielens_100k_folder_is_detected(tmp_path: Path) -> None:
    write(
        tmp_path / "ml-100k" / "u.data",
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n",
    )
    write(tmp_path / "ml-100k" / "u.item", "1|Toy Story (1995)|...\n")
    loaded = load_interactions(tmp_path / "ml-100k")
    assert "100K" in loaded.format
    assert loaded.files == (tmp_path / "ml-100k" / "u.data",)
    assert loaded.time_order == "timestamp"
    frame = loaded.frame
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame["user_id"].tolist() == ["196", "186", "22"]
    assert frame["item_id"].tolist() == ["242", "302", "377"]
    assert frame["rating"].dtype == "float64"
    assert frame["timestamp"].dtype == "int64"
    assert frame["timestamp"].iloc[2] == 878887116


def test_movielens_1m_ratings_dat_is_detected(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1357::4.5::978298709\n")
    loaded = load_interactions(tmp_path)
    assert "ratings.dat" in loaded.format
    assert loaded.frame["item_id"].tolist() == ["1193", "661", "1357"]
    assert loaded.frame["rating"].tolist() == [5.0, 3.0, 4.5]


def test_movielens_ratings_csv_is_detected(tmp_path: Path) -> None:
    write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n",
    )
    loaded = load_interactions(tmp_path)
    assert "ratings.csv" in loaded.format
    assert loaded.frame["user_id"].tolist() == ["1", "1"]
    assert loaded.frame["rating"].tolist() == [2.5, 3.0]


def test_generic_csv_with_custom_columns_and_guessed_separator(tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "who;what;stars;when\nalice;007;4;100\nbob;7;2;50\n")
    columns = ColumnNames(user="who", item="what", rating="stars", timestamp="when")
    frame = load_interactions(path, columns).frame
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame["item_id"].tolist() == ["007", "7"]  # opaque: never parsed as numbers


def test_ids_are_opaque_text(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", "user_id,item_id\nNA,null\n 1,1.0\n")
    frame = load_interactions(path).frame
    assert frame["user_id"].tolist() == ["NA", " 1"]
    assert frame["item_id"].tolist() == ["null", "1.0"]


def test_without_timestamps_the_file_order_is_the_time_order(tmp_path: Path) -> None:
    path = write(tmp_path / "i.tsv", "user_id\titem_id\trating\nu\ta\t1\nu\tb\t2\n")
    loaded = load_interactions(path)
    assert loaded.time_order == "file_order"
    assert list(loaded.frame.columns) == ["user_id", "item_id", "rating"]


def test_explicit_separator_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "i.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("user_id|item_id|timestamp\nu1|a|5\nu2|b|6\n")
    frame = load_interactions(path, sep="|").frame
    assert frame["timestamp"].tolist() == [5, 6]


def test_folder_with_an_interactions_file(tmp_path: Path) -> None:
    write(tmp_path / "items.csv", "item_id,title\na,A\n")
    write(tmp_path / "interactions.csv", "user_id,item_id,rating,timestamp\nu1,a,5,1\n")
    assert load_interactions(tmp_path).files == (tmp_path / "interactions.csv",)


def test_parquet_with_integer_ids_and_timestamp_type(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    table = pa.table(
        {
            "user_id": pa.array([10, 11], pa.int64()),
            "item_id": pa.array(["x", "y"]),
            "rating": pa.array([4, 5], pa.int32()),
            "timestamp": pa.array([1_000_000_000_000, 2_000_000_000_000], pa.timestamp("ms")),
        }
    )
    pq.write_table(table, path)
    frame = load_interactions(path).frame
    assert frame["user_id"].tolist() == ["10", "11"]
    assert frame["rating"].dtype == "float64"
    assert frame["timestamp"].tolist() == [1_000_000_000, 2_000_000_000]


def test_a_blank_line_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", "user_id,item_id,timestamp\nu,a,1\n\nu,b,2\n")
    assert load_interactions(path).frame["item_id"].tolist() == ["a", "b"]


HEADER = "user_id,item_id,rating,timestamp\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "user_id,item,rating\nu,a,1\n",
            ["missing column 'item_id'", "'user_id', 'item', 'rating'", "--item-col"],
        ),
        ("", ["the file is empty"]),
        (HEADER, ["no data rows"]),
        (HEADER + "u,a,1,10\nu,b,2,11\nu,c,3,soon\n", ["line 4", "'timestamp'", "'soon'"]),
        (HEADER + "u,a,1,10\nu,b,1.5e9x,11\n", ["line 3", "'rating'", "'1.5e9x'"]),
        (HEADER + "u,a,1,10\nu,b,,11\n", ["line 3", "'rating'", "missing rating"]),
        (HEADER + "u,a,1,10\nu,b,2,11.5\n", ["line 3", "'timestamp'", "not an integer"]),
        (HEADER + "u,a,1,10\n" + HEADER + "v,b,2,11\n", ["line 3", "header line appears again"]),
        ("user_id,item_id\nu,a\nu,b\nuser_id,item_id\n", ["line 4", "header line appears again"]),
        (HEADER + "u,a,1,10\n,b,2,11\n", ["line 3", "'user_id'", "empty user_id"]),
        (HEADER + "u,a,1,10\n\nu,,2,11\n", ["line 4", "'item_id'", "empty item_id"]),
        (HEADER + "u,a,1,10\nu,b,2,11,extra\n", ["line 3", "Expected 4 fields"]),
        (HEADER + "u,a,1,10\nu,b,2\n", ["line 3", "'timestamp'", "missing timestamp"]),
    ],
    ids=[
        "missing-column",
        "empty-file",
        "header-only",
        "bad-timestamp",
        "bad-rating",
        "empty-rating",
        "fractional-timestamp",
        "repeated-header",
        "repeated-header-ids-only",
        "empty-user",
        "empty-item-after-blank-line",
        "extra-field",
        "missing-field",
    ],
)
def test_bad_csv_gives_one_line_naming_file_line_and_column(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(NcfError) as raised:
        load_interactions(path)
    message = str(raised.value)
    assert "\n" not in message
    assert str(path) in message
    for part in expected:
        assert part in message


def test_bad_line_in_movielens_u_data(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t2\t3\t881250949\n1\t3\tfive\t881250950\n")
    with pytest.raises(NcfError, match=r"u\.data: line 2, column 'rating': rating 'five' is not a number"):
        load_interactions(tmp_path)


def test_empty_movielens_file(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "")
    with pytest.raises(NcfError, match=r"ratings\.dat: the file is empty"):
        load_interactions(tmp_path)


def test_explicitly_named_optional_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "i.csv", "user_id,item_id\nu,a\n")
    with pytest.raises(NcfError, match=r"missing column 'stars' for rating.*--rating-col"):
        load_interactions(path, ColumnNames(rating="stars"))


def test_missing_path_and_folder_without_interactions(tmp_path: Path) -> None:
    with pytest.raises(NcfError, match="input not found"):
        load_interactions(tmp_path / "nope.csv")
    write(tmp_path / "notes.txt", "hello")
    with pytest.raises(NcfError, match=r"no interactions file in this folder .*found: notes\.txt"):
        load_interactions(tmp_path)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "i.parquet", "this is not parquet")
    with pytest.raises(NcfError, match=r"i\.parquet: cannot read as Parquet"):
        load_interactions(path)


def test_parquet_missing_id_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pq.write_table(pa.table({"user_id": ["u", None], "item_id": ["a", "b"]}), path)
    with pytest.raises(NcfError, match=r"i\.parquet: row 2, column 'user_id': empty user_id"):
        load_interactions(path)


def test_parquet_float_ids_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "i.parquet"
    pd.DataFrame({"user_id": [1.0, 2.5], "item_id": ["a", "b"]}).to_parquet(path)
    with pytest.raises(NcfError, match="column 'user_id' has type double"):
        load_interactions(path)


def test_a_ratings_csv_without_the_movielens_header_is_a_generic_file(tmp_path: Path) -> None:
    write(tmp_path / "ratings.csv", "user_id,item_id,rating\nu1,a,4\n")
    loaded = load_interactions(tmp_path)
    assert loaded.format.startswith("delimited text")
    assert loaded.frame["user_id"].tolist() == ["u1"]


def test_an_event_type_column_is_read_as_text_only_when_named(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user_id,item_id,timestamp,action\nu,a,1,view\nu,b,2,7\n")
    assert "event_type" not in load_interactions(path).frame.columns
    frame = load_interactions(path, ColumnNames(event_type="action")).frame
    assert list(frame.columns) == ["user_id", "item_id", "timestamp", "event_type"]
    assert frame["event_type"].tolist() == ["view", "7"]  # text, never a number


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id,item_id,action\nu,a,view\nu,b,\n", "line 3, column 'action': empty event_type"),
        (
            "user_id,item_id\nu,a\n",
            "missing column 'action' for event_type (columns found: 'user_id', 'item_id')",
        ),
    ],
)
def test_bad_event_types_name_the_line_or_the_column(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "e.csv", text)
    with pytest.raises(NcfError, match=re.escape(message)):
        load_interactions(path, ColumnNames(event_type="action"))


def test_movielens_has_no_event_types(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t2\t3\t881250949\n")
    with pytest.raises(NcfError, match=r"--event-type-col 'kind': MovieLens 100K .* has no event types"):
        load_interactions(tmp_path, ColumnNames(event_type="kind"))


def test_parquet_dictionary_event_types(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    kinds = pa.array(["view", "purchase"]).dictionary_encode()
    pq.write_table(pa.table({"user_id": ["u", "v"], "item_id": ["a", "b"], "kind": kinds}), path)
    frame = load_interactions(path, ColumnNames(event_type="kind")).frame
    assert frame["event_type"].tolist() == ["view", "purchase"]
