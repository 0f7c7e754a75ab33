"""Mixture of experts: `ExpertGate` and `MixtureOfExperts` (the MMoE block)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP


def mix_experts(gate, experts):
    """Σ_i g_i · e_i: a gate (B, n) over stacked expert outputs (B, n, d) -> (B, d)."""
    return ops.einsum("bn,bnd->bd", gate, experts)


@keras.saving.register_keras_serializable(package="keras_recsys")
class ExpertGate(keras.layers.Layer):
    """A softmax gate over experts: g = softmax(W x) (+ b with `use_bias`).

    The gate's outputs are non-negative and sum to one over the experts.
    MMoE and CGC/PLE gates are bias-free, so `use_bias` defaults to False.

    Reference: Ma et al., 2018, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts" (KDD).

    Args:
        num_experts: number of experts the gate weighs.
        use_bias: add a bias before the softmax.
        kernel_initializer: initializer of W.

    Example:

    >>> gate = kr.layers.ExpertGate(4)
    >>> gate(keras.ops.ones((2, 8))).shape
    (2, 4)
    """

    def __init__(
        self,
        num_experts: int,
        use_bias: bool = False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_experts) < 1:
            raise ValueError(f"ExpertGate needs num_experts >= 1, got {num_experts}.")
        self.num_experts = int(num_experts)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.dense = keras.layers.Dense(
            self.num_experts,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            name="logits",
        )

    def build(self, input_shape):
        self.dense.build(tuple(input_shape))
        self.built = True

    def call(self, inputs):
        return ops.softmax(self.dense(inputs), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_experts,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class MixtureOfExperts(keras.layers.Layer):
    """n expert MLPs mixed by one softmax gate per output (the MMoE block).

    y_k = Σ_i g_k,i(x) · e_i(x), with g_k(x) = softmax(W_k x) and e_i an
    MLP; with `num_gates=1` this is a (one-gate) mixture of experts, with
    one gate per task it is Multi-gate Mixture-of-Experts.

    Reference: Ma et al., 2018, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts" (KDD).

    Args:
        num_experts: number of experts n.
        expert_units: widths of every expert's MLP.
        num_gates: number of gates (one per task in MMoE).
        activation: expert activation.
        dropout: expert dropout rate.
        normalization: None, "batch" or "layer" in the experts.
        gate_use_bias: add a bias to the gates' logits.

    Call arguments:
        inputs: (B, D).
        return_gates: also return the gates, a list of (B, n).

    Returns:
        A list of `num_gates` tensors (B, expert_units[-1]) (and the gates).

    Example:

    >>> moe = kr.layers.MixtureOfExperts(num_experts=4, expert_units=[32], num_gates=2)
    >>> [y.shape for y in moe(keras.ops.ones((8, 16)))]
    [(8, 32), (8, 32)]
    """

    def __init__(
        self,
        num_experts: int,
        expert_units: Sequence[int],
        num_gates: int = 1,
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        gate_use_bias: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_experts) < 1 or int(num_gates) < 1:
            raise ValueError(
                "MixtureOfExperts needs num_experts >= 1 and num_gates >= 1, got "
                f"{num_experts} and {num_gates}."
            )
        if not expert_units:
            raise ValueError("MixtureOfExperts needs at least one expert layer width.")
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.num_gates = int(num_gates)
        self.activation = activation
        self.dropout = float(dropout)
        self.normalization = normalization
        self.gate_use_bias = bool(gate_use_bias)
        self.experts = [
            MLP(self.expert_units, activation, dropout, normalization, name=f"expert_{i}")
            for i in range(self.num_experts)
        ]
        self.gates = [
            ExpertGate(self.num_experts, use_bias=self.gate_use_bias, name=f"gate_{k}")
            for k in range(self.num_gates)
        ]

    def build(self, input_shape):
        for layer in self.experts + self.gates:
            layer.build(tuple(input_shape))
        self.built = True

    def call(self, inputs, training=None, return_gates=False):
        experts = ops.stack([e(inputs, training=training) for e in self.experts], axis=1)
        gates = [gate(inputs) for gate in self.gates]
        mixed = [mix_experts(g, experts) for g in gates]
        return (mixed, gates) if return_gates else mixed

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape)[:-1] + (self.expert_units[-1],)] * self.num_gates

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            num_gates=self.num_gates,
            activation=self.activation,
            dropout=self.dropout,
            normalization=self.normalization,
            gate_use_bias=self.gate_use_bias,
        )
        return config
