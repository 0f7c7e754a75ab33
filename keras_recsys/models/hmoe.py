"""HMoE: every scenario tower scores every example; a gate mixes them."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_recsys.layers.hmoe import HMoEGate
from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.scenario import scenario_feature_name
from keras_recsys.layers.scenario_towers import ScenarioTowers
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class HMoE(RecModel):
    """logits = Σ_s g_s(h) · ŷ_s, ŷ_s = y_s for the own scenario, sg(y_s) otherwise.

    A shared bottom MLP gives h = MLP(x0); one tower per scenario
    (`ScenarioTowers`) scores every example, y_s = tower_s(h); a softmax
    gate on h (`HMoEGate`) mixes the S scores. An example's own scenario
    tower receives its gradient; the other scenarios' towers are used under
    stop-gradient, so they lend their predictions without being fitted to
    data that is not theirs.

    Reference: Li et al., 2020, "Improving Multi-Scenario Learning to Rank
    in E-commerce by Exploiting Task Relationships in the Label Space"
    (CIKM).

    Args:
        spec: a fitted `FeatureSpec` with one `role="scenario"` feature.
        tasks: the tasks.
        bottom_units: widths of the shared bottom MLP.
        tower_units: widths of each scenario tower's hidden layers (its
            linear output, one unit per task logit, is added).
        dropout: dropout rate of the bottom and towers.
        activation: activation of the hidden layers.
        normalization: None, "batch" or "layer" in the bottom MLP.

    Example:

    >>> model = kr.models.HMoE(spec, tasks="click", tower_units=[64])
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
        self.scenario = scenario_feature_name(self.spec, "HMoE")
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
        self.gate = HMoEGate(self.num_scenarios, name="gate")
        self.build_now()

    def compute_logits(self, inputs, training=None):
        hidden = self.concat_inputs(self.embedding(inputs))
        if self.bottom is not None:
            hidden = self.bottom(hidden, training=training)
        scores = self.towers(hidden, training=training)  # (B, S, U)
        return self.split_by_task(self.gate(hidden, scores, inputs[self.scenario]))

    def hyperparameters(self):
        return {
            "bottom_units": self.bottom_units,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalization": self.normalization,
        }
