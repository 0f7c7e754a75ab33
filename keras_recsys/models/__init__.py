"""Model builders: each a `keras.Model` built from a FeatureSpec and Tasks.

Family folders: `interaction/` (ranking), `multitask/`, `scenario/`,
`retrieval/` (two-tower) and `sequence/` (next-item). A ranking builder is a
`Backbone` (features -> named representations, no loss) wrapped by
`RecModel` (task heads, losses, export); both are exported here.
"""

from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction import (
    DCN,
    DNN,
    DCNBackbone,
    DeepFM,
    DeepFMBackbone,
    DNNBackbone,
    WideAndDeep,
    WideAndDeepBackbone,
)
from keras_recsys.models.multitask import (
    CGC,
    ESMM,
    PLE,
    ESMMBackbone,
    MMoE,
    MMoEBackbone,
    PLEBackbone,
    SharedBottom,
    SharedBottomBackbone,
)
from keras_recsys.models.retrieval import (
    TwoTower,
)
from keras_recsys.models.scenario import (
    M2M,
    STAR,
    HMoE,
    HMoEBackbone,
    M2MBackbone,
    PEPNet,
    PEPNetBackbone,
    SplitMerge,
    SplitMergeBackbone,
    STARBackbone,
)
from keras_recsys.models.sequence import (
    HSTU,
    BERT4Rec,
    BERT4RecBackbone,
    GRU4Rec,
    GRU4RecBackbone,
    HSTUBackbone,
    HSTURanker,
    S3RecPretrainer,
    S3RecPretrainingData,
    SASRec,
    SASRecBackbone,
    SequenceBackbone,
    SequentialRecommender,
    s3rec_pretraining_batch,
    s3rec_pretraining_sequences,
)

__all__ = [
    "BERT4Rec",
    "BERT4RecBackbone",
    "Backbone",
    "CGC",
    "DCN",
    "DCNBackbone",
    "DNN",
    "DNNBackbone",
    "DeepFM",
    "DeepFMBackbone",
    "ESMM",
    "ESMMBackbone",
    "GRU4Rec",
    "GRU4RecBackbone",
    "HMoE",
    "HMoEBackbone",
    "HSTU",
    "HSTUBackbone",
    "HSTURanker",
    "M2M",
    "M2MBackbone",
    "MMoE",
    "MMoEBackbone",
    "PEPNet",
    "PEPNetBackbone",
    "PLE",
    "PLEBackbone",
    "RecModel",
    "S3RecPretrainer",
    "S3RecPretrainingData",
    "SASRec",
    "SASRecBackbone",
    "STAR",
    "STARBackbone",
    "SequenceBackbone",
    "SequentialRecommender",
    "SharedBottom",
    "SharedBottomBackbone",
    "SplitMerge",
    "SplitMergeBackbone",
    "TwoTower",
    "WideAndDeep",
    "WideAndDeepBackbone",
    "s3rec_pretraining_batch",
    "s3rec_pretraining_sequences",
]
