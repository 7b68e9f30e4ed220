"""Filters declared at training time, checked against the item attributes (pure numpy: no TensorFlow).

Filters are declared at training time (a JSON file `{"name": "INCLUDE ItemID WHERE ...", ...}`, the
`filters` setting; by default `filters.json` in the items channel), because only there are the item
attributes and the catalog complete: the export checks every filter against them (columns, operators,
literal values) and stores both in the SavedModel (`ncf.serving.filters`), so the endpoint, Batch
Transform and SDK local mode all apply the same filters and a model never meets a filter it was not
checked against. Checked before training starts, so a typo costs seconds, not a training job.

Item attributes come from the items channel, aligned to the item vocabulary, one array per column:

- categorical: dictionary-encoded, an int32 code per item (-1: no value), and its vocabulary;
- multi-valued (`genres`): a bit set per item, int32 words [items, ceil(values / 32)];
- numeric: float32 (NaN: no value); boolean (a column of `true`/`false`): uint8 (2: no value).

At a million items with 20 genres, a year, a brand and a flag that is 17 MB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncf.data.features import ItemFeatures, read_item_features
from ncf.errors import NcfError
from ncf.serving.filter_grammar import (
    LIST_OPERATORS,
    Expression,
    FilterSyntaxError,
    Literal,
    Param,
    comparisons,
    parse_filter,
)
from ncf.train_settings import TrainConfig

CATEGORICAL, MULTI, NUMERIC, BOOLEAN = "categorical", "multi", "numeric", "boolean"
_OPERATORS_OF = {
    CATEGORICAL: ("IN", "NOT IN", "=", "!="),
    MULTI: ("IN", "NOT IN", "=", "!="),
    BOOLEAN: ("=", "!="),
    NUMERIC: ("IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="),
}
NUMBER_PATTERN = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
BOOL_MISSING = 2


@dataclass(frozen=True)
class ParamSpec:
    """A filter's `$NAME`: the column it is compared with, its kind, and whether it takes a list."""

    name: str
    column: str
    kind: str
    takes_list: bool


@dataclass(frozen=True)
class CheckedFilter:
    """A named filter, parsed and checked against the item attributes."""

    name: str
    text: str
    expressions: tuple[Expression, ...]
    params: tuple[ParamSpec, ...]

    def describe(self) -> dict:
        """What the SavedModel's filter metadata says of this filter."""
        return {
            "filter": self.text,
            "parameters": {
                p.name: {"column": p.column, "kind": p.kind, "list": p.takes_list} for p in self.params
            },
        }


@dataclass(frozen=True)
class ItemAttributes:
    """The filterable item columns, aligned to the item vocabulary (see the module docstring)."""

    kinds: dict[str, str]
    vocabularies: dict[str, tuple[str, ...]]  # categorical, multi and boolean columns
    arrays: dict[str, np.ndarray]

    @classmethod
    def from_features(cls, features: ItemFeatures, item_ids: np.ndarray) -> ItemAttributes:
        """Encode `features` for the vocabulary `item_ids` (sorted); items without a row get no values."""
        rows = np.searchsorted(item_ids, features.item_ids.astype(str))
        rows = np.minimum(rows, len(item_ids) - 1)
        present = item_ids[rows] == features.item_ids.astype(str)
        rows = rows[present]
        kinds, vocabularies, arrays = {}, {}, {}
        for column in features.columns:
            values = features.values[column.name]
            if column.kind == NUMERIC:
                numbers = np.full(len(item_ids), np.nan, np.float32)
                numbers[rows] = np.asarray(values)[present]
                kinds[column.name], arrays[column.name] = NUMERIC, numbers
                continue
            kept = [v for v, keep in zip(values, present, strict=True) if keep]
            kind, vocabulary, array = _encode_values(column.kind, kept, rows, len(item_ids))
            kinds[column.name], vocabularies[column.name], arrays[column.name] = kind, vocabulary, array
        return cls(kinds, vocabularies, arrays)


def _encode_values(
    kind: str, values: list[tuple[str, ...]], rows: np.ndarray, num_items: int
) -> tuple[str, tuple[str, ...], np.ndarray]:
    """(kind, vocabulary, array) of a categorical or multi column's per-item values at `rows`."""
    vocabulary = tuple(sorted({v for item in values for v in item}))
    if kind == CATEGORICAL and {v.lower() for v in vocabulary} <= {"true", "false"}:
        flags = np.full(num_items, BOOL_MISSING, np.uint8)
        flags[rows] = [item[0].lower() == "true" for item in values]
        return BOOLEAN, ("false", "true"), flags
    code = {v: i for i, v in enumerate(vocabulary)}
    if kind == CATEGORICAL:
        codes = np.full(num_items, -1, np.int32)
        codes[rows] = [code[item[0]] for item in values]
        return CATEGORICAL, vocabulary, codes
    words = np.zeros((num_items, max(1, -(-len(vocabulary) // 32))), np.uint32)
    for row, item in zip(rows, values, strict=True):
        for value in item:
            words[row, code[value] // 32] |= np.uint32(1) << np.uint32(code[value] % 32)
    return MULTI, vocabulary, words.view(np.int32)


def read_filter_file(path: str | Path) -> dict[str, str]:
    """The `{name: filter text}` of a filters JSON file, checked for shape (not yet against the items)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NcfError(f"{path}: cannot read the filters file ({error})") from None
    if not isinstance(document, dict) or not document:
        raise NcfError(f'{path}: expected a JSON object {{"name": "INCLUDE ItemID WHERE ...", ...}}')
    for name, text in document.items():
        if not name or not isinstance(text, str):
            raise NcfError(f"{path}: filter {name!r}: expected a non-empty name and the filter's text")
    return document


def check_filters(texts: dict[str, str], attributes: ItemAttributes) -> list[CheckedFilter]:
    """Parse every filter and check it against the item columns; NcfError names the filter and position."""
    return [_check_filter(name, text, attributes) for name, text in sorted(texts.items())]


def _check_filter(name: str, text: str, attributes: ItemAttributes) -> CheckedFilter:
    try:
        expressions = parse_filter(text)
    except FilterSyntaxError as error:
        raise NcfError(f"filter {name!r}: {error}") from None
    params: dict[str, ParamSpec] = {}
    for comparison in (c for e in expressions for c in comparisons(e.condition)):
        where = f"filter {name!r}: Items.{comparison.column} at position {comparison.position}"
        kind = attributes.kinds.get(comparison.column)
        if kind is None:
            known = ", ".join(sorted(attributes.kinds)) or "none"
            raise NcfError(f"{where}: no such item column (filterable columns: {known})")
        if comparison.operator not in _OPERATORS_OF[kind]:
            raise NcfError(f"{where}: {comparison.operator} does not apply to a {kind} column")
        for value in comparison.values:
            if isinstance(value, Param):
                spec = ParamSpec(value.name, comparison.column, kind, comparison.operator in LIST_OPERATORS)
                if params.setdefault(value.name, spec) != spec:
                    raise NcfError(f"{where}: ${value.name} is used twice in different ways")
            else:
                _check_literal(where, kind, value, attributes.vocabularies.get(comparison.column, ()))
    return CheckedFilter(name, text, expressions, tuple(params.values()))


def _check_literal(where: str, kind: str, literal: Literal, vocabulary: tuple[str, ...]) -> None:
    value = literal.value
    expected = {NUMERIC: float, BOOLEAN: bool}.get(kind, str)
    if type(value) is not expected:
        raise NcfError(f"{where}: {json.dumps(value)} is not a {kind} value")
    if kind in (CATEGORICAL, MULTI) and value not in vocabulary:
        raise NcfError(f"{where}: {value!r} is not a value of the column (e.g. {', '.join(vocabulary[:5])})")


@dataclass(frozen=True)
class DeclaredFilters:
    """The filters a training run exports: their texts and the item attributes they were checked with."""

    texts: dict[str, str]
    features: ItemFeatures

    def checked_for(self, item_ids: np.ndarray) -> tuple[list[CheckedFilter], ItemAttributes]:
        """The checked filters and the attributes aligned to the exported vocabulary `item_ids` (sorted)."""
        attributes = ItemAttributes.from_features(self.features, item_ids)
        return check_filters(self.texts, attributes), attributes


def configured_filters(config: TrainConfig) -> DeclaredFilters | None:
    """The run's filters (`filters`), checked against the items channel; None without a filters file."""
    path = config.filters_path
    if path is None:
        return None
    source = config.items or config.item_features_path
    if source is None:
        raise NcfError(
            f"filters {path}: filters need the item attributes of the items channel (pass --items DIR or"
            " the SageMaker channel 'items')"
        )
    declared = DeclaredFilters(read_filter_file(path), read_item_features(source))
    declared.checked_for(np.sort(declared.features.item_ids.astype(str)))
    return declared
