"""`FeatureEmbedding`: the one embedding front end shared by every model."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS, OOV_ID, PAD_ID
from keras_recsys.layers.fused_embedding import FusedEmbedding
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

    **Out-of-vocabulary dropout.** Row 1 of every table embeds the
    out-of-vocabulary id (see `keras_recsys.features.feature`): values never
    seen when the spec was fitted, and missing ones. When every training
    value is in the vocabulary (the default `min_frequency=1`), no training
    example carries id 1, so that row keeps its random initial vector and an
    unseen value at serving time feeds the model noise it never saw. With
    `oov_dropout=p`, during training only, each real id (>= 2; never the
    padding id 0) of the features in `oov_dropout_features` is replaced by
    id 1 with probability p, independently per id and per sequence
    position, so row 1 learns what "a value the model does not know" means
    for each feature (fit on a random sample of all its values), and the
    rest of the network learns to read it. Inference (`training=False`, the
    export) is unchanged. Call the layer with `training` explicitly: JAX's
    `fit` runs a model's `call` outside Keras' call context, so there a
    front end called without it never sees `training=True`. The other
    documented way is the vocabulary's `min_frequency`
    (`kr.Categorical(..., min_frequency=k)`): values seen fewer than k times
    share id 1 in training, which trains row 1 on the rare values only, and
    drops their own rows. `recipes/census_oov.py`
    measures both on census with unseen values injected in the test split
    (DNN, 3 seeds): with p = 0.01 the income log loss on rows with three
    unseen columns fell from 0.1314 to 0.1281 (every column unseen: 0.376
    to 0.166), and the clean test AUC was 0.9472 against 0.9474 (within
    the seeds' spread); p = 0.05 did slightly better on unseen values
    (0.1277, 0.156), `min_frequency=100` worse (0.1287, 0.209).

    Args:
        tables: {table_name: [input_dim, output_dim]}.
        fields: [[feature_name, table_name], ...] of single-id features.
        sequences: [[feature_name, table_name, pooling], ...].
        dense: names of numeric features, in order.
        numeric_field_dim: if set, also embed each numeric feature as a field.
        embeddings_regularizer: regularizer of every table.
        oov_dropout: probability, in [0, 1), that a real id is replaced by
            the out-of-vocabulary id during training. Default 0 (ids are
            read as given, no seed generator is created, so weights and
            configs are those of a layer without the option); models
            choose their rate. 0.01 is the recommended one: it gets most of
            the measured gain on unseen values while hiding the fewest ids,
            which matters more for long-tailed id features (user, item) than
            for census' small vocabularies (not measured here).
        oov_dropout_features: names of the fields and sequences whose ids
            `oov_dropout` replaces; None for all of them. `from_spec` names
            the categorical and sequence features, leaving out bucketized
            numerics, whose ids are never out of vocabulary.
        seed: seed of the `oov_dropout` draws.
        fuse_tables: keep the tables of each embedding width in one
            `FusedEmbedding` (one gather, one scatter-add and one optimizer
            update for all of them instead of one per table: faster on
            accelerators; the same function, a different weight layout).
            `from_spec` takes it from the spec (`FeatureSpec(fuse_tables=)`).

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
        oov_dropout: float = 0.0,
        oov_dropout_features: list[str] | None = None,
        seed: int | None = None,
        fuse_tables: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tables_config = {k: [int(a), int(b)] for k, (a, b) in tables.items()}
        self.fields = [list(f) for f in fields]
        self.sequence_fields = [list(s) for s in (sequences or [])]
        self.dense = list(dense or [])
        self.numeric_field_dim = numeric_field_dim
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.fuse_tables = bool(fuse_tables)
        # Widths shared by two or more tables get one fused array each.
        by_width: dict[int, dict[str, int]] = {}
        for name, (input_dim, output_dim) in self.tables_config.items():
            by_width.setdefault(output_dim, {})[name] = input_dim
        # Keyed by the width as a string: TensorFlow's checkpoint tracking
        # (SavedModel export) takes string keys only.
        self.fused = {}
        self._fused_width: dict[str, str] = {}
        if self.fuse_tables:
            for width, dims in by_width.items():
                if len(dims) < 2:
                    continue
                self.fused[str(width)] = FusedEmbedding(
                    dims,
                    width,
                    embeddings_regularizer=self.embeddings_regularizer,
                    name=f"fused_tables_{width}",
                )
                self._fused_width.update(dict.fromkeys(dims, str(width)))
        self.tables = {
            name: keras.layers.Embedding(
                input_dim,
                output_dim,
                embeddings_regularizer=self.embeddings_regularizer,
                name=f"table_{name}",
            )
            for name, (input_dim, output_dim) in self.tables_config.items()
            if name not in self._fused_width
        }
        self.poolings = {
            name: MaskedPooling(pooling, name=f"pool_{name}")
            for name, _, pooling in self.sequence_fields
        }
        self.oov_dropout = float(oov_dropout)
        if not 0.0 <= self.oov_dropout < 1.0:
            raise ValueError(
                f"FeatureEmbedding '{self.name}': oov_dropout must be in [0, 1), got {oov_dropout}."
            )
        id_features = [name for name, _ in self.fields]
        id_features += [name for name, _, _ in self.sequence_fields]
        self.oov_dropout_features = None
        if oov_dropout_features is not None:
            self.oov_dropout_features = list(oov_dropout_features)
            unknown = sorted(set(self.oov_dropout_features) - set(id_features))
            if unknown:
                raise ValueError(
                    f"FeatureEmbedding '{self.name}': oov_dropout_features names {unknown}, "
                    f"which are not id features of this layer; they are {id_features}."
                )
        self._dropped = set(
            id_features if self.oov_dropout_features is None else self.oov_dropout_features
        )
        self.seed = seed
        # Only with a rate: a seed generator without a seed draws one from the
        # global random state when created, which would shift the initial
        # weights of every model that does not use OOV dropout.
        self.seed_generator = (
            keras.random.SeedGenerator(seed, name="oov_dropout_seed") if self.oov_dropout else None
        )

    @classmethod
    def from_spec(cls, spec, numeric_field_dim: int | None = None, **kwargs):
        """Builds the front end for a fitted `FeatureSpec`.

        `oov_dropout` (in `kwargs`) applies to the categorical and sequence
        features, whose ids have an out-of-vocabulary value; `fuse_tables`
        defaults to the spec's.
        """
        spec.check_adapted()
        kwargs.setdefault("fuse_tables", bool(getattr(spec, "fuse_tables", False)))
        tables: dict[str, list[int]] = {}
        fields, sequences, vocabulary_features = [], [], []
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
            if feature.kind in ("categorical", "sequence"):
                vocabulary_features.append(feature.name)
        if kwargs.get("oov_dropout"):
            kwargs.setdefault("oov_dropout_features", vocabulary_features)
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
        for fused in self.fused.values():
            fused.build()
        if self.numeric_field_dim and self.dense:
            self.numeric_vectors = self.add_weight(
                name="numeric_vectors",
                shape=(len(self.dense), self.numeric_field_dim),
                initializer=keras.initializers.RandomUniform(-0.05, 0.05),
                regularizer=self.embeddings_regularizer,
            )
        self.built = True

    def drop_to_oov(self, ids):
        """`ids` with each real id (>= 2) replaced by the OOV id 1 with probability `oov_dropout`.

        Padding (0) and ids already out of vocabulary (1) are left alone.
        """
        draw = keras.random.uniform(ops.shape(ids), seed=self.seed_generator)
        dropped = ops.logical_and(
            ops.greater_equal(ids, NUM_RESERVED_IDS), ops.less(draw, self.oov_dropout)
        )
        return ops.where(dropped, ops.full_like(ids, OOV_ID), ids)

    def lookup(self, table: str, ids):
        """Rows of one table (by table name) for `ids` of any shape: (*ids.shape, d)."""
        if table in self._fused_width:
            return self.fused[self._fused_width[table]].lookup(table, ids)
        return self.tables[table](ids)

    def table_weights(self, table: str):
        """The (V, d) weights of one table, fused or not (for reading)."""
        if table in self._fused_width:
            return self.fused[self._fused_width[table]].table(table)
        return self.tables[table].embeddings

    def call(self, inputs, training=None):
        fields, sequences, masks = {}, {}, {}

        def ids_of(name):
            ids = inputs[name]
            if training and self.oov_dropout and name in self._dropped:
                ids = self.drop_to_oov(ids)
            return ids

        groups: dict[str, list[tuple[str, str]]] = {}
        for name, table in self.fields:
            if table in self._fused_width:
                groups.setdefault(self._fused_width[table], []).append((name, table))
            else:
                fields[name] = self.tables[table](ids_of(name))
        for width, members in groups.items():
            # All single-id fields of one width in one gather.
            stacked = self.fused[width].lookup_stacked(
                [(table, ids_of(name)) for name, table in members]
            )
            for i, (name, _) in enumerate(members):
                fields[name] = stacked[:, i]
        fields = {name: fields[name] for name, _ in self.fields}  # spec order
        for name, table, _ in self.sequence_fields:
            ids = ids_of(name)
            # Dropped positions stay items (OOV), so the mask is unchanged.
            mask = ops.not_equal(ids, PAD_ID)
            embedded = self.lookup(table, ids)
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
        if self.fuse_tables:
            config["fuse_tables"] = True
        if self.oov_dropout:
            # Only when set, so configs without OOV dropout stay as they were.
            config.update(
                oov_dropout=self.oov_dropout,
                oov_dropout_features=self.oov_dropout_features,
                seed=self.seed,
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
