"""Multi-task layers: mixtures of experts, CGC/PLE levels, STEM's gating, AITM's transfer, towers."""

from keras_recsys.layers.multitask.all_forward_gating import AllForwardGating
from keras_recsys.layers.multitask.cgc import CustomizedGateControl
from keras_recsys.layers.multitask.information_transfer import AdaptiveInformationTransfer
from keras_recsys.layers.multitask.moe import ExpertGate, MixtureOfExperts
from keras_recsys.layers.multitask.towers import TaskTowers

__all__ = [
    "AdaptiveInformationTransfer",
    "AllForwardGating",
    "CustomizedGateControl",
    "ExpertGate",
    "MixtureOfExperts",
    "TaskTowers",
]
