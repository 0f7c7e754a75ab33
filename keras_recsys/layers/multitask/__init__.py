"""Multi-task layers: mixtures of experts, CGC/PLE levels, per-task towers."""

from keras_recsys.layers.multitask.cgc import CustomizedGateControl
from keras_recsys.layers.multitask.moe import ExpertGate, MixtureOfExperts
from keras_recsys.layers.multitask.towers import TaskTowers

__all__ = ["CustomizedGateControl", "ExpertGate", "MixtureOfExperts", "TaskTowers"]
