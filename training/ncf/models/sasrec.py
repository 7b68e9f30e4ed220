"""SASRec: a causal self-attention model over each user's most recent items (Kang & McAuley 2018).

The user is the sequence of their last `max_len` items (oldest first, left-padded with the padding
index `num_items`): item embeddings, `blocks` causal self-attention blocks (pre-norm, as in the paper:
the query is the normalised input, keys and values the input), and the last position's output is the
user's representation; an item's score is its dot product with the item embedding (shared between
input and output). An optional learned user embedding is added to that representation, for data where
order carries little signal.

Positions are learned as relative ones: each attention head adds a learned bias for how many items
back the key is from the query, in place of the paper's embedding per slot. Every position predicts
the next item in training, so a reading position with three items before it is trained on every
user's first three items, and a new user's three events at serving time read the same whatever
padding precedes them; with slot embeddings a short history sat in slots only long histories had
trained. Every reading position also gets the recency that slot embeddings give only the last one.
The README's sequence-model section has the validation comparison that chose this.

The model keeps the histories it scores from (`histories`, one row per known user): the evaluator's
`Scorer` and the exported signatures call `logits(users, items)` / `logits_all_items(users)` exactly
as for the NCF models, and the user index selects the stored sequence. `remember` replaces them
(the test-time input is everything before the test item). Sequences of requests that bring their own
events go through `represent`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from ncf.data.training_data import TrainingData
from ncf.errors import NcfError
from ncf.fit.sequence_epochs import SequenceRunner, SequenceSource, sequence_length
from ncf.models.base import NO_DOT_PRODUCT, DotProduct, Model
from ncf.models.memory import DEFAULT_MEMORY_BUDGET_MB, CatalogCost, block_shape, budget_bytes
from ncf.serving.history import sequence_signature
from ncf.serving.history_blend import BlendSettings, HistoryBlend

if TYPE_CHECKING:
    from ncf.data.vocab import UserItemSets
    from ncf.fit.distribute import Workers
    from ncf.train_settings import TrainConfig

_NEG_LARGE = -1e9


@dataclass(frozen=True)
class SequenceSpec:
    """Shape of a sequence model."""

    num_users: int
    num_items: int
    factors: int
    max_len: int
    blocks: int
    heads: int
    dropout: float
    user_embedding: bool


def last_items(data: TrainingData, max_len: int) -> np.ndarray:
    """Each user's last `max_len` training items, oldest first, left-padded: int32 [users, max_len]."""
    users, items, _ = time_ordered(data)
    pad = len(data.items)
    out = np.full((len(data.users), max_len), pad, np.int32)
    counts = np.bincount(users, minlength=len(data.users))
    ends = np.cumsum(counts)
    from_end = ends[users] - np.arange(len(users))  # 1 for a user's newest item
    keep = from_end <= max_len
    out[users[keep], max_len - from_end[keep]] = items[keep]
    return out


def time_ordered(data: TrainingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows sorted by user, oldest first (recency 0 is the newest); with row order."""
    order = np.lexsort((-data.train_recency.astype(np.int64), data.train_users))
    return data.train_users[order], data.train_items[order].astype(np.int32), order


class SasRecModel(Model):
    """Item and position embeddings, causal attention blocks, and the stored user histories."""

    MODEL_TYPE = "sasrec"
    keeps_histories = True

    def __init__(
        self, spec: SequenceSpec, histories: np.ndarray, seed: int, init_stddev: float = 0.05
    ) -> None:
        super().__init__(name="sasrec")
        self.spec = spec
        seeds = iter(range(seed * 100, seed * 100 + 100))
        d = spec.factors

        def normal(shape: tuple[int, ...], name: str, stddev: float = init_stddev) -> tf.Variable:
            return tf.Variable(tf.random.stateless_normal(shape, (next(seeds), 1), stddev=stddev), name=name)

        self.embeddings: dict[str, tf.Variable] = {"item": normal((spec.num_items + 1, d), "item")}
        if spec.user_embedding:
            self.embeddings["user"] = tf.Variable(tf.zeros((spec.num_users, d)), name="user")
        self.dense: dict[str, tf.Variable] = {
            "distance": tf.Variable(tf.zeros((spec.max_len, spec.heads)), name="distance")
        }
        scale = (1.0 / d) ** 0.5
        for block in range(spec.blocks):
            for part in ("query", "key", "value", "ffn_in", "ffn_out"):
                self.dense[f"b{block}_{part}"] = normal((d, d), f"b{block}_{part}", scale)
            for part in ("ffn_in_bias", "ffn_out_bias", "norm1_beta", "norm2_beta"):
                self.dense[f"b{block}_{part}"] = tf.Variable(tf.zeros((d,)), name=f"b{block}_{part}")
            for part in ("norm1_gamma", "norm2_gamma"):
                self.dense[f"b{block}_{part}"] = tf.Variable(tf.ones((d,)), name=f"b{block}_{part}")
        self.dense["final_gamma"] = tf.Variable(tf.ones((d,)), name="final_gamma")
        self.dense["final_beta"] = tf.Variable(tf.zeros((d,)), name="final_beta")
        self.histories = tf.Variable(histories.astype(np.int32), trainable=False, name="histories")

    # -- the model interface (`ncf.models.base.Model`) --------------------------------------------
    @classmethod
    def build(cls, model_type: str, config: TrainConfig, data: TrainingData, workers: Workers) -> SasRecModel:
        """The configured sequence model, remembering `data`'s training histories; one device only."""
        if workers.distributed or workers.count > 1:
            raise NcfError("model_type sasrec trains on one device of one instance; run it with one worker")
        return build_sasrec(config, data)

    @property
    def model_type(self) -> str:
        return self.MODEL_TYPE

    def epoch_source(self, data: TrainingData, config: TrainConfig, workers: Workers) -> SequenceSource:
        """Windows of each user's time-ordered items (`ncf.fit.sequence_epochs`)."""
        return SequenceSource(data, config, workers)

    def step_loop(self, config: TrainConfig, workers: Workers) -> SequenceRunner:
        """Next-item prediction at every position, under the configured `sequence_loss`."""
        return SequenceRunner(self, config, workers)

    @classmethod
    def dot_product(cls, model_type: str) -> DotProduct:
        return DotProduct(NO_DOT_PRODUCT, "sasrec's exhaustive scoring is already one dot product per item")

    def history_signature(
        self, recommender: tf.Module, filters: tf.Module | None = None
    ) -> tf.types.experimental.GenericFunction:
        """The request's events appended to the stored history, read by the encoder."""
        return sequence_signature(recommender, filters)

    def history_blend(self, settings: BlendSettings | None, seen: UserItemSets) -> HistoryBlend | None:
        """The short-history blend `sequence_signature` applies (`ncf.serving.history_blend`), if enabled."""
        enabled = settings is not None and settings.enabled
        return HistoryBlend(seen, self.spec.num_items, settings) if enabled else None

    def remember(self, data: TrainingData) -> None:
        """Score from `data`'s training items from now on (each user's last `max_len`)."""
        self.histories.assign(last_items(data, self.spec.max_len))

    @property
    def padding(self) -> int:
        return self.spec.num_items

    # -- the encoder -------------------------------------------------------------------------------
    def encode(
        self,
        sequences: tf.Tensor,
        dropout_seed: tf.Tensor | None = None,
        segments: tf.Tensor | None = None,
        last_only: bool = False,
        dtype: tf.DType = tf.float32,
    ) -> tf.Tensor:
        """Hidden states of every position, [B, L, d] (of the last one only with `last_only`: [B, 1, d]).

        `segments` [B, L]: windows packed in one row (`ncf.fit.sequence_packing`); a position attends
        only to earlier positions of its own segment (default: all real positions are one sequence).
        Dropout only with a `dropout_seed` (int32 [2]). `dtype`: the matmuls' and activations'
        precision (mixed precision: bfloat16); layer norms, attention softmax and the output are float32.
        """
        d = self.spec.factors
        real = sequences != self.padding
        present = tf.cast(real, tf.float32)[..., None]
        x = tf.gather(self.embeddings["item"], sequences) * d**0.5
        x = tf.cast(self._dropout(x * present, dropout_seed, 0), dtype)
        segments = tf.where(real, 0, -1) if segments is None else segments
        length = tf.shape(sequences)[1]
        causal = tf.linalg.band_part(tf.ones((length, length)), -1, 0)
        same = tf.cast(segments[:, :, None] == segments[:, None, :], tf.float32)
        allowed = causal[None] * same * tf.transpose(present, [0, 2, 1])  # [B, query, key]
        bias = self._distance_bias(length)
        for block in range(self.spec.blocks):
            only_last = last_only and block == self.spec.blocks - 1  # only the last position is read
            if only_last:
                allowed, bias, present = allowed[:, -1:], bias[:, :, -1:], present[:, -1:]
            x = self._block(x, allowed, bias, block, dropout_seed, only_last) * tf.cast(present, dtype)
        return _layer_norm(x, self.dense["final_gamma"], self.dense["final_beta"], tf.float32)

    def _distance_bias(self, length: tf.Tensor) -> tf.Tensor:
        """Each head's learned attention bias for a key `query - key` items back, [1, heads, L, L].

        A sequence's real items are contiguous (padding only outside them), so slot distance is item
        distance.
        """
        slots = tf.range(length)
        back = tf.clip_by_value(slots[:, None] - slots[None, :], 0, self.spec.max_len - 1)
        return tf.transpose(tf.gather(self.dense["distance"], back), [2, 0, 1])[None]

    def _block(
        self,
        x: tf.Tensor,
        allowed: tf.Tensor,
        bias: tf.Tensor,
        block: int,
        seed: tf.Tensor | None,
        last_only: bool = False,
    ) -> tf.Tensor:
        """One attention block: causal multi-head attention, then the point-wise feed-forward layer.

        With `last_only` the queries are the last position only (`allowed` and `bias` sliced to match).
        """
        dtype = x.dtype
        w = {
            name[len(f"b{block}_") :]: tf.cast(v, dtype)
            for name, v in self.dense.items()
            if name.startswith(f"b{block}_")
        }
        query_in = _layer_norm(x[:, -1:] if last_only else x, w["norm1_gamma"], w["norm1_beta"], dtype)
        heads = self.spec.heads

        def split(t: tf.Tensor) -> tf.Tensor:  # [B, L, d] -> [B, heads, L, d / heads]
            shape = tf.shape(t)
            return tf.transpose(tf.reshape(t, [shape[0], shape[1], heads, -1]), [0, 2, 1, 3])

        q, k, v = (
            split(tf.tensordot(t, w[n], 1)) for t, n in ((query_in, "query"), (x, "key"), (x, "value"))
        )
        logits = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32)
        logits = logits * (self.spec.factors // heads) ** -0.5 + bias
        logits += (1.0 - allowed[:, None]) * _NEG_LARGE
        attention = tf.cast(self._dropout(tf.nn.softmax(logits), seed, 2 * block + 1), dtype)
        mixed = tf.transpose(tf.matmul(attention, v), [0, 2, 1, 3])
        x = query_in + tf.reshape(mixed, tf.shape(query_in))
        normed = _layer_norm(x, w["norm2_gamma"], w["norm2_beta"], dtype)
        hidden = tf.nn.relu(tf.tensordot(normed, w["ffn_in"], 1) + w["ffn_in_bias"])
        out = tf.tensordot(self._dropout(hidden, seed, 2 * block + 2), w["ffn_out"], 1) + w["ffn_out_bias"]
        return normed + self._dropout(out, seed, 2 * block + 2 + 1000)

    def _dropout(self, x: tf.Tensor, seed: tf.Tensor | None, salt: int) -> tf.Tensor:
        if seed is None or not self.spec.dropout:
            return x
        return tf.nn.experimental.stateless_dropout(x, self.spec.dropout, seed + tf.constant([0, salt]))

    def represent(self, sequences: tf.Tensor, users: tf.Tensor, known: tf.Tensor | None = None) -> tf.Tensor:
        """The user representation (last position's state, plus the user embedding of known users), [B, d].

        Only what the last position needs is computed: the batch's leading all-padding columns are
        dropped (`without_leading_padding`) and the last block runs for the last position only.
        """
        out = self.encode(without_leading_padding(sequences, self.padding), last_only=True)[:, -1, :]
        if self.spec.user_embedding:
            user = self.user_vectors(users)
            out += user if known is None else user * tf.cast(known, tf.float32)[:, None]
        return out

    def user_vectors(self, users: tf.Tensor) -> tf.Tensor:
        """The learned user embeddings, scaled by sqrt(d) as the input items are (see `encode`), [B, d].

        The encoder's output is layer-normalised (each unit about 1); unscaled, rows that Adam moves
        by about the learning rate per step stay too small to matter next to it.
        """
        return tf.gather(self.embeddings["user"], users) * self.spec.factors**0.5

    def item_scores(self, states: tf.Tensor, rows: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
        """Every state [M, d] dotted with every item row [N, d], computed in `dtype`, as float32 [M, N]."""
        product = tf.matmul(tf.cast(states, dtype), tf.cast(rows, dtype), transpose_b=True)
        return tf.cast(product, tf.float32)

    @staticmethod
    def pair_scores(states: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """Each state [M, d] dotted with its own item row [M, d], float32 [M]."""
        return tf.reduce_sum(tf.cast(states, tf.float32) * tf.cast(rows, tf.float32), axis=1)

    def item_table(self) -> tf.Tensor:
        """Every real item's embedding (the padding row left out), [num_items, d]."""
        return self.embeddings["item"][: self.spec.num_items]

    # -- scoring (`ncf.models.base.Model`) ---------------------------------------------------------
    def logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """Next-item scores of aligned (user, item) pairs from the stored histories, [batch]."""
        distinct, position = tf.unique(users)
        reps = self.represent(tf.gather(self.histories, distinct), distinct)
        return tf.reduce_sum(tf.gather(reps, position) * tf.gather(self.embeddings["item"], items), axis=1)

    def catalog_cost(self) -> CatalogCost:
        """Per user: the encoder's widest moment, one attention block's [heads, L, L] logits, masked
        logits and softmax with the [L, L] masks beside them, and its [L, d] activations (inputs, queries,
        keys, values, the mixed heads, the feed-forward layer). Per pair: the score and its copies."""
        spec = self.spec
        length, width = spec.max_len, spec.factors
        per_user = (4 * spec.heads + 3) * length * length + 12 * length * width
        return CatalogCost(per_user=per_user, per_pair=4)

    def catalog_state(self, users: tf.Tensor) -> dict[str, tf.Tensor]:
        """Each user's representation of their stored history, [B, d]: encoded once per block of users."""
        return {"representation": self.represent(tf.gather(self.histories, users), users)}

    def sequence_state(
        self, sequences: tf.Tensor, users: tf.Tensor, known: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """`catalog_state` of users given by their item sequences (a request's events after the stored
        history); `known` false: no user embedding."""
        return {"representation": self.represent(sequences, users, known)}

    def catalog_block_logits(
        self, state: dict[str, tf.Tensor], start: tf.Tensor, stop: tf.Tensor, item_side: tf.Tensor | None
    ) -> tf.Tensor:
        """Next-item scores of the represented users against items [start, stop)."""
        items = self.embeddings["item"][start:stop]
        return tf.matmul(state["representation"], items, transpose_b=True)

    def logits_all_items(self, users: tf.Tensor, item_side: tf.Tensor | None = None) -> tf.Tensor:
        """Next-item scores of every item for each user, [batch, num_items] (`item_side` is unused)."""
        reps = self.represent(tf.gather(self.histories, users), users)
        return tf.matmul(reps, self.item_table(), transpose_b=True)

    def similarity_vectors(self, side: str) -> tf.Tensor:
        """Unit vectors of every item (embeddings) or user (representation of the stored history)."""
        if side == "item":
            vectors = self.item_table()
        else:  # users in blocks of the default memory budget: the encoder holds [B, heads, L, L] floats
            step = block_shape(self.catalog_cost(), 1, budget_bytes(DEFAULT_MEMORY_BUDGET_MB)).rows
            blocks = [
                self.catalog_state(tf.range(start, min(start + step, self.spec.num_users)))["representation"]
                for start in range(0, self.spec.num_users, step)
            ]
            vectors = tf.concat(blocks, 0)
        return tf.math.l2_normalize(vectors, axis=1)


def _layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Layer normalisation computed in float32 (also under mixed precision), returned as `dtype`."""
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    normed = (x - mean) * tf.math.rsqrt(variance + 1e-8) * tf.cast(gamma, tf.float32) + tf.cast(
        beta, tf.float32
    )
    return tf.cast(normed, dtype)


def without_leading_padding(sequences: tf.Tensor, padding: int) -> tf.Tensor:
    """Left-padded rows [B, L] cut to the batch's longest real part: the columns before it are padding
    in every row and change no state (positions are relative), so encoding them would be wasted."""
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(sequences != padding, tf.int32), axis=1))
    return sequences[:, tf.shape(sequences)[1] - tf.maximum(longest, 1) :]


def build_sasrec(config: object, data: TrainingData) -> SasRecModel:
    """The configured sequence model over `data`'s catalog, remembering its training histories.

    Its length is `data`'s (`ncf.fit.sequence_epochs.sequence_length`): `max_len_quantile` of the
    users' training lengths, capped by `max_len`.
    """
    max_len = sequence_length(data, config)
    spec = SequenceSpec(
        num_users=len(data.users),
        num_items=len(data.items),
        factors=config.factors,
        max_len=max_len,
        blocks=config.attention_blocks,
        heads=config.attention_heads,
        dropout=config.dropout,
        user_embedding=config.user_embedding,
    )
    return SasRecModel(spec, last_items(data, max_len), seed=config.seed)
