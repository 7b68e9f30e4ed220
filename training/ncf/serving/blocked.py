"""Top-k over a catalog in blocks of bounded memory, inside the exported graph.

A request of B rows (users, query items) against N columns (items) would hold [B, N] scores and, for an
MLP tower, [B, N, width] hidden activations: 1,000 users x 1M items is 128 GB at a width of 32. Here the
rows are cut into blocks of `BlockShape.rows` and the columns into blocks of `BlockShape.columns`
(`ncf.models.memory.block_shape`: the model's cost per row and per pair against the export's memory
budget). Each row block's state (user rows, a sequence encoding, co-occurrence counts) is computed once;
each column block is scored, cut to its own top k, and merged into a running top k.

The answer equals the unblocked `top_k_excluding` exactly (for the same scores): `tf.math.top_k` keeps
the earlier of equal values, and the running top k (lower columns) comes before each new block in the
merge, so ties keep the lower index first, as they do in one pass.

A request that fits one block runs the unblocked code through `tf.cond`, so small requests cost what
they cost before. The loops run one iteration at a time (`parallel_iterations=1`): by default a graph
loop may run ten iterations at once, and ten blocks alive would be ten times the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ncf.models.memory import BlockShape
from ncf.serving.topk import UNDEFINED, allowed_only, answered, best_columns, top_k_excluding

StateOfRows = Callable[[tf.Tensor, tf.Tensor], Any]  # (start, stop) -> what scoring rows [start, stop) reads
ScoresOfBlock = Callable[
    [Any, tf.Tensor, tf.Tensor], tf.Tensor
]  # (state, start, stop) -> [rows, stop - start]
Answer = tuple[tf.Tensor, ...]
_ANY = tf.TensorShape([None, None])


def blocked_top_k(
    state_of_rows: StateOfRows,
    scores_of_block: ScoresOfBlock,
    num_rows: tf.Tensor,
    num_columns: int,
    shape: BlockShape,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
    allowed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`top_k_excluding` of the scores of `num_rows` rows against `num_columns` columns, computed in blocks.

    Args:
        state_of_rows: what scoring rows [start, stop) reads (computed once per row block).
        scores_of_block: scores of a row block's state against columns [start, stop), `UNDEFINED` where
            a column must never be returned.
        num_rows: int32 scalar; num_columns: the catalog size.
        shape: the block (`ncf.models.memory.block_shape`).
        excluded: int64 [M, 2] (row, column) coordinates never returned, or None.
        k: int32 scalar, clipped to [0, num_columns].
        allowed: bool [num_columns], the columns a filter keeps, or [num_rows, num_columns] when the filter
            depends on the row (interaction filters); all when None.
    """

    def rows_top_k(start: tf.Tensor, stop: tf.Tensor) -> Answer:
        state = state_of_rows(start, stop)
        return columns_top_k(
            lambda first, last: scores_of_block(state, first, last),
            stop - start,
            num_columns,
            shape.columns,
            rows_of(excluded, start, stop),
            k,
            row_block_of(allowed, start, stop),
        )

    return map_row_blocks(rows_top_k, num_rows, shape.rows, (tf.int32, tf.float32))


def map_row_blocks(
    answer_of_rows: Callable[[tf.Tensor, tf.Tensor], Answer],
    num_rows: tf.Tensor,
    rows_per_block: int,
    dtypes: tuple[tf.DType, ...],
    ranks: tuple[int, ...] | None = None,
) -> Answer:
    """`answer_of_rows(0, num_rows)`, computed as the row blocks' answers concatenated along rows.

    `answer_of_rows(start, stop)` returns tensors of `dtypes` (of `ranks`, default 2), each with one row
    per row of the block.
    """
    num_rows = tf.convert_to_tensor(num_rows, tf.int32)

    def whole() -> Answer:
        return tuple(answer_of_rows(tf.constant(0), num_rows))

    def blocked() -> Answer:
        blocks = (num_rows + rows_per_block - 1) // rows_per_block
        arrays = tuple(
            tf.TensorArray(dtype, size=blocks, infer_shape=False, element_shape=[None] * rank)
            for dtype, rank in zip(dtypes, ranks or (2,) * len(dtypes), strict=True)
        )

        def step(block: tf.Tensor, arrays: tuple[tf.TensorArray, ...]) -> tuple[tf.Tensor, tuple]:
            start = block * rows_per_block
            outputs = answer_of_rows(start, tf.minimum(start + rows_per_block, num_rows))
            return block + 1, tuple(
                array.write(block, out) for array, out in zip(arrays, outputs, strict=True)
            )

        _, arrays = tf.while_loop(
            lambda block, _: block < blocks, step, (tf.constant(0), arrays), parallel_iterations=1
        )
        return tuple(array.concat() for array in arrays)

    return tf.cond(num_rows <= rows_per_block, whole, blocked)


def columns_top_k(
    scores_of_columns: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    num_rows: tf.Tensor,
    num_columns: int,
    columns_per_block: int,
    excluded: tf.Tensor | None,
    k: tf.Tensor,
    allowed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`top_k_excluding` of one block of `num_rows` rows' scores against every column, `columns_per_block`
    at a time, with a running top k; in one pass when one block holds every column."""
    if columns_per_block >= num_columns:
        scores = scores_of_columns(tf.constant(0), tf.constant(num_columns))
        return top_k_excluding(allowed_only(scores, allowed), excluded, k)
    width = tf.clip_by_value(k, 0, num_columns)

    def step(start: tf.Tensor, values: tf.Tensor, indices: tf.Tensor) -> tuple[tf.Tensor, ...]:
        stop = tf.minimum(start + columns_per_block, num_columns)
        scores = tf.cast(scores_of_columns(start, stop), tf.float32)  # exact for bfloat16 scores
        if allowed is not None:
            scores = allowed_only(scores, allowed[..., start:stop])
        block_values, block_indices = best_columns(scores, columns_of(excluded, start, stop), width)
        merged = tf.math.top_k(tf.concat([values, block_values], axis=1), k=width)
        candidates = tf.concat([indices, block_indices + start], axis=1)
        return stop, merged.values, tf.gather(candidates, merged.indices, batch_dims=1)

    start = (tf.constant(0), tf.fill([num_rows, width], UNDEFINED), tf.fill([num_rows, width], -1))
    _, values, indices = tf.while_loop(
        lambda begin, *_: begin < num_columns,
        step,
        start,
        shape_invariants=(tf.TensorShape([]), _ANY, _ANY),
        parallel_iterations=1,
    )
    return answered(values, indices)


def row_block_of(values: tf.Tensor | None, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor | None:
    """Rows [start, stop) of a per-row [rows, columns] tensor (a mask or popularity after an interaction
    filter); a [columns] tensor that every row shares is returned as it is."""
    if values is None or values.shape.rank == 1:
        return values
    return values[start:stop]


def rows_of(excluded: tf.Tensor | None, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor | None:
    """The (row, column) coordinates of rows [start, stop), their rows counted from `start`."""
    if excluded is None:
        return None
    start = tf.cast(start, tf.int64)
    inside = tf.logical_and(excluded[:, 0] >= start, excluded[:, 0] < tf.cast(stop, tf.int64))
    return tf.boolean_mask(excluded, inside) - tf.stack([start, tf.constant(0, tf.int64)])


def columns_of(excluded: tf.Tensor | None, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor | None:
    """The (row, column) coordinates of columns [start, stop), their columns counted from `start`."""
    if excluded is None:
        return None
    start = tf.cast(start, tf.int64)
    inside = tf.logical_and(excluded[:, 1] >= start, excluded[:, 1] < tf.cast(stop, tf.int64))
    return tf.boolean_mask(excluded, inside) - tf.stack([tf.constant(0, tf.int64), start])
