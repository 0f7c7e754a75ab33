"""OMoE: One-gate Mixture-of-Experts."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.multitask.moe import MixtureOfExperts
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class OMoEBackbone(Backbone):
    """OMoE's body: "hidden" = {task k: tower_k(Σ_i g_i(x0) · expert_i(x0))}, one gate for all.

    n expert MLPs read x0 (every field embedding and the numeric features);
    a single bias-free softmax gate mixes them into one vector that every
    task's tower reads, so "hidden" holds one (B, tower_units[-1]) tensor
    per task (the shared mixture, (B, expert_units[-1]), for every task
    when `tower_units` is empty). There are no "logits".

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        num_experts: number of experts.
        expert_units: widths of every expert's MLP.
        tower_units: widths of every task's tower.
        gate_use_bias: add a bias to the gate (MMoE's gates have none).
        dropout: dropout rate of experts and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> backbone = kr.models.OMoEBackbone(spec, {"income": 1, "marital": 1}, num_experts=4)
    >>> backbone(batch)["hidden"]["marital"].shape
    (B, 32)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_experts: int = 8,
        expert_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (32,),
        gate_use_bias: bool = False,
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.tower_units = [int(u) for u in tower_units]
        self.gate_use_bias = bool(gate_use_bias)
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        # The MMoE block with one gate: the one-gate mixture of experts.
        self.moe = MixtureOfExperts(
            self.num_experts,
            self.expert_units,
            num_gates=1,
            activation=activation,
            dropout=dropout,
            normalization=normalization,
            gate_use_bias=self.gate_use_bias,
            dtype=self.dtype_policy,
            name="moe",
        )
        self.towers = TaskTowers(
            self.task_names,
            self.tower_units,
            activation,
            dropout,
            normalization,
            dtype=self.dtype_policy,
            name="towers",
        )

    def body(self, embedded, inputs, training=None):
        (mixed,) = self.moe(self.concat_inputs(embedded), training=training)
        return {"hidden": self.towers(mixed, training=training)}

    def gate_values(self, inputs: dict):
        """The gate weights (B, num_experts), shared by every task, for preprocessed
        `inputs` (inference)."""
        x0 = self.concat_inputs(self.embedding(inputs, training=False))
        _, (gate,) = self.moe(x0, training=False, return_gates=True)
        return gate

    def gradnorm_variables(self) -> list:
        """Every expert's last layer: the last weights all tasks share (the
        experts and the one gate feed every tower)."""
        return [v for e in self.moe.experts for v in e.dense_layers[-1].trainable_variables]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            gate_use_bias=self.gate_use_bias,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class OMoE(RecModel):
    """One-gate Mixture-of-Experts: MMoE with one gate shared by all tasks.

    n expert MLPs read x0 (every field embedding and the numeric features);
    one softmax gate mixes them, and every task's tower reads that mixture:

        logit_k = head_k(tower_k(Σ_i g_i(x0) · expert_i(x0))),   g = softmax(W x0)

    It sits between the shared-bottom model and MMoE: the experts and the gate are shared, so the tasks differ only in their
    towers (MMoE gives each task its own gate). The body (experts, gate and
    towers) is `OMoEBackbone`.

    Reference: Ma et al., 2018, "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts" (KDD): OMoE is the
    one-gate baseline of its experiments.

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        num_experts: number of experts.
        expert_units: widths of every expert's MLP.
        tower_units: widths of every task's tower.
        gate_use_bias: add a bias to the gate (MMoE's gates have none).
        dropout: dropout rate of experts and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> model = kr.models.OMoE(spec, tasks=["income", "marital"], num_experts=8)
    >>> outputs = model(batch)          # {"income": (B, 1), "marital": (B, 1)}
    >>> gate = model.gate_values(batch)  # (B, 8), one gate for both tasks
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
        self.backbone = OMoEBackbone(
            num_experts=num_experts,
            expert_units=expert_units,
            tower_units=tower_units,
            gate_use_bias=gate_use_bias,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()

    def gate_values(self, inputs: dict):
        """The one gate's weights (B, num_experts) for preprocessed `inputs`
        (`OMoEBackbone.gate_values`)."""
        return self.backbone.gate_values(inputs)
