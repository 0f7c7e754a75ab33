"""SASRec: causal self-attention over the item history."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_recsys.layers.sequence import PositionEmbedding, TransformerBlock
from keras_recsys.models.sequence.base import (
    SequenceBackbone,
    SequentialRecommender,
    sequence_dims,
)


@keras.saving.register_keras_serializable(package="keras_recsys")
class SASRecBackbone(SequenceBackbone):
    """h = LN(Block_n(… Block_1(dropout(√d · E[ids] + P) ⊙ m))), causal pre-norm blocks.

    Args:
        num_items, embedding_dim, max_length: see `SequenceBackbone`.
        num_blocks: stacked self-attention blocks.
        num_heads: attention heads per block.
        dropout: dropout on the input and inside the blocks.
        causal: a position attends to earlier positions only (SASRec). False
            lets every position read the whole sequence, as S3-Rec's
            pre-training does (`S3RecPretrainer`); the weights are the same
            either way, so a bidirectional backbone's weights load into a
            causal one.
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int,
        max_length: int,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        causal: bool = True,
        **kwargs,
    ):
        super().__init__(num_items, embedding_dim, max_length, **kwargs)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.causal = bool(causal)
        self.positions = PositionEmbedding(max_length, dtype=self.dtype_policy, name="positions")
        self.input_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.blocks = [
            TransformerBlock(
                num_heads,
                dropout=dropout,
                causal=self.causal,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(self.num_blocks)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=1e-8, dtype=self.dtype_policy, name="final_norm"
        )

    def body(self, embedded, mask, training=None):
        # The reference scales the item embeddings by √d before adding positions.
        x = self.positions(embedded * ops.cast(math.sqrt(self.embedding_dim), embedded.dtype))
        keep = ops.cast(ops.expand_dims(mask, -1), x.dtype)
        x = self.input_dropout(x, training=training) * keep
        for block in self.blocks:
            x = block(x, mask=mask, training=training)
        return self.final_norm(x) * keep

    def get_config(self):
        config = super().get_config()
        config.update(
            num_blocks=self.num_blocks,
            num_heads=self.num_heads,
            dropout=self.dropout,
            causal=self.causal,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class SASRec(SequentialRecommender):
    """SASRec: causal self-attention blocks, next-item prediction at every position.

    Item embedding + learned positional embedding, `num_blocks` causal
    pre-norm self-attention blocks, and an output tied to the item table
    (the score of item j after position t is ⟨h_t, e_j⟩). The paper's loss
    is `loss="bce"` with one sampled negative per position;
    `loss="sampled_softmax"` and `loss="softmax"` are the alternatives.

    To start from S3-Rec's self-supervised pre-training, build the model,
    then `S3RecPretrainer(...).transfer_to(model)` copies the pre-trained
    encoder into its backbone (see `S3RecPretrainer`).

    Reference: Kang & McAuley, 2018, "Self-Attentive Sequential
    Recommendation" (ICDM).

    Args:
        spec: a fitted `FeatureSpec` with the history `Sequence` (its
            `max_length` is L, its embedding size d).
        num_blocks: self-attention blocks (paper: 2).
        num_heads: heads per block (paper: 1).
        dropout: dropout rate (paper: 0.2 on dense data, 0.5 on sparse).
        **kwargs: `history` and the loss arguments of `SequentialRecommender`.

    Example:

    >>> spec = kr.FeatureSpec([kr.Sequence("history", max_length=50)], 64)
    >>> spec.adapt(train_df)
    >>> model = kr.models.SASRec(spec, loss="bce")
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> model.fit(kr.data.next_item_dataset(train_df, model, shuffle=True), epochs=200)
    """

    def __init__(
        self, spec, num_blocks: int = 2, num_heads: int = 1, dropout: float = 0.2, **kwargs
    ):
        backbone = SASRecBackbone(
            *sequence_dims(spec, kwargs.get("history")),
            num_blocks=num_blocks,
            num_heads=num_heads,
            dropout=dropout,
            name="backbone",
        )
        kwargs.setdefault("name", "sasrec")
        super().__init__(spec, backbone, **kwargs)
        self.build()

    def backbone_config(self):
        return {
            "num_blocks": self.backbone.num_blocks,
            "num_heads": self.backbone.num_heads,
            "dropout": self.backbone.dropout,
        }
