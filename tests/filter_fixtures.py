"""Synthetic items with filterable attributes, random filters, and a plain-Python reference evaluator.

The reference (`passes`) evaluates the parsed filter item by item over the raw attribute values and,
for interaction filters, one user's raw interactions (event type, age in days) with each item, with
none of the compiled form's code (no codes, bit sets, CSR arrays or TensorFlow), so the tests compare
two independent implementations of the documented semantics.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from ncf.data.features import ItemFeatures, parse_item_features
from ncf.serving.filter_grammar import INTERACTIONS, Comparison, Condition, Literal, parse_filter

GENRES = tuple(f"g{i}" for i in range(40))  # more than 32: two bit-set words
BRANDS = ("acme", "globex", "initech", "umbrella")
EVENT_TYPES = ("cart", "purchase", "view")
# One user's interactions with each item: {item position: [(event type, age in days), ...]}.
Interacted = dict[int, list[tuple[str, float]]]


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


def random_interaction_filters(rng: np.random.Generator) -> list[tuple[str, dict[str, list[str]]]]:
    """Five (filter text, parameter values) pairs that compare the user's interactions, alone and with
    item conditions."""
    days = str(int(rng.integers(5, 60)))
    event = str(rng.choice(EVENT_TYPES))
    genres = [str(g) for g in rng.choice(GENRES, 4, replace=False)]
    return [
        (
            'EXCLUDE ItemID WHERE Interactions.event_type IN ("purchase") AND Interactions.age_days < $DAYS',
            {"DAYS": [days]},
        ),
        (
            "INCLUDE ItemID WHERE Interactions.event_type = $EVENT OR Items.genres IN ($G)",
            {"EVENT": [event], "G": genres},
        ),
        ('EXCLUDE ItemID WHERE Interactions.age_days <= 30 AND Items.brand = "acme"', {}),
        (
            "INCLUDE ItemID WHERE Items.year > 1990"
            " | EXCLUDE ItemID WHERE Interactions.event_type IN ($EVENTS)",
            {"EVENTS": [event, "cart"]},
        ),
        (
            'EXCLUDE ItemID WHERE (Interactions.event_type = "view" AND Interactions.age_days > 50)'
            ' OR Interactions.event_type = "cart"',
            {},
        ),
    ]


def passes(
    text: str, values: dict[str, list[str]], table: pd.DataFrame, interacted: Interacted | None = None
) -> np.ndarray:
    """Whether each row of `table` passes the filter for a user who `interacted` with the items (None:
    with none), by direct evaluation (see the module docstring)."""
    expressions = parse_filter(text)
    rows = table.to_dict("records")
    interacted = interacted or {}
    return np.array(
        [
            all(_holds(e.condition, row, values, interacted.get(i, [])) == e.include for e in expressions)
            for i, row in enumerate(rows)
        ],
        bool,
    )


def _holds(condition: Condition, row: dict, values: dict[str, list[str]], events: list) -> bool:
    """`condition` for one item and the user's interactions with it, `events` [(event type, age)]: the
    Interactions comparisons ANDed together must hold for one interaction."""
    if isinstance(condition, Comparison):
        if condition.dataset == INTERACTIONS:
            return any(_interaction_holds(condition, event, values) for event in events)
        return _compare(condition, row, values)
    if not condition.conjunction:
        return any(_holds(part, row, values, events) for part in condition.parts)
    together = [p for p in condition.parts if isinstance(p, Comparison) and p.dataset == INTERACTIONS]
    others = [p for p in condition.parts if p not in together]
    same_one = not together or any(all(_interaction_holds(c, e, values) for c in together) for e in events)
    return same_one and all(_holds(part, row, values, events) for part in others)


def _interaction_holds(
    comparison: Comparison, event: tuple[str, float], values: dict[str, list[str]]
) -> bool:
    kind, age = event
    operands = _operands(comparison, values)
    operator = comparison.operator
    if comparison.column == "event_type":
        found = kind in operands
        return not found if operator in ("!=", "NOT IN") else found
    numbers = [float(o) for o in operands]
    checks = {"<": age < numbers[0], "<=": age <= numbers[0], ">": age > numbers[0], ">=": age >= numbers[0]}
    if operator in checks:
        return checks[operator]
    found = any(math.isclose(age, n) for n in numbers)
    return not found if operator in ("!=", "NOT IN") else found


def _operands(comparison: Comparison, values: dict[str, list[str]]) -> list:
    return [
        v.value if isinstance(v, Literal) else given
        for v in comparison.values
        for given in ([None] if isinstance(v, Literal) else values[v.name])
    ]


def _compare(comparison: Comparison, row: dict, values: dict[str, list[str]]) -> bool:
    raw = str(row[comparison.column]).strip()
    if raw == "":
        return False
    operands = _operands(comparison, values)
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
