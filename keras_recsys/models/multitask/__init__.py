"""Multi-task models and their backbones."""

from keras_recsys.models.multitask.aitm import AITM, AITMBackbone
from keras_recsys.models.multitask.esmm import ESMM, ESMMBackbone
from keras_recsys.models.multitask.infnet import INFNet, INFNetBackbone
from keras_recsys.models.multitask.mmoe import MMoE, MMoEBackbone
from keras_recsys.models.multitask.omoe import OMoE, OMoEBackbone
from keras_recsys.models.multitask.ple import CGC, PLE, PLEBackbone
from keras_recsys.models.multitask.shared_bottom import SharedBottom, SharedBottomBackbone
from keras_recsys.models.multitask.stem import STEM, STEMBackbone

__all__ = [
    "AITM",
    "AITMBackbone",
    "CGC",
    "ESMM",
    "ESMMBackbone",
    "INFNet",
    "INFNetBackbone",
    "MMoE",
    "MMoEBackbone",
    "OMoE",
    "OMoEBackbone",
    "PLE",
    "PLEBackbone",
    "STEM",
    "STEMBackbone",
    "SharedBottom",
    "SharedBottomBackbone",
]
