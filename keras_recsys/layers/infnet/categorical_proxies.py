"""`CategoricalProxies`: m proxy tokens made from all categorical tokens (INFNet)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_recsys")
class CategoricalProxies(keras.layers.Layer):
    """C̃ = reshape(φ_cat(flatten(C)), (m, d)): m proxies of M categorical tokens.

    φ_cat is an MLP over the flattened (B, M·d) tokens whose last layer is
    linear with m·d outputs: `hidden_units` ReLU (or `activation`) layers,
    then Dense(m·d). Every proxy reads every field, so the m proxies stand in
    for the M fields in INFNet's cross attention, whose cost then grows with
    m rather than M.

    Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow
    Network for Large-Scale Recommendation Systems" (arXiv 2508.11565),
    categorical proxies.

    Args:
        num_proxies: m, the number of proxy tokens (the paper's default 4).
        hidden_units: widths of φ_cat's hidden layers (empty: one linear map).
        activation: activation of the hidden layers.

    Example:

    >>> proxies = kr.layers.infnet.CategoricalProxies(num_proxies=4)
    >>> proxies(keras.ops.ones((2, 7, 8))).shape
    (2, 4, 8)
    """

    def __init__(
        self,
        num_proxies: int = 4,
        hidden_units: Sequence[int] = (),
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_proxies) < 1:
            raise ValueError(f"num_proxies must be positive, got {num_proxies}.")
        self.num_proxies = int(num_proxies)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation

    def build(self, input_shape):
        _, num_tokens, dim = input_shape
        self.dim = int(dim)
        self.phi = MLP(
            [*self.hidden_units, self.num_proxies * self.dim],
            self.activation,
            output_activation=False,
            dtype=self.dtype_policy,
            name="phi",
        )
        self.phi.build((None, int(num_tokens) * self.dim))
        self.built = True

    def call(self, tokens):
        """(B, M, d) categorical tokens → (B, m, d) proxies."""
        tokens = ops.cast(tokens, self.compute_dtype)
        flat = ops.reshape(tokens, (-1, tokens.shape[1] * tokens.shape[2]))
        return ops.reshape(self.phi(flat), (-1, self.num_proxies, self.dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_proxies, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_proxies=self.num_proxies,
            hidden_units=self.hidden_units,
            activation=self.activation,
        )
        return config
