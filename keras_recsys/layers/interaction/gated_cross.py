"""`GatedCross`: GDCN's gated cross layer."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def _fresh(initializer: keras.initializers.Initializer) -> keras.initializers.Initializer:
    # One instance per sublayer: a seeded initializer shared by both kernels
    # would give them the same initial values.
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_recsys")
class GatedCross(keras.layers.Layer):
    """GDCN's gated cross layer: x_{l+1} = x0 ⊙ (W_c x_l + b) ⊙ σ(W_g x_l) + x_l.

    The DCNv2 cross term x0 ⊙ (W_c x_l + b) (the interactions of one order
    higher than x_l) is filtered unit by unit by an information gate
    σ(W_g x_l) computed from the same x_l, so each layer learns which of
    its new interactions to pass on; the residual x_l keeps the lower
    orders. W_c and W_g are full (D, D) matrices; the gate has no bias, as
    in the paper's equation.

    Reference: Wang et al., 2023, "Towards Deeper, Lighter and
    Interpretable Cross Network for CTR Prediction" (CIKM) (the gated cross
    network, GCN).

    Args:
        kernel_initializer: initializer of W_c and W_g.
        bias_initializer: initializer of b.
        kernel_regularizer: regularizer of W_c and W_g.

    Call arguments:
        x0: the input of the cross network, (B, D).
        x: x_l, the previous layer's output, (B, D); None for the first
            layer (x_l = x0).

    Example:

    >>> cross = kr.layers.GatedCross()
    >>> x1 = cross(x0)           # first layer
    >>> x2 = cross_2(x0, x1)     # later layers
    """

    def __init__(
        self,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        bias_initializer: str | keras.initializers.Initializer = "zeros",
        kernel_regularizer: str | keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, x0_shape, x_shape=None) -> None:
        width = int(x0_shape[-1])
        self.cross = keras.layers.Dense(
            width,
            kernel_initializer=_fresh(self.kernel_initializer),
            bias_initializer=_fresh(self.bias_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name="cross",
        )
        self.gate = keras.layers.Dense(
            width,
            activation="sigmoid",
            use_bias=False,
            kernel_initializer=_fresh(self.kernel_initializer),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name="gate",
        )
        self.cross.build(tuple(x0_shape))
        self.gate.build(tuple(x0_shape))
        self.built = True

    def call(self, x0, x=None):
        x0 = ops.cast(x0, self.compute_dtype)
        x = x0 if x is None else ops.cast(x, self.compute_dtype)
        return x0 * self.cross(x) * self.gate(x) + x

    def compute_output_shape(self, x0_shape, x_shape=None):
        return tuple(x0_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer
            else None,
        )
        return config
