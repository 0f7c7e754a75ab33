"""`CompressedInteractionNetwork`: xDeepFM's explicit, vector-wise interactions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class CompressedInteractionNetwork(keras.layers.Layer):
    """CIN: X^k_h = act(Σ_i Σ_j W^{k,h}_{ij} (X^{k−1}_i ⊙ X^0_j)), sum-pooled over d.

    The input X^0 (B, F, d) holds F field embeddings of one size d. Layer k
    has H_k feature maps X^k (B, H_k, d): every map is a weighted sum of the
    element-wise products of one row of the previous layer and one field
    of X^0, so layer k holds interactions of degree k + 1, at the vector
    level (a field's d dimensions move together). Every layer's maps are
    summed over d, p^k_h = Σ_e X^k_{h,e}, and the layer outputs
    p+ = [p^1, ..., p^K] (B, Σ_k H_k), which xDeepFM feeds to its output
    unit. The weights of a layer are one (H_{k−1}·F, H_k) matrix, the 1×1
    convolution over the H_{k−1}×F products that the paper describes.

    The paper's CIN has no activation and no bias (`activation=None`).
    `split_half=True` is an option of the authors' code: every layer but
    the last sends its first H_k / 2 maps on to the next layer and sum-pools
    only the other half, which halves the later layers' cost; p+ then has
    Σ_{k<K} H_k / 2 + H_K entries.

    Reference: Lian et al., 2018, "xDeepFM: Combining Explicit and Implicit
    Feature Interactions for Recommender Systems" (KDD), section 3.

    Args:
        layer_units: H_1, ..., H_K, the feature maps of every layer.
        activation: applied to every feature map; None (the identity) in
            the paper.
        split_half: send half of every non-final layer's maps to the next
            layer and the other half to the output (each H_k but the last
            must then be even).
        kernel_initializer: initializer of every layer's weights.

    Example:

    >>> cin = kr.layers.CompressedInteractionNetwork([16, 8])
    >>> cin(keras.random.normal((4, 5, 8))).shape  # 5 fields of size 8
    (4, 24)
    """

    def __init__(
        self,
        layer_units: Sequence[int] = (200, 200, 200),
        activation: str | None = None,
        split_half: bool = False,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.layer_units = [int(u) for u in layer_units]
        if not self.layer_units or min(self.layer_units) < 1:
            raise ValueError(
                f"CompressedInteractionNetwork needs at least one layer of >= 1 feature "
                f"maps, got layer_units={list(layer_units)}."
            )
        self.split_half = bool(split_half)
        if self.split_half and any(u % 2 for u in self.layer_units[:-1]):
            raise ValueError(
                "With split_half=True every layer but the last must have an even number "
                f"of feature maps, got layer_units={self.layer_units}."
            )
        self.activation = activation
        self._activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _split(self, index: int) -> tuple[int, int]:
        """(maps sent to the next layer, maps sum-pooled into the output) of layer `index`."""
        units = self.layer_units[index]
        if self.split_half and index < len(self.layer_units) - 1:
            return units // 2, units // 2
        return units, units

    def build(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(
                f"CompressedInteractionNetwork takes stacked fields (B, F, d), got {input_shape}."
            )
        num_fields = int(input_shape[1])
        previous = num_fields
        self.kernels = []
        for index, units in enumerate(self.layer_units):
            # A fresh initializer per layer: a seeded one shared by all
            # layers would give every layer of the same shape the same weights.
            initializer = keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            )
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{index}",
                    shape=(previous * num_fields, units),
                    initializer=initializer,
                )
            )
            previous = self._split(index)[0]
        self.built = True

    def call(self, inputs):
        x0 = ops.cast(inputs, self.compute_dtype)
        num_fields, dim = x0.shape[1], x0.shape[2]
        x = x0
        pooled = []
        for index, kernel in enumerate(self.kernels):
            # products[b, h·F + j, e] = X^{k−1}_{h,e} · X^0_{j,e}: the rows the
            # kernel's rows weigh, in the kernel's (h, j) order.
            products = ops.expand_dims(x, 2) * ops.expand_dims(x0, 1)
            products = ops.reshape(products, (-1, x.shape[1] * num_fields, dim))
            maps = self._activation(ops.einsum("bpe,pn->bne", products, kernel))
            forward, _ = self._split(index)
            if self.split_half and index < len(self.kernels) - 1:
                x, kept = maps[:, :forward], maps[:, forward:]
            else:
                x = kept = maps
            pooled.append(ops.sum(kept, axis=-1))
        return ops.concatenate(pooled, axis=-1) if len(pooled) > 1 else pooled[0]

    def output_width(self) -> int:
        """Σ_k of the maps each layer sum-pools into p+."""
        return sum(self._split(i)[1] for i in range(len(self.layer_units)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_width())

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            layer_units=self.layer_units,
            activation=self.activation,
            split_half=self.split_half,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
