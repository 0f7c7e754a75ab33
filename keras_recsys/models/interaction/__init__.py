"""Feature-interaction ranking models."""

from keras_recsys.models.interaction.dcn import DCN
from keras_recsys.models.interaction.deepfm import DeepFM
from keras_recsys.models.interaction.dnn import DNN
from keras_recsys.models.interaction.wide_deep import WideAndDeep

__all__ = ["DCN", "DNN", "DeepFM", "WideAndDeep"]
