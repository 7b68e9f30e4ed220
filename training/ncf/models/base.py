"""The one interface every model type implements: `Model`.

Modelled on `implicit`'s `RecommenderBase` (fit, recommend, similar items and users, save and load: one
small abstract class), a model type says

- how it is built from the settings and the training data (`build`);
- what feeds it in training: its epoch source and its compiled step loop (`epoch_source`, `step_loop`);
- how it scores users x items: aligned pairs (`logits`), the whole catalog (`logits_all_items`), and the
  catalog in blocks of bounded memory (`catalog_state`, `catalog_block_logits`, `catalog_cost`);
- how it reads a request's recent events (`history_signature`), or that it cannot (None);
- what the export takes from it: unit vectors for similar items and users (`similarity_vectors`), what
  part of its score is a dot product for two-stage retrieval (`dot_product`, `retrieval_vectors`) and
  anything of its catalog scoring that does not depend on the user (`precomputed_item_side`).

The training loop, the evaluation and the export call these and nothing else, so nothing outside
`ncf.models` asks which kind a model is. A new type is one module with a `Model` subclass plus one line in
`ncf.models.registry` (see the README's *Adding a model type*).

A model is a `tf.Module` over dense integer indices (users 0..num_users-1, items 0..num_items-1) whose
trainable variables are in two dicts: `embeddings` (tables the optimizer updates row by row, only the
rows a batch touched) and `dense` (everything else).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import tensorflow as tf

from ncf.models.memory import CatalogCost

if TYPE_CHECKING:  # the data, settings and workers a model is built from (none of them imports models)
    from ncf.data.training_data import TrainingData
    from ncf.fit.distribute import Workers
    from ncf.train_settings import TrainConfig

NO_DOT_PRODUCT = "none"  # exhaustive scoring only
EXACT_DOT_PRODUCT = "exact"  # the score is a dot product: one matmul answers exactly
PARTIAL_DOT_PRODUCT = "partial"  # a dot-product part retrieves candidates, the model reranks them


@dataclass(frozen=True)
class DotProduct:
    """What a model type's score has of a dot product (`ncf.serving.retrieval.choose` reads it)."""

    kind: str  # NO_DOT_PRODUCT, EXACT_DOT_PRODUCT or PARTIAL_DOT_PRODUCT
    reason: str  # why, recorded with the export's top-k choice ("" where the catalog size decides)


class Batches(Protocol):
    """One epoch of training inputs, as an epoch source builds them and a step loop consumes them."""

    weights: np.ndarray
    num_samples: int

    def step_inputs(self) -> tuple[np.ndarray, ...]:
        """The step loop's input arrays, each indexed by step first."""


class EpochSource(Protocol):
    """Builds each epoch of one training stage from the (seed, epoch) random stream."""

    def batches(self, epoch: int) -> Batches:
        """Epoch `epoch`'s inputs (0-based)."""


class Model(tf.Module, abc.ABC):
    """A recommender model type: built, trained, scored and exported through these methods only.

    Attributes every model has: `spec` (its shape, with at least `num_users` and `num_items`),
    `embeddings` and `dense` (its trainable variables, see the module docstring).
    """

    spec: Any
    embeddings: dict[str, tf.Variable]
    dense: dict[str, tf.Variable]
    # True for a model that scores users from stored histories (`remember` updates them); train.py then
    # lets it remember train + validation before the test split is scored.
    keeps_histories: ClassVar[bool] = False

    # -- building and training -------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def build(cls, model_type: str, config: TrainConfig, data: TrainingData, workers: Workers) -> Model:
        """A freshly initialised model of the registered `model_type` over `data`'s users and items.

        Raises `NcfError` when the model cannot train on `workers` (e.g. a single-device model).
        """

    @property
    @abc.abstractmethod
    def model_type(self) -> str:
        """The name this model's type is registered under (`ncf.models.registry`)."""

    @abc.abstractmethod
    def epoch_source(self, data: TrainingData, config: TrainConfig, workers: Workers) -> EpochSource:
        """What feeds one training stage of this model: its epochs' inputs."""

    @abc.abstractmethod
    def step_loop(self, config: TrainConfig, workers: Workers) -> tf.Module:
        """The compiled step loop that trains this model (an `ncf.fit.step_loop.EpochRunner`)."""

    def remember(self, data: TrainingData) -> None:
        """Score from `data`'s training interactions from now on (models with `keeps_histories`)."""

    # -- scoring ---------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return self.spec.num_users

    @property
    def num_items(self) -> int:
        return self.spec.num_items

    @abc.abstractmethod
    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Unnormalised scores of aligned (user, item) index pairs, [batch]."""

    @abc.abstractmethod
    def logits_all_items(self, users: tf.Tensor, item_side: tf.Tensor | None = None) -> tf.Tensor:
        """Unnormalised scores of every item for each user index, [batch, num_items]; `item_side` is
        `precomputed_item_side()` when the caller holds it."""

    def precomputed_item_side(self) -> tf.Tensor | None:
        """The user-independent part of `logits_all_items`, computed once at export; None: none."""
        return None

    def catalog_cost(self) -> CatalogCost:
        """Floats a catalog-scoring call holds at its peak per user and per (user, item) pair: it sizes the
        blocks of evaluation and serving (`ncf.models.memory.block_shape`). By default one per pair."""
        return CatalogCost(per_user=0, per_pair=1)

    def catalog_state(self, users: tf.Tensor) -> dict[str, tf.Tensor]:
        """What scoring the catalog reads of each user index, computed once per block of users and read
        by `catalog_block_logits` for each block of items. By default the indices themselves."""
        return {"users": users}

    def catalog_block_logits(
        self, state: dict[str, tf.Tensor], start: tf.Tensor, stop: tf.Tensor, item_side: tf.Tensor | None
    ) -> tf.Tensor:
        """Unnormalised scores of the users of `state` against items [start, stop), [users, stop - start];
        `item_side` is every item's `precomputed_item_side()` when the caller holds it. By default a slice
        of `logits_all_items` (exact, but the whole catalog is scored for each block: a model type whose
        catalog may be large overrides it)."""
        return self.logits_all_items(state["users"], item_side)[:, start:stop]

    # -- what the export serves ------------------------------------------------------------------
    @abc.abstractmethod
    def similarity_vectors(self, side: str) -> tf.Tensor:
        """Unit vectors of every item (`side="item"`) or user (`"user"`) for cosine similarity, [N, d]."""

    @classmethod
    def dot_product(cls, model_type: str) -> DotProduct:
        """What the type's score has of a dot product; by default nothing (exhaustive top-k)."""
        return DotProduct(NO_DOT_PRODUCT, f"{model_type} has no dot-product part to retrieve with")

    def retrieval_vectors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(user vectors [users, d], item vectors [items, d]) of the dot-product part."""
        raise NotImplementedError(f"{self.model_type} has no dot-product part")

    def history_signature(
        self, recommender: tf.Module, filters: tf.Module | None = None
    ) -> tf.types.experimental.GenericFunction | None:
        """The export's `recommend_from_history` for this model (`ncf.serving.history`), or None when it
        cannot read a request's events (the export then has no such signature); with `filters` (a
        `ncf.serving.filters.FilterSet`), its `recommend_from_history_filtered`."""
        return None

    def fold_in(self, settings: Any) -> tf.Module | None:
        """What the export keeps to fold a history into a user (`ncf.serving.foldin`); None: nothing."""
        return None

    def history_blend(self, settings: Any, seen: Any) -> tf.Module | None:
        """What the export keeps to blend a short history's scores with item-to-item similarity learned
        from `seen` (`ncf.serving.history_blend`); None: nothing (the history signature does not blend)."""
        return None
