"""Model builders: each a `keras.Model` built from a FeatureSpec and Tasks.

Family folders: `interaction/` (ranking), `multitask/`, `scenario/`,
`retrieval/` (two-tower) and `sequence/` (next-item).
"""

from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction import DCN, DNN, DeepFM, WideAndDeep
from keras_recsys.models.multitask import CGC, ESMM, PLE, MMoE, SharedBottom
from keras_recsys.models.retrieval import TwoTower
from keras_recsys.models.scenario import M2M, STAR, HMoE, PEPNet, SplitMerge
from keras_recsys.models.sequence import (
    HSTU,
    BERT4Rec,
    GRU4Rec,
    HSTURanker,
    SASRec,
    SequentialRecommender,
)

__all__ = [
    "BERT4Rec",
    "CGC",
    "DCN",
    "DNN",
    "DeepFM",
    "ESMM",
    "GRU4Rec",
    "HMoE",
    "HSTU",
    "HSTURanker",
    "M2M",
    "MMoE",
    "PEPNet",
    "PLE",
    "RecModel",
    "SASRec",
    "STAR",
    "SequentialRecommender",
    "SharedBottom",
    "SplitMerge",
    "TwoTower",
    "WideAndDeep",
]
