"""HSTU for retrieval: stacked HSTU blocks, next-item prediction at every position."""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_recsys.layers.sequence.hstu import HSTU as HSTUBlock
from keras_recsys.layers.sequence.hstu import positions_from_oldest
from keras_recsys.models.sequence.base import (
    SequenceBackbone,
    SequentialRecommender,
    item_mask,
    sequence_dims,
)


@keras.saving.register_keras_serializable(package="keras_recsys")
class HSTUBackbone(SequenceBackbone):
    """h = normalize(Block_n(… Block_1(dropout(√d · E[ids] + P[pos]) ⊙ m))), per position.

    The input is the reference's: item embeddings scaled by √d plus a learned
    embedding of each item's position counted from the oldest kept item,
    then dropout. Each block is `keras_recsys.layers.HSTU` (causal pointwise
    attention with relative position and, with timestamps, time-gap bias).
    Every output vector is L2-normalized; padded positions are 0.

    Args:
        num_items, embedding_dim, max_length: see `SequenceBackbone`.
        num_blocks: stacked HSTU blocks.
        num_heads: heads per block.
        qk_dim, value_dim: per-head sizes (default d / heads).
        dropout: dropout on the input and inside the blocks.
        num_time_buckets: largest time-gap bucket of the blocks' bias.
        use_time_bias: whether the blocks have the time-gap bias (the model
            sets it when it reads timestamps).
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int,
        max_length: int,
        num_blocks: int = 2,
        num_heads: int = 1,
        qk_dim: int | None = None,
        value_dim: int | None = None,
        dropout: float = 0.2,
        num_time_buckets: int = 128,
        use_time_bias: bool = False,
        **kwargs,
    ):
        super().__init__(num_items, embedding_dim, max_length, **kwargs)
        self.num_blocks = int(num_blocks)
        self.num_heads = int(num_heads)
        self.qk_dim = qk_dim
        self.value_dim = value_dim
        self.dropout = float(dropout)
        self.num_time_buckets = int(num_time_buckets)
        self.use_time_bias = bool(use_time_bias)
        self.position_embedding = keras.layers.Embedding(
            self.max_length,
            self.embedding_dim,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy,
            name="position_embedding",
        )
        self.input_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.blocks = [
            HSTUBlock(
                max_length=self.max_length,
                num_heads=self.num_heads,
                qk_dim=qk_dim,
                value_dim=value_dim,
                num_time_buckets=self.num_time_buckets,
                use_time_bias=self.use_time_bias,
                dropout=dropout,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(self.num_blocks)
        ]

    def call(self, ids, timestamps=None, training=None) -> dict:
        mask = item_mask(ids)
        positions = positions_from_oldest(mask)
        x = self.item_embedding(ids) * ops.cast(math.sqrt(self.embedding_dim), self.compute_dtype)
        x = x + self.position_embedding(positions)
        x = self.input_dropout(x, training=training) * ops.cast(mask, x.dtype)[:, :, None]
        for block in self.blocks:
            x = block(x, mask=mask, timestamps=timestamps, positions=positions, training=training)
        return {"sequence": l2_normalize(x), "mask": mask}

    def get_config(self):
        config = super().get_config()
        config.update(
            num_blocks=self.num_blocks,
            num_heads=self.num_heads,
            qk_dim=self.qk_dim,
            value_dim=self.value_dim,
            dropout=self.dropout,
            num_time_buckets=self.num_time_buckets,
            use_time_bias=self.use_time_bias,
        )
        return config


def hstu_optimizer() -> keras.optimizers.Optimizer:
    """The reference's optimizer: AdamW(lr 1e-3, β = (0.9, 0.98), weight decay 1e-3)."""
    return keras.optimizers.AdamW(learning_rate=1e-3, beta_2=0.98, weight_decay=1e-3)


def l2_normalize(x):
    """x / ‖x‖ along the last axis; zero vectors (padding) stay zero."""
    x32 = ops.cast(x, "float32")
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x32), axis=-1, keepdims=True), 1e-12))
    return ops.cast(x32 / norm, x.dtype)


@keras.saving.register_keras_serializable(package="keras_recsys")
class HSTU(SequentialRecommender):
    """HSTU for retrieval: HSTU blocks over the history, next-item prediction at every position.

    The backbone is `HSTUBackbone` (√d-scaled item embeddings plus learned
    positions, `num_blocks` causal HSTU blocks, L2-normalized outputs). The
    defaults are the reference's retrieval training: sampled softmax over
    normalized vectors and item embeddings with temperature 0.05 and 128
    uniformly drawn negatives, a negative equal to the positive left out.
    Here the negatives are shared by all positions of a batch (the
    reference draws them per position; sharing costs one (B·L, 128) matmul
    instead of a gather of B·L·128 rows). Compile with AdamW (lr 1e-3,
    betas 0.9 / 0.98, weight decay 1e-3), which `compile()` does by default.

    With `timestamps` (the name of an input of (B, L) integer times, in
    seconds, aligned with the history), each block adds a learned bias per
    log-bucketed time gap; without, position bias only.

    Reference: Zhai et al., 2024, "Actions Speak Louder than Words:
    Trillion-Parameter Sequential Transducers for Generative
    Recommendations" (ICML).

    Args:
        spec: a fitted `FeatureSpec` with the history `Sequence` (its
            `max_length` is N, its embedding size d).
        num_blocks, num_heads, qk_dim, value_dim, dropout,
            num_time_buckets: see `HSTUBackbone` (reference on MovieLens-1M:
            2 blocks, 1 head, dropout 0.2).
        loss, num_negatives, temperature, normalize: the next-item loss
            (see `NextItemHead`); defaults as the reference.
        stochastic_length: α in (1, 2] to train on stochastically shortened
            long histories (paper §3.3; see
            `kr.training.stochastic_length`), through `training_batches`;
            None trains on whole histories.
        stochastic_length_mode: "recent" (keep the latest items, the
            reference code's rule, default) or "sample".
        **kwargs: `history`, `timestamps` and the other arguments of
            `SequentialRecommender`.

    Example:

    >>> spec = kr.FeatureSpec([kr.Sequence("history", max_length=50)], 64)
    >>> spec.adapt(train_df)
    >>> model = kr.models.HSTU(spec)
    >>> model.compile()  # AdamW(1e-3, beta_2=0.98)
    >>> model.fit(kr.data.next_item_dataset(train_df, model, shuffle=True), epochs=100)
    """

    def __init__(
        self,
        spec,
        num_blocks: int = 2,
        num_heads: int = 1,
        qk_dim: int | None = None,
        value_dim: int | None = None,
        dropout: float = 0.2,
        num_time_buckets: int = 128,
        stochastic_length: float | None = None,
        stochastic_length_mode: str = "recent",
        loss: str = "sampled_softmax",
        num_negatives: int | None = 128,
        temperature: float = 0.05,
        normalize: bool = True,
        **kwargs,
    ):
        backbone = HSTUBackbone(
            *sequence_dims(spec, kwargs.get("history")),
            num_blocks=num_blocks,
            num_heads=num_heads,
            qk_dim=qk_dim,
            value_dim=value_dim,
            dropout=dropout,
            num_time_buckets=num_time_buckets,
            use_time_bias=kwargs.get("timestamps") is not None,
            name="backbone",
        )
        if stochastic_length is not None and not 1.0 < float(stochastic_length) <= 2.0:
            raise ValueError(f"stochastic_length is α in (1, 2], got {stochastic_length}.")
        kwargs.setdefault("name", "hstu")
        super().__init__(
            spec,
            backbone,
            loss=loss,
            num_negatives=num_negatives,
            temperature=temperature,
            normalize=normalize,
            **kwargs,
        )
        self.stochastic_length = None if stochastic_length is None else float(stochastic_length)
        self.stochastic_length_mode = stochastic_length_mode
        self.build()

    def training_batches(self, ids, batch_size: int = 128, timestamps=None, seed=None):
        """Training data for `fit`: (inputs, targets) arrays, or length-grouped batches.

        Without `stochastic_length`, `training_pair(ids, timestamps)` (fit
        batches it); with it, a `kr.training.StochasticLengthBatches` that
        shortens long histories anew every epoch.
        """
        if self.stochastic_length is None:
            return self.training_pair(ids, timestamps)
        from keras_recsys.training.stochastic_length import StochasticLengthBatches

        return StochasticLengthBatches(
            ids, self, batch_size=batch_size, timestamps=timestamps, seed=seed
        )

    def compile(self, optimizer=None, **kwargs):
        """Compiles with `hstu_optimizer()` unless an optimizer is given."""
        optimizer = hstu_optimizer() if optimizer is None else optimizer
        return super().compile(optimizer=optimizer, **kwargs)

    def backbone_config(self):
        backbone = self.backbone
        return {
            "num_blocks": backbone.num_blocks,
            "num_heads": backbone.num_heads,
            "qk_dim": backbone.qk_dim,
            "value_dim": backbone.value_dim,
            "dropout": backbone.dropout,
            "num_time_buckets": backbone.num_time_buckets,
            "stochastic_length": self.stochastic_length,
            "stochastic_length_mode": self.stochastic_length_mode,
        }
