"""MMoE: Multi-gate Mixture-of-Experts."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.multitask.moe import MixtureOfExperts
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class MMoE(RecModel):
    """Multi-gate Mixture-of-Experts.

    n expert MLPs read x0 (every field embedding and the numeric features);
    task k has its own softmax gate and tower:

        logit_k = head_k(tower_k(Σ_i g_k,i(x0) · expert_i(x0))),   g_k = softmax(W_k x0)

    Reference: Ma et al., 2018, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts" (KDD).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        num_experts: number of experts.
        expert_units: widths of every expert's MLP.
        tower_units: widths of every task's tower.
        gate_use_bias: add a bias to the gates (the paper's gates have none).
        dropout: dropout rate of experts and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> model = kr.models.MMoE(spec, tasks=["income", "marital"], num_experts=8)
    >>> outputs = model(batch)   # {"income": (B, 1), "marital": (B, 1)}
    """

    def __init__(
        self,
        spec,
        tasks,
        num_experts: int = 8,
        expert_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (32,),
        gate_use_bias: bool = False,
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.tower_units = [int(u) for u in tower_units]
        self.gate_use_bias = bool(gate_use_bias)
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        self.moe = MixtureOfExperts(
            self.num_experts,
            self.expert_units,
            num_gates=len(self.task_names),
            activation=activation,
            dropout=dropout,
            normalization=normalization,
            gate_use_bias=self.gate_use_bias,
            name="moe",
        )
        self.towers = TaskTowers(
            self.task_names, self.tower_units, activation, dropout, normalization, name="towers"
        )
        self.build_now()

    def compute_logits(self, inputs, training=None):
        x0 = self.concat_inputs(self.embedding(inputs, training=training))
        mixed = self.moe(x0, training=training)
        return self.heads(self.towers(mixed, training=training))

    def gate_values(self, inputs) -> dict:
        """{task_name: (B, num_experts)} gate weights for preprocessed inputs."""
        x0 = self.concat_inputs(self.embedding(inputs))
        _, gates = self.moe(x0, training=False, return_gates=True)
        return dict(zip(self.task_names, gates))

    def gradnorm_variables(self):
        return [v for e in self.moe.experts for v in e.dense_layers[-1].trainable_variables]

    def hyperparameters(self):
        return {
            "num_experts": self.num_experts,
            "expert_units": self.expert_units,
            "tower_units": self.tower_units,
            "gate_use_bias": self.gate_use_bias,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalization": self.normalization,
        }
