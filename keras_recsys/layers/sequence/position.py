"""`PositionEmbedding`: a learned vector per position, added to the item embeddings."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class PositionEmbedding(keras.layers.Layer):
    """Learned positional embedding: y[b, t] = x[b, t] + P[max_length − L + t].

    Histories are padded at the front, so the most recent item always sits at
    the last index. Position t of an input of length L reads row
    `max_length − L + t` of the table: an input shorter than `max_length`
    is read as if it were front-padded to `max_length`, and the most recent
    item always gets the last row P[max_length − 1], as in SASRec's
    reference (whose inputs are always `max_length` long, where this is
    simply P[t]).

    Reference: Kang & McAuley, 2018, "Self-Attentive Sequential
    Recommendation" (ICDM).

    Args:
        max_length: the longest sequence the layer accepts (rows of P).
        initializer: initializer of the (max_length, d) table P (default
            truncated normal, stddev 0.02).
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> x = keras.random.normal((32, 50, 64))
    >>> y = kr.layers.PositionEmbedding(max_length=50)(x)  # (32, 50, 64)
    """

    def __init__(
        self,
        max_length: int,
        initializer: str | keras.initializers.Initializer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(max_length) < 1:
            raise ValueError(f"max_length must be positive, got {max_length}.")
        self.max_length = int(max_length)
        # BERT's initialization of learned positions, the same as the item tables'.
        if initializer is None:
            initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, input_shape) -> None:
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.max_length, int(input_shape[-1])),
            initializer=self.initializer,
        )
        self.built = True

    def call(self, inputs):
        """(B, L, d) → (B, L, d), L <= max_length."""
        length = inputs.shape[1]
        if length is not None and length > self.max_length:
            raise ValueError(
                f"PositionEmbedding(max_length={self.max_length}) got a sequence of "
                f"length {length}; keep the latest {self.max_length} items or raise max_length."
            )
        length = ops.shape(inputs)[1]
        rows = ops.arange(self.max_length - length, self.max_length, dtype="int32")
        positions = ops.cast(ops.take(self.position_embeddings, rows, axis=0), self.compute_dtype)
        return ops.cast(inputs, self.compute_dtype) + positions[None, :, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config
