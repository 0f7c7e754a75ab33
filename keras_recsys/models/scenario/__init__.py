"""Multi-scenario models."""

from keras_recsys.models.scenario.hmoe import HMoE
from keras_recsys.models.scenario.m2m import M2M
from keras_recsys.models.scenario.pepnet import PEPNet
from keras_recsys.models.scenario.split_merge import SplitMerge
from keras_recsys.models.scenario.star import STAR

__all__ = ["HMoE", "M2M", "PEPNet", "STAR", "SplitMerge"]
