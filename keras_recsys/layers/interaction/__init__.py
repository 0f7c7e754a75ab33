"""Feature-interaction layers: FM, cross networks, the wide (linear) part."""

from keras_recsys.layers.interaction.cross import MixtureOfLowRankCross, VectorCross
from keras_recsys.layers.interaction.fm import FactorizationMachine
from keras_recsys.layers.interaction.linear import LinearTerm

__all__ = ["FactorizationMachine", "LinearTerm", "MixtureOfLowRankCross", "VectorCross"]
