"""Multi-scenario layers: STAR, scenario towers and gates, dynamic weights."""

from keras_recsys.layers.scenario.dynamic_weights import DynamicDense
from keras_recsys.layers.scenario.gating import PersonalizedGate
from keras_recsys.layers.scenario.hmoe import HMoEGate
from keras_recsys.layers.scenario.indicator import (
    ScenarioIndicatorTower,
    scenario_one_hot,
    scenario_routing,
)
from keras_recsys.layers.scenario.star import PartitionedNormalization, StarTopologyDense
from keras_recsys.layers.scenario.towers import ScenarioTowers

__all__ = [
    "DynamicDense",
    "HMoEGate",
    "PartitionedNormalization",
    "PersonalizedGate",
    "ScenarioIndicatorTower",
    "ScenarioTowers",
    "StarTopologyDense",
    "scenario_one_hot",
    "scenario_routing",
]
