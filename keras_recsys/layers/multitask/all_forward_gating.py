"""`AllForwardGating`: STEM-Net's experts and its all-forward, task-specific-backward gates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.multitask.moe import ExpertGate, mix_experts


@keras.saving.register_keras_serializable(package="keras_recsys")
class AllForwardGating(keras.layers.Layer):
    """Task-specific and shared experts, every task's gate over all of them, stop-gradient on others'.

    Every task k has `num_task_experts` experts E_k reading its own input
    q_k (in STEM-Net: the flattened task-k embeddings), and
    `num_shared_experts` shared experts S read the shared input q_s (the
    shared embeddings). Task k's gate weighs *every* expert, but the other
    tasks' experts enter through a stop-gradient sg(·):

        y_k = Σ_j g_k,j · [sg(E_1(q_1)); ...; E_k(q_k); ...; sg(E_K(q_K)); S(q_s)]_j,
        g_k = softmax(W_k · MLP_k(q_k + q_s))

    so the forward pass lets task k read what the other tasks' embeddings
    learned (knowledge transfer), while its loss trains only its own
    experts and embeddings, the shared ones and its gate: no task's
    gradient reaches another task's experts or inputs. This is the "All
    Forward Task-specific Backward" (AFTB) gating network; with
    `num_task_experts=0` it reduces to an MMoE gate over the shared experts.

    The gate reads q_k + q_s (choose: the sum, as the authors' code does;
    both inputs have the same width, one per embedding table set), through
    a hidden MLP of `gate_units` ([128, 64] in the authors' code; empty for
    a single linear map, the MMoE gate) and a bias-free linear map to the
    K · `num_task_experts` + `num_shared_experts` logits. Expert order in
    every gate: the tasks' experts in task order, then the shared ones.

    Reference: Su et al., 2024, "STEM: Unleashing the Power of Embeddings
    for Multi-task Recommendation" (AAAI).

    Args:
        num_tasks: number of tasks K.
        num_task_experts: experts per task.
        num_shared_experts: shared experts.
        expert_units: widths of every expert's MLP.
        gate_units: hidden widths of every gate's MLP before its softmax
            layer; () for a linear gate.
        activation: expert and gate activation.
        dropout: expert and gate dropout rate.
        normalization: None, "batch" or "layer" in the experts and gates.

    Call arguments:
        inputs: a list [q_1, ..., q_K, q_s] of K + 1 tensors (B, D), all of
            one width D.
        return_gates: also return the gates [g_1, ..., g_K], each
            (B, K · num_task_experts + num_shared_experts).

    Returns:
        [y_1, ..., y_K], each (B, expert_units[-1]) (and the gates).

    Example:

    >>> layer = kr.layers.AllForwardGating(num_tasks=2, expert_units=[32])
    >>> task_1, task_2, shared = (keras.ops.ones((8, 16)),) * 3
    >>> [y.shape for y in layer([task_1, task_2, shared])]
    [(8, 32), (8, 32)]
    """

    def __init__(
        self,
        num_tasks: int,
        num_task_experts: int = 1,
        num_shared_experts: int = 1,
        expert_units: Sequence[int] = (64,),
        gate_units: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        normalization: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_tasks) < 1 or int(num_task_experts) < 0 or int(num_shared_experts) < 0:
            raise ValueError(
                "AllForwardGating needs num_tasks >= 1 and non-negative expert counts, got "
                f"{num_tasks}, {num_task_experts}, {num_shared_experts}."
            )
        if int(num_task_experts) + int(num_shared_experts) < 1:
            raise ValueError("AllForwardGating needs at least one expert per task.")
        if not expert_units:
            raise ValueError("AllForwardGating needs at least one expert layer width.")
        self.num_tasks = int(num_tasks)
        self.num_task_experts = int(num_task_experts)
        self.num_shared_experts = int(num_shared_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.gate_units = [int(u) for u in gate_units]
        self.activation = activation
        self.dropout = float(dropout)
        self.normalization = normalization

        def mlp(units, name):
            return MLP(
                units, activation, dropout, normalization, dtype=self.dtype_policy, name=name
            )

        self.task_experts = [
            [mlp(self.expert_units, f"task_{k}_expert_{i}") for i in range(self.num_task_experts)]
            for k in range(self.num_tasks)
        ]
        self.shared_experts = [
            mlp(self.expert_units, f"shared_expert_{i}") for i in range(self.num_shared_experts)
        ]
        # Empty when the gates are linear (`gate_units=()`).
        self.gate_hidden = (
            [mlp(self.gate_units, f"gate_{k}_hidden") for k in range(self.num_tasks)]
            if self.gate_units
            else []
        )
        self.gates = [
            ExpertGate(self.num_experts, dtype=self.dtype_policy, name=f"gate_{k}")
            for k in range(self.num_tasks)
        ]

    @property
    def num_experts(self) -> int:
        """The experts every gate weighs: K · num_task_experts + num_shared_experts."""
        return self.num_tasks * self.num_task_experts + self.num_shared_experts

    def _check_inputs(self, inputs) -> list:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_tasks + 1:
            count = len(inputs) if isinstance(inputs, (list, tuple)) else 1
            raise ValueError(
                f"AllForwardGating takes a list of num_tasks + 1 = {self.num_tasks + 1} "
                f"tensors (the tasks' inputs, then the shared one), got {count}."
            )
        return list(inputs)

    def build(self, input_shape) -> None:
        shapes = [tuple(shape) for shape in self._check_inputs(input_shape)]
        widths = {shape[-1] for shape in shapes}
        if len(widths) != 1:
            # The gates read q_k + q_s.
            raise ValueError(
                f"AllForwardGating's inputs must have one width, got {[s[-1] for s in shapes]}."
            )
        shape = shapes[-1]
        for layer in [e for experts in self.task_experts for e in experts] + self.shared_experts:
            layer.build(shape)
        for hidden in self.gate_hidden:
            hidden.build(shape)
        gate_width = self.gate_units[-1] if self.gate_units else shape[-1]
        for gate in self.gates:
            gate.build(shape[:-1] + (gate_width,))
        self.built = True

    def call(self, inputs, training=None, return_gates: bool = False):
        inputs = [ops.cast(x, self.compute_dtype) for x in self._check_inputs(inputs)]
        task_inputs, shared_input = inputs[:-1], inputs[-1]
        own = [
            [expert(task_inputs[k], training=training) for expert in self.task_experts[k]]
            for k in range(self.num_tasks)
        ]
        shared = [expert(shared_input, training=training) for expert in self.shared_experts]
        outputs, gates = [], []
        for k in range(self.num_tasks):
            # Forward through every expert; backward only through task k's and the shared.
            experts = [
                e if j == k else ops.stop_gradient(e) for j in range(self.num_tasks) for e in own[j]
            ]
            gate_input = task_inputs[k] + shared_input
            if self.gate_hidden:
                gate_input = self.gate_hidden[k](gate_input, training=training)
            gate = self.gates[k](gate_input)
            outputs.append(mix_experts(gate, ops.stack(experts + shared, axis=1)))
            gates.append(gate)
        return (outputs, gates) if return_gates else outputs

    def compute_output_shape(self, input_shape):
        shape = tuple(self._check_inputs(input_shape)[-1])
        return [shape[:-1] + (self.expert_units[-1],)] * self.num_tasks

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            num_task_experts=self.num_task_experts,
            num_shared_experts=self.num_shared_experts,
            expert_units=self.expert_units,
            gate_units=self.gate_units,
            activation=self.activation,
            dropout=self.dropout,
            normalization=self.normalization,
        )
        return config
