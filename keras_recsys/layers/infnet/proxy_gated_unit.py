"""`ProxyGatedUnit`: tokens of one type gated by their own proxies (INFNet's PGU)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_recsys")
class ProxyGatedUnit(keras.layers.Layer):
    """PGU(X, X̃) = X ⊙ σ(MLP(flatten(X̃))): one gate from the proxies, on every token.

    The P proxies X̃ (B, P, d_p) are flattened and mapped by an MLP
    (`hidden_units` layers, then a linear layer to d) to one d-vector
    g = σ(·) per example, broadcast over all N tokens of X (B, N, d). This is
    INFNet's homogeneous flow: the proxies, which read the other token types
    in the cross attention, decide which dimensions of their own type's
    tokens pass. It costs O(P·d_p·h + N·d), linear in the number of tokens.
    Padded tokens (zero vectors) stay zero.

    Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow
    Network for Large-Scale Recommendation Systems" (arXiv 2508.11565),
    Proxy Gated Unit.

    Args:
        hidden_units: widths of the gate MLP's hidden layers (empty: one
            linear map, g = σ(W flatten(X̃) + b)).
        activation: activation of the hidden layers.

    Example:

    >>> pgu = kr.layers.infnet.ProxyGatedUnit(hidden_units=[32])
    >>> tokens, proxies = keras.ops.ones((4, 50, 8)), keras.ops.ones((4, 3, 8))
    >>> pgu(tokens, proxies).shape
    (4, 50, 8)
    """

    def __init__(self, hidden_units: Sequence[int] = (), activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation

    def build(self, tokens_shape, proxies_shape):
        dim = int(tokens_shape[-1])
        self.gate = MLP(
            [*self.hidden_units, dim],
            self.activation,
            output_activation=False,
            dtype=self.dtype_policy,
            name="gate",
        )
        self.gate.build((None, int(proxies_shape[1]) * int(proxies_shape[2])))
        self.built = True

    def gate_values(self, proxies):
        """(B, P, d_p) proxies → the (B, d) gate σ(MLP(flatten(X̃)))."""
        proxies = ops.cast(proxies, self.compute_dtype)
        flat = ops.reshape(proxies, (-1, proxies.shape[1] * proxies.shape[2]))
        return ops.sigmoid(self.gate(flat))

    def call(self, tokens, proxies):
        """(B, N, d) tokens, (B, P, d_p) proxies → (B, N, d) gated tokens."""
        tokens = ops.cast(tokens, self.compute_dtype)
        return tokens * ops.expand_dims(self.gate_values(proxies), 1)

    def compute_output_shape(self, tokens_shape, proxies_shape):
        return tokens_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, activation=self.activation)
        return config
