"""Reusable layers, one concept a file."""

from keras_recsys.layers.cross import MixtureOfLowRankCross, VectorCross
from keras_recsys.layers.embedding import FeatureEmbedding
from keras_recsys.layers.fm import FactorizationMachine
from keras_recsys.layers.heads import TaskHeads
from keras_recsys.layers.linear import LinearTerm
from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.pooling import MaskedPooling

__all__ = [
    "FactorizationMachine",
    "FeatureEmbedding",
    "LinearTerm",
    "MLP",
    "MaskedPooling",
    "MixtureOfLowRankCross",
    "TaskHeads",
    "VectorCross",
]
