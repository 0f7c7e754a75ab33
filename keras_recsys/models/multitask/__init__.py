"""Multi-task models and their backbones."""

from keras_recsys.models.multitask.esmm import ESMM, ESMMBackbone
from keras_recsys.models.multitask.mmoe import MMoE, MMoEBackbone
from keras_recsys.models.multitask.ple import CGC, PLE, PLEBackbone
from keras_recsys.models.multitask.shared_bottom import SharedBottom, SharedBottomBackbone

__all__ = [
    "CGC",
    "ESMM",
    "ESMMBackbone",
    "MMoE",
    "MMoEBackbone",
    "PLE",
    "PLEBackbone",
    "SharedBottom",
    "SharedBottomBackbone",
]
