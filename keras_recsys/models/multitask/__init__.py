"""Multi-task models."""

from keras_recsys.models.multitask.esmm import ESMM
from keras_recsys.models.multitask.mmoe import MMoE
from keras_recsys.models.multitask.ple import CGC, PLE
from keras_recsys.models.multitask.shared_bottom import SharedBottom

__all__ = ["CGC", "ESMM", "MMoE", "PLE", "SharedBottom"]
