"""Shared-Bottom: one shared network, one tower per task."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class SharedBottomBackbone(Backbone):
    """Shared-Bottom's body: "hidden" = {task: tower_task(bottom(x0))}.

    x0 is every field embedding and the numeric features, concatenated; the
    bottom MLP is shared by all tasks and each task has its own tower, so
    "hidden" holds one (B, tower_units[-1]) tensor per task (the bottom's
    output for every task when `tower_units` is empty). There are no
    "logits".

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        bottom_units: widths of the shared MLP; empty: the tasks share only
            the embeddings.
        tower_units: widths of every task's tower.
        dropout: dropout rate of the MLPs.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> backbone = kr.models.SharedBottomBackbone(
    ...     spec, {"income": 1, "marital": 1}, bottom_units=[64], tower_units=[16]
    ... )
    >>> backbone(batch)["hidden"]["income"].shape
    (B, 16)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        bottom_units: Sequence[int] = (128, 64),
        tower_units: Sequence[int] = (32,),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.bottom_units = [int(u) for u in bottom_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        self.bottom = (
            MLP(
                self.bottom_units,
                activation,
                dropout,
                normalization,
                dtype=self.dtype_policy,
                name="bottom",
            )
            if self.bottom_units
            else None
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
        x = self.concat_inputs(embedded)
        if self.bottom is not None:
            x = self.bottom(x, training=training)
        return {"hidden": self.towers(x, training=training)}

    def gradnorm_variables(self) -> list:
        """The bottom's last layer, the last one every task shares (the GradNorm
        paper's choice); the embedding tables when `bottom_units` is empty."""
        if self.bottom is None:
            return super().gradnorm_variables()
        return list(self.bottom.dense_layers[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            bottom_units=self.bottom_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class SharedBottom(RecModel):
    """Shared-Bottom multi-task model: logit_k = head_k(tower_k(bottom(x0))).

    x0 is every field embedding and the numeric features, concatenated; the
    bottom MLP is shared by all tasks, each task has its own tower MLP and
    linear head. With one task it is a plain DNN (the single-task baseline
    of the multi-task recipes); with `bottom_units=()` the tasks share only
    the embeddings. The body is `SharedBottomBackbone`.

    Reference: Caruana, 1997, "Multitask Learning" (Machine Learning 28).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        bottom_units: widths of the shared MLP.
        tower_units: widths of every task's tower.
        dropout: dropout rate of the MLPs.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLPs.

    Example:

    >>> model = kr.models.SharedBottom(spec, tasks=["income", "marital"])
    """

    def __init__(
        self,
        spec,
        tasks,
        bottom_units: Sequence[int] = (128, 64),
        tower_units: Sequence[int] = (32,),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = SharedBottomBackbone(
            bottom_units=bottom_units,
            tower_units=tower_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
