"""Reusable layers, one concept a file."""

from keras_recsys.layers.cgc import CustomizedGateControl
from keras_recsys.layers.cross import MixtureOfLowRankCross, VectorCross
from keras_recsys.layers.dynamic_weights import DynamicDense
from keras_recsys.layers.embedding import FeatureEmbedding
from keras_recsys.layers.fm import FactorizationMachine
from keras_recsys.layers.gating import PersonalizedGate
from keras_recsys.layers.heads import TaskHeads
from keras_recsys.layers.hmoe import HMoEGate
from keras_recsys.layers.linear import LinearTerm
from keras_recsys.layers.loss_weighting import GradNormWeighting, UncertaintyWeighting
from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.moe import ExpertGate, MixtureOfExperts
from keras_recsys.layers.pooling import MaskedPooling
from keras_recsys.layers.scenario import (
    ScenarioIndicatorTower,
    scenario_one_hot,
    scenario_routing,
)
from keras_recsys.layers.scenario_towers import ScenarioTowers
from keras_recsys.layers.star import PartitionedNormalization, StarTopologyDense
from keras_recsys.layers.towers import TaskTowers

__all__ = [
    "CustomizedGateControl",
    "DynamicDense",
    "ExpertGate",
    "FactorizationMachine",
    "FeatureEmbedding",
    "GradNormWeighting",
    "HMoEGate",
    "LinearTerm",
    "MLP",
    "MaskedPooling",
    "MixtureOfExperts",
    "MixtureOfLowRankCross",
    "PartitionedNormalization",
    "PersonalizedGate",
    "ScenarioIndicatorTower",
    "ScenarioTowers",
    "StarTopologyDense",
    "TaskHeads",
    "TaskTowers",
    "UncertaintyWeighting",
    "VectorCross",
    "scenario_one_hot",
    "scenario_routing",
]
