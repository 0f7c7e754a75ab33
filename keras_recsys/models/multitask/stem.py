"""STEM-Net: Shared and Task-specific EMbeddings."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.embedding import FeatureEmbedding, concat_inputs
from keras_recsys.layers.multitask.all_forward_gating import AllForwardGating
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class STEMBackbone(Backbone):
    """STEM-Net's body: shared and per-task embeddings, experts on each, all-forward gates.

    Besides the shared front end (`embedding`), every task k has embedding
    tables of its own (`task_embeddings[k]`, a `FeatureEmbedding` from the
    same spec, named "<task>_embedding"). x_s is x0 of the shared tables and
    x_k the same concatenation of task k's tables (with the numeric
    features in both). `AllForwardGating` puts task-specific experts on
    each x_k and shared experts on x_s; task k's gate mixes all experts,
    the other tasks' through a stop-gradient, and task k's tower reads the
    mixture. "hidden" holds one (B, tower_units[-1]) tensor per task (the
    mixture, (B, expert_units[-1]), with no towers). There are no "logits".

    Every feature has K + 1 embedding tables (K tasks): the parameter count
    of the embeddings, which dominate it, grows K + 1 times.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`;
            `numeric_field_dim` and `oov_dropout` apply to every embedding.
        num_task_experts: experts per task.
        num_shared_experts: shared experts.
        expert_units: widths of every expert's MLP.
        gate_units: hidden widths of every gate before its softmax layer.
        tower_units: widths of every task's tower.
        dropout: dropout rate of experts, gates and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> backbone = kr.models.STEMBackbone(spec, {"income": 1, "marital": 1})
    >>> backbone(batch)["hidden"]["marital"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_task_experts: int = 1,
        num_shared_experts: int = 1,
        expert_units: Sequence[int] = (512, 256, 128),
        gate_units: Sequence[int] = (128, 64),
        tower_units: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.num_task_experts = int(num_task_experts)
        self.num_shared_experts = int(num_shared_experts)
        self.expert_units = [int(u) for u in expert_units]
        self.gate_units = [int(u) for u in gate_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        # The task-specific tables: one front end per task, from the same spec
        # and options as the shared one, so every x_k has x_s's layout.
        self.task_embeddings = {
            task: FeatureEmbedding.from_spec(
                self.spec,
                numeric_field_dim=self.numeric_field_dim,
                oov_dropout=self.oov_dropout,
                dtype=self.dtype_policy,
                name=f"{task}_embedding",
            )
            for task in self.task_names
        }
        self.experts = AllForwardGating(
            len(self.task_names),
            num_task_experts=self.num_task_experts,
            num_shared_experts=self.num_shared_experts,
            expert_units=self.expert_units,
            gate_units=self.gate_units,
            activation=activation,
            dropout=dropout,
            normalization=normalization,
            dtype=self.dtype_policy,
            name="experts",
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

    def expert_inputs(self, embedded: dict, inputs: dict, training=None) -> list:
        """[x_1, ..., x_K, x_s]: each task's embeddings, then the shared ones, as x0."""
        own = [
            concat_inputs(self.task_embeddings[task](inputs, training=training), self.field_names)
            for task in self.task_names
        ]
        return own + [self.concat_inputs(embedded)]

    def body(self, embedded, inputs, training=None):
        mixed = self.experts(self.expert_inputs(embedded, inputs, training), training=training)
        return {"hidden": self.towers(dict(zip(self.task_names, mixed)), training=training)}

    def gate_values(self, inputs: dict) -> dict:
        """{task name: (B, K · num_task_experts + num_shared_experts)} gate weights
        for preprocessed `inputs` (inference); experts in task order, then shared."""
        embedded = self.embedding(inputs, training=False)
        x = self.expert_inputs(embedded, inputs, training=False)
        _, gates = self.experts(x, training=False, return_gates=True)
        return dict(zip(self.task_names, gates))

    def gradnorm_variables(self) -> list:
        """The shared experts' last layers: the last weights every task trains
        (task-specific experts get their own task's gradient only); the
        shared embedding tables when there are no shared experts."""
        if not self.experts.shared_experts:
            return super().gradnorm_variables()
        return [
            v for e in self.experts.shared_experts for v in e.dense_layers[-1].trainable_variables
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_task_experts=self.num_task_experts,
            num_shared_experts=self.num_shared_experts,
            expert_units=self.expert_units,
            gate_units=self.gate_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class STEM(RecModel):
    """STEM-Net: shared and task-specific embeddings with all-forward, task-specific-backward gates.

    Every feature has a shared embedding table and one table per task. With
    x_s the concatenated shared embeddings and x_k task k's, task-specific
    experts E_k read x_k and shared experts S read x_s; task k's gate weighs
    every expert, the other tasks' through a stop-gradient sg(·):

        logit_k = head_k(tower_k(Σ_j g_k,j · [sg(E_1(x_1)); ...; E_k(x_k); ...;
                                               sg(E_K(x_K)); S(x_s)]_j)),
        g_k = softmax(W_k · MLP_k(x_k + x_s))

    So task k's forward pass reads what every task's embeddings hold
    (knowledge transfer), while its gradient reaches only its own
    embeddings and experts, the shared ones and its gate: no task's
    gradient reaches another task's embeddings, which is how the paper
    keeps one task's preferences from being overwritten by another's
    (negative transfer). The body is `STEMBackbone`; its gating layer is
    `AllForwardGating`. The defaults are those of the authors' STEM class
    (one expert per task and one shared, experts 512-256-128, gates
    128-64, towers 128-64; their TikTok runs used 8 shared experts).

    Reference: Su et al., 2024, "STEM: Unleashing the Power of Embeddings
    for Multi-task Recommendation" (AAAI).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        num_task_experts: experts per task.
        num_shared_experts: shared experts.
        expert_units: widths of every expert's MLP.
        gate_units: hidden widths of every gate before its softmax layer;
            () for a linear (MMoE) gate.
        tower_units: widths of every task's tower.
        dropout: dropout rate of experts, gates and towers.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> model = kr.models.STEM(spec, tasks=["income", "marital"], num_shared_experts=2)
    >>> outputs = model(batch)          # {"income": (B, 1), "marital": (B, 1)}
    >>> gates = model.gate_values(batch)  # {"income": (B, 4), "marital": (B, 4)}
    """

    def __init__(
        self,
        spec,
        tasks,
        num_task_experts: int = 1,
        num_shared_experts: int = 1,
        expert_units: Sequence[int] = (512, 256, 128),
        gate_units: Sequence[int] = (128, 64),
        tower_units: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = STEMBackbone(
            num_task_experts=num_task_experts,
            num_shared_experts=num_shared_experts,
            expert_units=expert_units,
            gate_units=gate_units,
            tower_units=tower_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()

    @property
    def task_embeddings(self) -> dict:
        """{task name: that task's `FeatureEmbedding`} (the shared one is `embedding`)."""
        return self.backbone.task_embeddings

    def gate_values(self, inputs: dict) -> dict:
        """{task name: gate weights} for preprocessed `inputs` (`STEMBackbone.gate_values`)."""
        return self.backbone.gate_values(inputs)
