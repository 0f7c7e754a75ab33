"""`SequenceProxies`: one proxy token per behaviour sequence (INFNet)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_recsys")
class SequenceProxies(keras.layers.Layer):
    """S̃_a = Σ_t m_{a,t} · φ_seq(s_{a,t}): one proxy per behaviour type a.

    φ_seq is one MLP applied to every sequence token (`hidden_units` layers
    with `activation`, then a linear layer back to d); the sum runs over the
    real positions of each behaviour sequence (m_{a,t} = 1), so padding adds
    nothing and an empty history gives a zero proxy. Choice (the paper writes
    a single φ_seq): the same φ_seq serves every behaviour type; the proxies
    differ by the sequences they sum.

    Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow
    Network for Large-Scale Recommendation Systems" (arXiv 2508.11565),
    sequence proxies.

    Args:
        hidden_units: widths of φ_seq's hidden layers (empty: one linear map).
        activation: activation of the hidden layers.

    Example:

    >>> proxies = kr.layers.infnet.SequenceProxies(hidden_units=[16])
    >>> clicks, buys = keras.ops.ones((2, 20, 8)), keras.ops.ones((2, 5, 8))
    >>> proxies([clicks, buys], [clicks_ids != 0, buys_ids != 0]).shape
    (2, 2, 8)
    """

    def __init__(self, hidden_units: Sequence[int] = (), activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation

    def build(self, sequences_shape, masks_shape=None):
        dims = {int(shape[-1]) for shape in sequences_shape}
        if len(dims) != 1:
            raise ValueError(f"Every behaviour sequence needs the same token size, got {dims}.")
        (self.dim,) = dims
        self.phi = MLP(
            [*self.hidden_units, self.dim],
            self.activation,
            output_activation=False,
            dtype=self.dtype_policy,
            name="phi",
        )
        self.phi.build((None, None, self.dim))
        self.built = True

    def call(self, sequences, masks):
        """[(B, L_a, d)] sequences and [(B, L_a)] masks (True = item) → (B, F, d)."""
        if len(sequences) != len(masks):
            raise ValueError(f"Got {len(sequences)} sequences and {len(masks)} masks.")
        lengths = [s.shape[1] for s in sequences]
        # φ_seq once over all behaviour types, then one masked sum per type.
        tokens = ops.concatenate([ops.cast(s, self.compute_dtype) for s in sequences], axis=1)
        mask = ops.concatenate([ops.cast(m, self.compute_dtype) for m in masks], axis=1)
        mapped = self.phi(tokens) * ops.expand_dims(mask, -1)
        proxies, start = [], 0
        for length in lengths:
            proxies.append(ops.sum(mapped[:, start : start + length], axis=1))
            start += length
        return ops.stack(proxies, axis=1)

    def compute_output_shape(self, sequences_shape, masks_shape=None):
        return (sequences_shape[0][0], len(sequences_shape), sequences_shape[0][-1])

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, activation=self.activation)
        return config
