"""`LinearTerm`: the wide / LR part of a ranking model."""

from __future__ import annotations

import keras
from keras import ops

from keras_recsys.features.feature import PAD_ID
from keras_recsys.layers.fused_embedding import FusedEmbedding


@keras.saving.register_keras_serializable(package="keras_recsys")
class LinearTerm(keras.layers.Layer):
    """First-order term: Σ_f w_f[id_f] + Σ_s mean_t w_s[id_{s,t}] + W·dense + b.

    One scalar weight per id (an embedding of size `units`) for every
    categorical, bucketized and crossed feature, the mean of the per-item
    weights of each sequence, and a dense layer on the numeric features.
    With several tasks (`units` > 1) every task gets its own weights.

    Reference: the "wide" part of Cheng et al., 2016 (Wide & Deep); the LR
    part of Guo et al., 2017 (DeepFM).

    Args:
        id_features: {feature_name: input_dim} of single-id features.
        sequence_features: {feature_name: input_dim} of id sequences.
        num_dense: number of numeric features.
        units: output width (one per task).
        fuse_tables: keep the single-id features' weights in one
            `FusedEmbedding` (one gather instead of one per feature; the
            same function). `from_spec` takes it from the spec.

    Example:

    >>> linear = kr.layers.LinearTerm({"user_id": 1000}, num_dense=3)
    >>> linear({"user_id": ids, "dense": x})  # (B, 1)
    """

    def __init__(
        self,
        id_features: dict[str, int],
        sequence_features: dict[str, int] | None = None,
        num_dense: int = 0,
        units: int = 1,
        fuse_tables: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.id_features = {k: int(v) for k, v in id_features.items()}
        self.sequence_features = {k: int(v) for k, v in (sequence_features or {}).items()}
        self.num_dense = int(num_dense)
        self.units = int(units)
        self.fuse_tables = bool(fuse_tables) and len(self.id_features) > 1
        self.fused = (
            FusedEmbedding(
                self.id_features, self.units, embeddings_initializer="zeros", name="w_fused"
            )
            if self.fuse_tables
            else None
        )
        separate = (
            self.sequence_features
            if self.fuse_tables
            else {
                **self.id_features,
                **self.sequence_features,
            }
        )
        self.weights_by_feature = {
            name: keras.layers.Embedding(
                dim, self.units, embeddings_initializer="zeros", name=f"w_{name}"
            )
            for name, dim in separate.items()
        }
        self.dense_layer = (
            keras.layers.Dense(self.units, use_bias=False, name="w_dense")
            if self.num_dense
            else None
        )

    @classmethod
    def from_spec(cls, spec, units: int = 1, **kwargs):
        ids = {}
        for feature in spec.categorical + spec.bucketized + spec.crossed:
            ids[feature.name] = feature.input_dim
        sequences = {s.name: spec.input_dim(s.name) for s in spec.sequences}
        kwargs.setdefault("fuse_tables", bool(getattr(spec, "fuse_tables", False)))
        return cls(ids, sequences, len(spec.dense), units, **kwargs)

    def build(self, input_shape=None):
        for layer in self.weights_by_feature.values():
            layer.build((None,))
        if self.fused is not None:
            self.fused.build()
        if self.dense_layer is not None:
            self.dense_layer.build((None, self.num_dense))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.built = True

    def call(self, inputs, dense=None):
        """inputs: preprocessed features; dense: (B, num_dense) or None."""
        total = None
        if self.fused is not None:
            pairs = [(name, inputs[name]) for name in self.id_features]
            total = ops.sum(self.fused.lookup_stacked(pairs), axis=1)
        else:
            for name in self.id_features:
                term = self.weights_by_feature[name](inputs[name])
                total = term if total is None else total + term
        for name in self.sequence_features:
            ids = inputs[name]
            mask = ops.expand_dims(ops.cast(ops.not_equal(ids, PAD_ID), self.compute_dtype), -1)
            weights = self.weights_by_feature[name](ids) * mask
            term = ops.sum(weights, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
            total = term if total is None else total + term
        if self.dense_layer is not None and dense is not None:
            term = self.dense_layer(dense)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("LinearTerm has no feature to weigh.")
        return total + self.bias

    def get_config(self):
        config = super().get_config()
        config.update(
            id_features=self.id_features,
            sequence_features=self.sequence_features,
            num_dense=self.num_dense,
            units=self.units,
        )
        if self.fuse_tables:
            config["fuse_tables"] = True
        return config
