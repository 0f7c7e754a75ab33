"""`TaskHeads`: the one task-head mechanism of every model."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_recsys")
class TaskHeads(keras.layers.Layer):
    """One linear head per task: logits_k = W_k h_k + b_k.

    Called with one tensor, every head reads it (a shared representation);
    called with a dict {task_name: tensor}, each head reads its own tower.

    Args:
        task_units: {task_name: number of logits}.

    Example:

    >>> heads = kr.layers.TaskHeads({"click": 1, "like": 1})
    >>> heads(h)["click"].shape
    (B, 1)
    """

    def __init__(self, task_units: dict[str, int], **kwargs):
        super().__init__(**kwargs)
        self.task_units = {k: int(v) for k, v in task_units.items()}
        self.heads = {
            name: keras.layers.Dense(units, name=f"head_{name}")
            for name, units in self.task_units.items()
        }

    def _check_towers(self, inputs: dict) -> None:
        missing = [name for name in self.heads if name not in inputs]
        if missing:
            raise KeyError(
                f"TaskHeads got no tower output for task(s) {missing}; the dict "
                f"has {sorted(inputs)}, expected one entry per task {list(self.heads)}."
            )

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            self._check_towers(input_shape)
        for name, head in self.heads.items():
            shape = input_shape[name] if isinstance(input_shape, dict) else input_shape
            head.build(tuple(shape))
        self.built = True

    def call(self, inputs):
        if isinstance(inputs, dict):
            self._check_towers(inputs)
            return {name: head(inputs[name]) for name, head in self.heads.items()}
        return {name: head(inputs) for name, head in self.heads.items()}

    def compute_output_shape(self, input_shape) -> dict[str, tuple]:
        """{task_name: (*batch dims, units)}: the logits' shapes, without tracing a call."""
        if isinstance(input_shape, dict):
            self._check_towers(input_shape)
        return {
            name: (
                *tuple(input_shape[name] if isinstance(input_shape, dict) else input_shape)[:-1],
                units,
            )
            for name, units in self.task_units.items()
        }

    def get_config(self):
        config = super().get_config()
        config["task_units"] = self.task_units
        return config
