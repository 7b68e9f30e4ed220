"""Per-epoch training samples: positives plus freshly drawn negatives, shuffled and batched.

Negatives are drawn uniformly from the items a user has not interacted with in training,
re-drawn every epoch (He et al. 2017). Each epoch's randomness comes from
`numpy.random.default_rng([seed, epoch])`, so epoch N draws the same samples whether the
run started at epoch 0 or resumed from a checkpoint: resuming needs no RNG state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ncf.data.vocab import UserItemSets


@dataclass(frozen=True)
class EpochBatches:
    """One epoch of samples shaped [steps, batch_size]; padding has weight 0."""

    users: np.ndarray
    items: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    num_samples: int

    def step_inputs(self) -> tuple[np.ndarray, ...]:
        """The arrays `EpochRunner.run_steps` takes, each indexed by step first."""
        return self.users, self.items, self.targets, self.weights


def epoch_rng(seed: int, epoch: int, worker: int = 0) -> np.random.Generator:
    """The random stream of one epoch (and one worker, for multi-worker training)."""
    return np.random.default_rng([seed, epoch, worker])


def recency_weights(recency: np.ndarray, boost: float, half_life: float) -> np.ndarray:
    """Weight of each training interaction from its recency (0 = the user's most recent).

    Leave-one-out asks for each user's next interaction, and in interaction logs recent
    behaviour predicts it better than old behaviour (tastes drift, sessions cluster), so
    recent interactions count more: `1 + boost * 0.5 ** (recency / half_life)`.
    """
    return (1.0 + boost * np.exp2(-recency / half_life)).astype(np.float32)


def sample_negatives(
    users: np.ndarray,
    num_neg: int,
    positives: UserItemSets,
    num_items: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`num_neg` items per entry of `users`, none of them among that user's positives.

    Rejection sampling over the whole array at once: draw, test membership, re-draw only the
    rejected entries. Users who have interacted with every item cannot get negatives; callers
    exclude them (see `build_epoch`).
    """
    neg_users = np.repeat(users, num_neg)
    neg_items = rng.integers(0, num_items, size=len(neg_users), dtype=np.int64)
    is_positive = _membership(positives, num_items)
    pending = np.arange(len(neg_users))
    while len(pending):
        candidate = neg_users[pending].astype(np.int64) * num_items + neg_items[pending]
        pending = pending[is_positive(candidate)]
        neg_items[pending] = rng.integers(0, num_items, size=len(pending), dtype=np.int64)
    return neg_users.astype(np.int32), neg_items.astype(np.int32)


DENSE_MEMBERSHIP_LIMIT = 1 << 27  # user x item pairs: a 128 MB boolean table at most


def _membership(positives: UserItemSets, num_items: int) -> Callable[[np.ndarray], np.ndarray]:
    """A test of `user * num_items + item` keys against the positives.

    A dense boolean table answers in O(1) per key and is 2-3x faster than binary search;
    catalogs too large for one (users x items above DENSE_MEMBERSHIP_LIMIT) use the search.
    """
    keys = positives.keys(num_items)
    if positives.num_users * num_items <= DENSE_MEMBERSHIP_LIMIT:
        table = np.zeros(positives.num_users * num_items, dtype=bool)
        table[keys] = True
        return lambda candidate: table[candidate]

    def search(candidate: np.ndarray) -> np.ndarray:
        slot = np.minimum(np.searchsorted(keys, candidate), len(keys) - 1)
        return keys[slot] == candidate

    return search


def build_epoch(
    users: np.ndarray,
    items: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    *,
    num_neg: int,
    positives: UserItemSets,
    num_items: int,
    batch_size: int,
    rng: np.random.Generator,
    min_steps: int = 0,
) -> EpochBatches:
    """Positives (with their targets) plus `num_neg` negatives each (target 0), shuffled.

    A negative carries the weight of the positive it was drawn for. With `num_neg == 0`
    (explicit feedback) the epoch is the training rows alone. The last batch is padded with
    weight-0 samples so no sample is dropped and every batch has the same static shape;
    `min_steps` pads further with whole weight-0 batches (workers must run equal step counts).
    """
    if num_neg:
        per_user = np.diff(positives.offsets)
        can_sample = per_user[users] < num_items
        neg_users, neg_items = sample_negatives(users[can_sample], num_neg, positives, num_items, rng)
        sample_weights = np.concatenate([sample_weights, np.repeat(sample_weights[can_sample], num_neg)])
        users = np.concatenate([users, neg_users])
        items = np.concatenate([items, neg_items])
        targets = np.concatenate([targets, np.zeros(len(neg_users), dtype=np.float32)])
    order = rng.permutation(len(users))
    total = len(order)
    steps = max(-(-total // batch_size), min_steps)
    padded = steps * batch_size

    def shaped(values: np.ndarray, dtype: type) -> np.ndarray:
        out = np.zeros(padded, dtype=dtype)
        out[:total] = values[order]
        return out.reshape(steps, batch_size)

    return EpochBatches(
        users=shaped(users, np.int32),
        items=shaped(items, np.int32),
        targets=shaped(targets, np.float32),
        weights=shaped(sample_weights, np.float32),
        num_samples=total,
    )
