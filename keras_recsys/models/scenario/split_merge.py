"""Split & Merge: a shared bottom, then each example's own scenario tower."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.scenario.indicator import scenario_feature_name, scenario_routing
from keras_recsys.layers.scenario.towers import ScenarioTowers
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class SplitMerge(RecModel):
    """logits = Σ_s r_s · tower_s(MLP_shared(x0)), r = one-hot of the scenario.

    The "merge" is a shared bottom MLP on every embedding (all scenarios'
    data train it); the "split" is one tower per scenario
    (`ScenarioTowers`) ending in that scenario's logits for every task, and
    each example is routed to its own scenario's tower, so a tower is
    trained by its scenario's examples only. An example whose scenario is
    out of vocabulary (unseen in `adapt`) gets the mean of all towers
    (`scenario_routing`).

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
        self.scenario = scenario_feature_name(self.spec, type(self).__name__)
        self.num_scenarios = self.spec.input_dim(self.scenario)
        self.bottom_units = list(bottom_units)
        self.tower_units = list(tower_units)
        self.dropout = dropout
        self.activation = activation
        self.normalization = normalization
        self.bottom = (
            MLP(bottom_units, activation, dropout, normalization, name="bottom")
            if self.bottom_units
            else None
        )
        self.towers = ScenarioTowers(
            self.num_scenarios,
            self.tower_units + [sum(t.units for t in self.tasks)],
            activation=activation,
            dropout=dropout,
            output_activation=False,
            name="towers",
        )
        self.make_merge_layers()
        self.build_now()

    def make_merge_layers(self) -> None:
        """Creates the layers a subclass's `merge` needs (none here)."""

    def compute_logits(self, inputs, training=None):
        hidden = self.concat_inputs(self.embedding(inputs, training=training))
        if self.bottom is not None:
            hidden = self.bottom(hidden, training=training)
        scores = self.towers(hidden, training=training)  # (B, S, U)
        return self.split_by_task(self.merge(hidden, scores, inputs[self.scenario]))

    def merge(self, hidden, scores, scenario_ids):
        """(B, S, U) scenario towers' logits → (B, U): the own scenario's."""
        routing = scenario_routing(scenario_ids, self.num_scenarios, dtype=scores.dtype)
        return ops.sum(ops.expand_dims(routing, -1) * scores, axis=1)

    def hyperparameters(self):
        return {
            "bottom_units": self.bottom_units,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalization": self.normalization,
        }
