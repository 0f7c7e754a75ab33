"""Model builders: each a `keras.Model` built from a FeatureSpec and Tasks."""

from keras_recsys.models.base import RecModel
from keras_recsys.models.dcn import DCN
from keras_recsys.models.deepfm import DeepFM
from keras_recsys.models.dnn import DNN
from keras_recsys.models.esmm import ESMM
from keras_recsys.models.hmoe import HMoE
from keras_recsys.models.m2m import M2M
from keras_recsys.models.mmoe import MMoE
from keras_recsys.models.pepnet import PEPNet
from keras_recsys.models.ple import CGC, PLE
from keras_recsys.models.shared_bottom import SharedBottom
from keras_recsys.models.split_merge import SplitMerge
from keras_recsys.models.star import STAR
from keras_recsys.models.wide_deep import WideAndDeep

__all__ = [
    "CGC",
    "DCN",
    "DNN",
    "DeepFM",
    "ESMM",
    "HMoE",
    "M2M",
    "MMoE",
    "PEPNet",
    "PLE",
    "RecModel",
    "STAR",
    "SharedBottom",
    "SplitMerge",
    "WideAndDeep",
]
