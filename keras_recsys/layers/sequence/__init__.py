"""Sequence layers: learned positions and self-attention blocks over item histories."""

from keras_recsys.layers.sequence.position import PositionEmbedding
from keras_recsys.layers.sequence.transformer import TransformerBlock

__all__ = ["PositionEmbedding", "TransformerBlock"]
