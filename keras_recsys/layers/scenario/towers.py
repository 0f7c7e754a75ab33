"""`ScenarioTowers`: one MLP tower per scenario, evaluated together."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS
from keras_recsys.layers.scenario.indicator import check_num_scenarios


@keras.saving.register_keras_serializable(package="keras_recsys")
class ScenarioTowers(keras.layers.Layer):
    """S parallel MLP towers, one per vocabulary scenario, on one input.

    For tower s (scenario id s + 2) and layer l:
    h_{s,l+1} = act(h_{s,l} W_{s,l} + b_{s,l}), h_{s,0} = x; the output is
    every tower's last layer, stacked: (B, S, units[-1]) with
    S = num_scenarios - 2. The weights of a layer are stored stacked,
    (S, d_in, d_out), and applied with one einsum, so all towers run as a
    single batched matmul. Select an example's own tower with
    `scenario_routing` (Split & Merge) or mix the towers (HMoE).

    Reference: the "split" part of split-and-merge multi-scenario models,
    e.g. Li et al., 2020, "Improving Multi-Scenario Learning to Rank in
    E-commerce by Exploiting Task Relationships in the Label Space" (HMoE).

    Args:
        num_scenarios: size of the scenario id space (reserved ids 0 and 1
            included), i.e. `spec.input_dim(scenario_feature)`.
        units: widths of each tower's layers.
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden activation.
        output_activation: if False, the last layer is linear (for logits).

    Example:

    >>> towers = kr.layers.ScenarioTowers(num_scenarios=6, units=[32, 1],
    ...                                   output_activation=False)
    >>> towers(h).shape                      # h: (B, D)
    (B, 4, 1)
    """

    def __init__(
        self,
        num_scenarios: int,
        units: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        output_activation: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios, "ScenarioTowers")
        self.units = [int(u) for u in units]
        if not self.units:
            raise ValueError("ScenarioTowers needs at least one layer in `units`.")
        self.activation = activation
        self.dropout = float(dropout)
        self.output_activation = bool(output_activation)
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None

    @property
    def num_towers(self) -> int:
        return self.num_scenarios - NUM_RESERVED_IDS

    def build(self, input_shape):
        width = int(input_shape[-1])
        self.kernels, self.biases = [], []
        for i, units in enumerate(self.units):
            # Glorot-uniform per tower, as for a Dense(units) on width inputs
            # (Keras's glorot would count the tower axis in the fans).
            limit = (6.0 / (width + units)) ** 0.5
            self.kernels.append(
                self.add_weight(
                    name=f"kernel_{i}",
                    shape=(self.num_towers, width, units),
                    initializer=keras.initializers.RandomUniform(-limit, limit),
                )
            )
            self.biases.append(
                self.add_weight(
                    name=f"bias_{i}", shape=(self.num_towers, units), initializer="zeros"
                )
            )
            width = units
        self.built = True

    def call(self, inputs, training=None):
        act = keras.activations.get(self.activation)
        last = len(self.units) - 1
        x = ops.einsum("bi,sio->bso", inputs, self.kernels[0]) + self.biases[0]
        for i in range(len(self.units)):
            if i > 0:
                x = ops.einsum("bsi,sio->bso", x, self.kernels[i]) + self.biases[i]
            if i == last and not self.output_activation:
                break
            x = act(x)
            if self.dropout_layer is not None and i < last:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_towers, self.units[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_scenarios=self.num_scenarios,
            units=self.units,
            activation=self.activation,
            dropout=self.dropout,
            output_activation=self.output_activation,
        )
        return config
