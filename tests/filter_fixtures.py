"""Synthetic items with filterable attributes, random filters, and a plain-Python reference evaluator.

The reference (`passes`) evaluates the parsed filter item by item over the raw attribute values, with
none of the compiled form's code (no codes, bit sets or TensorFlow), so the tests compare two
independent implementations of the documented semantics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from ncf.data.features import ItemFeatures, parse_item_features
from ncf.serving.filter_grammar import Comparison, Condition, Literal, parse_filter

GENRES = tuple(f"g{i}" for i in range(40))  # more than 32: two bit-set words
BRANDS = ("acme", "globex", "initech", "umbrella")


def item_table(item_ids: list[str], seed: int = 0) -> pd.DataFrame:
    """genres (multi, 1-3 of 40), year (numeric, some missing), brand (categorical), on_sale (boolean)."""
    rng = np.random.default_rng(seed)
    genres = ["|".join(rng.choice(GENRES, rng.integers(1, 4), replace=False)) for _ in item_ids]
    years = [str(int(y)) if rng.random() > 0.05 else "" for y in rng.integers(1970, 2024, len(item_ids))]
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "genres": genres,
            "year": years,
            "brand": rng.choice(BRANDS, len(item_ids)),
            "on_sale": rng.choice(["true", "false"], len(item_ids)),
        }
    )


def item_features(item_ids: list[str], seed: int = 0) -> ItemFeatures:
    return parse_item_features([(Path("items.csv"), item_table(item_ids, seed))])


def random_filters(rng: np.random.Generator) -> list[tuple[str, dict[str, list[str]]]]:
    """Ten (filter text, parameter values) pairs: with and without parameters, selective and broad."""

    def genres(n: int) -> list[str]:
        return [str(g) for g in rng.choice(GENRES, n, replace=False)]

    year = str(int(rng.integers(1975, 2020)))
    quoted = ", ".join(f'"{g}"' for g in genres(2))
    return [
        ("INCLUDE ItemID WHERE Items.genres IN ($GENRES)", {"GENRES": genres(2)}),
        (f"EXCLUDE ItemID WHERE Items.genres IN ({quoted})", {}),
        ("INCLUDE ItemID WHERE Items.year >= $MIN_YEAR AND Items.year < 2020", {"MIN_YEAR": [year]}),
        (
            "INCLUDE ItemID WHERE Items.brand = $BRAND | EXCLUDE ItemID WHERE Items.on_sale = false",
            {"BRAND": [str(rng.choice(BRANDS))]},
        ),
        ("INCLUDE ItemID WHERE Items.genres NOT IN ($G) OR Items.year > 2015", {"G": genres(3)}),
        ("INCLUDE ItemID WHERE Items.on_sale = $SALE", {"SALE": [str(rng.choice(["true", "false"]))]}),
        ('INCLUDE ItemID WHERE Items.brand IN ("acme", "umbrella")', {}),
        ("EXCLUDE ItemID WHERE Items.year <= $MAX_YEAR", {"MAX_YEAR": [year]}),
        (
            'INCLUDE ItemID WHERE Items.genres = $G AND Items.brand != "acme"'
            " | INCLUDE ItemID WHERE Items.year != 1999",
            {"G": genres(1)},
        ),
        (
            f"INCLUDE ItemID WHERE (Items.year < 1980 OR Items.year > 2018) AND Items.genres IN ({quoted})",
            {},
        ),
    ]


def passes(text: str, values: dict[str, list[str]], table: pd.DataFrame) -> np.ndarray:
    """Whether each row of `table` passes the filter, by direct evaluation (see the module docstring)."""
    expressions = parse_filter(text)
    rows = table.to_dict("records")
    return np.array(
        [all(_holds(e.condition, row, values) == e.include for e in expressions) for row in rows], bool
    )


def _holds(condition: Condition, row: dict, values: dict[str, list[str]]) -> bool:
    if isinstance(condition, Comparison):
        return _compare(condition, row, values)
    results = [_holds(part, row, values) for part in condition.parts]
    return all(results) if condition.conjunction else any(results)


def _compare(comparison: Comparison, row: dict, values: dict[str, list[str]]) -> bool:
    raw = str(row[comparison.column]).strip()
    if raw == "":
        return False
    operands = [
        v.value if isinstance(v, Literal) else given
        for v in comparison.values
        for given in ([None] if isinstance(v, Literal) else values[v.name])
    ]
    operator = comparison.operator
    if comparison.column == "year":
        year, numbers = float(raw), [float(o) for o in operands]
        if operator in ("<", "<=", ">", ">="):
            return {"<": year < numbers[0], "<=": year <= numbers[0], ">": year > numbers[0]}.get(
                operator, year >= numbers[0]
            )
        found = any(math.isclose(year, n) for n in numbers)
    elif comparison.column == "on_sale":
        found = any(raw == ("true" if o in (True, "true") else "false") for o in operands)
    else:
        found = bool(set(raw.split("|")) & set(operands))
    return not found if operator in ("!=", "NOT IN") else found
