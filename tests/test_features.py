"""Item features: reading and checking a features table, encoding it, the model's feature tower,
the MovieLens item files, and prepare.py's items channel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from ncf.data.features import (
    FeatureColumn,
    configured_item_features,
    encode_features,
    parse_declaration,
    read_item_features,
)
from ncf.data.item_sources import find_item_features, load_item_table
from ncf.errors import NcfError
from ncf.models.ncf_models import ModelSpec, NcfModel
from ncf.models.registry import NCF_MODEL_TYPES
from ncf.train_settings import load_config

REPO = Path(__file__).resolve().parents[1]
PREPARE = REPO / "training" / "prepare.py"
PATHS = ["--train", "t", "--validation", "v", "--test", "s", "--model-dir", "m"]


def write(tmp_path: Path, text: str, name: str = "items.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = (
    "item_id,title,genres,year,studio\n"
    "a,Alpha,Drama|Comedy,1990,s1\nb,Beta,Drama,,s1\nc,Gamma,War,2010,s2\nd,Delta,Comedy,2000,s2\n"
)


# -- reading and checking ---------------------------------------------------------------------------


def test_kinds_are_inferred_and_identifier_like_text_is_skipped(tmp_path: Path) -> None:
    features = read_item_features(write(tmp_path, GOOD))
    assert features.columns == (
        FeatureColumn("genres", "multi"),
        FeatureColumn("year", "numeric"),
        FeatureColumn("studio", "categorical"),
    )
    assert features.item_ids.tolist() == ["a", "b", "c", "d"]
    assert features.values["genres"] == [("Drama", "Comedy"), ("Drama",), ("War",), ("Comedy",)]
    np.testing.assert_array_equal(features.values["year"], [1990.0, np.nan, 2010.0, 2000.0])


def test_a_declaration_selects_the_columns_and_their_kinds(tmp_path: Path) -> None:
    features = read_item_features(write(tmp_path, GOOD), "studio:multi,title:categorical")
    assert features.columns == (FeatureColumn("studio", "multi"), FeatureColumn("title", "categorical"))
    assert features.values["title"] == [("Alpha",), ("Beta",), ("Gamma",), ("Delta",)]


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        ("id,genres\na,Drama\n", "", r"items\.csv: item features need an 'item_id' column"),
        (GOOD, "genres:multi,rating:numeric", r"items\.csv: item feature column 'rating' .* not in the file"),
        (GOOD, "year:numeric,studio:numeric", r"items\.csv: line 2, column 'studio': not a number: 's1'"),
        (
            "item_id,genres\na,Drama\nb,\n",
            "",
            r"items\.csv: line 3, column 'genres': empty categorical value",
        ),
        ("item_id,genres\na,Drama|Comedy\nb, | \n", "", r"line 3, column 'genres': empty multi value"),
        (
            "item_id,genres\na,Drama\nb,War\na,Comedy\n",
            "",
            r"line 4, column 'item_id': item id 'a' repeats line 2",
        ),
        ("item_id,genres\na,Drama\n,War\n", "", r"line 3, column 'item_id': empty item id"),
        (GOOD, "genres", r"item_feature_columns: expected NAME:KIND"),
        (GOOD, "genres:text", r"item_feature_columns: expected NAME:KIND"),
    ],
)
def test_problems_are_errors_naming_file_line_and_column(
    tmp_path: Path, text: str, declared: str, expected: str
) -> None:
    with pytest.raises(NcfError, match=expected):
        read_item_features(write(tmp_path, text), declared)


def test_a_folder_of_parts_is_one_table_and_ids_must_be_unique_across_parts(tmp_path: Path) -> None:
    folder = tmp_path / "items"
    folder.mkdir()
    write(folder, "item_id,genres\na,Drama\n", "part-00000.csv")
    pd.DataFrame({"item_id": ["b"], "genres": ["War|Drama"]}).to_parquet(folder / "part-00001.parquet")
    assert read_item_features(folder).item_ids.tolist() == ["a", "b"]
    write(folder, "item_id,genres\na,Comedy\n", "part-00002.csv")
    with pytest.raises(NcfError, match=r"part-00002\.csv: line 2, column 'item_id': item id 'a' repeats"):
        read_item_features(folder)


def test_declarations_parse_and_empty_means_infer() -> None:
    assert parse_declaration("") == ()
    assert parse_declaration(" genres:multi , year:numeric ") == (
        FeatureColumn("genres", "multi"),
        FeatureColumn("year", "numeric"),
    )


# -- encoding ---------------------------------------------------------------------------------------


def test_encoding_pools_values_standardises_numbers_and_aligns_to_the_vocabulary(tmp_path: Path) -> None:
    features = read_item_features(write(tmp_path, GOOD))
    vocabulary = np.array(["a", "b", "c", "d", "z"], dtype=object)  # z: an interaction item, no features
    matrix = encode_features(features, vocabulary, np.array([True, True, False, True, True]))
    assert matrix.token_names == (
        "genres=Comedy",
        "genres=Drama",
        "genres=War",
        "studio=s1",
        "studio=s2",
    )
    pad = matrix.num_tokens
    weights = {
        (vocabulary[i], matrix.token_names[t]): w
        for i in range(5)
        for t, w in zip(matrix.tokens[i], matrix.weights[i], strict=True)
        if t != pad
    }
    assert weights == {
        ("a", "genres=Drama"): 0.5,
        ("a", "genres=Comedy"): 0.5,
        ("a", "studio=s1"): 1.0,
        ("b", "genres=Drama"): 1.0,
        ("b", "studio=s1"): 1.0,
        ("c", "genres=War"): 1.0,
        ("c", "studio=s2"): 1.0,
        ("d", "genres=Comedy"): 1.0,
        ("d", "studio=s2"): 1.0,
    }
    assert matrix.weights[4].sum() == 0  # no features: the id embedding alone
    spread = np.std([1990.0, 2010.0, 2000.0])
    expected = [-10 / spread, 0.0, 10 / spread, 0.0, 0.0]  # a missing year is the mean
    np.testing.assert_allclose(matrix.numeric[:, 0], expected, rtol=1e-6)
    assert matrix.has_id[:, 0].tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]


# -- the model's feature tower -----------------------------------------------------------------------


ITEMS = 5


def featured_model(model_type: str, tmp_path: Path) -> NcfModel:
    features = read_item_features(write(tmp_path, GOOD))
    vocabulary = np.array(["a", "b", "c", "d", "z"], dtype=object)
    matrix = encode_features(features, vocabulary, np.array([True, True, False, True, True]))
    spec = ModelSpec(model_type, 3, ITEMS, factors=4, mlp_layers=(8, 6, 4))
    return NcfModel(spec, seed=3, init_stddev=0.5, item_features=matrix)


@pytest.mark.parametrize("catalog_wide", [True, False])
@pytest.mark.parametrize("model_type", NCF_MODEL_TYPES)
def test_with_features_catalog_scores_equal_pairwise_scores(
    model_type: str, catalog_wide: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(NcfModel, "CATALOG_WIDE_FEATURES_MAX_ITEMS", ITEMS if catalog_wide else 0)
    model = featured_model(model_type, tmp_path)
    assert model.feature_catalog_wide == catalog_wide
    users = np.array([0, 2], dtype=np.int32)
    catalog = model.logits_all_items(tf.constant(users)).numpy()
    pairwise = model.logits(tf.constant(np.repeat(users, ITEMS)), tf.constant(np.tile(np.arange(ITEMS), 2)))
    np.testing.assert_allclose(catalog, pairwise.numpy().reshape(2, ITEMS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", NCF_MODEL_TYPES)
def test_a_cold_item_is_its_features_and_a_featured_item_is_more_than_its_id(
    model_type: str, tmp_path: Path
) -> None:
    model = featured_model(model_type, tmp_path)
    users, items = tf.constant([0, 0]), tf.constant([2, 0])  # c is cold, a is not
    before = model.logits(users, items).numpy()
    item_tables = [v for n, v in model.embeddings.items() if n in ("gmf_item", "mlp_item", "item_bias")]
    for table in item_tables:
        table.assign(table + 3.0)
    after = model.logits(users, items).numpy()
    assert after[0] == pytest.approx(before[0])  # the cold item's id embedding plays no part
    assert after[1] != pytest.approx(before[1])
    for name in [n for n in model.dense if n.startswith("features_") and n.endswith("_tokens")]:
        model.dense[name].assign(tf.zeros_like(model.dense[name]))
    assert model.logits(users, items).numpy()[0] != pytest.approx(before[0])  # features do


def test_without_features_the_model_has_no_feature_tower() -> None:
    model = NcfModel(ModelSpec("neumf", 3, 4, factors=4, mlp_layers=(8, 4)), seed=1)
    assert not model.has_features
    assert not [n for n in model.dense if n.startswith("features_")]


def test_features_do_not_change_the_initialisation_of_the_other_weights(tmp_path: Path) -> None:
    plain = NcfModel(ModelSpec("neumf", 3, ITEMS, factors=4, mlp_layers=(8, 6, 4)), seed=3, init_stddev=0.5)
    featured = featured_model("neumf", tmp_path)
    for name, var in plain.embeddings.items():
        np.testing.assert_array_equal(var.numpy(), featured.embeddings[name].numpy())
    for name, var in plain.dense.items():
        np.testing.assert_array_equal(var.numpy(), featured.dense[name].numpy())


def test_neumf_pretraining_copies_the_feature_towers(tmp_path: Path) -> None:
    gmf, mlp, neumf = (featured_model(t, tmp_path) for t in ("gmf", "mlp", "neumf"))
    neumf.load_pretrained(gmf, mlp, alpha=0.5)
    users, items = tf.constant([0, 1, 2]), tf.constant([2, 0, 3])
    expected = 0.5 * gmf.logits(users, items) + 0.5 * mlp.logits(users, items)
    np.testing.assert_allclose(neumf.logits(users, items).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


# -- settings ---------------------------------------------------------------------------------------


def test_the_items_channel_is_used_unless_switched_off(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert configured_item_features(load_config(PATHS, {})) is None
    from_env = load_config(PATHS, {"SM_CHANNEL_ITEMS": str(path)})
    assert configured_item_features(from_env).item_ids.tolist() == ["a", "b", "c", "d"]
    assert (
        configured_item_features(load_config([*PATHS, "--items", str(path), "--item-features", "none"], {}))
        is None
    )
    explicit = load_config(
        [*PATHS, "--item-features", str(path), "--item-feature-columns", "genres:multi"], {}
    )
    assert [c.name for c in configured_item_features(explicit).columns] == ["genres"]
    with pytest.raises(NcfError, match="item_feature_columns is set but there are no item features"):
        configured_item_features(load_config([*PATHS, "--item-feature-columns", "genres:multi"], {}))


# -- MovieLens item files and prepare.py ------------------------------------------------------------


def test_movielens_item_files_become_genres_and_year(tmp_path: Path) -> None:
    flags = ["0"] * 19
    action, comedy = flags.copy(), flags.copy()
    action[1] = "1"
    comedy[5] = comedy[1] = "1"
    u_item = [
        "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(comedy),
        "2|unknown||||" + "|".join(flags),
        "3|Heat (1995)|15-Dec-1995||http://y|" + "|".join(action),
    ]
    write(tmp_path, "\n".join(u_item) + "\n", "u.item")
    write(tmp_path, "", "u.data")
    assert find_item_features(tmp_path / "u.data") == tmp_path / "u.item"
    table = load_item_table(tmp_path / "u.item")
    assert table["genres"].tolist() == ["Action|Comedy", "unknown", "Action"]
    assert table["year"].tolist() == ["1995", "", "1995"]
    csv = 'movieId,title,genres\n1,"Heat, Again (1995)",Action|Crime\n2,Untitled,(no genres listed)\n'
    movies = load_item_table(write(tmp_path, csv, "movies.csv"))
    assert movies[["item_id", "genres", "year"]].values.tolist() == [
        ["1", "Action|Crime", "1995"],
        ["2", "(no genres listed)", ""],
    ]
    dat = load_item_table(write(tmp_path, "7::Sabrina: Redux (1995)::Comedy|Romance\n", "movies.dat"))
    assert dat.values.tolist() == [["7", "Sabrina: Redux (1995)", "Comedy|Romance", "1995"]]


def run_prepare(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PREPARE), *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def interactions(tmp_path: Path) -> Path:
    lines = ["user_id,item_id,timestamp"]
    lines += [f"u{u},{'abc'[(u + k) % 3]},{1000 + k}" for u in range(6) for k in range(3)]
    return write(tmp_path, "\n".join(lines) + "\n", "interactions.csv")


def test_prepare_writes_the_items_channel_with_cold_items(interactions: Path, tmp_path: Path) -> None:
    features = write(tmp_path, GOOD.replace("c,Gamma", "new,Gamma"), "catalog.csv")
    out = tmp_path / "prepared"
    result = run_prepare(
        "--input", interactions, "--output", out, "--eval-negatives", "1", "--item-features", features
    )
    assert result.returncode == 0, result.stderr
    assert "item features: 4 items" in result.stdout and "2 of them without interactions" in result.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["channels"]["items"]["files"] == ["part-00000.csv"]
    assert meta["item_features"]["cold_items"] == 2
    written = pd.read_csv(out / "items" / "part-00000.csv", dtype=str, keep_default_na=False)
    assert written["item_id"].tolist() == ["a", "b", "new", "d"]


def test_prepare_finds_items_csv_next_to_the_interactions_and_refuses_a_broken_one(
    interactions: Path, tmp_path: Path
) -> None:
    write(tmp_path, GOOD)
    assert (
        run_prepare("--input", tmp_path, "--output", tmp_path / "auto", "--eval-negatives", "1").returncode
        == 0
    )
    assert (tmp_path / "auto" / "items" / "part-00000.csv").is_file()
    none = run_prepare(
        "--input", tmp_path, "--output", tmp_path / "off", "--eval-negatives", "1", "--item-features", "none"
    )
    assert none.returncode == 0 and not (tmp_path / "off" / "items").exists()
    write(tmp_path, "item_id,genres\na,Drama\na,War\n")
    broken = run_prepare("--input", tmp_path, "--output", tmp_path / "broken", "--eval-negatives", "1")
    assert broken.returncode == 2
    assert broken.stderr.startswith("error: ") and "line 3, column 'item_id'" in broken.stderr
    assert not (tmp_path / "broken").exists()
