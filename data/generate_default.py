"""Generate the embedded default dataset in data/default/ (synthetic, deterministic).

    python data/generate_default.py --output data/default

Writes interactions.csv (user_id,item_id,rating,timestamp) and items.csv (item_id,title,genres,year):
1,500 users and 800 items from `synthetic` (tests/benchmarks/synthetic.py) with its tastes structure
(genres, drifting tastes, popularity skew, ratings), so that a learned model clearly beats popularity
while popularity is still a fair baseline. What the data looks like: data/default/README.md; the
generator lives beside the benchmarks that share it, outside the training bundle.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "tests" / "benchmarks")
if _BENCHMARKS not in sys.path:
    sys.path.insert(0, _BENCHMARKS)

from synthetic import GENRES, SyntheticData, SyntheticSpec, generate  # noqa: E402

SPEC = SyntheticSpec(
    users=1500,
    items=800,
    seed=20240601,
    min_per_user=5,
    max_per_user=400,
    activity_mu=3.25,
    activity_sigma=0.95,
    popularity_exponent=1.0,
    popularity_offset=1.0,
    genre_weights=(0.20, 0.17, 0.13, 0.11, 0.10, 0.08, 0.07, 0.06, 0.04, 0.04),
)
SEED = SPEC.seed


def write(output: Path, seed: int = SEED) -> None:
    """Generate the dataset with `seed` and write its two CSV files into `output`."""
    data = generate(replace(SPEC, seed=seed))
    output.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,rating,timestamp"]
    rows = zip(
        data.users.tolist(), data.items.tolist(), data.ratings.tolist(), data.timestamps.tolist(), strict=True
    )
    lines += [f"u{u + 1:04d},i{i + 1:04d},{r},{t}" for u, i, r, t in rows]
    (output / "interactions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (output / "items.csv").write_text("\n".join(_item_lines(data)) + "\n", encoding="utf-8")


def _item_lines(data: SyntheticData) -> list[str]:
    assert data.item_genres is not None and data.item_titles is not None and data.item_years is not None
    lines = ["item_id,title,genres,year"]
    for index, (genres, title, year) in enumerate(
        zip(data.item_genres, data.item_titles, data.item_years, strict=True)
    ):
        names = "|".join(g for g, on in zip(GENRES, genres, strict=False) if on)
        lines.append(f"i{index + 1:04d},{title},{names},{year}")
    return lines


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
