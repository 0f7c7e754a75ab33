"""`TaskTowers`: one MLP per task, the towers of multi-task models."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_recsys")
class TaskTowers(keras.layers.Layer):
    """One MLP tower per task: h_k = MLP_k(x_k).

    Called with one tensor, every tower reads it; called with a list (in
    `names` order) or a dict by name, tower k reads its own input. With
    `units=()` the towers are the identity.

    Args:
        names: one tower per name (task names, usually).
        units: widths of every tower's MLP.
        activation: tower activation.
        dropout: tower dropout rate.
        normalization: None, "batch" or "layer".

    Example:

    >>> towers = kr.layers.TaskTowers(["click", "like"], units=[32])
    >>> towers(keras.ops.ones((4, 16)))["like"].shape
    (4, 32)
    """

    def __init__(
        self,
        names: Sequence[str],
        units: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.names = [str(n) for n in names]
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        self.normalization = normalization
        self.towers = (
            {
                name: MLP(self.units, activation, dropout, normalization, name=f"tower_{name}")
                for name in self.names
            }
            if self.units
            else {}
        )

    def _inputs_by_name(self, inputs) -> dict:
        if isinstance(inputs, dict):
            return {name: inputs[name] for name in self.names}
        if isinstance(inputs, (list, tuple)):
            return dict(zip(self.names, self._check_count(inputs)))
        return {name: inputs for name in self.names}

    def _check_count(self, inputs):
        if len(inputs) != len(self.names):
            raise ValueError(f"TaskTowers got {len(inputs)} inputs for {len(self.names)} towers.")
        return inputs

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            input_shape = dict(zip(self.names, self._check_count(input_shape)))
        for name, tower in self.towers.items():
            shape = input_shape[name] if isinstance(input_shape, dict) else input_shape
            tower.build(tuple(shape))
        self.built = True

    def call(self, inputs, training=None):
        inputs = self._inputs_by_name(inputs)
        if not self.towers:
            return inputs
        return {name: self.towers[name](inputs[name], training=training) for name in self.names}

    def get_config(self):
        config = super().get_config()
        config.update(
            names=self.names,
            units=self.units,
            activation=self.activation,
            dropout=self.dropout,
            normalization=self.normalization,
        )
        return config
