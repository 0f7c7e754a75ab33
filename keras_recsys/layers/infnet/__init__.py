"""INFNet's layers: token proxies, cross attention, proxy gated units, the block.

Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow Network for
Large-Scale Recommendation Systems" (arXiv 2508.11565).
"""

from keras_recsys.layers.infnet.block import InfNetBlock
from keras_recsys.layers.infnet.categorical_proxies import CategoricalProxies
from keras_recsys.layers.infnet.cross_attention import CrossAttention
from keras_recsys.layers.infnet.learned_tokens import LearnedTokens
from keras_recsys.layers.infnet.proxy_gated_unit import ProxyGatedUnit
from keras_recsys.layers.infnet.sequence_proxies import SequenceProxies

__all__ = [
    "CategoricalProxies",
    "CrossAttention",
    "InfNetBlock",
    "LearnedTokens",
    "ProxyGatedUnit",
    "SequenceProxies",
]
