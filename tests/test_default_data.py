"""The embedded default dataset: reproducible from its generator, with the structure it promises."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ncf.data.interactions import load_interactions
from ncf.data.splitting import SplitOptions, split_interactions

DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT = DATA / "default"
_spec = importlib.util.spec_from_file_location("generate_default_script", DATA / "generate_default.py")
generator = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = generator
_spec.loader.exec_module(generator)


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    return pd.read_csv(DEFAULT / "interactions.csv", dtype={"user_id": str, "item_id": str})


@pytest.fixture(scope="module")
def items() -> pd.DataFrame:
    return pd.read_csv(DEFAULT / "items.csv", dtype=str, keep_default_na=False)


def test_generator_is_deterministic_and_made_the_committed_files(tmp_path: Path) -> None:
    generator.write(tmp_path / "a")
    generator.write(tmp_path / "b")
    for name in ("interactions.csv", "items.csv"):
        made = (tmp_path / "a" / name).read_bytes()
        assert made == (tmp_path / "b" / name).read_bytes()
        assert made == (DEFAULT / name).read_bytes(), f"data/default/{name} is stale: run make default-data"


def test_sizes_ids_and_values(interactions: pd.DataFrame, items: pd.DataFrame) -> None:
    assert (DEFAULT / "interactions.csv").stat().st_size < 2_000_000
    assert list(interactions.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert interactions["user_id"].nunique() == 1500
    assert interactions["item_id"].nunique() <= 800
    assert 60_000 <= len(interactions) <= 80_000
    assert interactions["user_id"].str.fullmatch(r"u\d{4}").all()
    assert interactions["item_id"].str.fullmatch(r"i\d{4}").all()
    assert set(interactions["rating"]) == {1, 2, 3, 4, 5}
    assert not interactions.duplicated(["user_id", "item_id"]).any()
    assert set(interactions["item_id"]) <= set(items["item_id"])


def test_heavy_tailed_activity_and_zipf_like_popularity(interactions: pd.DataFrame) -> None:
    activity = interactions["user_id"].value_counts()
    assert activity.min() >= 5
    assert activity.max() > 5 * activity.median()
    popularity = interactions["item_id"].value_counts().to_numpy()
    assert popularity[: len(popularity) // 10].sum() > 0.3 * popularity.sum()  # top 10 % of items
    assert popularity[0] > 10 * np.median(popularity)


def test_timestamps_increase_within_each_user(interactions: pd.DataFrame) -> None:
    assert interactions.groupby("user_id")["timestamp"].is_monotonic_increasing.all()
    assert (
        interactions.groupby("user_id")["timestamp"]
        .nunique()
        .eq(interactions["user_id"].value_counts())
        .all()
    )


def test_items_have_one_to_three_known_genres_a_title_and_a_year(items: pd.DataFrame) -> None:
    assert list(items.columns) == ["item_id", "title", "genres", "year"]
    assert len(items) == 800
    genres = items["genres"].str.split("|")
    assert genres.map(len).between(1, 3).all()
    assert set().union(*genres) == set(generator.GENRES)
    assert items["year"].astype(int).between(1950, 2024).all()
    assert items["title"].map(lambda t: bool(re.fullmatch(r"The \w[\w-]* \w+", t))).all()


def test_taste_beats_popularity() -> None:
    """Item-to-item co-occurrence (a stand-in for a learned model) ranks the held-out item far better."""
    split = split_interactions(load_interactions(DEFAULT).frame, SplitOptions(eval_negatives=99))
    users = pd.Index(split.train["user_id"].unique())
    catalog = pd.Index(pd.concat([split.train["item_id"], split.test["item_id"]]).unique())
    seen = np.zeros((len(users), len(catalog)), dtype=np.float32)
    seen[users.get_indexer(split.train["user_id"]), catalog.get_indexer(split.train["item_id"])] = 1
    cooccurrence = seen.T @ seen
    np.fill_diagonal(cooccurrence, 0)
    cooccurrence /= np.sqrt(np.outer(seen.sum(0), seen.sum(0))) + 1e-9
    test_users = users.get_indexer(split.test["user_id"].to_numpy()[::100])
    candidates = catalog.get_indexer(split.test["item_id"]).reshape(-1, 100)  # positive first

    def hit_rate(scores: np.ndarray) -> float:
        return float(((scores[:, 1:] >= scores[:, :1]).sum(axis=1) < 10).mean())

    popularity = hit_rate(seen.sum(0)[candidates])
    taste = hit_rate(np.take_along_axis(seen[test_users] @ cooccurrence, candidates, axis=1))
    assert 0.25 < popularity < 0.5
    assert taste > popularity + 0.25
