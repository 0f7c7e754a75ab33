"""Behaviour-sequence layers: target attention (DIN), AUGRU and the auxiliary loss (DIEN), Dice."""

from keras_recsys.layers.behavior.augru import AUGRU, AUGRUCell
from keras_recsys.layers.behavior.auxiliary_loss import next_behavior_loss
from keras_recsys.layers.behavior.dice import Dice
from keras_recsys.layers.behavior.target_attention import TargetAttention

__all__ = ["AUGRU", "AUGRUCell", "Dice", "TargetAttention", "next_behavior_loss"]
