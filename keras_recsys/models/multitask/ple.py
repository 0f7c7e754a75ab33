"""PLE (Progressive Layered Extraction) and CGC (its one-level form)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.multitask.cgc import CustomizedGateControl
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class PLEBackbone(Backbone):
    """PLE's body: stacked CGC levels, then "hidden" = {task k: tower_k(q_k^(L))}.

    Each level (`CustomizedGateControl`) has task-specific experts for every
    task and shared experts; every level but the last also outputs the
    shared gate's mixture, the next level's shared input. The first level
    reads x0 (field embeddings and numeric features) everywhere. "hidden"
    holds one (B, tower_units[-1]) tensor per task (the last level's
    output, (B, expert_units[-1]), when `tower_units` is empty). There are
    no "logits". With `num_levels=1` it is CGC's body.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        num_levels: number of extraction levels (1: CGC).
        num_task_experts: task-specific experts per task and level.
        num_shared_experts: shared experts per level.
        expert_units: widths of every expert's MLP.
        tower_units: widths of every task's tower.
        dropout: dropout rate of experts and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> backbone = kr.models.PLEBackbone(spec, {"income": 1, "marital": 1}, num_levels=2)
    >>> backbone(batch)["hidden"]["income"].shape
    (B, 32)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_levels: int = 2,
        num_task_experts: int = 2,
        num_shared_experts: int = 2,
        expert_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (32,),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        if int(num_levels) < 1:
            raise ValueError(f"PLE needs num_levels >= 1, got {num_levels}.")
        super().__init__(spec, task_units, **kwargs)
        self.num_levels = int(num_levels)
        self.num_task_experts = int(num_task_experts)
        self.num_shared_experts = int(num_shared_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        self.levels = [
            CustomizedGateControl(
                num_tasks=len(self.task_names),
                num_task_experts=self.num_task_experts,
                num_shared_experts=self.num_shared_experts,
                expert_units=self.expert_units,
                # The last level feeds the towers only: no shared gate.
                output_shared=level < self.num_levels - 1,
                activation=activation,
                dropout=dropout,
                normalization=normalization,
                dtype=self.dtype_policy,
                name=f"level_{level}",
            )
            for level in range(self.num_levels)
        ]
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
        x = self.concat_inputs(embedded)
        for level in self.levels:
            x = level(x, training=training)
        return {"hidden": self.towers(x, training=training)}

    def gradnorm_variables(self) -> list:
        """The last level's shared experts' last layers (every task's gate
        reads them); its task experts' when the level has no shared experts."""
        last = self.levels[-1]
        experts = last.shared_experts or [e for task in last.task_experts for e in task]
        return [v for e in experts for v in e.dense_layers[-1].trainable_variables]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_levels=self.num_levels,
            num_task_experts=self.num_task_experts,
            num_shared_experts=self.num_shared_experts,
            expert_units=self.expert_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class PLE(RecModel):
    """Progressive Layered Extraction: stacked CGC levels, then one tower per task.

    Each level (`CustomizedGateControl`) has task-specific experts for every
    task and shared experts; task k's bias-free softmax gate mixes its own
    and the shared experts. Every level but the last also has a shared gate
    mixing all experts, whose output is the next level's shared input; the
    first level reads x0 (field embeddings and numeric features) everywhere:

        q_k^(l+1) = Σ_j g_k,j^(l)(q_k^(l)) · [E_k^(l)(q_k^(l)); S^(l)(q_s^(l))]_j
        logit_k = head_k(tower_k(q_k^(L)))

    With `num_levels=1` it is CGC (Customized Gate Control). The body
    (levels and towers) is `PLEBackbone`.

    Reference: Tang et al., 2020, "Progressive Layered Extraction (PLE): A
    Novel Multi-Task Learning (MTL) Model for Personalized Recommendations"
    (RecSys).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        num_levels: number of extraction levels (1: CGC).
        num_task_experts: task-specific experts per task and level.
        num_shared_experts: shared experts per level.
        expert_units: widths of every expert's MLP.
        tower_units: widths of every task's tower.
        dropout: dropout rate of experts and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> model = kr.models.PLE(spec, tasks=["income", "marital"], num_levels=2)
    """

    def __init__(
        self,
        spec,
        tasks,
        num_levels: int = 2,
        num_task_experts: int = 2,
        num_shared_experts: int = 2,
        expert_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (32,),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = PLEBackbone(
            num_levels=num_levels,
            num_task_experts=num_task_experts,
            num_shared_experts=num_shared_experts,
            expert_units=expert_units,
            tower_units=tower_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()


@keras.saving.register_keras_serializable(package="keras_recsys")
class CGC(PLE):
    """Customized Gate Control: PLE with one extraction level.

    Reference: Tang et al., 2020 (see `PLE`).

    Example:

    >>> model = kr.models.CGC(spec, tasks=["income", "marital"], num_shared_experts=2)
    """

    def __init__(self, spec, tasks, num_levels: int = 1, **kwargs):
        if int(num_levels) != 1:
            raise ValueError(f"CGC has exactly one level; use PLE for {num_levels}.")
        super().__init__(spec, tasks, num_levels=1, **kwargs)
