"""Synthetic interaction data, parameterised by size and structure (numpy and pandas only).

One generator serves the embedded default dataset (`data/generate_default.py`), the training-speed
benchmark and the scale benchmarks. Every dataset shares two ingredients:

- item popularity `(rank + popularity_offset) ** -popularity_exponent` over a random order of the items;
- heavy-tailed user activity: log-normal, at least `min_per_user`, at most `max_per_user`.

The structure is chosen by `genre_weights`:

- empty (`popularity only`): each user's items are drawn by popularity alone, vectorised over all
  users (20M pairs in seconds), with exactly `interactions` pairs in total (within 0.001 %); no
  ratings; timestamps a random permutation, so held-out items are random picks of a user's items.
- genres (`tastes`): items belong to 1-3 genres and have a hidden quality; each user has a taste over
  genres that drifts over their history and picks items by popularity and taste affinity, one user at
  a time (fine up to ~10k users); ratings 1-5 rise with affinity and quality; timestamps increase
  within a user. A learned model clearly beats popularity on such data.

Only `Generator.random` and `Generator.integers` draw randomness (their streams are fixed across numpy
versions); normals and Gumbels are derived from them here. The same spec gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

GENRES = (
    "Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Animation", "Horror", "Documentary",
    "Fantasy",
)  # fmt: skip
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
START = 1_514_764_800  # 2018-01-01 UTC: the first timestamp of the tastes structure
SPAN = 6 * 365 * 86_400


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and structure of a synthetic dataset.

    Size: `users`, `items`, and either `interactions` (the exact total: activity is each user's share
    of it, popularity-only structure) or, when it is None, each user's own activity
    `min_per_user + floor(exp(activity_mu + activity_sigma * z))` (tastes structure).
    Structure: `genre_weights` (one per genre, the first len(GENRES) names; empty: popularity only),
    and for tastes how strongly popularity and affinity drive a choice, how concentrated and how
    drifting tastes are, and how many items a user picks per taste step.
    """

    users: int
    items: int
    seed: int
    interactions: int | None = None
    min_per_user: int = 20
    max_per_user: int | None = None  # default: an eighth of the catalog
    activity_mu: float = 0.0
    activity_sigma: float = 1.0
    popularity_exponent: float = 1.0
    popularity_offset: float = 10.0
    genre_weights: tuple[float, ...] = ()
    taste_sharpness: float = 2.2
    max_drift: float = 0.35
    popularity_weight: float = 1.4
    affinity_weight: float = 3.0
    picks_per_step: int = 8

    @property
    def activity_cap(self) -> int:
        return self.max_per_user if self.max_per_user is not None else max(1, self.items // 8)

    def scaled_down(self, fraction: int) -> SyntheticSpec:
        """1/`fraction` of the users and interactions, over 4/`fraction` of the items (a denser set)."""
        interactions = None if self.interactions is None else self.interactions // fraction
        return replace(
            self, users=self.users // fraction, items=self.items // fraction * 4, interactions=interactions
        )


@dataclass(frozen=True)
class SyntheticData:
    """Interactions as parallel index arrays (`ratings` None without tastes) and the item catalog.

    `item_genres` (items × genres, 0/1), `item_years` and `item_titles` exist with tastes only.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None = None
    item_genres: np.ndarray | None = None
    item_years: np.ndarray | None = None
    item_titles: np.ndarray | None = None

    def frame(self, user_format: str = "u{}", item_format: str = "i{}") -> pd.DataFrame:
        """user_id, item_id[, rating], timestamp with ids formatted from 0-based indices."""
        columns = {
            "user_id": [user_format.format(u) for u in self.users.tolist()],
            "item_id": [item_format.format(i) for i in self.items.tolist()],
        }
        if self.ratings is not None:
            columns["rating"] = self.ratings
        return pd.DataFrame({**columns, "timestamp": self.timestamps})


def generate(spec: SyntheticSpec) -> SyntheticData:
    """The dataset `spec` describes, deterministic in `spec.seed`.

    Raises:
        ValueError: for a spec that cannot be met (an exact total with tastes, too few items, ...).
    """
    _check(spec)
    rng = np.random.default_rng(spec.seed)
    if spec.genre_weights:
        return _with_tastes(spec, rng)
    return _by_popularity(spec, rng)


def _check(spec: SyntheticSpec) -> None:
    if spec.users < 1 or spec.items < 1 or spec.min_per_user < 1:
        raise ValueError("a synthetic dataset needs at least one user, one item and one interaction per user")
    if spec.genre_weights and spec.interactions is not None:
        raise ValueError("the tastes structure draws each user's activity: leave interactions unset")
    if len(spec.genre_weights) > len(GENRES):
        raise ValueError(f"at most {len(GENRES)} genres")
    if spec.interactions is not None and spec.interactions < spec.min_per_user * spec.users:
        raise ValueError(
            f"{spec.interactions} interactions cannot give {spec.users} users {spec.min_per_user} each"
        )
    if spec.activity_cap < spec.min_per_user or spec.activity_cap > spec.items:
        raise ValueError(
            f"max_per_user {spec.activity_cap} must lie between min_per_user and the catalog size"
        )


# -- shared ingredients ----------------------------------------------------------------------------------


def normal(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Standard normal draws by Box-Muller from uniform draws."""
    u1, u2 = 1.0 - rng.random(shape), rng.random(shape)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def gumbel(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    return -np.log(-np.log(1.0 - rng.random(shape)))


def _log_popularity(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """log of (rank + offset) ** -exponent, ranks a random order of the items (0 = most popular)."""
    rank = np.argsort(rng.random(spec.items))
    return -spec.popularity_exponent * np.log(rank + spec.popularity_offset)


def _activity(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: log-normal, clipped to [min_per_user, cap]; summing to `interactions` if set."""
    z = normal(rng, spec.users)
    cap = spec.activity_cap
    if spec.interactions is None:
        return np.minimum(
            spec.min_per_user + np.floor(np.exp(spec.activity_mu + spec.activity_sigma * z)), cap
        )
    activity = np.exp(spec.activity_sigma * z)
    extra = spec.interactions - spec.min_per_user * spec.users
    counts = np.minimum(spec.min_per_user + np.floor(activity / activity.sum() * extra).astype(np.int64), cap)
    while (short := spec.interactions - int(counts.sum())) > 0:  # the capped users' share to the others
        room = np.flatnonzero(counts < cap)
        if not len(room):
            raise ValueError(
                f"{spec.interactions} interactions do not fit {spec.users} users of at most {cap}"
            )
        counts[room[np.argsort(-activity[room], kind="stable")][:short]] += 1
    return counts


# -- popularity only ---------------------------------------------------------------------------------------


def _by_popularity(spec: SyntheticSpec, rng: np.random.Generator) -> SyntheticData:
    log_popularity = _log_popularity(spec, rng)
    counts = _activity(spec, rng).astype(np.int64)
    users, items = _distinct_pairs(counts, np.exp(log_popularity), rng)
    return SyntheticData(users, items, 1_000_000_000 + np.argsort(rng.random(len(users))))


def _distinct_pairs(
    counts: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`counts[u]` distinct items per user u (within 0.001 % in all), drawn in proportion to `popularity`.

    Draws with replacement (twice as many as needed), drops duplicates, drops each user's surplus at
    random and draws the shortfall again, until at most 0.001 % of the pairs are missing.
    """
    num_users, num_items = len(counts), len(popularity)
    cdf = np.cumsum(popularity / popularity.sum())
    keys = np.zeros(0, np.int64)
    missing = counts.copy()
    while missing.sum() > counts.sum() // 100_000:  # the last rare pairs of heavy users: not worth it
        users = np.repeat(np.arange(num_users, dtype=np.int64), 2 * missing + 8)
        items = np.minimum(np.searchsorted(cdf, rng.random(len(users))), num_items - 1)
        keys = np.unique(np.concatenate([keys, users * num_items + items]))
        keys = _drop_surplus(keys, counts, num_items, rng)
        missing = counts - np.bincount(keys // num_items, minlength=num_users)
    return keys // num_items, keys % num_items


def _drop_surplus(
    keys: np.ndarray, counts: np.ndarray, num_items: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted `keys` (user * num_items + item) keeping at most `counts[user]` random pairs per user."""
    owner = keys // num_items
    if (np.bincount(owner, minlength=len(counts)) <= counts).all():
        return keys
    order = np.argsort(rng.random(len(keys)))
    owner = owner[order]
    by_user = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[by_user], np.arange(len(counts)))
    rank = np.empty(len(keys), np.int64)
    rank[by_user] = np.arange(len(keys)) - np.repeat(starts, np.bincount(owner, minlength=len(counts)))
    return np.sort(keys[order][rank < counts[owner]])


# -- tastes --------------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _catalog(spec: SyntheticSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Genres (one-hot rows), log popularity, quality, year and title of every item."""
    weights = np.asarray(spec.genre_weights)
    sizes = np.searchsorted(np.cumsum([0.5, 0.35, 0.15]), rng.random(spec.items), side="right") + 1
    # Weighted sampling without replacement: the `size` largest of log(weight) + Gumbel noise.
    keys = np.log(weights) + gumbel(rng, (spec.items, len(weights)))
    ranks = np.argsort(np.argsort(-keys, axis=1), axis=1)
    log_popularity = _log_popularity(spec, rng)
    quality = 0.5 * normal(rng, spec.items)
    years = 2024 - np.floor(60 * rng.random(spec.items) ** 2).astype(int)
    combos = np.argsort(rng.random(len(ADJECTIVES) * len(NOUNS)))[: spec.items]
    titles = np.array([f"The {ADJECTIVES[c // len(NOUNS)]} {NOUNS[c % len(NOUNS)]}" for c in combos])
    genres = (ranks < sizes[:, None]).astype(np.float64)
    return {
        "genres": genres,
        "log_popularity": log_popularity,
        "quality": quality,
        "years": years,
        "titles": titles,
    }


@dataclass(frozen=True)
class _Users:
    """Per-user draws of the tastes structure."""

    activity: np.ndarray
    start_taste: np.ndarray
    end_taste: np.ndarray
    drift: np.ndarray  # share of the end taste reached at the end of the history
    bias: np.ndarray
    first_time: np.ndarray
    mean_gap: np.ndarray  # 1 hour to 5 days between interactions

    @classmethod
    def draw(cls, spec: SyntheticSpec, rng: np.random.Generator) -> _Users:
        genres = len(spec.genre_weights)
        return cls(
            activity=_activity(spec, rng),
            start_taste=_softmax(spec.taste_sharpness * normal(rng, (spec.users, genres))),
            end_taste=_softmax(spec.taste_sharpness * normal(rng, (spec.users, genres))),
            drift=spec.max_drift * rng.random(spec.users),
            bias=0.4 * normal(rng, spec.users),
            first_time=START + np.floor(0.8 * SPAN * rng.random(spec.users)),
            mean_gap=np.exp(np.log(3_600) + np.log(5 * 24) * rng.random(spec.users)),
        )


def _with_tastes(spec: SyntheticSpec, rng: np.random.Generator) -> SyntheticData:
    catalog = _catalog(spec, rng)
    people = _Users.draw(spec, rng)
    rows = [_user_history(spec, rng, catalog, people, user) for user in range(spec.users)]
    table = np.concatenate(rows)
    table = table[np.lexsort((table[:, 0], table[:, 3]))]
    return SyntheticData(
        users=table[:, 0],
        items=table[:, 1],
        timestamps=table[:, 3],
        ratings=table[:, 2],
        item_genres=catalog["genres"],
        item_years=catalog["years"],
        item_titles=catalog["titles"],
    )


def _user_history(
    spec: SyntheticSpec, rng: np.random.Generator, catalog: dict[str, np.ndarray], people: _Users, user: int
) -> np.ndarray:
    """One user's rows (user, item, rating, timestamp): picks by popularity and drifting taste."""
    genre_share = catalog["genres"] / catalog["genres"].sum(axis=1, keepdims=True)
    n, step_size = int(people.activity[user]), spec.picks_per_step
    chosen = np.zeros(spec.items, dtype=bool)
    picks, affinities = [], []
    for start in range(0, n, step_size):
        progress = people.drift[user] * ((start + step_size / 2) / n)
        taste = (1 - progress) * people.start_taste[user] + progress * people.end_taste[user]
        affinity = genre_share @ taste
        score = spec.popularity_weight * catalog["log_popularity"] + spec.affinity_weight * np.log(affinity)
        score = np.where(chosen, -np.inf, score + gumbel(rng, spec.items))
        step = np.argsort(-score, kind="stable")[: min(step_size, n - start)]
        chosen[step] = True
        picks.append(step)
        affinities.append(affinity[step] / affinity.max())
    item = np.concatenate(picks)
    raw = 1.9 + 2.4 * np.concatenate(affinities) + catalog["quality"][item] + people.bias[user]
    rating = np.clip(np.rint(raw + 0.6 * normal(rng, n)), 1, 5)
    gaps = 1 + np.floor(-people.mean_gap[user] * np.log(1.0 - rng.random(n)))
    timestamp = people.first_time[user] + np.cumsum(gaps)
    return np.column_stack([np.full(n, user), item, rating, timestamp]).astype(np.int64)
