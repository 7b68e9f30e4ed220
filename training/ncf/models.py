"""The four scoring models: MF, GMF, MLP and NeuMF (He et al. 2017; Rendle et al. 2020).

Every model is a plain `tf.Module` over dense integer indices (see `ncf.vocab`) with two
entry points:

- `logits(users, items)` scores aligned pairs; it is what training differentiates.
- `logits_all_items(users)` scores every item for a batch of users; it is what top-k
  serving and full-catalog evaluation use. The MLP tower's first layer is split into a
  user half and an item half so the item half is computed once for the whole catalog
  instead of once per (user, item) pair.

Plain `tf.Variable`s (no Keras layers) keep the exported SavedModel free of Keras and
let the optimizer tell embedding tables (updated row-wise) from dense weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import tensorflow as tf


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


class NcfModel(tf.Module):
    """One module for all four model types; the spec decides which towers exist."""

    def __init__(self, spec: ModelSpec, seed: int, init_stddev: float = 0.01) -> None:
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

    @property
    def hidden_layer_count(self) -> int:
        return len(self.spec.mlp_layers) - 2 if self.spec.has_mlp else 0

    # -- pairs -------------------------------------------------------------------------------------
    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Unnormalised scores of aligned (user, item) index pairs, shape [batch]."""
        emb, dense = self.embeddings, self.dense
        parts = []
        if self.spec.has_gmf:
            parts.append(tf.gather(emb["gmf_user"], users) * tf.gather(emb["gmf_item"], items))
        if self.spec.has_mlp:
            hidden = tf.matmul(tf.gather(emb["mlp_user"], users), dense["mlp_w0_user"])
            hidden += tf.matmul(tf.gather(emb["mlp_item"], items), dense["mlp_w0_item"])
            parts.append(self._mlp_tail(tf.nn.relu(hidden + dense["mlp_b0"])))
        if self.spec.model_type == "mf":
            out = tf.reduce_sum(parts[0], axis=-1)
            out += tf.gather(emb["user_bias"], users)[:, 0] + tf.gather(emb["item_bias"], items)[:, 0]
        else:
            out = tf.matmul(tf.concat(parts, axis=-1), dense["head"])[:, 0]
        return out + dense["bias"]

    # -- one user against every item -------------------------------------------------------------
    def mlp_item_half(self) -> tf.Tensor:
        """Every item's contribution to the MLP's first layer, shape [num_items, first hidden width].

        It does not depend on the user, so a served model computes it once at export.
        """
        return tf.matmul(self.embeddings["mlp_item"], self.dense["mlp_w0_item"])

    def logits_all_items(self, users: tf.Tensor, item_half: tf.Tensor | None = None) -> tf.Tensor:
        """Unnormalised scores of every item for each user index, shape [batch, num_items].

        `item_half` is `mlp_item_half()` when the caller has it precomputed.
        """
        emb, dense = self.embeddings, self.dense
        out = tf.zeros((tf.shape(users)[0], self.spec.num_items))
        head_offset = 0
        if self.spec.has_gmf:
            user_vec = tf.gather(emb["gmf_user"], users)
            if self.spec.model_type != "mf":
                user_vec *= dense["head"][: self.spec.factors, 0]
                head_offset = self.spec.factors
            out += tf.matmul(user_vec, emb["gmf_item"], transpose_b=True)
        if self.spec.model_type == "mf":
            out += tf.gather(emb["user_bias"], users) + tf.transpose(emb["item_bias"])
        if self.spec.has_mlp:
            user_half = tf.matmul(tf.gather(emb["mlp_user"], users), dense["mlp_w0_user"]) + dense["mlp_b0"]
            item_half = self.mlp_item_half() if item_half is None else item_half
            hidden = tf.nn.relu(user_half[:, None, :] + item_half[None, :, :])
            tail = self._mlp_tail(hidden)
            out += tf.tensordot(tail, dense["head"][head_offset:, 0], axes=1)
        return out + dense["bias"]

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
