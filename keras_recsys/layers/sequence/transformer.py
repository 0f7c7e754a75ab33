"""`TransformerBlock`: one self-attention block over a padded item sequence."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _fresh(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    # One instance per sublayer: a seeded initializer shared by several layers
    # would give them identical weights.
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_recsys")
class TransformerBlock(keras.layers.Layer):
    """Self-attention block: x ← x + MHA(LN(x)); x ← x + FFN(LN(x)); y = x ⊙ m (pre-norm).

    With `norm_first=False` (post-norm, BERT): x ← LN(x + MHA(x)),
    x ← LN(x + FFN(x)). FFN(x) = W₂ · dropout(act(W₁ x + b₁)) + b₂, with
    dropout on the attention weights and on both branches before their
    residual sum.

    Attention masking: query i attends to key j only if j is a real item
    (`mask[b, j]`) and, with `causal=True`, j <= i. Every query also sees
    itself, so a padded position, or a fully padded row (an empty history),
    never takes a softmax over no key (NaN); the outputs at padded positions
    are then set to zero, so nothing read there reaches the real positions
    or later layers.

    SASRec uses `causal=True` with pre-norm and a ReLU FFN of width d;
    BERT4Rec uses `causal=False, norm_first=False, activation="gelu",
    intermediate_dim=4d`. (SASRec's reference code is a pre-norm variant that
    keeps the keys un-normalized and adds the normalized input in its
    residuals; this block is the standard pre-norm Transformer.)

    References: Vaswani et al., 2017, "Attention Is All You Need" (NeurIPS);
    Kang & McAuley, 2018, "Self-Attentive Sequential Recommendation" (ICDM);
    Sun et al., 2019, "BERT4Rec" (CIKM).

    Args:
        num_heads: attention heads; each has key_dim = d // num_heads (d must
            be a multiple of num_heads).
        dropout: dropout rate of the attention weights and both residual branches.
        causal: mask future keys (j > i) as well.
        intermediate_dim: width of the feed-forward layer (default d).
        activation: feed-forward activation.
        norm_first: pre-norm (True) or post-norm (False).
        layer_norm_epsilon: epsilon of both layer normalizations (SASRec's 1e-8).
        kernel_initializer: initializer of every kernel.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> x = keras.random.normal((32, 50, 64))
    >>> mask = ids != 0  # (32, 50)
    >>> block = kr.layers.sequence.TransformerBlock(num_heads=2, causal=True)
    >>> y = block(x, mask=mask)  # (32, 50, 64), zeros where mask is False
    """

    def __init__(
        self,
        num_heads: int,
        dropout: float = 0.0,
        causal: bool = False,
        intermediate_dim: int | None = None,
        activation: str | Any = "relu",
        norm_first: bool = True,
        layer_norm_epsilon: float = 1e-8,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_heads) < 1:
            raise ValueError(f"num_heads must be positive, got {num_heads}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.causal = bool(causal)
        self.intermediate_dim = None if intermediate_dim is None else int(intermediate_dim)
        self.activation = keras.activations.get(activation)
        self.norm_first = bool(norm_first)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, input_shape) -> None:
        dim = input_shape[-1]
        if dim is None or dim % self.num_heads:
            raise ValueError(
                f"The input size ({dim}) must be a multiple of num_heads ({self.num_heads})."
            )
        inner = self.intermediate_dim or dim
        policy = self.dtype_policy
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=dim // self.num_heads,
            dropout=self.dropout,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=policy,
            name="attention",
        )
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="attention_norm"
        )
        self.ffn_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="ffn_norm"
        )
        self.ffn_inner = keras.layers.Dense(
            inner,
            activation=self.activation,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=policy,
            name="ffn_inner",
        )
        self.ffn_outer = keras.layers.Dense(
            dim, kernel_initializer=_fresh(self.kernel_initializer), dtype=policy, name="ffn_outer"
        )
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.ffn_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=policy)

        shape = tuple(input_shape)
        self.attention.build(shape, shape)
        self.attention_norm.build(shape)
        self.ffn_norm.build(shape)
        self.ffn_inner.build(shape)
        self.ffn_outer.build(shape[:-1] + (inner,))
        self.built = True

    def attention_mask(self, mask):
        """(B, L, L) bool: query i may read key j (a real key, j <= i if causal, or j == i)."""
        valid = ops.cast(mask, "bool")
        positions = ops.arange(ops.shape(valid)[1])
        allowed = ops.expand_dims(valid, 1)
        if self.causal:
            allowed = ops.logical_and(allowed, positions[None, None, :] <= positions[None, :, None])
        itself = ops.equal(positions[:, None], positions[None, :])
        return ops.logical_or(allowed, itself[None, :, :])

    def call(self, inputs, mask=None, training=None):
        """(B, L, d) sequence and (B, L) bool mask (True = real item) → (B, L, d)."""
        x = ops.cast(inputs, self.compute_dtype)
        if mask is None:
            mask = ops.ones(ops.shape(x)[:2], "bool")
        keep = ops.cast(ops.expand_dims(ops.cast(mask, "bool"), -1), x.dtype)
        attention_mask = self.attention_mask(mask)

        # The product makes a tensor without the Keras mask the input may carry:
        # MultiHeadAttention would AND that mask into the query rows, leaving
        # padded queries no key at all (NaN in fused attention kernels).
        # Zeroing padded rows changes nothing: they are keys of no real query.
        h = self.attention_norm(x) if self.norm_first else x
        h = h * keep
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.attention_dropout(h, training=training)
        if not self.norm_first:
            x = self.attention_norm(x)

        h = self.ffn_norm(x) if self.norm_first else x
        h = self.ffn_outer(self.ffn_dropout(self.ffn_inner(h), training=training))
        x = x + self.output_dropout(h, training=training)
        if not self.norm_first:
            x = self.ffn_norm(x)
        return x * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            dropout=self.dropout,
            causal=self.causal,
            intermediate_dim=self.intermediate_dim,
            activation=keras.activations.serialize(self.activation),
            norm_first=self.norm_first,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
