"""M2M: multi-scenario multi-task meta learning (dynamic gate and tower weights)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.scenario.dynamic_weights import DynamicDense
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class M2MBackbone(Backbone):
    """M2M's body: shared experts, a meta gate and a meta tower per task.

    "hidden" = {task: (B, width)}, each task's meta tower output, width =
    `expert_units[-1]`: experts e_i = MLP_i(x0); task t's meta gate
    α_t = softmax(x0 · W_t(z) + b_t(z)) mixes them, m_t = Σ_i α_{t,i} e_i;
    its meta tower applies L residual meta layers to m_t. z = [embeddings
    of `scenario_features`] generates the gate and tower weights
    (`DynamicDense`).

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        num_experts: E.
        expert_units: widths of each expert MLP (the last is the width of
            the meta towers).
        num_tower_layers: L, the meta layers of each task tower.
        scenario_features: the fields that make z; default: the spec's
            `role="scenario"` feature.
        dropout: dropout rate of the experts.
        activation: activation of the experts and meta layers.

    Example:

    >>> backbone = kr.models.M2MBackbone(spec, {"click": 1, "like": 1}, expert_units=[32])
    >>> {k: v.shape for k, v in backbone(batch)["hidden"].items()}
    {'click': (B, 32), 'like': (B, 32)}
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_experts: int = 4,
        expert_units: Sequence[int] = (128, 64),
        num_tower_layers: int = 2,
        scenario_features: Sequence[str] | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        if scenario_features is None:
            scenario = self.spec.scenario_feature
            if scenario is None:
                raise ValueError(
                    "M2M needs `scenario_features`, or a feature with role='scenario' in the spec."
                )
            scenario_features = [scenario.name]
        missing = [f for f in scenario_features if f not in self.field_names]
        if missing:
            raise ValueError(
                f"M2M scenario features {missing} are not embedded fields; the fields "
                f"are {self.field_names}."
            )
        self.num_experts = int(num_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.num_tower_layers = int(num_tower_layers)
        self.scenario_features = list(scenario_features)
        self.dropout = float(dropout)
        self.activation = activation
        self.experts = [
            MLP(
                self.expert_units,
                activation,
                self.dropout,
                dtype=self.dtype_policy,
                name=f"expert_{i}",
            )
            for i in range(self.num_experts)
        ]
        self.meta_gates = {
            task: DynamicDense(self.num_experts, dtype=self.dtype_policy, name=f"meta_gate_{task}")
            for task in self.task_names
        }
        width = self.expert_units[-1]
        self.meta_layers = {
            f"{task}_{layer}": DynamicDense(
                width,
                activation=activation,
                residual=True,
                dtype=self.dtype_policy,
                name=f"meta_tower_{task}_{layer}",
            )
            for task in self.task_names
            for layer in range(self.num_tower_layers)
        }

    def body(self, embedded, inputs, training=None):
        x0 = self.concat_inputs(embedded)
        z = ops.concatenate([embedded["fields"][f] for f in self.scenario_features], axis=-1)
        experts = ops.stack([e(x0, training=training) for e in self.experts], axis=1)
        towers = {}
        for task in self.task_names:
            alpha = ops.softmax(self.meta_gates[task](x0, z), axis=-1)  # (B, E)
            h = ops.sum(ops.expand_dims(alpha, -1) * experts, axis=1)
            for layer in range(self.num_tower_layers):
                h = self.meta_layers[f"{task}_{layer}"](h, z)
            towers[task] = h
        return {"hidden": towers}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            num_tower_layers=self.num_tower_layers,
            scenario_features=self.scenario_features,
            dropout=self.dropout,
            activation=self.activation,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class M2M(RecModel):
    """MMoE whose gate and tower weights are generated from scenario features.

    With z = [embeddings of `scenario_features`] (the scenario knowledge
    representation; by default the scenario feature alone) and x0 all
    field embeddings:

    * experts: e_i = MLP_i(x0), i = 1..E, shared by all tasks;
    * meta gate of task t: α_t = softmax(x0 · W_t(z) + b_t(z)), generated
      weights (`DynamicDense`), and m_t = Σ_i α_{t,i} e_i;
    * meta tower of task t: L residual meta layers
      h ← act(h · W_{t,l}(z) + b_{t,l}(z)) + h from h = m_t, then the
      task's head.

    The experts, gates and towers are `M2MBackbone`; the model adds one
    linear head per task on its tower.

    Simplification: the paper's experts also include a Transformer over the
    behaviour sequence and its meta attention scores each expert; here the
    experts are MLPs on x0 and the gate is an MMoE-style softmax over
    experts whose weights come from z.

    Reference: Zhang et al., 2022, "Leaving No One Behind: A Multi-Scenario
    Multi-Task Meta Learning Approach for Advertiser Modeling" (WSDM).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        num_experts: E.
        expert_units: widths of each expert MLP (the last is the width of
            the meta towers).
        num_tower_layers: L, the meta layers of each task tower.
        scenario_features: the fields that make z; default: the spec's
            `role="scenario"` feature.
        dropout: dropout rate of the experts.
        activation: activation of the experts and meta layers.

    Example:

    >>> model = kr.models.M2M(spec, tasks=["click", "like"], num_experts=4)
    """

    def __init__(
        self,
        spec,
        tasks,
        num_experts: int = 4,
        expert_units: Sequence[int] = (128, 64),
        num_tower_layers: int = 2,
        scenario_features: Sequence[str] | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = M2MBackbone(
            num_experts=num_experts,
            expert_units=expert_units,
            num_tower_layers=num_tower_layers,
            scenario_features=scenario_features,
            dropout=dropout,
            activation=activation,
            **self.backbone_arguments(),
        )
        self.build_now()
