"""The four scoring models: MF, GMF, MLP and NeuMF (He et al. 2017; Rendle et al. 2020).

Every model is a plain `tf.Module` over dense integer indices (see `ncf.data.vocab`) with two
entry points:

- `logits(users, items)` scores aligned pairs; it is what training differentiates.
- `logits_all_items(users)` scores every item for a batch of users; it is what top-k
  serving and full-catalog evaluation use. The MLP tower's first layer is split into a
  user half and an item half so the item half is computed once for the whole catalog
  instead of once per (user, item) pair.

Both are their row-level counterparts (`pair_logits`, `catalog_logits`) applied to the stored
user rows (`user_rows`), so a user vector the model never learned (one folded in from a
request's events, `ncf.serving.foldin`) is scored by exactly the same code.

With item features (`ncf.data.features`), every item-side table (GMF/MF item embedding, MLP item
embedding, MF item bias) becomes id embedding + feature embedding, and items without an id
embedding (cold-start items) are represented by their features alone. Without features the
code path is exactly the plain one.

Plain `tf.Variable`s (no Keras layers) keep the exported SavedModel free of Keras and
let the optimizer tell embedding tables (updated row-wise) from dense weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from ncf.fit.pair_epochs import EpochSource
from ncf.fit.step_loop import EpochRunner
from ncf.models.base import EXACT_DOT_PRODUCT, NO_DOT_PRODUCT, PARTIAL_DOT_PRODUCT, DotProduct, Model
from ncf.models.memory import DEFAULT_MEMORY_BUDGET_MB, CatalogCost, block_shape, budget_bytes
from ncf.serving.foldin import FoldIn, FoldInSettings
from ncf.serving.history import foldin_signature

if TYPE_CHECKING:
    from ncf.data.features import FeatureMatrix
    from ncf.data.training_data import TrainingData
    from ncf.fit.distribute import Workers
    from ncf.train_settings import TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a model: which towers it has and how wide they are."""

    model_type: str
    num_users: int
    num_items: int
    factors: int
    mlp_layers: tuple[int, ...]

    @property
    def has_gmf(self) -> bool:
        return self.model_type in ("neumf", "gmf", "mf")

    @property
    def has_mlp(self) -> bool:
        return self.model_type in ("neumf", "mlp")

    @property
    def mlp_embedding_dim(self) -> int:
        """Each side of the MLP input is half of its first layer, as in the NCF paper."""
        return self.mlp_layers[0] // 2


@dataclass(frozen=True)
class ItemRange:
    """The items [start, stop) of the catalog: a block that `NcfModel.catalog_logits` scores."""

    start: tf.Tensor
    stop: tf.Tensor


_ITEM_TABLES = ("gmf_item", "mlp_item", "item_bias")
_USER_TABLES = ("gmf_user", "mlp_user", "user_bias")


class NcfModel(Model):
    """One module for all four model types; the spec decides which towers exist."""

    CATALOG_WIDE_FEATURES_MAX_ITEMS = 16_384

    def __init__(
        self,
        spec: ModelSpec,
        seed: int,
        init_stddev: float = 0.01,
        item_features: FeatureMatrix | None = None,
    ) -> None:
        super().__init__(name=spec.model_type)
        self.spec = spec
        normal = tf.random.stateless_normal
        seeds = iter(range(seed * 100, seed * 100 + 100))

        def table(rows: int, dim: int, name: str) -> tf.Variable:
            return tf.Variable(normal((rows, dim), seed=(next(seeds), 0), stddev=init_stddev), name=name)

        def glorot(fan_in: int, fan_out: int) -> tf.Tensor:
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            return tf.random.stateless_uniform((fan_in, fan_out), (next(seeds), 0), -limit, limit)

        self.embeddings: dict[str, tf.Variable] = {}
        self.dense: dict[str, tf.Variable] = {}
        head_width = 0
        if spec.has_gmf:
            self.embeddings["gmf_user"] = table(spec.num_users, spec.factors, "gmf_user")
            self.embeddings["gmf_item"] = table(spec.num_items, spec.factors, "gmf_item")
            head_width += spec.factors
        if spec.model_type == "mf":
            self.embeddings["user_bias"] = tf.Variable(tf.zeros((spec.num_users, 1)), name="user_bias")
            self.embeddings["item_bias"] = tf.Variable(tf.zeros((spec.num_items, 1)), name="item_bias")
        if spec.has_mlp:
            dim = spec.mlp_embedding_dim
            self.embeddings["mlp_user"] = table(spec.num_users, dim, "mlp_user")
            self.embeddings["mlp_item"] = table(spec.num_items, dim, "mlp_item")
            widths = spec.mlp_layers
            first = glorot(widths[0], widths[1])
            self.dense["mlp_w0_user"] = tf.Variable(first[:dim], name="mlp_w0_user")
            self.dense["mlp_w0_item"] = tf.Variable(first[dim:], name="mlp_w0_item")
            self.dense["mlp_b0"] = tf.Variable(tf.zeros((widths[1],)), name="mlp_b0")
            for layer, (fan_in, fan_out) in enumerate(pairwise(widths[1:]), start=1):
                self.dense[f"mlp_w{layer}"] = tf.Variable(glorot(fan_in, fan_out), name=f"mlp_w{layer}")
                self.dense[f"mlp_b{layer}"] = tf.Variable(tf.zeros((fan_out,)), name=f"mlp_b{layer}")
            head_width += widths[-1]
        if spec.model_type != "mf":
            self.dense["head"] = tf.Variable(glorot(head_width, 1), name="head")
        self.dense["bias"] = tf.Variable(tf.zeros(()), name="bias")
        self.has_features = item_features is not None
        if item_features is not None:
            self._add_feature_towers(item_features, table)

    def _add_feature_towers(self, features: FeatureMatrix, table: Callable[..., tf.Variable]) -> None:
        """One feature tower per item-side table (created last, so models without features are
        initialised exactly as before): a table of categorical value embeddings, pooled with the
        item's weights, plus a linear layer over the standardised numerics.
        """
        self.feature_tokens = tf.Variable(features.tokens, trainable=False, name="feature_tokens")
        self.feature_weights = tf.Variable(features.weights, trainable=False, name="feature_weights")
        self.feature_numeric = tf.Variable(features.numeric, trainable=False, name="feature_numeric")
        self.feature_has_id = tf.Variable(features.has_id, trainable=False, name="feature_has_id")
        rows, slots = np.nonzero(features.weights)  # the same weights as a sparse [items, tokens] matrix
        pairs = np.stack([rows, features.tokens[rows, slots]], axis=1).astype(np.int64)
        self.feature_pairs = tf.Variable(pairs, trainable=False, name="feature_pairs")
        self.feature_pair_weights = tf.Variable(features.weights[rows, slots], trainable=False, name="pair_w")
        self.feature_catalog_wide = features.num_items <= self.CATALOG_WIDE_FEATURES_MAX_ITEMS
        for name in [n for n in self.embeddings if n in _ITEM_TABLES]:
            dim = self.embeddings[name].shape[1]
            self.dense[f"features_{name}_tokens"] = table(features.num_tokens + 1, dim, f"{name}_tokens")
            if features.numeric.shape[1]:
                self.dense[f"features_{name}_numeric"] = table(features.numeric.shape[1], dim, f"{name}_num")

    # -- the model interface (`ncf.models.base.Model`) --------------------------------------------
    @classmethod
    def build(cls, model_type: str, config: TrainConfig, data: TrainingData, workers: Workers) -> NcfModel:
        """The configured `model_type` over `data`'s users and items, its variables in the workers' scope."""
        spec = ModelSpec(model_type, len(data.users), len(data.items), config.factors, config.mlp_layers)
        with workers.scope():
            return cls(spec, seed=config.seed, item_features=data.item_features)

    @property
    def model_type(self) -> str:
        return self.spec.model_type

    def epoch_source(self, data: TrainingData, config: TrainConfig, workers: Workers) -> EpochSource:
        """(user, item) samples: each positive with freshly drawn negatives (`ncf.fit.pair_epochs`)."""
        return EpochSource(data, config, workers)

    def step_loop(self, config: TrainConfig, workers: Workers) -> EpochRunner:
        """The pair step: BCE on logits (implicit feedback) or squared error (ratings); compiled with XLA
        (`jit_compile`) unless item features are on (their sparse pooling has no XLA kernel)."""
        jit = config.jit_compile and not self.has_features
        return EpochRunner(
            self, config.learning_rate, config.l2, config.is_implicit, workers, jit_compile=jit
        )

    def precomputed_item_side(self) -> tf.Tensor | None:
        return self.mlp_item_half() if self.spec.has_mlp else None

    def catalog_cost(self) -> CatalogCost:
        """Per user: its rows and their projections. Per pair: the scores (the GMF product, the sum) and,
        with an MLP tower, its hidden activations: the first layer twice (the sum before and after the
        ReLU can be alive together), each later layer once."""
        spec = self.spec
        per_user = 2 * (spec.factors + (spec.mlp_layers[0] if spec.has_mlp else 0)) + 4
        mlp = 2 * spec.mlp_layers[1] + sum(spec.mlp_layers[2:]) if spec.has_mlp else 0
        return CatalogCost(per_user=per_user, per_pair=mlp + 4)

    def catalog_state(self, users: tf.Tensor) -> dict[str, tf.Tensor]:
        """The user rows (`user_rows`): what the catalog scores of a user are a function of."""
        return self.user_rows(users)

    def catalog_block_logits(
        self, state: dict[str, tf.Tensor], start: tf.Tensor, stop: tf.Tensor, item_side: tf.Tensor | None
    ) -> tf.Tensor:
        """`catalog_logits` of the user rows `state` against items [start, stop) only."""
        half = None if item_side is None else item_side[start:stop]
        return self.catalog_logits(state, half, ItemRange(start, stop))

    def similarity_vectors(self, side: str) -> tf.Tensor:
        """Each tower's vectors in the space the model reads them in, normalised per tower and
        concatenated with weight 1/sqrt(towers) (see `ncf.serving.similarity`)."""
        dense, spec = self.dense, self.spec
        towers = []
        if spec.has_gmf:
            gmf = self.table(f"gmf_{side}")
            if spec.model_type != "mf":
                gmf = gmf * dense["head"][: spec.factors, 0]
            towers.append(gmf)
        if spec.has_mlp:
            towers.append(tf.matmul(self.table(f"mlp_{side}"), dense[f"mlp_w0_{side}"]))
        return tf.concat([tf.math.l2_normalize(t, axis=1) for t in towers], axis=1) / math.sqrt(len(towers))

    @classmethod
    def dot_product(cls, model_type: str) -> DotProduct:
        if model_type == "mlp":
            return DotProduct(NO_DOT_PRODUCT, "the MLP tower has no dot-product part to retrieve with")
        if model_type in ("mf", "gmf"):
            return DotProduct(
                EXACT_DOT_PRODUCT, f"{model_type} is a dot product: one matmul, exact, no rerank"
            )
        return DotProduct(PARTIAL_DOT_PRODUCT, "")

    def retrieval_vectors(self) -> tuple[tf.Tensor, tf.Tensor]:
        return dot_product_part(self)

    def retrieval_user_vectors(self, rows: dict[str, tf.Tensor]) -> tf.Tensor:
        """The dot-product part's user side of user rows (`user_rows`, or rows folded in)."""
        return user_vectors(self, rows)

    def history_signature(
        self, recommender: tf.Module, filters: tf.Module | None = None
    ) -> tf.types.experimental.GenericFunction:
        """The history folded into the user's rows (`ncf.serving.foldin`), then ranked."""
        return foldin_signature(recommender, filters)

    def fold_in(self, settings: FoldInSettings | None) -> FoldIn:
        return FoldIn(self, settings)

    # -- the item side: id embedding (+ feature tower) ---------------------------------------------
    def _item_rows(self, name: str, items: tf.Tensor) -> tf.Tensor:
        """Rows of an item-side table for `items`: id embedding plus, with features, the feature
        embedding; cold-start items (no id embedding) are their features alone."""
        rows = tf.gather(self.embeddings[name], items)
        if not self.has_features:
            return rows
        return rows * tf.gather(self.feature_has_id, items) + self._feature_rows(name, items)

    def table(self, name: str) -> tf.Tensor:
        """A whole embedding table as the model scores with it: item-side tables include the item
        features (so cold-start items have rows too); user-side tables are the embeddings."""
        if not self.has_features or not name.startswith(("gmf_item", "mlp_item", "item_bias")):
            return self.embeddings[name]
        return self.embeddings[name] * self.feature_has_id + self._feature_table(name)

    def _feature_rows(self, name: str, items: tf.Tensor) -> tf.Tensor:
        """The feature embeddings of `items`. A small catalog's whole feature table costs less than
        pooling per batch (and its gradient is a small dense one), so it is computed every step;
        large catalogs pool the batch's items only."""
        if self.feature_catalog_wide:
            return tf.gather(self._feature_table(name), items)
        values = tf.gather(self.dense[f"features_{name}_tokens"], tf.gather(self.feature_tokens, items))
        pooled = tf.reduce_sum(values * tf.gather(self.feature_weights, items)[..., None], axis=-2)
        numeric = self.dense.get(f"features_{name}_numeric")
        if numeric is not None:
            pooled += tf.matmul(tf.gather(self.feature_numeric, items), numeric)
        return pooled

    def _feature_table(self, name: str) -> tf.Tensor:
        """Every item's feature embedding, [num_items, dim]: the pooling as one sparse matmul."""
        tokens = self.dense[f"features_{name}_tokens"]
        shape = [self.spec.num_items, tokens.shape[0]]
        pooling = tf.SparseTensor(self.feature_pairs, self.feature_pair_weights, shape)
        table = tf.sparse.sparse_dense_matmul(pooling, tokens)
        numeric = self.dense.get(f"features_{name}_numeric")
        if numeric is not None:
            table += tf.matmul(self.feature_numeric, numeric)
        return table

    @property
    def hidden_layer_count(self) -> int:
        return len(self.spec.mlp_layers) - 2 if self.spec.has_mlp else 0

    # -- user rows -------------------------------------------------------------------------------
    def user_rows(self, users: tf.Tensor) -> dict[str, tf.Tensor]:
        """The user-side rows of `users`, {table name: [batch, width]}: what a user *is* to the model.

        Every score below is a function of these rows, so a caller can score a user vector the model
        never learned (a user folded in from request-time events, `ncf.serving.foldin`).
        """
        return {name: tf.gather(self.embeddings[name], users) for name in self.user_tables}

    @property
    def user_tables(self) -> tuple[str, ...]:
        """Names of the user-side embedding tables, in a fixed order."""
        return tuple(name for name in _USER_TABLES if name in self.embeddings)

    # -- pairs -------------------------------------------------------------------------------------
    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Unnormalised scores of aligned (user, item) index pairs, shape [batch]."""
        return self.pair_logits(self.user_rows(users), items)

    def pair_logits(self, rows: dict[str, tf.Tensor], items: tf.Tensor) -> tf.Tensor:
        """Unnormalised scores of aligned (user rows, item index) pairs, shape [batch]."""
        dense = self.dense
        parts = []
        if self.spec.has_gmf:
            parts.append(rows["gmf_user"] * self._item_rows("gmf_item", items))
        if self.spec.has_mlp:
            hidden = tf.matmul(rows["mlp_user"], dense["mlp_w0_user"])
            hidden += tf.matmul(self._item_rows("mlp_item", items), dense["mlp_w0_item"])
            parts.append(self._mlp_tail(tf.nn.relu(hidden + dense["mlp_b0"])))
        if self.spec.model_type == "mf":
            out = tf.reduce_sum(parts[0], axis=-1)
            out += rows["user_bias"][:, 0] + self._item_rows("item_bias", items)[:, 0]
        else:
            out = tf.matmul(tf.concat(parts, axis=-1), dense["head"])[:, 0]
        return out + dense["bias"]

    # -- one user against every item -------------------------------------------------------------
    def mlp_item_half(self) -> tf.Tensor:
        """Every item's contribution to the MLP's first layer, shape [num_items, first hidden width].

        It does not depend on the user, so a served model computes it once at export.
        """
        return tf.matmul(self.table("mlp_item"), self.dense["mlp_w0_item"])

    def logits_all_items(self, users: tf.Tensor, item_half: tf.Tensor | None = None) -> tf.Tensor:
        """Unnormalised scores of every item for each user index, shape [batch, num_items].

        `item_half` is `mlp_item_half()` when the caller has it precomputed.
        """
        return self.catalog_logits(self.user_rows(users), item_half)

    def catalog_logits(
        self,
        rows: dict[str, tf.Tensor],
        item_half: tf.Tensor | None = None,
        items: tf.Tensor | ItemRange | None = None,
    ) -> tf.Tensor:
        """Unnormalised scores of user rows against every item, [batch, num_items], or against the item
        indices (or `ItemRange`) `items` [S] only, [batch, S]. `item_half` is the MLP item half of those
        items, if precomputed.
        """
        dense = self.dense
        out = tf.zeros((tf.shape(next(iter(rows.values())))[0], 1))
        head_offset = 0
        if self.spec.has_gmf:
            user_vec = rows["gmf_user"]
            if self.spec.model_type != "mf":
                user_vec *= dense["head"][: self.spec.factors, 0]
                head_offset = self.spec.factors
            out += tf.matmul(user_vec, self._item_side("gmf_item", items), transpose_b=True)
        if self.spec.model_type == "mf":
            out += rows["user_bias"] + tf.transpose(self._item_side("item_bias", items))
        if self.spec.has_mlp:
            user_half = tf.matmul(rows["mlp_user"], dense["mlp_w0_user"]) + dense["mlp_b0"]
            if item_half is None:
                item_half = tf.matmul(self._item_side("mlp_item", items), dense["mlp_w0_item"])
            hidden = tf.nn.relu(user_half[:, None, :] + item_half[None, :, :])
            out += tf.tensordot(self._mlp_tail(hidden), dense["head"][head_offset:, 0], axes=1)
        return out + dense["bias"]

    def _item_side(self, name: str, items: tf.Tensor | ItemRange | None) -> tf.Tensor:
        """An item-side table as scored (`table`), or only the rows of `items` (indices or a range)."""
        if items is None:
            return self.table(name)
        if not isinstance(items, ItemRange):
            return self._item_rows(name, items)
        if self.has_features:  # the feature rows of the range only, not the whole catalog's
            return self._item_rows(name, tf.range(items.start, items.stop))
        return self.embeddings[name][items.start : items.stop]  # a slice along rows: no copy

    def _mlp_tail(self, hidden: tf.Tensor) -> tf.Tensor:
        """The MLP layers after the first, on tensors of any rank."""
        for layer in range(1, self.hidden_layer_count + 1):
            weights = self.dense[f"mlp_w{layer}"]
            hidden = tf.nn.relu(tf.tensordot(hidden, weights, axes=1) + self.dense[f"mlp_b{layer}"])
        return hidden

    # -- pretraining ------------------------------------------------------------------------------
    def load_pretrained(self, gmf: NcfModel, mlp: NcfModel, alpha: float = 0.5) -> None:
        """Initialise a NeuMF from trained GMF and MLP models (NCF paper, section 3.4.1).

        Embeddings and MLP weights are copied; the output layer concatenates the two heads
        weighted by `alpha` and `1 - alpha`.
        """
        if self.spec.model_type != "neumf" or gmf.spec.model_type != "gmf" or mlp.spec.model_type != "mlp":
            raise ValueError("load_pretrained needs a NeuMF target, a GMF and an MLP source")
        for name in ("gmf_user", "gmf_item"):
            self.embeddings[name].assign(gmf.embeddings[name])
        for name in ("mlp_user", "mlp_item"):
            self.embeddings[name].assign(mlp.embeddings[name])
        for name, var in mlp.dense.items():
            if name.startswith("mlp_"):
                self.dense[name].assign(var)
        head = tf.concat([alpha * gmf.dense["head"], (1.0 - alpha) * mlp.dense["head"]], axis=0)
        self.dense["head"].assign(head)
        self.dense["bias"].assign(alpha * gmf.dense["bias"] + (1.0 - alpha) * mlp.dense["bias"])
        for tower in (gmf, mlp):
            for name, var in tower.dense.items():
                if name.startswith("features_"):
                    self.dense[name].assign(var)


# -- the dot-product part, for two-stage retrieval (`ncf.serving.retrieval`) ------------------------
def dot_product_part(model: NcfModel) -> tuple[tf.Tensor, tf.Tensor]:
    """(user vectors [users, d], item vectors [items, d]) of the model's dot-product part.

    For MF and GMF, `user . item + bias` equals `model.logits`. For NeuMF it is the GMF half plus the MLP
    tower's item main effect (`mlp_item_effect`) as one more column, against a constant 1 for every user.
    """
    spec = model.spec
    if not spec.has_gmf:
        raise ValueError(f"{spec.model_type} has no dot-product part")
    users = user_vectors(model, {name: model.table(name) for name in model.user_tables})
    items = model.table("gmf_item")
    if spec.model_type == "mf":
        return users, tf.concat([items, model.table("item_bias"), tf.ones((spec.num_items, 1))], axis=1)
    if not spec.has_mlp:
        return users, items
    return users, tf.concat([items, mlp_item_effect(model)[:, None]], axis=1)


def user_vectors(model: NcfModel, rows: dict[str, tf.Tensor]) -> tf.Tensor:
    """The dot-product part's user side of user rows (`NcfModel.user_rows`), [batch, d]: the GMF vector,
    and for MF `[p, 1, b]`, for NeuMF `[h * p, 1]` (the 1 meets the item's MLP main effect)."""
    gmf = rows["gmf_user"]
    ones = tf.ones_like(gmf[:, :1])
    if model.spec.model_type == "mf":  # MF has no output layer: the plain dot product
        return tf.concat([gmf, ones, rows["user_bias"]], axis=1)
    gmf = gmf * model.dense["head"][: model.spec.factors, 0]
    return tf.concat([gmf, ones], axis=1) if model.spec.has_mlp else gmf


def gmf_vectors(model: NcfModel) -> tuple[tf.Tensor, tf.Tensor]:
    """(users, items) whose dot product is the GMF part of the logit: `h . (p * q) = (h * p) . q`."""
    users, items = model.table("gmf_user"), model.table("gmf_item")
    if model.spec.model_type == "mf":  # MF has no output layer: the plain dot product
        return users, items
    return users * model.dense["head"][: model.spec.factors, 0], items


def mlp_item_effect(model: NcfModel, sample_users: int = 64) -> tf.Tensor:
    """Each item's MLP-tower part of the logit, averaged over an evenly spaced sample of users: [items].

    NeuMF's MLP tower is not a dot product, but much of what it learns is a property of the item alone
    (popularity, broad appeal). Its mean over users is the best item-only (additive) approximation of it,
    so adding it to the GMF dot product makes the retrieval score track the full model; without it, the
    candidates follow the GMF half only, which may carry little of the score (see README). The sample is
    scored a few users at a time, as many as the default memory budget holds with the whole catalog.
    """
    cost, budget = model.catalog_cost(), budget_bytes(DEFAULT_MEMORY_BUDGET_MB)
    chunk = block_shape(cost, model.spec.num_items, budget).rows
    users = np.unique(np.linspace(0, model.spec.num_users - 1, sample_users).astype(np.int32))
    gmf_users, gmf_items = gmf_vectors(model)
    item_half, total = model.mlp_item_half(), tf.zeros((model.spec.num_items,))
    for start in range(0, len(users), chunk):
        batch = tf.constant(users[start : start + chunk])
        gmf = tf.matmul(tf.gather(gmf_users, batch), gmf_items, transpose_b=True)
        mlp = model.logits_all_items(batch, item_half) - gmf - model.dense["bias"]
        total += tf.reduce_sum(mlp, axis=0)
    return total / len(users)
