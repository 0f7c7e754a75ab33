"""`DynamicDense`: a dense layer whose weights are generated from a condition."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class DynamicDense(keras.layers.Layer):
    """y = act(x · W(z) + b(z)), W(z) = A_0 + Σ_k z_k A_k, b(z) = b_0 + Σ_k z_k B_k.

    The weights of the layer are generated per example from a condition
    vector z (e.g. the embedding of the scenario and of features that
    describe it) by a linear hypernetwork: A (d_z, d_in, units) and
    B (d_z, units) map z to a kernel and a bias, A_0 and b_0 are the static
    part. The product is computed without materializing the per-example
    kernels: x · W(z) = x A_0 + Σ_k z_k (x A_k), i.e. B·d_in·d_z·units
    multiply-adds. With `residual=True` (needs d_in == units) the output is
    y + x, as in M2M's meta tower.

    Reference: Zhang et al., 2022, "Leaving No One Behind: A Multi-Scenario
    Multi-Task Meta Learning Approach for Advertiser Modeling" (WSDM; M2M,
    its "meta unit").

    Args:
        units: output width.
        activation: activation (None: linear).
        residual: add the input to the output.
        kernel_initializer: initializer of A_0 and A.

    Example:

    >>> layer = kr.layers.DynamicDense(4)
    >>> layer(x, z).shape        # x: (B, d_in), z: (B, d_z)
    (B, 4)
    """

    def __init__(
        self,
        units: int,
        activation=None,
        residual: bool = False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.residual = bool(residual)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape, condition_shape):
        dim, cond = int(inputs_shape[-1]), int(condition_shape[-1])
        if self.residual and dim != self.units:
            raise ValueError(
                f"DynamicDense(residual=True) needs input width == units, got {dim} "
                f"and {self.units}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.hyper_kernel = self.add_weight(
            name="hyper_kernel",
            shape=(cond, dim, self.units),
            initializer=self.kernel_initializer,
        )
        self.hyper_bias = self.add_weight(
            name="hyper_bias", shape=(cond, self.units), initializer="zeros"
        )
        self.built = True

    def generated_weights(self, condition):
        """(W(z) (B, d_in, units), b(z) (B, units)), for inspection and tests."""
        kernel = self.kernel + ops.einsum("bk,kio->bio", condition, self.hyper_kernel)
        bias = self.bias + ops.matmul(condition, self.hyper_bias)
        return kernel, bias

    def call(self, inputs, condition):
        x = ops.cast(inputs, self.compute_dtype)
        z = ops.cast(condition, self.compute_dtype)
        projected = ops.einsum("bi,kio->bko", x, self.hyper_kernel)  # (B, d_z, units)
        y = ops.matmul(x, self.kernel) + ops.einsum("bk,bko->bo", z, projected)
        y = y + self.bias + ops.matmul(z, self.hyper_bias)
        y = self.activation(y)
        return y + x if self.residual else y

    def compute_output_shape(self, inputs_shape, condition_shape):
        return tuple(inputs_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            residual=self.residual,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
