"""Reusable layers, one concept a file, in family folders.

The shared front end (`FeatureEmbedding`, `MLP`, `MaskedPooling`) lives at the
top; `interaction/`, `multitask/`, `scenario/`, `sequence/`, `behavior/` and
`infnet/` hold each family's building blocks.
"""

from keras_recsys.heads.pointwise import TaskHeads
from keras_recsys.layers import infnet
from keras_recsys.layers.behavior import (
    AUGRU,
    AUGRUCell,
    Dice,
    TargetAttention,
    next_behavior_loss,
)
from keras_recsys.layers.embedding import FeatureEmbedding
from keras_recsys.layers.infnet import (
    CategoricalProxies,
    CrossAttention,
    InfNetBlock,
    LearnedTokens,
    ProxyGatedUnit,
    SequenceProxies,
)
from keras_recsys.layers.interaction import (
    BilinearFusion,
    CompressedInteractionNetwork,
    DHENLayer,
    FactorizationMachine,
    FactorizationMachineBlock,
    FeatureGating,
    FieldSelfAttention,
    GatedCross,
    InstanceGuidedMask,
    LinearCompressBlock,
    LinearTerm,
    MaskBlock,
    MaskNetBlocks,
    MixtureOfLowRankCross,
    VectorCross,
    WuKongLayer,
)
from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.multitask import (
    AdaptiveInformationTransfer,
    AllForwardGating,
    CustomizedGateControl,
    ExpertGate,
    MixtureOfExperts,
    TaskTowers,
)
from keras_recsys.layers.pooling import MaskedPooling
from keras_recsys.layers.scenario import (
    DynamicDense,
    HMoEGate,
    PartitionedNormalization,
    PersonalizedGate,
    ScenarioIndicatorTower,
    ScenarioTowers,
    StarTopologyDense,
    scenario_one_hot,
    scenario_routing,
)
from keras_recsys.layers.sequence import (
    HSTU,
    PositionEmbedding,
    TransformerBlock,
    m_falcon,
)
from keras_recsys.training.loss_weighting import GradNormWeighting, UncertaintyWeighting

__all__ = [
    "infnet",
    "AUGRU",
    "AUGRUCell",
    "AdaptiveInformationTransfer",
    "AllForwardGating",
    "BilinearFusion",
    "CategoricalProxies",
    "CompressedInteractionNetwork",
    "CrossAttention",
    "CustomizedGateControl",
    "DHENLayer",
    "Dice",
    "DynamicDense",
    "ExpertGate",
    "FactorizationMachine",
    "FactorizationMachineBlock",
    "FeatureEmbedding",
    "FeatureGating",
    "FieldSelfAttention",
    "GatedCross",
    "GradNormWeighting",
    "HMoEGate",
    "HSTU",
    "InfNetBlock",
    "InstanceGuidedMask",
    "LearnedTokens",
    "LinearCompressBlock",
    "LinearTerm",
    "MLP",
    "MaskBlock",
    "MaskNetBlocks",
    "MaskedPooling",
    "MixtureOfExperts",
    "MixtureOfLowRankCross",
    "PartitionedNormalization",
    "PersonalizedGate",
    "PositionEmbedding",
    "ProxyGatedUnit",
    "ScenarioIndicatorTower",
    "ScenarioTowers",
    "SequenceProxies",
    "StarTopologyDense",
    "TargetAttention",
    "TaskHeads",
    "TaskTowers",
    "TransformerBlock",
    "UncertaintyWeighting",
    "VectorCross",
    "WuKongLayer",
    "m_falcon",
    "next_behavior_loss",
    "scenario_one_hot",
    "scenario_routing",
]
