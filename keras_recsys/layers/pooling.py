"""`MaskedPooling`: one vector from a padded sequence."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class MaskedPooling(keras.layers.Layer):
    """Pools (B, L, d) over the positions where `mask` is true.

    mean: Σ_t m_t x_t / max(Σ_t m_t, 1); sum: Σ_t m_t x_t;
    max: max over unmasked positions (0 for an empty sequence).

    Args:
        mode: "mean", "sum" or "max".

    Example:

    >>> pool = kr.layers.MaskedPooling("mean")
    >>> pool(x, mask=ids != 0)  # x: (B, L, d) -> (B, d)
    """

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "sum", "max"):
            raise ValueError(f"mode must be 'mean', 'sum' or 'max', got {mode!r}.")
        self.mode = mode
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:-1], dtype="bool")
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        if self.mode == "max":
            lowest = ops.full_like(inputs, -1e9)
            pooled = ops.max(ops.where(weights > 0, inputs, lowest), axis=1)
            any_valid = ops.max(weights, axis=1)
            return pooled * any_valid
        total = ops.sum(inputs * weights, axis=1)
        if self.mode == "sum":
            return total
        return total / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config
