"""`CustomizedGateControl`: one extraction level of CGC / PLE."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.multitask.moe import ExpertGate, mix_experts


@keras.saving.register_keras_serializable(package="keras_recsys")
class CustomizedGateControl(keras.layers.Layer):
    """Task-specific and shared experts with per-task gates (CGC, a PLE level).

    Every task k has `num_task_experts` experts E_k reading its own input
    q_k, and `num_shared_experts` shared experts S read the shared input
    q_s. Task k's output mixes its own and the shared experts with a
    bias-free softmax gate on its input:

        y_k = Σ_j g_k,j · [E_k(q_k); S(q_s)]_j,   g_k = softmax(W_k q_k)

    With `output_shared=True` (every PLE level but the last) a shared gate
    mixes all experts into the next level's shared input:

        y_s = Σ_j g_s,j · [E_1(q_1); ...; E_K(q_K); S(q_s)]_j,   g_s = softmax(W_s q_s)

    Reference: Tang et al., 2020, "Progressive Layered Extraction (PLE): A
    Novel Multi-Task Learning (MTL) Model for Personalized Recommendations"
    (RecSys).

    Args:
        num_tasks: number of tasks K.
        num_task_experts: experts per task.
        num_shared_experts: shared experts.
        expert_units: widths of every expert's MLP.
        output_shared: also output the shared gate's mixture y_s.
        activation: expert activation.
        dropout: expert dropout rate.
        normalization: None, "batch" or "layer" in the experts.

    Call arguments:
        inputs: one tensor (B, D) read by every expert and gate (the first
            level), or a list [q_1, ..., q_K, q_s] of K + 1 tensors.
        return_gates: also return the gates [g_1, ..., g_K(, g_s)].

    Returns:
        [y_1, ..., y_K], plus y_s last when `output_shared` (and the gates).

    Example:

    >>> cgc = kr.layers.CustomizedGateControl(num_tasks=2, expert_units=[32])
    >>> [y.shape for y in cgc(keras.ops.ones((8, 16)))]
    [(8, 32), (8, 32)]
    """

    def __init__(
        self,
        num_tasks: int,
        num_task_experts: int = 1,
        num_shared_experts: int = 1,
        expert_units: Sequence[int] = (64,),
        output_shared: bool = False,
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_tasks) < 1 or int(num_task_experts) < 0 or int(num_shared_experts) < 0:
            raise ValueError(
                "CustomizedGateControl needs num_tasks >= 1 and non-negative expert "
                f"counts, got {num_tasks}, {num_task_experts}, {num_shared_experts}."
            )
        if int(num_task_experts) + int(num_shared_experts) < 1:
            raise ValueError("CustomizedGateControl needs at least one expert per task.")
        if not expert_units:
            raise ValueError("CustomizedGateControl needs at least one expert layer width.")
        self.num_tasks = int(num_tasks)
        self.num_task_experts = int(num_task_experts)
        self.num_shared_experts = int(num_shared_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.output_shared = bool(output_shared)
        self.activation = activation
        self.dropout = float(dropout)
        self.normalization = normalization

        def expert(name):
            return MLP(self.expert_units, activation, dropout, normalization, name=name)

        self.task_experts = [
            [expert(f"task_{k}_expert_{i}") for i in range(self.num_task_experts)]
            for k in range(self.num_tasks)
        ]
        self.shared_experts = [expert(f"shared_expert_{i}") for i in range(self.num_shared_experts)]
        self.task_gates = [
            ExpertGate(self.num_task_experts + self.num_shared_experts, name=f"gate_task_{k}")
            for k in range(self.num_tasks)
        ]
        self.shared_gate = (
            ExpertGate(
                self.num_tasks * self.num_task_experts + self.num_shared_experts,
                name="gate_shared",
            )
            if self.output_shared
            else None
        )

    def _split_inputs(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != self.num_tasks + 1:
                raise ValueError(
                    f"CustomizedGateControl takes one tensor or a list of num_tasks + 1 = "
                    f"{self.num_tasks + 1} tensors (tasks' then shared), got {len(inputs)}."
                )
            return list(inputs[:-1]), inputs[-1]
        return [inputs] * self.num_tasks, inputs

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            task_shapes, shared_shape = list(input_shape[:-1]), input_shape[-1]
        else:
            task_shapes, shared_shape = [input_shape] * self.num_tasks, input_shape
        for k, shape in enumerate(task_shapes):
            for layer in self.task_experts[k] + [self.task_gates[k]]:
                layer.build(tuple(shape))
        for layer in self.shared_experts + ([self.shared_gate] if self.shared_gate else []):
            layer.build(tuple(shared_shape))
        self.built = True

    def call(self, inputs, training=None, return_gates=False):
        task_inputs, shared_input = self._split_inputs(inputs)
        shared = [e(shared_input, training=training) for e in self.shared_experts]
        own = [
            [e(task_inputs[k], training=training) for e in self.task_experts[k]]
            for k in range(self.num_tasks)
        ]
        outputs, gates = [], []
        for k in range(self.num_tasks):
            gate = self.task_gates[k](task_inputs[k])
            outputs.append(mix_experts(gate, ops.stack(own[k] + shared, axis=1)))
            gates.append(gate)
        if self.shared_gate is not None:
            everything = [e for experts in own for e in experts] + shared
            gate = self.shared_gate(shared_input)
            outputs.append(mix_experts(gate, ops.stack(everything, axis=1)))
            gates.append(gate)
        return (outputs, gates) if return_gates else outputs

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[-1]
        count = self.num_tasks + (1 if self.output_shared else 0)
        return [tuple(input_shape)[:-1] + (self.expert_units[-1],)] * count

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            num_task_experts=self.num_task_experts,
            num_shared_experts=self.num_shared_experts,
            expert_units=self.expert_units,
            output_shared=self.output_shared,
            activation=self.activation,
            dropout=self.dropout,
            normalization=self.normalization,
        )
        return config
