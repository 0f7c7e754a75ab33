"""Feature-interaction ranking models."""

from keras_recsys.models.interaction.dcn import DCN, DCNBackbone
from keras_recsys.models.interaction.deepfm import DeepFM, DeepFMBackbone
from keras_recsys.models.interaction.dnn import DNN, DNNBackbone
from keras_recsys.models.interaction.wide_deep import WideAndDeep, WideAndDeepBackbone

__all__ = [
    "DCN",
    "DCNBackbone",
    "DNN",
    "DNNBackbone",
    "DeepFM",
    "DeepFMBackbone",
    "WideAndDeep",
    "WideAndDeepBackbone",
]
