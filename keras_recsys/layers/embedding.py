"""`FeatureEmbedding`: the one embedding front end shared by every model."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_recsys.features.feature import PAD_ID
from keras_recsys.layers.pooling import MaskedPooling


@keras.saving.register_keras_serializable(package="keras_recsys")
class FeatureEmbedding(keras.layers.Layer):
    """Looks up every id feature and gathers the numeric ones.

    Given preprocessed inputs (int ids, float numerics, padded id
    sequences), returns a dict with:

    * `"fields"`: {name: (B, d)} for categorical and bucketized features,
      each pooled sequence (see `MaskedPooling`), and, when
      `numeric_field_dim` is set, one field per numeric feature
      e_i = x_i · v_i (the FM treatment of dense features);
    * `"sequences"`: {name: (B, L, d)} unpooled sequence embeddings;
    * `"masks"`: {name: (B, L)} true where a sequence position holds an item;
    * `"dense"`: (B, n_numeric) numeric features, or None.

    Tables are shared by name: a sequence that shares the vocabulary of a
    categorical feature reads the same table.

    Args:
        tables: {table_name: [input_dim, output_dim]}.
        fields: [[feature_name, table_name], ...] of single-id features.
        sequences: [[feature_name, table_name, pooling], ...].
        dense: names of numeric features, in order.
        numeric_field_dim: if set, also embed each numeric feature as a field.
        embeddings_regularizer: regularizer of every table.

    Use `FeatureEmbedding.from_spec(spec)` rather than the raw arguments.

    Example:

    >>> front = kr.layers.FeatureEmbedding.from_spec(spec)
    >>> out = front(batch)           # batch from kr.data.from_pandas
    >>> out["fields"]["user_id"].shape
    (B, 16)
    """

    def __init__(
        self,
        tables: dict[str, list[int]],
        fields: list[list[str]],
        sequences: list[list[str]] | None = None,
        dense: list[str] | None = None,
        numeric_field_dim: int | None = None,
        embeddings_regularizer: Any = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tables_config = {k: [int(a), int(b)] for k, (a, b) in tables.items()}
        self.fields = [list(f) for f in fields]
        self.sequence_fields = [list(s) for s in (sequences or [])]
        self.dense = list(dense or [])
        self.numeric_field_dim = numeric_field_dim
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.tables = {
            name: keras.layers.Embedding(
                input_dim,
                output_dim,
                embeddings_regularizer=self.embeddings_regularizer,
                name=f"table_{name}",
            )
            for name, (input_dim, output_dim) in self.tables_config.items()
        }
        self.poolings = {
            name: MaskedPooling(pooling, name=f"pool_{name}")
            for name, _, pooling in self.sequence_fields
        }

    @classmethod
    def from_spec(cls, spec, numeric_field_dim: int | None = None, **kwargs):
        """Builds the front end for a fitted `FeatureSpec`."""
        spec.check_adapted()
        tables: dict[str, list[int]] = {}
        fields, sequences = [], []
        for feature in spec.features:
            if feature.kind == "crossed":
                continue
            if feature.kind == "numeric" and not feature.is_bucketized:
                continue
            table = spec.vocabulary_owner(feature.name).name
            tables[table] = [spec.input_dim(table), spec.embedding_dim(table)]
            if feature.kind == "sequence":
                sequences.append([feature.name, table, feature.pooling])
            else:
                fields.append([feature.name, table])
        return cls(
            tables,
            fields,
            sequences,
            [f.name for f in spec.dense],
            numeric_field_dim,
            **kwargs,
        )

    @property
    def field_names(self) -> list[str]:
        """Names of the fields in `"fields"`, in output order."""
        names = [name for name, _ in self.fields]
        names += [name for name, _, _ in self.sequence_fields]
        if self.numeric_field_dim:
            names += self.dense
        return names

    def field_dims(self) -> dict[str, int]:
        dims = {name: self.tables_config[t][1] for name, t in self.fields}
        dims.update({n: self.tables_config[t][1] for n, t, _ in self.sequence_fields})
        if self.numeric_field_dim:
            dims.update({n: self.numeric_field_dim for n in self.dense})
        return dims

    def build(self, input_shape=None):
        for table in self.tables.values():
            table.build((None,))
        if self.numeric_field_dim and self.dense:
            self.numeric_vectors = self.add_weight(
                name="numeric_vectors",
                shape=(len(self.dense), self.numeric_field_dim),
                initializer=keras.initializers.RandomUniform(-0.05, 0.05),
                regularizer=self.embeddings_regularizer,
            )
        self.built = True

    def call(self, inputs):
        fields, sequences, masks = {}, {}, {}
        for name, table in self.fields:
            fields[name] = self.tables[table](inputs[name])
        for name, table, _ in self.sequence_fields:
            ids = inputs[name]
            mask = ops.not_equal(ids, PAD_ID)
            embedded = self.tables[table](ids)
            sequences[name] = embedded
            masks[name] = mask
            fields[name] = self.poolings[name](embedded, mask=mask)
        dense = None
        if self.dense:
            columns = [ops.cast(inputs[name], self.compute_dtype) for name in self.dense]
            dense = ops.stack(columns, axis=-1)
            if self.numeric_field_dim:
                # e_i = x_i · v_i one field at a time: the same products as
                # slicing expand_dims(dense, -1) * numeric_vectors, whose
                # gradient costs one full (B, n, d) tensor per slice
                # (benchmarks/bench_ranking.py, DeepFM).
                for i, name in enumerate(self.dense):
                    fields[name] = ops.expand_dims(columns[i], -1) * self.numeric_vectors[i]
        return {"fields": fields, "sequences": sequences, "masks": masks, "dense": dense}

    def get_config(self):
        config = super().get_config()
        config.update(
            tables=self.tables_config,
            fields=self.fields,
            sequences=self.sequence_fields,
            dense=self.dense,
            numeric_field_dim=self.numeric_field_dim,
            embeddings_regularizer=keras.regularizers.serialize(self.embeddings_regularizer)
            if self.embeddings_regularizer
            else None,
        )
        return config


def stack_fields(fields: dict, names: list[str]):
    """(B, F, d) from field vectors of equal size, naming any that differ."""
    dims = {name: fields[name].shape[-1] for name in names}
    if len(set(dims.values())) > 1:
        raise ValueError(
            "This model needs every field embedding to have the same size, "
            f"got {dims}; set one `embedding_dim` (or the spec's "
            "`default_embedding_dim`) for all of them."
        )
    return ops.stack([fields[name] for name in names], axis=1)


def flatten_fields(stacked, dense=None):
    """x0 from stacked (B, F, d) fields and the dense features: (B, F·d [+ n]).

    The same values in the same order as `concat_inputs` over the fields that
    were stacked, for models that already hold them stacked (FM-style): one
    reshape instead of concatenating the F field vectors a second time, which
    keeps the backward pass to one gradient per field.
    """
    flat = ops.reshape(stacked, (-1, stacked.shape[1] * stacked.shape[2]))
    return flat if dense is None else ops.concatenate([flat, dense], axis=-1)


def concat_inputs(embedded: dict, names: list[str]):
    """x0: every field vector and the dense features, concatenated (B, D)."""
    parts = [embedded["fields"][name] for name in names]
    if embedded["dense"] is not None:
        parts.append(embedded["dense"])
    return ops.concatenate(parts, axis=-1)
