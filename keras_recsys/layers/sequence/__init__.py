"""Sequence layers: learned positions, self-attention and HSTU blocks over item histories."""

from keras_recsys.layers.sequence.hstu import HSTU
from keras_recsys.layers.sequence.m_falcon import m_falcon
from keras_recsys.layers.sequence.position import PositionEmbedding
from keras_recsys.layers.sequence.transformer import TransformerBlock

__all__ = ["HSTU", "PositionEmbedding", "TransformerBlock", "m_falcon"]
