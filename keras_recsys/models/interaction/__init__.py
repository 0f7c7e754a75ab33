"""Feature-interaction ranking models and their backbones."""

from keras_recsys.models.interaction.autoint import AutoInt, AutoIntBackbone
from keras_recsys.models.interaction.dcn import DCN, DCNBackbone
from keras_recsys.models.interaction.deepfm import DeepFM, DeepFMBackbone
from keras_recsys.models.interaction.dhen import DHEN, DHENBackbone
from keras_recsys.models.interaction.dlrm import DLRM, DLRMBackbone
from keras_recsys.models.interaction.dnn import DNN, DNNBackbone
from keras_recsys.models.interaction.final_mlp import FinalMLP, FinalMLPBackbone
from keras_recsys.models.interaction.gdcn import GDCN, GDCNBackbone
from keras_recsys.models.interaction.masknet import MaskNet, MaskNetBackbone
from keras_recsys.models.interaction.masknet_dcn import MaskNetDCN, MaskNetDCNBackbone
from keras_recsys.models.interaction.wide_deep import WideAndDeep, WideAndDeepBackbone
from keras_recsys.models.interaction.wukong import WuKong, WuKongBackbone
from keras_recsys.models.interaction.xdeepfm import XDeepFM, XDeepFMBackbone

__all__ = [
    "AutoInt",
    "AutoIntBackbone",
    "DCN",
    "DCNBackbone",
    "DHEN",
    "DHENBackbone",
    "DLRM",
    "DLRMBackbone",
    "DNN",
    "DNNBackbone",
    "DeepFM",
    "DeepFMBackbone",
    "FinalMLP",
    "FinalMLPBackbone",
    "GDCN",
    "GDCNBackbone",
    "MaskNet",
    "MaskNetBackbone",
    "MaskNetDCN",
    "MaskNetDCNBackbone",
    "WideAndDeep",
    "WideAndDeepBackbone",
    "WuKong",
    "WuKongBackbone",
    "XDeepFM",
    "XDeepFMBackbone",
]
