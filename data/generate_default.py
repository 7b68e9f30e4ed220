"""Generate the embedded default dataset in data/default/ (synthetic, deterministic, numpy only).

    python data/generate_default.py --output data/default

Writes interactions.csv (user_id,item_id,rating,timestamp) and items.csv (item_id,title,genres,year) for
1,500 users and 800 items, with the structure of real feedback data so that a learned model clearly
beats a popularity ranking, while popularity is still a fair baseline:

- 10 genres of unequal size; each item belongs to 1-3 of them and has a Zipf-like popularity
  (weight ~ 1 / rank) and a hidden quality.
- Each user has a taste over the genres, concentrated on a few, that drifts slowly from a start taste
  towards an end taste over the user's history; activity is heavy-tailed (at least 5 interactions).
- A user picks items by popularity and taste affinity, without picking the same item twice; ratings
  1-5 rise with affinity and item quality (plus a user bias and noise); timestamps increase within a user.

Only `Generator.random` and `Generator.integers` draw randomness (their streams are fixed across numpy
versions); every other distribution is derived from them here. The same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 20240601
N_USERS = 1500
N_ITEMS = 800
GENRES = (
    "Drama",
    "Comedy",
    "Action",
    "Thriller",
    "Romance",
    "Sci-Fi",
    "Animation",
    "Horror",
    "Documentary",
    "Fantasy",
)
GENRE_WEIGHTS = np.array([0.20, 0.17, 0.13, 0.11, 0.10, 0.08, 0.07, 0.06, 0.04, 0.04])
MIN_ACTIVITY = 5
MAX_ACTIVITY = 400
STEP = 8  # interactions chosen per taste step (the taste drifts between steps)
POPULARITY_WEIGHT = 1.4  # weight of log popularity in a user's choice
AFFINITY_WEIGHT = 3.0  # weight of log taste affinity
START = 1_514_764_800  # 2018-01-01 UTC
SPAN = 6 * 365 * 86_400

ADJECTIVES = (
    "Silent", "Broken", "Golden", "Hidden", "Last", "Crimson", "Distant", "Electric", "Frozen", "Gentle",
    "Hollow", "Iron", "Lonely", "Midnight", "Northern", "Paper", "Quiet", "Restless", "Secret", "Shining",
    "Stolen", "Summer", "Velvet", "Wild", "Winter", "Burning", "Final", "Little", "Open", "Strange",
)  # fmt: skip
NOUNS = (
    "Harbor", "Garden", "Empire", "River", "Letter", "Mirror", "Station", "Horizon", "Machine", "Kingdom",
    "Island", "Promise", "Shadow", "Voyage", "Orchard", "Signal", "Canyon", "Festival", "Lantern", "Frontier",
    "Circus", "Compass", "Detective", "Echo", "Fortress", "Journey", "Melody", "Planet", "Storm", "Witness",
)  # fmt: skip


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal draws by Box-Muller from uniform draws."""
    u1, u2 = 1.0 - rng.random(shape), rng.random(shape)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _gumbel(rng: np.random.Generator, shape) -> np.ndarray:
    return -np.log(-np.log(1.0 - rng.random(shape)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_items(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Genres (one-hot rows), log popularity, quality, year and title of every item."""
    n_genres = len(GENRES)
    sizes = np.searchsorted(np.cumsum([0.5, 0.35, 0.15]), rng.random(N_ITEMS), side="right") + 1
    # Weighted sampling without replacement: the `size` largest of log(weight) + Gumbel noise.
    keys = np.log(GENRE_WEIGHTS) + _gumbel(rng, (N_ITEMS, n_genres))
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    genres = (ranks < sizes[:, None]).astype(np.float64)
    popularity_rank = np.argsort(rng.random(N_ITEMS)) + 1
    log_popularity = -1.0 * np.log(popularity_rank)
    quality = 0.5 * _normal(rng, N_ITEMS)
    years = 2024 - np.floor(60 * rng.random(N_ITEMS) ** 2).astype(int)
    combos = np.argsort(rng.random(len(ADJECTIVES) * len(NOUNS)))[:N_ITEMS]
    titles = np.array([f"The {ADJECTIVES[c // len(NOUNS)]} {NOUNS[c % len(NOUNS)]}" for c in combos])
    return {
        "genres": genres,
        "log_popularity": log_popularity,
        "quality": quality,
        "years": years,
        "titles": titles,
    }


def make_interactions(rng: np.random.Generator, items: dict[str, np.ndarray]) -> np.ndarray:
    """Rows (user, item, rating, timestamp) as an int64 array, sorted by timestamp then user."""
    genres = items["genres"]
    genre_share = genres / genres.sum(axis=1, keepdims=True)
    activity = np.minimum(MIN_ACTIVITY + np.floor(np.exp(3.25 + 0.95 * _normal(rng, N_USERS))), MAX_ACTIVITY)
    start_taste = _softmax(2.2 * _normal(rng, (N_USERS, len(GENRES))))
    end_taste = _softmax(2.2 * _normal(rng, (N_USERS, len(GENRES))))
    drift = 0.35 * rng.random(N_USERS)  # share of the end taste reached at the end of the history
    user_bias = 0.4 * _normal(rng, N_USERS)
    first_time = START + np.floor(0.8 * SPAN * rng.random(N_USERS))
    mean_gap = np.exp(np.log(3_600) + np.log(5 * 24) * rng.random(N_USERS))  # 1 hour to 5 days
    rows = []
    for user in range(N_USERS):
        n = int(activity[user])
        chosen = np.zeros(N_ITEMS, dtype=bool)
        picks, affinities = [], []
        for start in range(0, n, STEP):
            progress = (start + STEP / 2) / n
            taste = (1 - drift[user] * progress) * start_taste[user] + drift[user] * progress * end_taste[
                user
            ]
            affinity = genre_share @ taste
            score = POPULARITY_WEIGHT * items["log_popularity"] + AFFINITY_WEIGHT * np.log(affinity)
            score = np.where(chosen, -np.inf, score + _gumbel(rng, N_ITEMS))
            step = np.argsort(-score, kind="stable")[: min(STEP, n - start)]
            chosen[step] = True
            picks.append(step)
            affinities.append(affinity[step] / affinity.max())
        item = np.concatenate(picks)
        relative_affinity = np.concatenate(affinities)
        raw = 1.9 + 2.4 * relative_affinity + items["quality"][item] + user_bias[user]
        rating = np.clip(np.rint(raw + 0.6 * _normal(rng, n)), 1, 5)
        gaps = 1 + np.floor(-mean_gap[user] * np.log(1.0 - rng.random(n)))
        timestamp = first_time[user] + np.cumsum(gaps)
        rows.append(np.column_stack([np.full(n, user), item, rating, timestamp]).astype(np.int64))
    table = np.concatenate(rows)
    return table[np.lexsort((table[:, 0], table[:, 3]))]


def write(output: Path, seed: int = SEED) -> None:
    rng = np.random.default_rng(seed)
    items = make_items(rng)
    table = make_interactions(rng, items)
    output.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,rating,timestamp"]
    lines += [f"u{u + 1:04d},i{i + 1:04d},{r},{t}" for u, i, r, t in table.tolist()]
    (output / "interactions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    item_lines = ["item_id,title,genres,year"]
    for index in range(N_ITEMS):
        names = "|".join(g for g, on in zip(GENRES, items["genres"][index], strict=True) if on)
        item_lines.append(f"i{index + 1:04d},{items['titles'][index]},{names},{items['years'][index]}")
    (output / "items.csv").write_text("\n".join(item_lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parent / "default", help="folder to write"
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help="random seed (the committed data uses the default)"
    )
    args = parser.parse_args(argv)
    write(args.output, args.seed)
    print(f"wrote {args.output / 'interactions.csv'} and {args.output / 'items.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
