"""`BilinearFusion`: FinalMLP's multi-head bilinear fusion of two streams."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class BilinearFusion(keras.layers.Layer):
    """y = b + W_1 o_1 + W_2 o_2 + Σ_j o_{1,j}ᵀ W_{3,j} o_{2,j}, per output unit.

    Fuses two stream outputs o_1 (B, D_1) and o_2 (B, D_2) into `units`
    logits. Each input is cut into k heads (`num_heads`) of D_1 / k and
    D_2 / k units; head j contributes the bilinear term o_{1,j}ᵀ W_{3,j}
    o_{2,j} (second-order interactions between the streams) and the linear
    terms add the first-order part. With one head W_3 is a full
    D_1 × D_2 matrix per output; more heads cost k times fewer weights
    and only interact units of the same head. The linear terms read the
    whole streams (the sum over heads of per-head linear terms).

    Reference: Mao et al., 2023, "FinalMLP: An Enhanced Two-Stream MLP
    Model for CTR Prediction" (AAAI), section 3.3 (stream-level
    interaction aggregation); ŷ = σ(Σ_j BF(o_{1,j}, o_{2,j})).

    Args:
        units: number of outputs (one per task logit).
        num_heads: k; both input widths must be multiples of it.
        kernel_initializer: initializer of W_3, which is stored as one
            (k · D_1/k · D_2/k, units) matrix (Glorot normal, as the
            authors' code initializes it).

    Example:

    >>> fusion = kr.layers.BilinearFusion(units=1, num_heads=2)
    >>> fusion(keras.ops.ones((4, 8)), keras.ops.ones((4, 6))).shape
    (4, 1)
    """

    def __init__(
        self,
        units: int = 1,
        num_heads: int = 1,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_normal",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(units) < 1 or int(num_heads) < 1:
            raise ValueError(
                f"BilinearFusion needs units >= 1 and num_heads >= 1, got {units} and {num_heads}."
            )
        self.units = int(units)
        self.num_heads = int(num_heads)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # One bias b: the first linear term carries it.
        self.linear_1 = keras.layers.Dense(self.units, dtype=self.dtype_policy, name="linear_1")
        self.linear_2 = keras.layers.Dense(
            self.units, use_bias=False, dtype=self.dtype_policy, name="linear_2"
        )

    def build(self, first_shape, second_shape) -> None:
        widths = (int(first_shape[-1]), int(second_shape[-1]))
        if any(width % self.num_heads for width in widths):
            raise ValueError(
                f"BilinearFusion's input widths {widths} must be multiples of "
                f"num_heads={self.num_heads}."
            )
        self.linear_1.build(tuple(first_shape))
        self.linear_2.build(tuple(second_shape))
        self.head_dims = (widths[0] // self.num_heads, widths[1] // self.num_heads)
        self.bilinear = self.add_weight(
            name="bilinear",
            shape=(self.num_heads * self.head_dims[0] * self.head_dims[1], self.units),
            initializer=self.kernel_initializer,
        )
        self.built = True

    def call(self, first, second):
        first = ops.cast(first, self.compute_dtype)
        second = ops.cast(second, self.compute_dtype)
        heads_1 = ops.reshape(first, (-1, self.num_heads, self.head_dims[0]))
        heads_2 = ops.reshape(second, (-1, self.num_heads, self.head_dims[1]))
        kernel = ops.reshape(
            self.bilinear, (self.num_heads, self.head_dims[0], self.head_dims[1], self.units)
        )
        # o_{1,j}ᵀ W_{3,j} first (B, k, D_2/k, units), then the product with o_{2,j}
        # summed over the heads: never a (B, k, D_1/k, D_2/k) tensor.
        left = ops.einsum("bhi,hiju->bhju", heads_1, kernel)
        bilinear = ops.einsum("bhju,bhj->bu", left, heads_2)
        return self.linear_1(first) + self.linear_2(second) + bilinear

    def compute_output_shape(self, first_shape, second_shape):
        return (first_shape[0], self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            num_heads=self.num_heads,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
