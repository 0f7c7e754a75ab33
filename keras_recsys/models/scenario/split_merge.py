"""Split & Merge: a shared bottom, then each example's own scenario tower."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.scenario.indicator import scenario_feature_name, scenario_routing
from keras_recsys.layers.scenario.towers import ScenarioTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class SplitMergeBackbone(Backbone):
    """The split-and-merge body: a shared bottom, scenario towers, a merge.

    "hidden" = the shared bottom's output h = MLP(x0) (x0 itself without a
    bottom); "logits" = {task: (B, units)} of `merge(h, towers(h), scenario)`:
    every scenario tower (`ScenarioTowers`) scores the example, y_s =
    tower_s(h), and the merge keeps the example's own scenario's scores (the
    mean of all towers for an out-of-vocabulary scenario,
    `scenario_routing`). The towers end in the logits, so the models on
    this backbone have no separate task heads. A subclass changes the merge
    by overriding `make_merge_layers` and `merge` (see `HMoEBackbone`).

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`;
            the spec needs one `role="scenario"` feature.
        bottom_units: widths of the shared bottom MLP (empty: no bottom).
        tower_units: widths of each scenario tower's hidden layers (its
            linear output layer, one unit per task logit, is added).
        dropout: dropout rate of the bottom and towers.
        activation: activation of the hidden layers.
        normalization: None, "batch" or "layer" in the bottom MLP.

    Example:

    >>> backbone = kr.models.SplitMergeBackbone(spec, {"click": 1}, bottom_units=[64])
    >>> outputs = backbone(batch)
    >>> outputs["hidden"].shape, outputs["logits"]["click"].shape
    ((B, 64), (B, 1))
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        bottom_units: Sequence[int] = (256,),
        tower_units: Sequence[int] = (64,),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        # The error names the model ("SplitMerge", "HMoE"), not its backbone.
        self.scenario = scenario_feature_name(
            self.spec, type(self).__name__.removesuffix("Backbone")
        )
        self.num_scenarios = self.spec.input_dim(self.scenario)
        self.bottom_units = [int(u) for u in bottom_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = dropout
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
        self.towers = ScenarioTowers(
            self.num_scenarios,
            self.tower_units + [sum(self.task_units.values())],
            activation=activation,
            dropout=dropout,
            output_activation=False,
            dtype=self.dtype_policy,
            name="towers",
        )
        self.make_merge_layers()

    def make_merge_layers(self) -> None:
        """Creates the layers a subclass's `merge` needs (none here)."""

    def body(self, embedded, inputs, training=None):
        hidden = self.concat_inputs(embedded)
        if self.bottom is not None:
            hidden = self.bottom(hidden, training=training)
        scores = self.towers(hidden, training=training)  # (B, S, U)
        merged = self.merge(hidden, scores, inputs[self.scenario])
        return {"hidden": hidden, "logits": self.split_by_task(merged)}

    def merge(self, hidden, scores, scenario_ids):
        """(B, S, U) scenario towers' logits → (B, U): the own scenario's."""
        routing = scenario_routing(scenario_ids, self.num_scenarios, dtype=scores.dtype)
        return ops.sum(ops.expand_dims(routing, -1) * scores, axis=1)

    def get_config(self) -> dict[str, Any]:
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
class SplitMerge(RecModel):
    """logits = Σ_s r_s · tower_s(MLP_shared(x0)), r = one-hot of the scenario.

    The "merge" is a shared bottom MLP on every embedding (all scenarios'
    data train it); the "split" is one tower per scenario
    (`ScenarioTowers`) ending in that scenario's logits for every task, and
    each example is routed to its own scenario's tower, so a tower is
    trained by its scenario's examples only. An example whose scenario is
    out of vocabulary (unseen in `adapt`) gets the mean of all towers
    (`scenario_routing`). The body, towers included, is
    `SplitMergeBackbone`: the towers are the output layer, so there are no
    linear task heads.

    Reference: the split-and-merge (shared bottom, scenario-specific towers)
    structure of multi-scenario ranking, e.g. Li et al., 2020, "Improving
    Multi-Scenario Learning to Rank in E-commerce by Exploiting Task
    Relationships in the Label Space" (CIKM), §3.

    Args:
        spec: a fitted `FeatureSpec` with one `role="scenario"` feature.
        tasks: the tasks.
        bottom_units: widths of the shared bottom MLP.
        tower_units: widths of each scenario tower's hidden layers (its
            linear output layer, one unit per task logit, is added).
        dropout: dropout rate of the bottom and towers.
        activation: activation of the hidden layers.
        normalization: None, "batch" or "layer" in the bottom MLP.

    Example:

    >>> spec = kr.FeatureSpec([kr.Categorical("domain", role="scenario"), ...])
    >>> model = kr.models.SplitMerge(spec.adapt(df), tasks="click")
    """

    uses_task_heads = False
    # A subclass with another merge (HMoE) names its own backbone here.
    backbone_class: type[SplitMergeBackbone] = SplitMergeBackbone

    def __init__(
        self,
        spec,
        tasks,
        bottom_units: Sequence[int] = (256,),
        tower_units: Sequence[int] = (64,),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = self.backbone_class(
            bottom_units=bottom_units,
            tower_units=tower_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()
