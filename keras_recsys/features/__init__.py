"""Feature declarations, fitting (`adapt`) and TensorFlow preprocessing."""

from keras_recsys.features.feature import (
    NUM_RESERVED_IDS,
    OOV_ID,
    PAD_ID,
    Categorical,
    Crossed,
    Feature,
    Numeric,
    Sequence,
    Timestamps,
)
from keras_recsys.features.spec import FeatureSpec

__all__ = [
    "NUM_RESERVED_IDS",
    "OOV_ID",
    "PAD_ID",
    "Categorical",
    "Crossed",
    "Feature",
    "FeatureSpec",
    "Numeric",
    "Sequence",
    "Timestamps",
]
