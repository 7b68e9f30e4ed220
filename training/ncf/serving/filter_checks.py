"""Filters declared at training time, checked against the item attributes (pure numpy: no TensorFlow).

Filters are declared at training time (a JSON file `{"name": "INCLUDE ItemID WHERE ...", ...}`, the
`filters` setting; by default `filters.json` in the items channel), because only there are the item
attributes and the catalog complete: the export checks every filter against them (columns, operators,
literal values) and stores both in the SavedModel (`ncf.serving.filters`), so the endpoint, Batch
Transform and SDK local mode all apply the same filters and a model never meets a filter it was not
checked against. Checked before training starts, so a typo costs seconds, not a training job.

Interaction filters compare the requesting user's interactions with each item: `Interactions.event_type`
(categorical, the event types of prepare.py's `--event-type-col`) and `Interactions.age_days` (numeric,
from the timestamps); a filter naming one the data lacks is refused once the data is loaded, still
before training. A filter without `Items.` comparisons needs no items channel.

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
from ncf.data.training_data import TrainingData
from ncf.errors import NcfError
from ncf.serving.filter_grammar import (
    INTERACTIONS,
    ITEMS,
    LIST_OPERATORS,
    Comparison,
    Expression,
    FilterSyntaxError,
    Literal,
    Param,
    comparisons,
    parse_filter,
    reads_interactions,
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
EVENT_TYPE, AGE_DAYS = "event_type", "age_days"  # the Interactions columns


@dataclass(frozen=True)
class ParamSpec:
    """A filter's `$NAME`: the column it is compared with, its kind, and whether it takes a list."""

    name: str
    column: str
    kind: str
    takes_list: bool
    dataset: str = ITEMS

    @property
    def qualified(self) -> str:
        return f"{self.dataset}.{self.column}"


@dataclass(frozen=True)
class CheckedFilter:
    """A named filter, parsed and checked against the item attributes."""

    name: str
    text: str
    expressions: tuple[Expression, ...]
    params: tuple[ParamSpec, ...]

    @property
    def reads_interactions(self) -> bool:
        """Whether it compares the user's interactions (so it applies to a user's recommendations only)."""
        return reads_interactions(self.expressions)

    def describe(self) -> dict:
        """What the SavedModel's filter metadata says of this filter."""
        return {
            "filter": self.text,
            "parameters": {
                p.name: {"column": p.qualified, "kind": p.kind, "list": p.takes_list} for p in self.params
            },
        }


@dataclass(frozen=True)
class InteractionColumns:
    """What interaction filters can compare: the data's event types (None: it has no event type
    column) and whether it has timestamps (`age_days`)."""

    event_types: tuple[str, ...] | None
    has_times: bool

    @classmethod
    def of(cls, data: TrainingData) -> InteractionColumns:
        """What `data`'s every row (the held-out positives too, which the final fit trains on) has."""
        heldout = (data.validation, data.test)
        times = data.train_times is not None and all(h.times is not None for h in heldout)
        events = data.train_events is not None and all(h.events is not None for h in heldout)
        return cls(data.event_types if events else None, times)

    @property
    def kinds(self) -> dict[str, str]:
        present = {EVENT_TYPE: self.event_types is not None, AGE_DAYS: self.has_times}
        kinds = {EVENT_TYPE: CATEGORICAL, AGE_DAYS: NUMERIC}
        return {column: kinds[column] for column, there in present.items() if there}

    @property
    def vocabularies(self) -> dict[str, tuple[str, ...]]:
        return {} if self.event_types is None else {EVENT_TYPE: self.event_types}

    def missing(self, column: str) -> str:
        """Why `Interactions.<column>` cannot be filtered on."""
        if column == EVENT_TYPE:
            return "the training data has no event types (prepare.py reads them with --event-type-col NAME)"
        if column == AGE_DAYS:
            return (
                "the training data has no timestamps, so interactions have no age"
                " (prepare.py --timestamp-col)"
            )
        return f"no such interaction column (Interactions has {EVENT_TYPE} and {AGE_DAYS})"


@dataclass(frozen=True)
class ItemAttributes:
    """The filterable item columns, aligned to the item vocabulary (see the module docstring)."""

    kinds: dict[str, str]
    vocabularies: dict[str, tuple[str, ...]]  # categorical, multi and boolean columns
    arrays: dict[str, np.ndarray]
    num_items: int

    def missing(self, column: str) -> str:
        """Why `Items.<column>` cannot be filtered on."""
        known = ", ".join(sorted(self.kinds)) or "none: there is no items channel"
        return f"no such item column (filterable columns: {known})"

    @classmethod
    def from_features(cls, features: ItemFeatures | None, item_ids: np.ndarray) -> ItemAttributes:
        """Encode `features` for the vocabulary `item_ids` (sorted); items without a row get no values;
        no features (no items channel): no columns."""
        if features is None:
            return cls({}, {}, {}, len(item_ids))
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
        return cls(kinds, vocabularies, arrays, len(item_ids))


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


def check_filters(
    texts: dict[str, str], attributes: ItemAttributes, interactions: InteractionColumns | None = None
) -> list[CheckedFilter]:
    """Parse every filter and check it against the item columns and, when given, the interaction columns
    (None: Interactions comparisons are not checked yet); NcfError names the filter and position."""
    columns = {ITEMS: attributes, INTERACTIONS: interactions}
    return [_check_filter(name, text, columns) for name, text in sorted(texts.items())]


def _check_filter(
    name: str, text: str, columns: dict[str, ItemAttributes | InteractionColumns | None]
) -> CheckedFilter:
    try:
        expressions = parse_filter(text)
    except FilterSyntaxError as error:
        raise NcfError(f"filter {name!r}: {error}") from None
    params: dict[str, ParamSpec] = {}
    for comparison in (c for e in expressions for c in comparisons(e.condition)):
        where = f"filter {name!r}: {comparison.qualified} at position {comparison.position}"
        source = columns[comparison.dataset]
        if source is None:
            continue
        kind = _checked_kind(where, comparison, source)
        for value in comparison.values:
            if isinstance(value, Param):
                takes_list = comparison.operator in LIST_OPERATORS
                spec = ParamSpec(value.name, comparison.column, kind, takes_list, comparison.dataset)
                if params.setdefault(value.name, spec) != spec:
                    raise NcfError(f"{where}: ${value.name} is used twice in different ways")
            else:
                _check_literal(where, kind, value, source.vocabularies.get(comparison.column, ()))
    return CheckedFilter(name, text, expressions, tuple(params.values()))


def _checked_kind(where: str, comparison: Comparison, source: ItemAttributes | InteractionColumns) -> str:
    """The kind of the compared column; NcfError when it does not exist or takes no such operator."""
    kind = source.kinds.get(comparison.column)
    if kind is None:
        raise NcfError(f"{where}: {source.missing(comparison.column)}")
    if comparison.operator not in _OPERATORS_OF[kind]:
        raise NcfError(f"{where}: {comparison.operator} does not apply to a {kind} column")
    return kind


def _check_literal(where: str, kind: str, literal: Literal, vocabulary: tuple[str, ...]) -> None:
    value = literal.value
    expected = {NUMERIC: float, BOOLEAN: bool}.get(kind, str)
    if type(value) is not expected:
        raise NcfError(f"{where}: {json.dumps(value)} is not a {kind} value")
    if kind in (CATEGORICAL, MULTI) and value not in vocabulary:
        raise NcfError(f"{where}: {value!r} is not a value of the column (e.g. {', '.join(vocabulary[:5])})")


@dataclass(frozen=True)
class DeclaredFilters:
    """The filters a training run exports: their texts and the item attributes they are checked with
    (None: no items channel, so only interaction filters)."""

    texts: dict[str, str]
    features: ItemFeatures | None

    def checked_for(
        self, item_ids: np.ndarray, interactions: InteractionColumns | None = None
    ) -> tuple[list[CheckedFilter], ItemAttributes]:
        """The checked filters and the attributes aligned to the exported vocabulary `item_ids` (sorted);
        with `interactions`, the Interactions comparisons are checked too."""
        attributes = ItemAttributes.from_features(self.features, item_ids)
        return check_filters(self.texts, attributes, interactions), attributes

    @property
    def read_interactions(self) -> bool:
        """Whether a filter compares the users' interactions (the export then stores them)."""
        return any(reads_interactions(parse_filter(text)) for text in self.texts.values())


def configured_filters(config: TrainConfig) -> DeclaredFilters | None:
    """The run's filters (`filters`), checked against the items channel (when there is one); None
    without a filters file. Interaction comparisons are checked once the data is loaded."""
    path = config.filters_path
    if path is None:
        return None
    source = config.items or config.item_features_path
    declared = DeclaredFilters(read_filter_file(path), None if source is None else read_item_features(source))
    ids = np.array([], str) if declared.features is None else declared.features.item_ids.astype(str)
    declared.checked_for(np.sort(ids))
    return declared
