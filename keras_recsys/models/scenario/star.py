"""STAR: Star Topology Adaptive Recommender."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_recsys.layers.scenario.indicator import scenario_feature_name
from keras_recsys.layers.scenario.star import PartitionedNormalization, StarTopologyDense
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class STARBackbone(Backbone):
    """STAR's body: x0 → PN → star-topology FC layers → the star output layer.

    "hidden" = the last star-topology hidden layer's output (after its
    dropout: what the output layer reads; the PN output when
    `hidden_units` is empty); "logits" = the star-topology output layer on
    it, {task: (B, units)}. The output layer is itself scenario-conditioned
    (shared W ⊙ per-scenario W_p), so STAR has no separate task heads.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`;
            the spec needs one `role="scenario"` feature.
        hidden_units: widths of the star-topology hidden layers.
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden layer.
        partitioned_normalization: apply PN to x0 (False: no normalization).
        momentum: momentum of PN's moving statistics.

    Example:

    >>> backbone = kr.models.STARBackbone(spec, {"click": 1}, hidden_units=[64])
    >>> outputs = backbone(batch)
    >>> outputs["hidden"].shape, outputs["logits"]["click"].shape
    ((B, 64), (B, 1))
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        hidden_units: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        partitioned_normalization: bool = True,
        momentum: float = 0.99,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        self.scenario = scenario_feature_name(self.spec, "STAR")
        self.num_scenarios = self.spec.input_dim(self.scenario)
        self.hidden_units = [int(u) for u in hidden_units]
        self.activation = activation
        self.dropout = dropout
        self.partitioned_normalization = bool(partitioned_normalization)
        self.momentum = momentum
        self.pn = (
            PartitionedNormalization(
                self.num_scenarios, momentum=momentum, dtype=self.dtype_policy, name="pn"
            )
            if self.partitioned_normalization
            else None
        )
        self.star_layers = [
            StarTopologyDense(
                u,
                self.num_scenarios,
                activation=activation,
                dtype=self.dtype_policy,
                name=f"star_{i}",
            )
            for i, u in enumerate(self.hidden_units)
        ]
        self.dropouts = [
            keras.layers.Dropout(dropout, dtype=self.dtype_policy, name=f"dropout_{i}")
            if dropout
            else None
            for i in range(len(self.hidden_units))
        ]
        self.star_output = StarTopologyDense(
            sum(self.task_units.values()),
            self.num_scenarios,
            dtype=self.dtype_policy,
            name="star_output",
        )

    def body(self, embedded, inputs, training=None):
        scenario_ids = inputs[self.scenario]
        x = self.concat_inputs(embedded)
        if self.pn is not None:
            x = self.pn(x, scenario_ids, training=training)
        for layer, dropout in zip(self.star_layers, self.dropouts):
            x = layer(x, scenario_ids)
            if dropout is not None:
                x = dropout(x, training=training)
        return {"hidden": x, "logits": self.split_by_task(self.star_output(x, scenario_ids))}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            hidden_units=self.hidden_units,
            activation=self.activation,
            dropout=self.dropout,
            partitioned_normalization=self.partitioned_normalization,
            momentum=self.momentum,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class STAR(RecModel):
    """STAR: x0 → partitioned normalization → star-topology FC layers → logits.

    * `PartitionedNormalization` on x0 (every embedding and numeric
      feature): z' = (γ·γ_p)(z − μ_p)/√(σ²_p + ε) + (β + β_p), with each
      scenario's own batch statistics in training and its own moving
      statistics at inference;
    * star-topology FC layers (`StarTopologyDense`), hidden and output:
      y = act(x (W ⊙ W_p) + b + b_p), shared W, b and per-scenario W_p, b_p;
      the output layer gives every task's logit;
    * the auxiliary network: a scenario-indicator shallow tower on the
      scenario feature (`ScenarioIndicatorTower`, the base class's
      `scenario_tower`) whose logit is added before the activation.

    The body, output layer included, is `STARBackbone` (its "logits"); the
    output layer depends on the scenario, so there are no linear task heads.

    Reference: Sheng et al., 2021, "One Model to Serve All: Star Topology
    Adaptive Recommender for Multi-Domain CTR Prediction" (CIKM).

    Args:
        spec: a fitted `FeatureSpec` with one `role="scenario"` feature.
        tasks: the tasks.
        hidden_units: widths of the star-topology hidden layers.
        activation: activation of the hidden layers.
        dropout: dropout rate after each hidden layer.
        partitioned_normalization: apply PN to x0 (False: no normalization).
        momentum: momentum of PN's moving statistics.
        scenario_tower: the auxiliary network: True (default), False, or a
            dict of `ScenarioIndicatorTower` arguments.

    Example:

    >>> model = kr.models.STAR(spec, tasks="click", hidden_units=[256, 128])
    """

    uses_task_heads = False

    def __init__(
        self,
        spec,
        tasks,
        hidden_units: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        partitioned_normalization: bool = True,
        momentum: float = 0.99,
        scenario_tower=True,
        **kwargs,
    ):
        super().__init__(spec, tasks, scenario_tower=scenario_tower, **kwargs)
        self.backbone = STARBackbone(
            hidden_units=hidden_units,
            activation=activation,
            dropout=dropout,
            partitioned_normalization=partitioned_normalization,
            momentum=momentum,
            **self.backbone_arguments(),
        )
        self.build_now()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        # The auxiliary network is on by default here, so "off" is written
        # out (the base class writes the tower only when there is one).
        config["scenario_tower"] = (
            self.scenario_tower_config if self.scenario_tower_config is not None else False
        )
        return config
