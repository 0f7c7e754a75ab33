"""Cross layers of DCN (v1) and DCN-Mix; DCNv2's is keras-rs `FeatureCross`."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class VectorCross(keras.layers.Layer):
    """DCN (v1) cross layer: x_{l+1} = x0 · (x_lᵀ w) + b + x_l.

    `w` and `b` are vectors of the input width, so a layer adds 2·D
    parameters and one degree of feature interaction.

    Reference: Wang et al., 2017, "Deep & Cross Network for Ad Click
    Predictions".

    Example:

    >>> cross = kr.layers.VectorCross()
    >>> x1 = cross(x0)         # first layer
    >>> x2 = cross2(x0, x1)    # later layers
    """

    def build(self, x0_shape, x_shape=None):
        width = x0_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(width,), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(width,), initializer="zeros")
        self.built = True

    def call(self, x0, x=None):
        if x is None:
            x = x0
        scalar = ops.sum(x * self.kernel, axis=-1, keepdims=True)
        return x0 * scalar + self.bias + x

    def compute_output_shape(self, x0_shape, x_shape=None):
        return x0_shape


@keras.saving.register_keras_serializable(package="keras_recsys")
class MixtureOfLowRankCross(keras.layers.Layer):
    """DCN-Mix cross layer: a gated mixture of low-rank cross experts.

    x_{l+1} = Σ_i G_i(x_l) · E_i(x_l) + x_l, with experts
    E_i(x_l) = x0 ⊙ (U_i g(C_i g(V_iᵀ x_l)) + b_i) and gates
    G = softmax(W_g x_l) over the experts; g is `activation` (the paper's
    nonlinearity in the projected space).

    Reference: Wang et al., 2021, "DCN V2: Improved Deep & Cross Network",
    section 3.3 (mixture of low-rank experts).

    Args:
        projection_dim: rank r of each expert.
        num_experts: number of experts.
        activation: g; "tanh" in the paper, None for a linear low-rank map.

    Example:

    >>> cross = kr.layers.MixtureOfLowRankCross(projection_dim=32, num_experts=4)
    >>> x1 = cross(x0)
    """

    def __init__(
        self,
        projection_dim: int = 32,
        num_experts: int = 4,
        activation: str | None = "tanh",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.projection_dim = int(projection_dim)
        self.num_experts = int(num_experts)
        self.activation = activation

    def build(self, x0_shape, x_shape=None):
        width, rank, experts = x0_shape[-1], self.projection_dim, self.num_experts
        self.v = self.add_weight(
            name="v", shape=(experts, width, rank), initializer="glorot_uniform"
        )
        self.c = self.add_weight(
            name="c", shape=(experts, rank, rank), initializer="glorot_uniform"
        )
        self.u = self.add_weight(
            name="u", shape=(experts, rank, width), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(experts, width), initializer="zeros")
        self.gate = self.add_weight(
            name="gate", shape=(width, experts), initializer="glorot_uniform"
        )
        self.built = True

    def _g(self, x):
        if self.activation is None:
            return x
        return keras.activations.get(self.activation)(x)

    def call(self, x0, x=None):
        if x is None:
            x = x0
        low = self._g(ops.einsum("bd,edr->ber", x, self.v))
        low = self._g(ops.einsum("ber,ers->bes", low, self.c))
        up = ops.einsum("ber,erd->bed", low, self.u) + self.bias
        experts = ops.expand_dims(x0, 1) * up
        gates = ops.softmax(ops.matmul(x, self.gate), axis=-1)
        return ops.einsum("be,bed->bd", gates, experts) + x

    def compute_output_shape(self, x0_shape, x_shape=None):
        return x0_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            projection_dim=self.projection_dim,
            num_experts=self.num_experts,
            activation=self.activation,
        )
        return config
