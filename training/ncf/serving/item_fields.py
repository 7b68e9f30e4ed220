"""Item metadata in the answer: the items channel's columns stored as text in the SavedModel.

A client that renders a list needs each item's title, genres or picture URL; asking another service
for them costs a second round trip. The export stores the chosen columns of the items channel (the
`item_fields` setting: all of them by default, titles included) as one string matrix [items, columns]
aligned to the item vocabulary ("" where an item has no row), and the `item_fields` signature returns
the requested columns of a list of item ids. The columns are read before training starts
(`ncf.data.features.configured_item_fields`). The serving handler calls it for requests with
`"item_fields": [...]` and attaches the values to each returned item.

- `item_fields(item_id[N], field[F])` -> `values[N,F]` string, `known_item[N]`, `known_field[F]`,
  `field_names[C]` (every stored column, for the handler's error messages)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from ncf.data.features import ITEM_ID

_IDS = tf.TensorSpec([None], tf.string)


class ItemFieldTable(tf.Module):
    """The stored columns: names [C] and values [items, C], in vocabulary order."""

    def __init__(self, table: pd.DataFrame, item_ids: np.ndarray) -> None:
        super().__init__(name="item_fields")
        columns = [c for c in table.columns if c != ITEM_ID]
        ids = table[ITEM_ID].astype(str).to_numpy()
        rows = np.minimum(np.searchsorted(item_ids, ids), len(item_ids) - 1)
        present = item_ids[rows] == ids
        values = np.full((len(item_ids), len(columns)), "", dtype=object)
        values[rows[present]] = table[columns].to_numpy(dtype=object)[present]
        self.names = tf.Variable(np.array(columns, dtype=object).astype(str), trainable=False, name="names")
        self.values = tf.Variable(values.astype(str), trainable=False, name="values")

    def lookup(self, items: tf.Tensor, known_item: tf.Tensor, field: tf.Tensor) -> dict:
        """The `item_fields` signature's outputs for item indices `items` (valid where `known_item`)."""
        matches = tf.equal(field[:, None], self.names[None, :])  # [F, C]
        known_field = tf.reduce_any(matches, axis=1)
        column = tf.argmax(tf.cast(matches, tf.int32), axis=1)
        rows = tf.gather(self.values, items)  # [N, C]
        picked = tf.gather(rows, column, axis=1)  # [N, F]
        valid = tf.logical_and(known_item[:, None], known_field[None, :])
        return {
            "values": tf.where(valid, picked, ""),
            "known_item": known_item,
            "known_field": known_field,
            "field_names": self.names,
        }


def item_field_signatures(recommender: tf.Module) -> dict:
    """{"item_fields": ...} for an export that stores item fields, else {}."""
    table = recommender.item_fields
    if table is None:
        return {}

    @tf.function(input_signature=[_IDS, _IDS], autograph=False)
    def item_fields(item_id: tf.Tensor, field: tf.Tensor) -> dict:
        index = recommender.item_index.lookup(item_id)
        known = index >= 0
        return table.lookup(tf.where(known, index, 0), known, field)

    return {"item_fields": item_fields}


def describe(table: pd.DataFrame) -> str:
    """One line for the training log."""
    return ", ".join(c for c in table.columns if c != ITEM_ID)
