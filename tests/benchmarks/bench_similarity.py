"""Similarity benchmark: do an item's most similar items share its genre? MovieLens 100K, every measure.

1. A default model is trained by the real `training/prepare.py` + `training/train.py` (or `--model DIR`
   reuses an exported MODEL_DIR, the folder holding 1/).
2. For every item of the exported model with at least one genre in `u.item` (the "unknown" flag is not
   a genre), its top-10 similar items are found by each measure: `cosine` through the SavedModel's own
   `similar_items` signature (the default export), `jaccard` and `pearson` through `ncf.serving.similarity`'s
   index built from the interactions stored in that SavedModel (what `--similarity jaccard|pearson`
   would export from the same training data). The figure is the share of those 10 items that share at
   least one genre with the query, averaged over queries; "random" is its exact expectation for 10 other
   items drawn at random from the catalog (per query: the share of all other items sharing a genre).
   Both are reported for all items and for items with at least 20 training interactions.
3. The lists for a few well-known movies, with titles, for the README.

Results: tests/benchmarks/results/similarity.json (similarity-quick.json with --quick) and a Markdown
snippet (printed and written next to it as similarity.md / similarity-quick.md).

Run from the repository root: `.venv/bin/python tests/benchmarks/bench_similarity.py [--quick] [--model DIR]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import common
import numpy as np
import pandas as pd

K = 10
WELL_SETTLED = 20  # interactions an item needs to count in the "popular items" figure
EXAMPLES = ("Star Wars (1977)", "Toy Story (1995)", "Fargo (1996)", "Scream (1996)")
MEASURES = ("cosine", "jaccard", "pearson")
GENRE_COLUMNS = 19  # u.item: id|title|release|video release|IMDb URL|19 genre flags (the first "unknown")
GENRES = GENRE_COLUMNS - 1
BATCH = 256


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help="MovieLens 100K folder (default: data/raw/ml-100k, ../shared)"
    )
    parser.add_argument(
        "--model", type=Path, help="an exported MODEL_DIR (with 1/) to reuse instead of training"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, no refit, -quick results")
    parser.add_argument(
        "--work-dir", type=Path, help="where to prepare and train (default: a temporary folder)"
    )
    return parser.parse_args(argv)


def read_movies(data_dir: Path) -> pd.DataFrame:
    """u.item as item_id (str) -> title, genres (frozenset of genre flag positions, "unknown" left out)."""
    path = data_dir / "u.item"
    if not path.is_file():
        raise common.BenchError(f"{path}: not found (the genres come from MovieLens 100K's u.item)")
    raw = pd.read_csv(path, sep="|", header=None, dtype=str, encoding="latin-1", keep_default_na=False)
    if raw.shape[1] != 5 + GENRE_COLUMNS:
        raise common.BenchError(
            f"{path}: expected {5 + GENRE_COLUMNS} '|'-separated columns, got {raw.shape[1]}"
        )
    flags = raw.iloc[:, 6:].to_numpy() == "1"
    return pd.DataFrame(
        {"title": raw[1].to_numpy(), "genres": [frozenset(np.flatnonzero(row)) for row in flags]},
        index=raw[0].to_numpy(),
    )


def train_default_model(data_dir: Path, work: Path, quick: bool) -> Path:
    prepared = work / "prepared"
    print(f"preparing {data_dir} -> {prepared}", flush=True)
    common.prepare(data_dir, prepared, work)
    flags = ("--epochs", "2", "--refit", "false") if quick else ()
    command = common.train_command(prepared, work / "model", work / "output", *flags)
    print(f"training: {common.shell_command(command)}", flush=True)
    log_path = work / "train.log"
    run = common.run_measured(command, log_path, show=common.is_progress_line, prefix="  ")
    common.check_success(run, "train.py", log_path)
    return work / "model"


class Neighbours:
    """Top-k similar items by each measure, for one exported model."""

    def __init__(self, model_dir: Path) -> None:
        import tensorflow as tf
        from ncf.data.vocab import UserItemSets
        from ncf.models.memory import DEFAULT_MEMORY_BUDGET_MB, budget_bytes
        from ncf.serving.similarity import SimilarityIndex, transpose

        saved = model_dir / "1"
        if not (saved / "saved_model.pb").is_file():
            raise common.BenchError(f"{saved}: no SavedModel there (--model takes the MODEL_DIR holding 1/)")
        self.tf = tf
        self.loaded = tf.saved_model.load(str(saved))
        self.item_ids = np.array([i.decode() for i in self.loaded.item_ids.numpy()], dtype=object)
        # The served interactions (training + validation positives after the refit) as the export holds
        # them; the last offset row is the empty "unknown user" row, not a user.
        offsets = self.loaded.seen_offsets.numpy()[:-1]
        seen = UserItemSets(offsets, self.loaded.seen_items.numpy().astype(np.int32))
        self.counts = np.bincount(seen.items, minlength=len(self.item_ids))
        by_item = transpose(seen, len(self.item_ids))
        budget = budget_bytes(DEFAULT_MEMORY_BUDGET_MB)  # what train.py's export uses by default
        self.indexes = {
            measure: SimilarityIndex.interactions(measure, by_item, seen, "similar_items", budget)
            for measure in ("jaccard", "pearson")
        }

    def top(self, measure: str, positions: np.ndarray) -> list[list[str]]:
        """The K most similar item ids (raw) of each item position."""
        found: list[list[str]] = []
        for start in range(0, len(positions), BATCH):
            batch = positions[start : start + BATCH]
            if measure == "cosine":
                out = self.loaded.signatures["similar_items"](
                    item_id=self.tf.constant(self.item_ids[batch].astype(str)), k=self.tf.constant(K)
                )
                rows = [[i.decode() for i in row if i] for row in out["item_ids"].numpy()]
            else:
                indices, _ = self.indexes[measure].top_k(self.tf.constant(batch), self.tf.constant(K))
                rows = [[self.item_ids[i] for i in row if i >= 0] for row in indices.numpy()]
            found += rows
        return found

    def scored(self, measure: str, position: int) -> list[tuple[str, float]]:
        """(item id, score) of one item's K neighbours, for the example lists."""
        tf = self.tf
        if measure == "cosine":
            out = self.loaded.signatures["similar_items"](
                item_id=tf.constant([str(self.item_ids[position])]), k=tf.constant(K)
            )
            ids = [i.decode() for i in out["item_ids"].numpy()[0]]
            return [(i, float(s)) for i, s in zip(ids, out["scores"].numpy()[0], strict=True) if i]
        indices, scores = self.indexes[measure].top_k(tf.constant([position]), tf.constant(K))
        pairs = zip(indices.numpy()[0], scores.numpy()[0], strict=True)
        return [(self.item_ids[i], float(s)) for i, s in pairs if i >= 0]


def genre_overlap(queries: list[str], lists: list[list[str]], movies: pd.DataFrame) -> float:
    """Mean over queries of the share of their listed items that share a genre with them."""
    genres = movies["genres"]
    shares = [
        sum(bool(genres[q] & genres.get(n, frozenset())) for n in found) / K
        for q, found in zip(queries, lists, strict=True)
    ]
    return float(np.mean(shares))


def random_overlap(queries: list[str], catalog: list[str], movies: pd.DataFrame) -> float:
    """Expected share for K random other catalog items: per query, the share of all others sharing a genre."""
    known = [movies["genres"].get(i, frozenset()) for i in catalog]
    matrix = np.zeros((len(catalog), GENRES), dtype=np.float32)
    for row, genres in enumerate(known):
        matrix[row, list(genres)] = 1.0
    shares_genre = (matrix @ matrix.T) > 0
    where = {item: row for row, item in enumerate(catalog)}
    rows = np.array([where[q] for q in queries])
    return float(np.mean((shares_genre[rows].sum(axis=1) - 1) / (len(catalog) - 1)))


def run(args: argparse.Namespace) -> int:
    header = common.run_header("similarity", args.quick)
    data_dir = common.find_movielens_100k(args.data)
    movies = read_movies(data_dir)
    with tempfile.TemporaryDirectory(prefix="bench-similarity-") as scratch:
        work = (args.work_dir or Path(scratch)).resolve()
        model_dir = args.model.resolve() if args.model else train_default_model(data_dir, work, args.quick)
        neighbours = Neighbours(model_dir)
        catalog = list(neighbours.item_ids)
        with_genre = [p for p, item in enumerate(catalog) if movies["genres"].get(item)]
        settled = [p for p in with_genre if neighbours.counts[p] >= WELL_SETTLED]
        groups = {"all": with_genre, f"at_least_{WELL_SETTLED}_interactions": settled}
        overlap: dict[str, Any] = {}
        for group, positions in groups.items():
            queries = [catalog[p] for p in positions]
            overlap[group] = {"items": len(positions), "random": random_overlap(queries, catalog, movies)}
            for measure in MEASURES:
                print(f"{measure}: top-{K} of {len(positions)} items ({group})", flush=True)
                overlap[group][measure] = genre_overlap(
                    queries, neighbours.top(measure, np.array(positions)), movies
                )
        titles = movies["title"]
        position_of = {title: catalog.index(item) for item, title in titles.items() if item in catalog}
        examples = {
            title: {
                measure: [
                    {"item_id": item, "title": titles.get(item, "?"), "score": round(score, 4)}
                    for item, score in neighbours.scored(measure, position_of[title])
                ]
                for measure in MEASURES
            }
            for title in EXAMPLES
            if title in position_of
        }
    results = {
        **header,
        "dataset": {"name": "MovieLens 100K", "path": str(data_dir)},
        "model": str(args.model) if args.model else "default train.py settings (trained by this run)",
        "k": K,
        "genre_overlap": overlap,
        "examples": examples,
    }
    path = common.write_results(common.results_path("similarity", args.quick), results)
    snippet = markdown(results)
    path.with_suffix(".md").write_text(snippet + "\n")
    print(f"\n{snippet}\n\nresults: {path}", flush=True)
    return 0


def markdown(results: dict[str, Any]) -> str:
    """The README snippet: the genre-overlap table, then each example movie's lists side by side."""
    overlap = results["genre_overlap"]
    headers = ["items", "count", "random", *MEASURES]
    rows = [
        [group.replace("_", " "), figures["items"], *(f"{figures[m]:.3f}" for m in ("random", *MEASURES))]
        for group, figures in overlap.items()
    ]
    parts = [
        f"Share of each movie's top-{K} similar movies that share at least one genre with it "
        "(MovieLens 100K genres from u.item; random = expected share for 10 random other movies):",
        "",
        common.markdown_table(headers, rows),
    ]
    for title, lists in results["examples"].items():
        parts += ["", f"**{title}**", ""]
        table_rows = [
            [rank + 1, *(_cell(lists[m], rank) for m in MEASURES)]
            for rank in range(max(map(len, lists.values())))
        ]
        parts.append(common.markdown_table(["#", *MEASURES], table_rows))
    return "\n".join(parts)


def _cell(neighbours: list[dict[str, Any]], rank: int) -> str:
    if rank >= len(neighbours):
        return ""
    found = neighbours[rank]
    return f"{found['title']} ({found['score']:.2f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
