"""Behaviour-sequence ranking models: the target reads the user's behaviour histories."""

from keras_recsys.models.behavior.base import BehaviorBackbone, behavior_targets
from keras_recsys.models.behavior.dien import DIEN, DIENBackbone
from keras_recsys.models.behavior.din import DIN, DINBackbone

__all__ = ["DIEN", "DIN", "BehaviorBackbone", "DIENBackbone", "DINBackbone", "behavior_targets"]
