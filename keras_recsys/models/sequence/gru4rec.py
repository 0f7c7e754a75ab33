"""GRU4Rec: a GRU over the item history."""

from __future__ import annotations

import keras

from keras_recsys.models.sequence.base import (
    SequenceBackbone,
    SequentialRecommender,
    sequence_dims,
)


@keras.saving.register_keras_serializable(package="keras_recsys")
class GRU4RecBackbone(SequenceBackbone):
    """h_t = W · GRU(dropout(E[ids]))_t (W only when the GRU's width differs from d).

    Padded (front) positions are skipped by the GRU's mask, so h at the last
    position is the state after the latest item.

    Args:
        num_items, embedding_dim, max_length: see `SequenceBackbone`.
        hidden_units: GRU width (default d).
        num_layers: stacked GRU layers.
        dropout: dropout on the embedded items (the reference's embedding dropout).
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int,
        max_length: int,
        hidden_units: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.25,
        **kwargs,
    ):
        super().__init__(num_items, embedding_dim, max_length, **kwargs)
        self.hidden_units = int(hidden_units or embedding_dim)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.input_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.grus = [
            keras.layers.GRU(
                self.hidden_units,
                return_sequences=True,
                dtype=self.dtype_policy,
                name=f"gru_{i}",
            )
            for i in range(self.num_layers)
        ]
        self.projection = None
        if self.hidden_units != self.embedding_dim:
            # The output must live in the item table's space to be scored against it.
            self.projection = keras.layers.Dense(
                self.embedding_dim, dtype=self.dtype_policy, name="projection"
            )

    def body(self, embedded, mask, training=None):
        x = self.input_dropout(embedded, training=training)
        for gru in self.grus:
            x = gru(x, mask=mask, training=training)
        return x if self.projection is None else self.projection(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_units=self.hidden_units, num_layers=self.num_layers, dropout=self.dropout
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class GRU4Rec(SequentialRecommender):
    """GRU4Rec: a GRU over the history; its state scores every item.

    Trained at every position (each state predicts the next item) with the
    chosen next-item loss; the item scores are ⟨h_t, e_j⟩ with the output
    tied to the input item table. The original trains session-parallel
    mini-batches with ranking losses (BPR, TOP1); here the sequences are
    batched whole, and `loss="sampled_softmax"` is the closest counterpart
    of its cross-entropy variant (choose; documented).

    Reference: Hidasi, Karatzoglou, Baltrunas & Tikk, 2016, "Session-based
    Recommendations with Recurrent Neural Networks" (ICLR).

    Args:
        spec: a fitted `FeatureSpec` with the history `Sequence`.
        hidden_units: GRU width (default: the embedding size).
        num_layers: stacked GRU layers.
        dropout: embedding dropout.
        **kwargs: `history` and the loss arguments of `SequentialRecommender`.

    Example:

    >>> model = kr.models.GRU4Rec(spec, loss="sampled_softmax", num_negatives=100)
    """

    def __init__(
        self,
        spec,
        hidden_units: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.25,
        **kwargs,
    ):
        backbone = GRU4RecBackbone(
            *sequence_dims(spec, kwargs.get("history")),
            hidden_units=hidden_units,
            num_layers=num_layers,
            dropout=dropout,
            name="backbone",
        )
        kwargs.setdefault("name", "gru4rec")
        super().__init__(spec, backbone, **kwargs)
        self.build()

    def backbone_config(self):
        return {
            "hidden_units": self.backbone.hidden_units,
            "num_layers": self.backbone.num_layers,
            "dropout": self.backbone.dropout,
        }
