"""`FeatureGating`: FinalMLP's stream-specific feature selection."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_recsys.layers.scenario.gating import PersonalizedGate


@keras.saving.register_keras_serializable(package="keras_recsys")
class FeatureGating(keras.layers.Layer):
    """x' = x ⊙ 2·σ(W_2 ReLU(W_1 c + b_1) + b_2): a gate on every input unit.

    The gate (a `PersonalizedGate` with one output per unit of x) reads a
    context c. Called with a context (e.g. the user or item field
    embeddings), the gate is specific to each example; called without
    one, c is a learned vector of size `context_dim` (starting at zero, as
    in the authors' code), and the gate is one global weighting of the
    input units. Scales lie in (0, 2): a unit can be damped or amplified,
    and starts at 1 (the output layer's bias is zero).

    FinalMLP gives each of its two MLP streams its own gate, so that the
    streams see differently weighted copies of the same input.

    Reference: Mao et al., 2023, "FinalMLP: An Enhanced Two-Stream MLP
    Model for CTR Prediction" (AAAI), section 3.2 (stream-specific
    feature selection).

    Args:
        hidden_units: width of the gate's hidden layer (0: no hidden layer).
        context_dim: size of the learned context used when the layer is
            called without a context (the authors' code: the embedding size).
        activation: activation of the gate's hidden layer.

    Call arguments:
        inputs: x, (B, D).
        context: c, (B, C), or None for the learned context.

    Example:

    >>> gating = kr.layers.FeatureGating(hidden_units=16)
    >>> gating(keras.ops.ones((4, 24)), context=keras.ops.ones((4, 8))).shape
    (4, 24)
    """

    def __init__(
        self,
        hidden_units: int = 64,
        context_dim: int = 16,
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.context_dim = int(context_dim)
        self.activation = activation

    def build(self, inputs_shape, context_shape=None) -> None:
        width = int(inputs_shape[-1])
        self.gate = PersonalizedGate(
            width,
            hidden_units=self.hidden_units,
            activation=self.activation,
            dtype=self.dtype_policy,
            name="gate",
        )
        if context_shape is None:
            self.context = self.add_weight(
                name="context", shape=(self.context_dim,), initializer="zeros"
            )
            context_shape = (inputs_shape[0], self.context_dim)
        else:
            self.context = None
        self.gate.build(tuple(context_shape))
        self.built = True

    def call(self, inputs, context=None):
        x = ops.cast(inputs, self.compute_dtype)
        if context is None:
            if self.context is None:
                raise ValueError(
                    f"FeatureGating '{self.name}' was built with a context; call it with one."
                )
            # The learned context, repeated for every example of the batch.
            context = ops.ones_like(x[:, :1]) * ops.cast(self.context, x.dtype)
        return x * self.gate(ops.cast(context, self.compute_dtype))

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return tuple(inputs_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            hidden_units=self.hidden_units,
            context_dim=self.context_dim,
            activation=self.activation,
        )
        return config
