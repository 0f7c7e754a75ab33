"""`TargetAttention`: a target item weighs the steps of a behaviour sequence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.layers.behavior.dice import Dice

SCORES = ("mlp", "bilinear")
NORMALIZATIONS = (None, "softmax")


@keras.saving.register_keras_serializable(package="keras_recsys")
class TargetAttention(keras.layers.Layer):
    """Weights w_t of behaviours h_t (B, L, d) given a target q (B, d_q); pooled Σ_t w_t · h_t.

    Scores s_t, by `score`:

    * `"mlp"`, DIN's local activation unit: s_t = MLP([h_t, q, h_t − q,
      h_t ⊙ q]), hidden layers of `units` with `activation`, then one linear
      output (h and q of the same size d);
    * `"bilinear"`, DIEN's interest evolving layer: s_t = h_tᵀ W q, W of shape (d, d_q).

    Weights, by `normalization`: None gives w_t = s_t (DIN keeps the raw
    scores, "to reserve the intensity of user interests"); "softmax" gives
    w_t = exp(s_t) / Σ_j exp(s_j) over the real steps (DIEN). Padded steps
    (`mask` false) get w_t = 0 either way, so an empty history pools to 0.

    References: Zhou et al., 2018, "Deep Interest Network for Click-Through
    Rate Prediction" (KDD), the local activation unit (figure 2); Zhou et
    al., 2019, "Deep Interest Evolution Network for Click-Through Rate
    Prediction" (AAAI), the attention of the interest evolving layer.

    Args:
        units: hidden widths of the activation unit (score "mlp"); the
            paper's figure 2 has one layer of 36.
        activation: of those hidden layers: "prelu" (a learned slope per
            unit), "dice" (`Dice`, the paper's best) or any Keras activation
            name.
        score: "mlp" or "bilinear".
        normalization: None or "softmax".

    Call arguments:
        keys: (B, L, d) behaviour vectors h_t.
        query: (B, d_q) target vector q.
        mask: (B, L), true at real steps; None for all real.
        training: switches Dice between batch and moving statistics.
        return_weights: also return the weights.

    Returns:
        `pooled` (B, d), or `(pooled, weights)` with the (B, L) weights w_t
        when `return_weights` is true.

    Example:

    >>> attention = kr.layers.TargetAttention(units=[36])
    >>> history = keras.random.normal((4, 20, 8))
    >>> target = keras.random.normal((4, 8))
    >>> attention(history, target, mask=keras.ops.ones((4, 20), "bool")).shape
    (4, 8)
    """

    def __init__(
        self,
        units: Sequence[int] = (36,),
        activation: str = "prelu",
        score: str = "mlp",
        normalization: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}.")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}."
            )
        self.units = [int(u) for u in units]
        self.activation = activation
        self.score = score
        self.normalization = normalization
        # Takes `mask` (padded steps); the output has no steps left to mask.
        self.supports_masking = True
        self.hidden_layers, self.activation_layers = [], []
        if score == "mlp":
            for i, width in enumerate(self.units):
                self.hidden_layers.append(
                    keras.layers.Dense(width, dtype=self.dtype_policy, name=f"dense_{i}")
                )
                self.activation_layers.append(self._activation_layer(i))
            self.output_layer = keras.layers.Dense(1, dtype=self.dtype_policy, name="score")

    def _activation_layer(self, i: int):
        if self.activation == "prelu":
            # One slope per unit, shared by every step and example.
            return keras.layers.PReLU(shared_axes=[1], dtype=self.dtype_policy, name=f"prelu_{i}")
        if self.activation == "dice":
            return Dice(dtype=self.dtype_policy, name=f"dice_{i}")
        return keras.layers.Activation(
            self.activation, dtype=self.dtype_policy, name=f"activation_{i}"
        )

    def build(self, keys_shape, query_shape=None, mask_shape=None) -> None:
        keys_dim = int(keys_shape[-1])
        query_dim = keys_dim if query_shape is None else int(query_shape[-1])
        if self.score == "mlp":
            if query_dim != keys_dim:
                raise ValueError(
                    f"TargetAttention '{self.name}' with score 'mlp' compares [h, q, h − q, "
                    f"h ⊙ q]: the behaviours (size {keys_dim}) and the target "
                    f"(size {query_dim}) must have the same size."
                )
            shape = (keys_shape[0], keys_shape[1], 4 * keys_dim)
            for dense, activation in zip(self.hidden_layers, self.activation_layers):
                dense.build(shape)
                shape = shape[:-1] + (dense.units,)
                activation.build(shape)
            self.output_layer.build(shape)
        else:
            self.kernel = self.add_weight(
                name="kernel", shape=(keys_dim, query_dim), initializer="glorot_uniform"
            )
        self.built = True

    def _scores(self, keys, query, mask=None, training=None):
        """s_t (B, L) before masking and normalization."""
        keys = ops.cast(keys, self.compute_dtype)
        query = ops.cast(query, self.compute_dtype)
        if self.score == "bilinear":
            projected = ops.matmul(query, ops.transpose(self.kernel))  # W q: (B, d)
            return ops.sum(keys * ops.expand_dims(projected, 1), axis=-1)
        target = ops.broadcast_to(ops.expand_dims(query, 1), ops.shape(keys))
        x = ops.concatenate([keys, target, keys - target, keys * target], axis=-1)
        for dense, activation in zip(self.hidden_layers, self.activation_layers):
            x = dense(x)
            if isinstance(activation, Dice):  # batch statistics over the real steps only
                x = activation(x, mask=mask, training=training)
            else:
                x = activation(x)
        return ops.squeeze(self.output_layer(x), axis=-1)

    def _weights(self, keys, query, mask=None, training=None):
        """w_t (B, L): the scores, normalized if asked, 0 at padded steps."""
        scores = self._scores(keys, query, mask, training=training)
        if mask is None:
            mask = ops.ones(ops.shape(scores), dtype="bool")
        mask = ops.cast(mask, "bool")
        if self.normalization == "softmax":
            # In float32: -1e9 does not fit a float16.
            scores = ops.cast(scores, "float32")
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
            weights = ops.softmax(scores, axis=-1)
            # A history with no real step would spread its weight over the padding.
            weights = ops.cast(weights * ops.cast(mask, "float32"), self.compute_dtype)
            return weights
        return ops.where(mask, scores, ops.zeros_like(scores))

    def call(self, keys, query, mask=None, training=None, return_weights=False):
        weights = self._weights(keys, query, mask, training=training)
        keys = ops.cast(keys, self.compute_dtype)
        pooled = ops.sum(keys * ops.expand_dims(weights, -1), axis=1)
        return (pooled, weights) if return_weights else pooled

    def compute_mask(self, keys, query=None, mask=None):
        return None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            score=self.score,
            normalization=self.normalization,
        )
        return config
