"""How much memory a scoring call needs, and the blocks that keep it within a budget (TensorFlow-free).

Scoring users against a catalog holds, at its peak, a few floats per user (its rows, or a sequence
model's attention tensors of [heads, L, L]) and a few floats per (user, item) pair (the scores, and for
an MLP tower its hidden activations of [users, items, width]). A model type says how many of each
(`ncf.models.base.Model.catalog_cost`); `block_shape` turns that and a budget in bytes into the users
and items one call may take. Evaluation (`ncf.evaluation.scoring`) and every exported signature
(`ncf.serving.blocked`) cut their work into such blocks, so neither the request size nor the catalog
size decides how much memory a call allocates: the budget (`TrainConfig.memory_budget_mb`) does.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT_BYTES = 4
MIB = 1 << 20

# The default of `TrainConfig.memory_budget_mb` (see its help and the README's *Memory*): per call, well
# below what TensorFlow and a loaded model already take (~0.6-1.5 GB), and large enough that a block
# holds >= ~1M (user, item) pairs of an MLP tower, where the per-call overhead (~0.1 ms) is negligible.
DEFAULT_MEMORY_BUDGET_MB = 256


@dataclass(frozen=True)
class CatalogCost:
    """Floats a scoring call holds at its peak: `per_user` for each user (row) and `per_pair` for each
    (user, item) pair it scores."""

    per_user: int
    per_pair: int

    def plus(self, per_user: int = 0, per_pair: int = 0) -> CatalogCost:
        """This cost with a caller's own floats added (its score masks, a fold-in's gradient steps)."""
        return CatalogCost(self.per_user + per_user, self.per_pair + per_pair)


@dataclass(frozen=True)
class BlockShape:
    """Rows (users, queries) and columns (items) of one block of a call."""

    rows: int
    columns: int


def block_shape(cost: CatalogCost, num_columns: int, budget_bytes: int) -> BlockShape:
    """The largest block within `budget_bytes`: as many rows as fit with every column, else one row and
    as many columns as fit (at least one of each, whatever the budget).

    Raises:
        ValueError: a budget or a cost below 1 (a cost of 0 floats would make blocks unbounded).
    """
    if budget_bytes < 1 or cost.per_pair < 1 or cost.per_user < 0:
        raise ValueError(f"block_shape: need a positive budget and cost, got {budget_bytes} bytes, {cost}")
    budget = budget_bytes // FLOAT_BYTES
    whole_row = cost.per_user + max(num_columns, 1) * cost.per_pair
    if whole_row <= budget:
        return BlockShape(rows=budget // whole_row, columns=max(num_columns, 1))
    columns = (budget - cost.per_user) // cost.per_pair
    return BlockShape(rows=1, columns=int(min(max(columns, 1), max(num_columns, 1))))


def budget_bytes(memory_budget_mb: int) -> int:
    """`memory_budget_mb` (MiB, as the setting gives it) in bytes."""
    return memory_budget_mb * MIB
