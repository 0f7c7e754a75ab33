"""`PersonalizedGate`: the 2·sigmoid gate of LHUC, PPNet and PEPNet."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_recsys")
class PersonalizedGate(keras.layers.Layer):
    """g = γ · sigmoid(W_2 act(W_1 x + b_1) + b_2), in (0, γ), γ = 2 by default.

    A gate network on personalization or scenario features x whose output
    scales embeddings (one scale per field: EPNet, gated on domain
    features), hidden units (one per unit: LHUC) or the input of every
    layer of a network (one per input unit, the first layer included:
    PPNet, gated on user / item ids); γ = 2 lets a scale both damp (< 1)
    and amplify (> 1) what it multiplies, and the scale is 1 where the
    gate's logit is 0. With `hidden_units=0` the gate is one layer:
    g = γ · sigmoid(W x + b) (LHUC's parameterization). The paper calls
    this layer Gate NU.

    References: Swietojanski & Renals, 2014, "Learning Hidden Unit
    Contributions for Unsupervised Speaker Adaptation of Neural Network
    Acoustic Models" (LHUC); Kuaishou's PPNet (2019); Chang et al., 2023,
    "PEPNet: Parameter and Embedding Personalized Network for Infusing with
    Personalized Prior Information" (KDD; Gate NU).

    Args:
        units: number of scales produced.
        hidden_units: width of the hidden layer (0: no hidden layer).
        scale: γ, the upper bound of the scales.
        activation: activation of the hidden layer.

    Example:

    >>> gate = kr.layers.PersonalizedGate(units=12)
    >>> scales = gate(keras.ops.concatenate([scenario_emb, user_emb], -1))
    >>> scales.shape                         # values in (0, 2)
    (B, 12)
    """

    def __init__(
        self,
        units: int,
        hidden_units: int = 64,
        scale: float = 2.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden_units = int(hidden_units)
        self.scale = float(scale)
        self.activation = activation
        self.hidden = (
            keras.layers.Dense(self.hidden_units, activation=activation, name="hidden")
            if self.hidden_units
            else None
        )
        self.output_layer = keras.layers.Dense(self.units, name="output")

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = shape[:-1] + (self.hidden_units,)
        self.output_layer.build(shape)
        self.built = True

    def call(self, inputs):
        x = inputs if self.hidden is None else self.hidden(inputs)
        return self.scale * ops.sigmoid(self.output_layer(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            hidden_units=self.hidden_units,
            scale=self.scale,
            activation=self.activation,
        )
        return config
