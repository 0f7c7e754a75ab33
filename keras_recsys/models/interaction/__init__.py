"""Feature-interaction ranking models and their backbones."""

from keras_recsys.models.interaction.autoint import AutoInt, AutoIntBackbone
from keras_recsys.models.interaction.dcn import DCN, DCNBackbone
from keras_recsys.models.interaction.deepfm import DeepFM, DeepFMBackbone
from keras_recsys.models.interaction.dlrm import DLRM, DLRMBackbone
from keras_recsys.models.interaction.dnn import DNN, DNNBackbone
from keras_recsys.models.interaction.final_mlp import FinalMLP, FinalMLPBackbone
from keras_recsys.models.interaction.wide_deep import WideAndDeep, WideAndDeepBackbone
from keras_recsys.models.interaction.xdeepfm import XDeepFM, XDeepFMBackbone

__all__ = [
    "AutoInt",
    "AutoIntBackbone",
    "DCN",
    "DCNBackbone",
    "DLRM",
    "DLRMBackbone",
    "DNN",
    "DNNBackbone",
    "DeepFM",
    "DeepFMBackbone",
    "FinalMLP",
    "FinalMLPBackbone",
    "WideAndDeep",
    "WideAndDeepBackbone",
    "XDeepFM",
    "XDeepFMBackbone",
]
