"""`HMoEGate`: mixes every scenario tower's score, other scenarios' under stop-gradient."""

from __future__ import annotations

import keras
from keras import ops

from keras_recsys.layers.scenario.indicator import check_num_scenarios, scenario_one_hot


@keras.saving.register_keras_serializable(package="keras_recsys")
class HMoEGate(keras.layers.Layer):
    """ŷ = Σ_s g_s(x) · (m_s y_s + (1 − m_s) · stop_gradient(y_s)).

    y_s (B, U) is the score of scenario s's tower for the example,
    g = softmax(W_g x + b_g) a gate over the S towers and m_s = 1 for the
    example's own scenario, 0 otherwise. The forward value is the plain
    gated mixture Σ_s g_s y_s; in the backward pass an example trains its
    own tower (and the gate) only, so a scenario's tower is fitted to its
    own data while the others still contribute their knowledge through
    the gate. Examples of a reserved (out-of-vocabulary) scenario train
    no tower.

    Reference: Li et al., 2020, "Improving Multi-Scenario Learning to Rank
    in E-commerce by Exploiting Task Relationships in the Label Space"
    (CIKM; HMoE).

    Args:
        num_scenarios: size of the scenario id space (reserved ids 0 and 1
            included); there are S = num_scenarios - 2 towers.

    Example:

    >>> gate = kr.layers.HMoEGate(num_scenarios=6)
    >>> gate(x, scores, scenario_ids).shape    # scores: (B, 4, U)
    (B, U)
    """

    def __init__(self, num_scenarios: int, **kwargs):
        super().__init__(**kwargs)
        self.num_scenarios = check_num_scenarios(num_scenarios, "HMoEGate")
        self.gate = keras.layers.Dense(self.num_scenarios - 2, name="gate")

    def build(self, input_shape):
        self.gate.build(tuple(input_shape))
        self.built = True

    def gate_weights(self, gate_inputs):
        """g: the softmax gate over the towers, (B, S)."""
        return ops.softmax(self.gate(gate_inputs), axis=-1)

    def call(self, gate_inputs, scores, scenario_ids):
        own = ops.expand_dims(
            scenario_one_hot(scenario_ids, self.num_scenarios, reserved=False, dtype=scores.dtype),
            -1,
        )
        blocked = own * scores + (1.0 - own) * ops.stop_gradient(scores)
        weights = ops.expand_dims(self.gate_weights(gate_inputs), -1)
        return ops.sum(weights * blocked, axis=1)

    def get_config(self):
        config = super().get_config()
        config["num_scenarios"] = self.num_scenarios
        return config
