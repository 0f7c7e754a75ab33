"""`AdaptiveInformationTransfer`: AITM's attention over transferred and own information."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class AdaptiveInformationTransfer(keras.layers.Layer):
    """AITM's AIT module: z = Σ_u w_u · h1(u), w_u = softmax_u(⟨h2(u), h3(u)⟩ / √d).

    Task t of a funnel fuses the information p_{t−1} transferred from the
    task before it with its own tower output q_t: both are d-dimensional
    vectors u ∈ {p_{t−1}, q_t}; h1, h2 and h3 are learned d × d linear maps
    (values, and the two sides of the score); each u's weight w_u is a
    softmax over the inputs of the scaled inner product ⟨h2(u), h3(u)⟩ / √d,
    and the output is the weighted sum of the values. The weights are
    per example: the layer learns, row by row, how much of the earlier
    step's information to take. Any number of inputs (one or more of the
    same width) is accepted; AITM uses two.

    The maps are bias-free, as the authors' code has them (three k × k
    matrices). They start from Glorot uniform (the authors' code draws
    N(0, 0.01²)); `kernel_initializer` sets it.

    Reference: Xi et al., 2021, "Modeling the Sequential Dependence among
    Audience Multi-step Conversions with Multi-task Learning in Targeted
    Display Advertising" (KDD).

    Args:
        kernel_initializer: initializer of h1, h2 and h3.

    Call arguments:
        inputs: a list of n tensors (B, d), e.g. [p_{t−1}, q_t].
        return_weights: also return the weights w, (B, n).

    Returns:
        z, (B, d) (and w).

    Example:

    >>> ait = kr.layers.AdaptiveInformationTransfer()
    >>> transferred, own = keras.ops.ones((4, 32)), keras.ops.zeros((4, 32))
    >>> z, w = ait([transferred, own], return_weights=True)
    >>> z.shape, w.shape
    ((4, 32), (4, 2))
    """

    def __init__(
        self,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: Sequence[Sequence[int | None]]) -> None:
        shapes = [tuple(shape) for shape in input_shape]
        if not shapes or any(len(shape) != 2 for shape in shapes):
            raise ValueError(
                "AdaptiveInformationTransfer takes a list of one or more (B, d) tensors, "
                f"got shapes {shapes}."
            )
        widths = {shape[-1] for shape in shapes}
        if len(widths) != 1:
            raise ValueError(
                f"AdaptiveInformationTransfer's inputs must have one width, got {sorted(widths)}."
            )
        width = int(widths.pop())
        self.width = width
        # h1 (values), h2 and h3 (the two sides of the score): d × d each.
        self.h1, self.h2, self.h3 = (
            self.add_weight(name=name, shape=(width, width), initializer=self.kernel_initializer)
            for name in ("h1", "h2", "h3")
        )
        self.built = True

    def call(self, inputs, return_weights: bool = False):
        stacked = ops.stack([ops.cast(x, self.compute_dtype) for x in inputs], axis=1)  # (B, n, d)
        values = ops.matmul(stacked, self.h1)
        scores = ops.sum(ops.matmul(stacked, self.h2) * ops.matmul(stacked, self.h3), axis=-1)
        weights = ops.softmax(scores / math.sqrt(self.width), axis=-1)  # (B, n)
        fused = ops.einsum("bn,bnd->bd", weights, values)
        return (fused, weights) if return_weights else fused

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
