"""`FieldSelfAttention`: AutoInt's interacting layer over field embeddings."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class FieldSelfAttention(keras.layers.Layer):
    """Multi-head self-attention among fields, with a projected residual.

    For the fields e_1..e_F (B, F, d) and every head h:

        α^h_{m,k} = softmax_k(⟨W^h_Q e_m, W^h_K e_k⟩)
        ẽ^h_m = Σ_k α^h_{m,k} W^h_V e_k
        out_m = ReLU([ẽ^1_m, ..., ẽ^H_m] + W_Res e_m)

    W_Q, W_K, W_V and W_Res are bias-free projections, each head of size
    d' (`head_dim`), so the output is (B, F, H·d'). Attention weights
    are raw inner products, as in the paper (`use_scale=True` divides
    them by √d', as the authors' code does). Stacking layers gives
    interactions of higher order: layer l mixes fields already mixed by
    layer l − 1. The authors' code also layer-normalizes every layer's
    output (`layer_norm=True`, after the ReLU); the paper does not.

    Reference: Song et al., 2019, "AutoInt: Automatic Feature Interaction
    Learning via Self-Attentive Neural Networks" (CIKM), section 4.4.

    Args:
        num_heads: attention heads H (2 in the paper).
        head_dim: d', the size of each head's queries, keys and values
            (32 in the paper).
        use_residual: add the projected input W_Res e_m before the ReLU.
        use_scale: divide the attention logits by √d'.
        layer_norm: layer-normalize the output (after the ReLU).
        dropout: dropout rate on the attention weights.
        kernel_initializer: initializer of every projection.

    Example:

    >>> attention = kr.layers.FieldSelfAttention(num_heads=2, head_dim=4)
    >>> attention(keras.random.normal((3, 5, 8))).shape  # 5 fields of size 8
    (3, 5, 8)
    """

    def __init__(
        self,
        num_heads: int = 2,
        head_dim: int = 32,
        use_residual: bool = True,
        use_scale: bool = False,
        layer_norm: bool = False,
        dropout: float = 0.0,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_heads) < 1 or int(head_dim) < 1:
            raise ValueError(
                f"FieldSelfAttention needs num_heads >= 1 and head_dim >= 1, got "
                f"{num_heads} and {head_dim}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        self.use_residual = bool(use_residual)
        self.use_scale = bool(use_scale)
        self.layer_norm = bool(layer_norm)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        width = self.num_heads * self.head_dim
        names = ["query", "key", "value"] + (["residual"] if self.use_residual else [])
        self.projections = {
            name: keras.layers.Dense(
                width,
                use_bias=False,
                kernel_initializer=keras.initializers.get(
                    keras.initializers.serialize(self.kernel_initializer)
                ),
                dtype=self.dtype_policy,
                name=name,
            )
            for name in names
        }
        self.attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="attention_dropout"
        )
        self.norm = (
            keras.layers.LayerNormalization(epsilon=1e-6, dtype=self.dtype_policy, name="norm")
            if self.layer_norm
            else None
        )

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"FieldSelfAttention takes fields (B, F, d), got {input_shape}.")
        for projection in self.projections.values():
            projection.build(tuple(input_shape))
        if self.norm is not None:
            self.norm.build(tuple(input_shape[:-1]) + (self.num_heads * self.head_dim,))
        self.built = True

    def _heads(self, x):
        """(B, F, H·d') → (B, F, H, d')."""
        return ops.reshape(x, (-1, x.shape[1], self.num_heads, self.head_dim))

    def call(self, inputs, training=None):
        x = ops.cast(inputs, self.compute_dtype)
        query = self._heads(self.projections["query"](x))
        key = self._heads(self.projections["key"](x))
        value = self._heads(self.projections["value"](x))
        logits = ops.einsum("bmhk,bnhk->bhmn", query, key)
        if self.use_scale:
            logits = logits / ops.cast(self.head_dim**0.5, logits.dtype)
        weights = ops.softmax(logits, axis=-1)
        weights = self.attention_dropout(weights, training=training)
        attended = ops.einsum("bhmn,bnhk->bmhk", weights, value)
        out = ops.reshape(attended, (-1, x.shape[1], self.num_heads * self.head_dim))
        if self.use_residual:
            out = out + self.projections["residual"](x)
        out = ops.relu(out)
        if self.norm is not None:
            out = self.norm(out)
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_heads * self.head_dim,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            use_residual=self.use_residual,
            use_scale=self.use_scale,
            layer_norm=self.layer_norm,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
