"""`CrossAttention`: queries of one token type read the tokens of another (INFNet)."""

from __future__ import annotations

import math

import keras
from keras import ops


def large_negative(dtype) -> float:
    """A logit that vanishes under softmax and fits `dtype` (float16 tops out at 65504)."""
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


@keras.saving.register_keras_serializable(package="keras_recsys")
class CrossAttention(keras.layers.Layer):
    """CA(Q, K, V) = softmax(Q W_Q (K W_K)ᵀ / √d_k) V W_V, with masked keys.

    With h heads, W_Q and W_K map to h heads of `key_dim` = d_k each and W_V
    to h heads of d_out / h; head i attends with its own softmax and the h
    outputs are concatenated to d_out (the query size unless `output_dim`
    says otherwise). One head is the formula above exactly. There is no
    output projection and no bias (the formula has none).

    Keys where `key_mask` is False (padded sequence positions) take no
    weight. A query whose keys are all masked (an empty history) reads
    nothing: its output is zero rather than a softmax over padding.

    The cost is O(N_q · N_k · d) for the scores plus O((N_q + N_k) · d²) for
    the projections: linear in the number of keys, which is what INFNet's
    proxies buy (few queries against many tokens).

    Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow
    Network for Large-Scale Recommendation Systems" (arXiv 2508.11565);
    Vaswani et al., 2017, "Attention Is All You Need".

    Args:
        num_heads: h.
        key_dim: d_k of every head; default d_out / h.
        output_dim: d_out; default the query size. Must be a multiple of h.
        dropout: dropout rate on the attention weights (training only).
        kernel_initializer: initializer of W_Q, W_K and W_V.

    Example:

    >>> attention = kr.layers.infnet.CrossAttention(num_heads=2)
    >>> proxies = keras.ops.ones((4, 3, 8))     # (B, N_q, d)
    >>> history = keras.random.normal((4, 50, 8))  # (B, L, d)
    >>> attention(proxies, history, key_mask=ids != 0).shape
    (4, 3, 8)
    """

    def __init__(
        self,
        num_heads: int = 1,
        key_dim: int | None = None,
        output_dim: int | None = None,
        dropout: float = 0.0,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"num_heads must be positive, got {num_heads}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.output_dim = None if output_dim is None else int(output_dim)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _initializer(self):
        # A fresh instance per weight: one seeded initializer reused would
        # give W_Q, W_K and W_V the same values.
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def build(self, query_shape, key_shape, value_shape=None):
        value_shape = key_shape if value_shape is None else value_shape
        out = self.output_dim or int(query_shape[-1])
        if out % self.num_heads:
            raise ValueError(
                f"The output size ({out}) must be a multiple of num_heads ({self.num_heads})."
            )
        self.value_head_dim = out // self.num_heads
        self.head_dim = self.key_dim or self.value_head_dim
        heads = self.num_heads
        self.query_kernel = self.add_weight(
            name="query_kernel",
            shape=(int(query_shape[-1]), heads, self.head_dim),
            initializer=self._initializer(),
        )
        self.key_kernel = self.add_weight(
            name="key_kernel",
            shape=(int(key_shape[-1]), heads, self.head_dim),
            initializer=self._initializer(),
        )
        self.value_kernel = self.add_weight(
            name="value_kernel",
            shape=(int(value_shape[-1]), heads, self.value_head_dim),
            initializer=self._initializer(),
        )
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.built = True

    def call(
        self, query, key, value=None, key_mask=None, training=None, return_attention_scores=False
    ):
        """(B, N_q, d_q) queries, (B, N_k, d_k) keys (and values), (B, N_k) bool mask.

        Returns (B, N_q, d_out), and the (B, h, N_q, N_k) attention weights
        too with `return_attention_scores=True`.
        """
        query = ops.cast(query, self.compute_dtype)
        key = ops.cast(key, self.compute_dtype)
        value = key if value is None else ops.cast(value, self.compute_dtype)
        q = ops.einsum("bqd,dhk->bhqk", query, ops.cast(self.query_kernel, self.compute_dtype))
        k = ops.einsum("bnd,dhk->bhnk", key, ops.cast(self.key_kernel, self.compute_dtype))
        v = ops.einsum("bnd,dhv->bhnv", value, ops.cast(self.value_kernel, self.compute_dtype))
        scores = ops.einsum("bhqk,bhnk->bhqn", q, k) / math.sqrt(self.head_dim)
        if key_mask is not None:
            allowed = ops.expand_dims(ops.expand_dims(ops.cast(key_mask, "bool"), 1), 1)
            scores = ops.where(allowed, scores, large_negative(scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        if key_mask is not None:
            # Rows with no real key got a uniform softmax over padding: zero them.
            weights = weights * ops.cast(allowed, weights.dtype)
        attended = ops.einsum(
            "bhqn,bhnv->bqhv", self.attention_dropout(weights, training=training), v
        )
        output = ops.reshape(
            attended, (-1, attended.shape[1], self.num_heads * self.value_head_dim)
        )
        return (output, weights) if return_attention_scores else output

    def compute_output_shape(self, query_shape, key_shape, value_shape=None):
        out = self.output_dim or query_shape[-1]
        return (query_shape[0], query_shape[1], out)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            key_dim=self.key_dim,
            output_dim=self.output_dim,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
