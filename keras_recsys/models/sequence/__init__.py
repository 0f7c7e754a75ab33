"""Next-item models: a sequence backbone and a next-item head tied to the item table."""

from keras_recsys.models.sequence.base import SequenceBackbone, SequentialRecommender
from keras_recsys.models.sequence.bert4rec import BERT4Rec, BERT4RecBackbone
from keras_recsys.models.sequence.gru4rec import GRU4Rec, GRU4RecBackbone
from keras_recsys.models.sequence.hstu import HSTU, HSTUBackbone
from keras_recsys.models.sequence.hstu_ranking import HSTURanker
from keras_recsys.models.sequence.s3rec import (
    S3RecPretrainer,
    S3RecPretrainingData,
    s3rec_pretraining_batch,
    s3rec_pretraining_sequences,
)
from keras_recsys.models.sequence.sasrec import SASRec, SASRecBackbone

__all__ = [
    "BERT4Rec",
    "BERT4RecBackbone",
    "GRU4Rec",
    "GRU4RecBackbone",
    "HSTU",
    "HSTUBackbone",
    "HSTURanker",
    "S3RecPretrainer",
    "S3RecPretrainingData",
    "SASRec",
    "SASRecBackbone",
    "SequenceBackbone",
    "SequentialRecommender",
    "s3rec_pretraining_batch",
    "s3rec_pretraining_sequences",
]
