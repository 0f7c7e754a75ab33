"""HMoE: every scenario tower scores every example; a gate mixes them."""

from __future__ import annotations

import keras

from keras_recsys.layers.scenario.hmoe import HMoEGate
from keras_recsys.models.scenario.split_merge import SplitMerge, SplitMergeBackbone


@keras.saving.register_keras_serializable(package="keras_recsys")
class HMoEBackbone(SplitMergeBackbone):
    """HMoE's body: `SplitMergeBackbone` whose merge is a gate over all towers.

    "hidden" = the shared bottom's output h; "logits" = {task: (B, units)}
    of Σ_s g_s(h) · ŷ_s (`HMoEGate`: a softmax gate on h; ŷ_s the tower
    scores, under stop-gradient for the other scenarios' towers).

    Args:
        spec, task_units, numeric_field_dim, oov_dropout, bottom_units,
            tower_units, dropout, activation, normalization: see
            `SplitMergeBackbone`.

    Example:

    >>> backbone = kr.models.HMoEBackbone(spec, {"click": 1}, tower_units=[32])
    >>> backbone(batch)["logits"]["click"].shape
    (B, 1)
    """

    def make_merge_layers(self) -> None:
        self.gate = HMoEGate(self.num_scenarios, dtype=self.dtype_policy, name="gate")

    def merge(self, hidden, scores, scenario_ids):
        return self.gate(hidden, scores, scenario_ids)


@keras.saving.register_keras_serializable(package="keras_recsys")
class HMoE(SplitMerge):
    """logits = Σ_s g_s(h) · ŷ_s, ŷ_s = y_s for the own scenario, sg(y_s) otherwise.

    A shared bottom MLP gives h = MLP(x0); one tower per scenario
    (`ScenarioTowers`) scores every example, y_s = tower_s(h); a softmax
    gate on h (`HMoEGate`) mixes the S scores. An example's own scenario
    tower receives its gradient; the other scenarios' towers are used under
    stop-gradient, so they lend their predictions without being fitted to
    data that is not theirs. The bottom and towers are `SplitMerge`'s; only
    the merge differs (SplitMerge takes the own tower's score alone). The
    body is `HMoEBackbone`.

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

    backbone_class = HMoEBackbone
