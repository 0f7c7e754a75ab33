"""Model builders: each a `keras.Model` built from a FeatureSpec and Tasks."""

from keras_recsys.models.base import RecModel
from keras_recsys.models.dcn import DCN
from keras_recsys.models.deepfm import DeepFM
from keras_recsys.models.wide_deep import WideAndDeep

__all__ = ["DCN", "DeepFM", "RecModel", "WideAndDeep"]
