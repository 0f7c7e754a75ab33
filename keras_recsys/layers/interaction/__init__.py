"""Feature-interaction layers: FM, cross networks, CIN, field attention, gating, the wide part."""

from keras_recsys.layers.interaction.bilinear_fusion import BilinearFusion
from keras_recsys.layers.interaction.cin import CompressedInteractionNetwork
from keras_recsys.layers.interaction.cross import MixtureOfLowRankCross, VectorCross
from keras_recsys.layers.interaction.dhen import DHENLayer
from keras_recsys.layers.interaction.feature_gating import FeatureGating
from keras_recsys.layers.interaction.field_attention import FieldSelfAttention
from keras_recsys.layers.interaction.fm import FactorizationMachine
from keras_recsys.layers.interaction.gated_cross import GatedCross
from keras_recsys.layers.interaction.linear import LinearTerm
from keras_recsys.layers.interaction.mask_block import InstanceGuidedMask, MaskBlock, MaskNetBlocks
from keras_recsys.layers.interaction.wukong import (
    FactorizationMachineBlock,
    LinearCompressBlock,
    WuKongLayer,
)

__all__ = [
    "BilinearFusion",
    "CompressedInteractionNetwork",
    "DHENLayer",
    "FactorizationMachine",
    "FactorizationMachineBlock",
    "FeatureGating",
    "FieldSelfAttention",
    "GatedCross",
    "InstanceGuidedMask",
    "LinearCompressBlock",
    "LinearTerm",
    "MaskBlock",
    "MaskNetBlocks",
    "MixtureOfLowRankCross",
    "VectorCross",
    "WuKongLayer",
]
