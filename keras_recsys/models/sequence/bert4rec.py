"""BERT4Rec: bidirectional self-attention trained with a cloze objective."""

from __future__ import annotations

import keras
from keras import ops

from keras_recsys.layers.sequence import PositionEmbedding, TransformerBlock
from keras_recsys.models.sequence.base import (
    SequenceBackbone,
    SequentialRecommender,
    item_mask,
    sequence_dims,
)


@keras.saving.register_keras_serializable(package="keras_recsys")
class BERT4RecBackbone(SequenceBackbone):
    """h = Block_n(… Block_1(dropout(LN(E'[ids] + P)))), bidirectional post-norm GELU blocks.

    E'[ids] is the item embedding, except at cloze positions, which read a
    learned mask vector instead (the paper's [mask] token; a vector of its
    own rather than a table row, so the tied output never scores it).

    Args:
        num_items, embedding_dim, max_length: see `SequenceBackbone`.
        num_blocks, num_heads, dropout: the Transformer's sizes.
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int,
        max_length: int,
        num_blocks: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(num_items, embedding_dim, max_length, **kwargs)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.positions = PositionEmbedding(max_length, dtype=self.dtype_policy, name="positions")
        self.input_norm = keras.layers.LayerNormalization(
            epsilon=1e-12, dtype=self.dtype_policy, name="input_norm"
        )
        self.input_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.blocks = [
            TransformerBlock(
                num_heads,
                dropout=dropout,
                causal=False,
                intermediate_dim=4 * embedding_dim,
                activation="gelu",
                norm_first=False,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(self.num_blocks)
        ]

    def build(self, input_shape=None):
        self.mask_vector = self.add_weight(
            name="mask_vector",
            shape=(self.embedding_dim,),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        super().build(input_shape)

    def call(self, ids, cloze=None, training=None) -> dict:
        """`cloze` (B, L) bool marks the positions that read the mask vector."""
        embedded = self.item_embedding(ids)
        mask = item_mask(ids)
        if cloze is not None:
            mask = ops.logical_or(mask, cloze)
            vector = ops.cast(self.mask_vector, embedded.dtype)
            embedded = ops.where(ops.expand_dims(cloze, -1), vector, embedded)
        return {"sequence": self.body(embedded, mask, training=training), "mask": mask}

    def body(self, embedded, mask, training=None):
        x = self.input_norm(self.positions(embedded))
        x = self.input_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, mask=mask, training=training)
        return x * ops.cast(ops.expand_dims(mask, -1), x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(num_blocks=self.num_blocks, num_heads=self.num_heads, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class BERT4Rec(SequentialRecommender):
    """BERT4Rec: bidirectional blocks trained to fill in masked items (cloze).

    In training each item of the history is replaced by the mask vector with
    probability `mask_probability` and predicted from both sides; the loss
    (the head's, tied to the item table) is taken at the masked positions
    only. At inference the mask is appended after the history (the oldest
    item drops out to keep L) and its output scores the next item.

    Reference: Sun et al., 2019, "BERT4Rec: Sequential Recommendation with
    Bidirectional Encoder Representations from Transformer" (CIKM).

    Args:
        spec: a fitted `FeatureSpec` with the history `Sequence`.
        num_blocks, num_heads, dropout: Transformer sizes (paper: 2, 2, 0.1).
        mask_probability: the cloze rate ρ (paper: 0.6 on Beauty, 0.2 on
            MovieLens-1M).
        **kwargs: `history`, `seed` and the loss arguments of
            `SequentialRecommender` (default `loss="softmax"`, the paper's).

    Example:

    >>> model = kr.models.BERT4Rec(spec, mask_probability=0.6)
    """

    target_style = "cloze"

    def __init__(
        self,
        spec,
        num_blocks: int = 2,
        num_heads: int = 2,
        dropout: float = 0.1,
        mask_probability: float = 0.2,
        **kwargs,
    ):
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}.")
        backbone = BERT4RecBackbone(
            *sequence_dims(spec, kwargs.get("history")),
            num_blocks=num_blocks,
            num_heads=num_heads,
            dropout=dropout,
            name="backbone",
        )
        kwargs.setdefault("name", "bert4rec")
        kwargs.setdefault("loss", "softmax")
        super().__init__(spec, backbone, **kwargs)
        self.mask_probability = float(mask_probability)
        self.cloze_seed = keras.random.SeedGenerator(kwargs.get("seed"), name="cloze_seed")
        self.build()

    def call(self, inputs, training=None):
        ids = self._ids(inputs, training)
        if not training:
            return self.backbone(ids, training=training)
        draw = keras.random.uniform(ops.shape(ids), seed=self.cloze_seed)
        cloze = ops.logical_and(draw < self.mask_probability, item_mask(ids))
        outputs = self.backbone(ids, cloze=cloze, training=training)
        # The targets: the hidden items at cloze positions, 0 (no target) elsewhere.
        outputs["targets"] = ops.where(cloze, ids, ops.zeros_like(ids))
        return outputs

    def query_vectors(self, inputs, training=False):
        ids = self._ids(inputs)
        shifted = ops.concatenate([ids[:, 1:], ops.zeros_like(ids[:, :1])], axis=1)
        last = ops.expand_dims(ops.arange(self.max_length) == self.max_length - 1, 0)
        cloze = ops.logical_or(ops.zeros_like(ids, dtype="bool"), last)
        return self.backbone(shifted, cloze=cloze, training=training)["sequence"][:, -1, :]

    def backbone_config(self):
        return {
            "num_blocks": self.backbone.num_blocks,
            "num_heads": self.backbone.num_heads,
            "dropout": self.backbone.dropout,
            "mask_probability": self.mask_probability,
        }
