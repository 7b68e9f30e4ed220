"""The sequence model's own settings: its defaults and its rules (TensorFlow-free, read by the registry)."""

from __future__ import annotations

from typing import Any

from ncf.errors import NcfError

# Where the sequence model's defaults differ from the NCF types' (settings the user did not give).
# Measured on MovieLens 100K validation only (README, "The sequence model"): its validation score
# still rises slowly after 30 epochs and plateaus with +-0.005 noise, where 5 stale epochs stop it early.
# num_neg: the sampled softmax's shared negatives per step (`sequence_loss` auto on catalogs above
# softmax_max_items); an NCF type's 8 per positive would be far too few for a softmax estimate.
SEQUENCE_DEFAULTS = {"epochs": 200, "patience": 10, "num_neg": 1024}


def check_sequence_settings(config: Any) -> None:
    """What the sequence model needs of a `TrainConfig`, and what it does not support."""
    if config.factors % config.attention_heads:
        raise NcfError(
            f"hyperparameter attention_heads: {config.attention_heads} does not divide"
            f" factors {config.factors}"
        )
    if not config.is_implicit:
        raise NcfError(
            "model_type sasrec predicts the next item (implicit feedback); it has no explicit-feedback"
            " (rating) mode: use --feedback implicit or an NCF model type"
        )
    if config.item_features_path is not None:
        raise NcfError(
            "model_type sasrec does not use item features; pass --item-features none (or drop the items"
            " channel), or use an NCF model type for cold-start items"
        )
