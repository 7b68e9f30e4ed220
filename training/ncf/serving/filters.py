"""The served filters: item attributes as variables and tables, and each filter compiled to a mask.

The filters and attributes come checked from `ncf.serving.filter_checks`. A comparison on an item
without a value is false (`=`, `!=`, `NOT IN` alike), so `INCLUDE` drops such items and `EXCLUDE` keeps
them. On a multi-valued column `=` and `IN` mean "has one of the values", `!=` and `NOT IN` "has none
of them". At serving time `FilterSet.evaluate` computes the mask of one filter from the request's
parameter values and checks them: an unknown filter, a missing or extra parameter, a value of the wrong
type or not in the column's vocabulary give an error message instead (and an empty mask: never an
unfiltered answer). Only core ops (no XLA, nothing newer than TF 2.19).

An `Interactions.<column>` comparison holds for an item when the requesting user has an interaction
with it for which the comparison holds; the Interactions comparisons ANDed together are about one and
the same interaction (`ncf.serving.filter_grammar.interaction_groups`). The users' interactions live in
an `ncf.serving.interaction_store.InteractionStore`; with one, a recommendation's mask is [users, items]
(an item filter's [items] mask broadcast), without one (or for `similar_items`) it is [items].
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ncf.serving.filter_checks import (
    AGE_DAYS,
    BOOL_MISSING,
    BOOLEAN,
    CATEGORICAL,
    EVENT_TYPE,
    MULTI,
    NUMBER_PATTERN,
    NUMERIC,
    CheckedFilter,
    ItemAttributes,
    ParamSpec,
)
from ncf.serving.filter_grammar import (
    INTERACTIONS,
    Comparison,
    Condition,
    Literal,
    Param,
    interaction_groups,
)
from ncf.serving.interaction_store import Interacted, InteractionStore, Requesters


class FilterSet(tf.Module):
    """The served filters: the item attributes as variables and tables, each filter's mask, and the
    users' interactions when a filter compares them (`store`)."""

    def __init__(
        self,
        filters: list[CheckedFilter],
        attributes: ItemAttributes,
        store: InteractionStore | None = None,
        event_types: tuple[str, ...] = (),
    ) -> None:
        """`store`: the users' interactions (needed when a filter reads them); `event_types`: the
        vocabulary of `Interactions.event_type`, the store's event codes' order."""
        super().__init__(name="filters")
        self.filters = filters
        self.kinds = attributes.kinds
        self.arrays = {
            n: tf.Variable(a, trainable=False, name=f"attr_{n}") for n, a in attributes.arrays.items()
        }
        self.tables = {
            f"Items.{n}": _table(v) for n, v in attributes.vocabularies.items() if self.kinds[n] != BOOLEAN
        }
        if event_types:
            self.tables[f"{INTERACTIONS}.{EVENT_TYPE}"] = _table(event_types)
        self.store = store
        self.names = _table(tuple(f.name for f in filters))
        self.num_items = attributes.num_items
        # Readable from the loaded SavedModel: `json.loads(loaded.filters.metadata.numpy())`.
        described = {f.name: f.describe() for f in filters}
        self.metadata = tf.Variable(json.dumps(described, sort_keys=True), trainable=False, name="metadata")

    def evaluate(
        self, name: tf.Tensor, names: tf.Tensor, values: tf.Tensor, users: Requesters | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(allowed bool mask, error string scalar) of filter `name` with parameters `names` [P] and
        their values `values` [P, V] ("" pads); the error is "" when the request is valid.

        The mask is [items], or [B, items] for the B `users` of a recommendation when the export stores
        interactions. Without `users` (similar items) a filter that reads interactions is refused."""
        known = ", ".join(f.name for f in self.filters)
        index = tf.cast(self.names.lookup(name), tf.int32)
        users = users if self.store is not None else None
        shape = [self.num_items] if users is None else tf.stack([tf.size(users.known), self.num_items])

        def unknown() -> tuple[tf.Tensor, tf.Tensor]:
            message = tf.strings.join(["unknown filter '", name, f"' (this model's filters: {known})"])
            return tf.zeros(shape, tf.bool), message

        branches = [self._branch(f, names, values, users, shape) for f in self.filters]
        return tf.switch_case(tf.where(index >= 0, index, len(branches)), [*branches, unknown])

    def _branch(
        self,
        checked: CheckedFilter,
        names: tf.Tensor,
        values: tf.Tensor,
        users: Requesters | None,
        shape: list | tf.Tensor,
    ) -> Callable[[], tuple[tf.Tensor, tf.Tensor]]:
        if checked.reads_interactions and users is None:
            message = (
                f"filter '{checked.name}' compares the user's interactions (Interactions.*), so it applies"
                " to a user's recommendations, not to similar_items"
            )
            return lambda: (tf.zeros(shape, tf.bool), tf.constant(message))

        def branch() -> tuple[tf.Tensor, tf.Tensor]:
            given = {p.name: _param_values(names, values, p.name) for p in checked.params}
            errors = [_extra_parameter(checked, names)]
            errors += [e for p in checked.params for e in self._value_errors(checked, p, given[p.name])]
            failed = tf.stack([c for c, _ in errors])
            message = tf.gather(tf.stack([m for _, m in errors]), tf.argmax(tf.cast(failed, tf.int32)))
            interacted = self.store.gather(users) if checked.reads_interactions else None
            allowed = tf.ones(shape, tf.bool)
            for expression in checked.expressions:
                holds = self._condition(expression.condition, given, interacted)
                allowed = tf.logical_and(allowed, holds if expression.include else tf.logical_not(holds))
            valid = tf.logical_not(tf.reduce_any(failed))
            return tf.logical_and(allowed, valid), tf.where(valid, "", message)

        return branch

    def _value_errors(self, checked: CheckedFilter, param: ParamSpec, given: tf.Tensor) -> list:
        """(failed, message) pairs for one parameter's values."""
        count = tf.size(given)
        errors = [
            (tf.equal(count, 0), tf.constant(f"filter '{checked.name}' needs a value for ${param.name}"))
        ]
        if not param.takes_list:
            errors.append(
                (
                    count > 1,
                    tf.strings.join([f"${param.name} takes one value, got ", tf.strings.as_string(count)]),
                )
            )
        if param.kind == NUMERIC:
            bad = tf.logical_not(tf.strings.regex_full_match(given, NUMBER_PATTERN))
            what = "a number"
        elif param.kind == BOOLEAN:
            bad = tf.logical_not(tf.logical_or(tf.equal(given, "true"), tf.equal(given, "false")))
            what = "true or false"
        else:
            bad = self.tables[param.qualified].lookup(given) < 0
            message = tf.strings.join(
                ["'", _first(given, bad), f"' is not a value of {param.qualified} (${param.name})"]
            )
            return [*errors, (tf.reduce_any(bad), message)]
        message = tf.strings.join([f"${param.name} must be {what}, got '", _first(given, bad), "'"])
        return [*errors, (tf.reduce_any(bad), message)]

    def _condition(
        self, condition: Condition, given: dict[str, tf.Tensor], interacted: Interacted | None
    ) -> tf.Tensor:
        """The truth of a condition tree: [items], or [B, items] where it compares interactions."""
        if isinstance(condition, Comparison):
            if condition.dataset == INTERACTIONS:
                return self._interacted(interacted, [condition], given)
            return self._comparison(condition, given)
        together, others = (
            interaction_groups(condition.parts) if condition.conjunction else ([], condition.parts)
        )
        parts = [self._condition(part, given, interacted) for part in others]
        if together:
            parts.append(self._interacted(interacted, together, given))
        combine = tf.logical_and if condition.conjunction else tf.logical_or
        result = parts[0]
        for part in parts[1:]:
            result = combine(result, part)
        return result

    def _interacted(
        self, interacted: Interacted, together: list[Comparison], given: dict[str, tf.Tensor]
    ) -> tf.Tensor:
        """[B, items]: whether the user has an interaction with the item for which every comparison of
        `together` holds."""
        holds = tf.ones_like(interacted.items, tf.bool)
        columns = {EVENT_TYPE: interacted.events, AGE_DAYS: interacted.age_days}
        for comparison in together:
            kind = NUMERIC if comparison.column == AGE_DAYS else CATEGORICAL
            values = self._operands(kind, comparison, given)
            holds = tf.logical_and(
                holds, _matches(kind, comparison.operator, columns[comparison.column], values)
            )
        return self.store.items_with(interacted, holds)

    def _comparison(self, comparison: Comparison, given: dict[str, tf.Tensor]) -> tf.Tensor:
        kind = self.kinds[comparison.column]
        column = self.arrays[comparison.column]
        values = self._operands(kind, comparison, given)
        if kind == MULTI:
            has_value = tf.reduce_any(tf.not_equal(column, 0), axis=1)
        elif kind == NUMERIC:
            has_value = tf.logical_not(tf.math.is_nan(column))
        else:
            missing = -1 if kind == CATEGORICAL else BOOL_MISSING
            has_value = tf.not_equal(column, tf.cast(missing, column.dtype))
        return tf.logical_and(has_value, _matches(kind, comparison.operator, column, values))

    def _operands(self, kind: str, comparison: Comparison, given: dict[str, tf.Tensor]) -> tf.Tensor:
        """A comparison's operands as one vector (see `_operand`)."""
        column = comparison.qualified
        return tf.concat([self._operand(kind, column, v, given) for v in comparison.values], axis=0)

    def _operand(
        self, kind: str, column: str, value: Literal | Param, given: dict[str, tf.Tensor]
    ) -> tf.Tensor:
        """A comparison's operand as a vector: float64 for numeric columns (cast to the column's type
        where compared), int64 codes otherwise."""
        if isinstance(value, Param):
            text = given[value.name]
            if kind == NUMERIC:
                safe = tf.where(tf.strings.regex_full_match(text, NUMBER_PATTERN), text, "nan")
                return tf.strings.to_number(safe, tf.float64)
            if kind == BOOLEAN:
                flags = tf.where(tf.equal(text, "true"), 1, tf.where(tf.equal(text, "false"), 0, -9))
                return tf.cast(flags, tf.int64)
            return self.tables[column].lookup(text)
        if kind == NUMERIC:
            return tf.constant([value.value], tf.float64)
        if kind == BOOLEAN:
            return tf.constant([int(value.value)], tf.int64)
        return self.tables[column].lookup(tf.constant([value.value]))


def _table(keys: tuple[str, ...]) -> tf.lookup.StaticHashTable:
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(keys), tf.string), tf.range(len(keys), dtype=tf.int64)
    )
    return tf.lookup.StaticHashTable(initializer, default_value=-1)


def _param_values(names: tf.Tensor, values: tf.Tensor, name: str) -> tf.Tensor:
    """The non-empty values given for parameter `name` (none when it is not among `names`)."""
    rows = tf.gather(values, tf.where(tf.equal(names, name))[:, 0])
    flat = tf.reshape(rows, [-1])
    return tf.boolean_mask(flat, tf.not_equal(flat, ""))


def _first(strings: tf.Tensor, where: tf.Tensor) -> tf.Tensor:
    """The first of `strings` where `where` holds, "" when none does."""
    return tf.concat([tf.boolean_mask(strings, where), [""]], axis=0)[0]


def _extra_parameter(checked: CheckedFilter, names: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    expected = tf.constant([p.name for p in checked.params] or [""], tf.string)
    listed_names = tf.not_equal(names, "")  # "" pads a request without parameters
    known = tf.reduce_any(tf.equal(names[:, None], expected[None, :]), axis=1)
    extra = tf.logical_and(listed_names, tf.logical_not(known))
    listed = ", ".join(f"${p.name}" for p in checked.params) or "none"
    message = tf.strings.join(
        [f"filter '{checked.name}' has no parameter $", _first(names, extra), f" (its parameters: {listed})"]
    )
    return tf.reduce_any(extra), message


def _matches(kind: str, operator: str, column: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """Whether each entry of `column` matches the operands `values` under `operator` (the entry's
    missing value is the caller's to handle)."""
    if kind == MULTI:
        matches = _bitset_any(column, values)
    elif kind == NUMERIC:
        matches = _numeric(operator, column, tf.cast(values, column.dtype))
    else:
        matches = tf.reduce_any(tf.equal(tf.cast(column, tf.int64)[:, None], values[None, :]), axis=1)
    return tf.logical_not(matches) if operator in ("!=", "NOT IN") else matches


def _bitset_any(words: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Whether each item's bit set [items, W] holds any of `codes` (int64; -1 entries are ignored)."""
    codes = tf.unique(tf.boolean_mask(codes, codes >= 0)).y
    width = tf.shape(words)[1]
    bits = tf.bitwise.left_shift(tf.ones_like(codes, tf.int32), tf.cast(codes % 32, tf.int32))
    # Distinct bits never carry, so their sum in each word is their OR (bit 31 included).
    wanted = tf.math.unsorted_segment_sum(bits, tf.cast(codes // 32, tf.int32), width)
    return tf.reduce_any(tf.not_equal(tf.bitwise.bitwise_and(words, wanted[None, :]), 0), axis=1)


def _numeric(operator: str, column: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    if operator in ("IN", "NOT IN", "=", "!="):
        return tf.reduce_any(tf.equal(column[:, None], values[None, :]), axis=1)
    compare = {"<": tf.less, "<=": tf.less_equal, ">": tf.greater, ">=": tf.greater_equal}[operator]
    # A missing parameter leaves no value: NaN then matches nothing (the request is refused anyway).
    return compare(column, tf.concat([values, tf.constant([np.nan], values.dtype)], axis=0)[0])
