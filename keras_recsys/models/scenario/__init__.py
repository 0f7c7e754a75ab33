"""Multi-scenario models and their backbones."""

from keras_recsys.models.scenario.hmoe import HMoE, HMoEBackbone
from keras_recsys.models.scenario.m2m import M2M, M2MBackbone
from keras_recsys.models.scenario.pepnet import PEPNet, PEPNetBackbone
from keras_recsys.models.scenario.split_merge import SplitMerge, SplitMergeBackbone
from keras_recsys.models.scenario.star import STAR, STARBackbone

__all__ = [
    "HMoE",
    "HMoEBackbone",
    "M2M",
    "M2MBackbone",
    "PEPNet",
    "PEPNetBackbone",
    "STAR",
    "STARBackbone",
    "SplitMerge",
    "SplitMergeBackbone",
]
