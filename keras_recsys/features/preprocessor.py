"""The TensorFlow preprocessing stage: raw feature values to model inputs.

It runs inside `tf.data` (training, evaluation) and inside the exported
serving graph, never inside the model, so string tensors stay out of
replicated graphs and the model itself stays backend-agnostic.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_recsys.features.feature import (
    NUM_RESERVED_IDS,
    OOV_ID,
    Categorical,
    Crossed,
    Numeric,
    Sequence,
    Timestamps,
)
from keras_recsys.features.raw import MISSING_INT, MISSING_STR

_TF_DTYPES = {"string": tf.string, "int64": tf.int64}


class Preprocessor(tf.Module):
    """Maps a dict of raw feature tensors to a dict of model inputs.

    Outputs, by feature name: int32 ids of shape (B,) for categorical,
    bucketized numeric and crossed features; float32 (B,) for numeric
    features; int32 ids of shape (B, max_length) for sequences, padded with
    0 at the front. Raw sequences may be `tf.RaggedTensor`s or 1-D string
    tensors delimited by the feature's separator.
    """

    def __init__(self, spec, inputs=None):
        super().__init__(name="keras_recsys_preprocessor")
        spec.check_adapted()
        self._spec = spec
        # The raw inputs taken (default: every input feature); a two-tower
        # model serves its query features only.
        self._inputs = [f for f in spec.input_features if inputs is None or f.name in set(inputs)]
        self.tables: dict[str, tf.lookup.StaticHashTable] = {}
        for feature in spec.categorical + spec.sequences:
            owner = spec.vocabulary_owner(feature.name)
            if owner.is_hashed or owner.name in self.tables:
                continue
            keys = tf.constant(owner.vocabulary, dtype=_TF_DTYPES[owner.dtype])
            if owner.dtype == "string" and not owner.vocabulary:
                keys = tf.constant([], dtype=tf.string)
            ids = tf.range(
                NUM_RESERVED_IDS, len(owner.vocabulary) + NUM_RESERVED_IDS, dtype=tf.int64
            )
            self.tables[owner.name] = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, ids),
                default_value=OOV_ID,
                name=f"vocabulary_{owner.name}",
            )

    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """The serving signature: one raw input per feature, batch-major.

        Categorical features take strings or int64 (as fitted), numeric
        features float32, sequences one delimited string per example.
        """
        signature = {}
        for feature in self._inputs:
            if isinstance(feature, Numeric):
                dtype = tf.float32
            elif isinstance(feature, (Sequence, Timestamps)):
                dtype = tf.string
            else:
                dtype = _TF_DTYPES[self._spec.dtype_of(feature.name)]
            signature[feature.name] = tf.TensorSpec([None], dtype, name=feature.name)
        return signature

    def __call__(self, raw: dict[str, Any]) -> dict[str, tf.Tensor]:
        out: dict[str, tf.Tensor] = {}
        for feature in self._inputs:
            if feature.name not in raw:
                raise KeyError(
                    f"Feature '{feature.name}' is missing from the input; got {sorted(raw)}."
                )
            value = raw[feature.name]
            if isinstance(feature, Categorical):
                out[feature.name] = self._ids(feature, _flatten_batch(value))
            elif isinstance(feature, Numeric):
                out[feature.name] = self._numeric(feature, _flatten_batch(value))
            elif isinstance(feature, Sequence):
                out[feature.name] = self._sequence(feature, value)
            elif isinstance(feature, Timestamps):
                sequence = self._spec[feature.sequence]
                if sequence.name not in raw:
                    raise KeyError(
                        f"Timestamps '{feature.name}' come with their sequence "
                        f"'{sequence.name}', which is missing from the input."
                    )
                out[feature.name] = self._timestamps(feature, value, sequence, raw[sequence.name])
        for feature in self._spec.crossed:
            if all(name in out for name in feature.features):
                out[feature.name] = self._cross(feature, out)
        return out

    def lookup(self, name: str, values: tf.Tensor) -> tf.Tensor:
        """int32 ids of raw values of a categorical or sequence feature (unseen: OOV)."""
        return self._lookup(name, _flatten_batch(values))

    def values_of(self, name: str, ids: tf.Tensor) -> tf.Tensor:
        """Raw vocabulary values of internal ids (ids 0 and 1 give "" or -1)."""
        owner = self._spec.vocabulary_owner(name)
        if owner.is_hashed:
            raise ValueError(f"Feature '{name}' is hashed: its ids have no raw values.")
        dtype = _TF_DTYPES[owner.dtype]
        missing = tf.constant("" if dtype == tf.string else -1, dtype)
        vocabulary = tf.concat(
            [tf.stack([missing, missing]), tf.constant(owner.vocabulary, dtype=dtype)], axis=0
        )
        return tf.gather(vocabulary, tf.cast(ids, tf.int32))

    # --------------------------------------------------------------- helpers
    def _lookup(self, name: str, values: tf.Tensor) -> tf.Tensor:
        owner = self._spec.vocabulary_owner(name)
        dtype = _TF_DTYPES[owner.dtype]
        if values.dtype != dtype:
            if dtype == tf.int64 and values.dtype == tf.string:
                values = parse_int64(values)
            elif dtype == tf.string:
                values = tf.strings.as_string(values)
            else:
                values = tf.cast(values, dtype)
        if owner.is_hashed:
            # Missing values map to the OOV id, as they do with a vocabulary,
            # instead of hashing the missing marker into a real bucket.
            if values.dtype == tf.string:
                missing = tf.equal(values, MISSING_STR)
            else:
                missing = tf.equal(values, tf.constant(MISSING_INT, values.dtype))
                values = tf.strings.as_string(values)
            hashed = hash_bucket(values, owner.num_bins, owner.hash_salt) + NUM_RESERVED_IDS
            ids = tf.where(missing, tf.constant(OOV_ID, tf.int64), hashed)
        else:
            ids = self.tables[owner.name].lookup(values)
        return tf.cast(ids, tf.int32)

    def _ids(self, feature: Categorical, values: tf.Tensor) -> tf.Tensor:
        return self._lookup(feature.name, values)

    def _numeric(self, feature: Numeric, values: tf.Tensor) -> tf.Tensor:
        x = tf.cast(values, tf.float32)
        missing = tf.logical_not(tf.math.is_finite(x))
        if feature.transform == "log1p":
            x = tf.sign(x) * tf.math.log1p(tf.abs(x))
        x = tf.where(missing, tf.constant(feature.fill_value, tf.float32), x)
        if feature.is_bucketized:
            boundaries = tf.constant(feature.boundaries, tf.float32)
            bucket = tf.searchsorted(boundaries, x, side="right", out_type=tf.int32)
            return bucket + NUM_RESERVED_IDS
        if feature.normalization == "standard":
            x = (x - feature.mean) / feature.std
        elif feature.normalization == "minmax":
            span = (feature.max - feature.min) or 1.0
            x = (x - feature.min) / span
        return x

    def _sequence(self, feature: Sequence, value) -> tf.Tensor:
        ragged = _ragged_items(feature.name, value, feature.separator)
        ragged = ragged[:, -feature.max_length :]
        ids = tf.ragged.map_flat_values(lambda v: self._lookup(feature.name, v), ragged)
        return _pad_front(ids, feature.max_length)

    def _timestamps(self, feature: Timestamps, value, sequence: Sequence, items) -> tf.Tensor:
        """int32 (B, max_length) seconds since the fitted origin, aligned with the kept items."""
        ragged = _ragged_items(feature.name, value, sequence.separator, "Timestamps")
        if ragged.flat_values.dtype == tf.string:
            ragged = tf.ragged.map_flat_values(
                lambda v: tf.strings.to_number(v, out_type=tf.int64), ragged
            )
        item_lengths = _ragged_items(sequence.name, items, sequence.separator).row_lengths()
        check = tf.debugging.assert_equal(
            ragged.row_lengths(),
            item_lengths,
            message=(
                f"Timestamps '{feature.name}' must have one value per item of "
                f"'{sequence.name}' in every row"
            ),
        )
        with tf.control_dependencies([check]):
            ragged = tf.identity(ragged[:, -sequence.max_length :])
        # Seconds since the origin, in int32 range: differences stay exact.
        seconds = tf.ragged.map_flat_values(
            lambda v: tf.cast(
                tf.clip_by_value(tf.cast(v, tf.int64) - feature.origin, -(2**31) + 1, 2**31 - 1),
                tf.int32,
            ),
            ragged,
        )
        return _pad_front(seconds, sequence.max_length)

    def _cross(self, feature: Crossed, processed: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [tf.strings.as_string(processed[name]) for name in feature.features]
        joined = tf.strings.join(parts, separator="_x_")
        ids = tf.strings.to_hash_bucket_fast(joined, feature.num_bins)
        return tf.cast(ids + NUM_RESERVED_IDS, tf.int32)


def hash_bucket(text: tf.Tensor, buckets: int, salt=None) -> tf.Tensor:
    """int64 bucket in [0, buckets) of each string: FarmHash, or SipHash keyed by `salt`.

    Both are fingerprints of the bytes alone (no per-process seed), so the
    training pipeline and the exported serving graph agree. A salt is one
    int (used as both key halves, as Keras' `Hashing` layer does) or two.
    """
    if salt is None:
        return tf.strings.to_hash_bucket_fast(text, buckets)
    key = [salt, salt] if isinstance(salt, int) else list(salt)
    return tf.strings.to_hash_bucket_strong(text, buckets, key=key)


def _ragged_items(name: str, value, separator: str, kind: str = "Sequence") -> tf.RaggedTensor:
    """A RaggedTensor as given, or a 1-D string tensor split on `separator` (empty items dropped)."""
    if isinstance(value, tf.RaggedTensor):
        return value
    value = tf.convert_to_tensor(value)
    if value.dtype != tf.string or value.shape.rank != 1:
        raise TypeError(
            f"{kind} feature '{name}' takes a RaggedTensor or a 1-D string tensor of "
            f"'{separator}'-delimited items, got {value.dtype.name} of rank {value.shape.rank}."
        )
    ragged = tf.strings.split(value, sep=separator)
    return tf.ragged.boolean_mask(ragged, tf.not_equal(ragged, ""))


def _flatten_batch(value) -> tf.Tensor:
    """(B,) from (B,) or (B, 1) inputs."""
    value = tf.convert_to_tensor(value)
    if value.shape.rank == 2:
        value = tf.squeeze(value, axis=1)
    return value


def _pad_front(ids: tf.RaggedTensor, length: int) -> tf.Tensor:
    """Dense (B, length) ids, each row right-aligned, padded with PAD_ID."""
    rows = tf.cast(ids.value_rowids(), tf.int32)
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    starts = tf.cast(ids.row_starts(), tf.int32)
    flat_positions = tf.range(tf.shape(ids.flat_values)[0], dtype=tf.int32)
    within_row = flat_positions - tf.gather(starts, rows)
    columns = length - tf.gather(lengths, rows) + within_row
    batch = tf.shape(lengths)[0]
    # scatter_nd fills the untouched front positions with 0, which is PAD_ID.
    return tf.scatter_nd(
        tf.stack([rows, columns], axis=1), ids.flat_values, tf.stack([batch, length])
    )


def parse_int64(text: tf.Tensor) -> tf.Tensor:
    """int64 values of decimal strings; MISSING_INT where a string is not one.

    Integer vocabularies read string inputs through this (a tf.data string
    column, a serving request's joined sequence): an item that is not a
    decimal int64 ("abc", or "12,7" sent with a foreign separator) becomes
    the missing value, hence the OOV id, like an unseen value, instead of
    failing the whole batch in `StringToNumber`. The pandas path
    (`keras_recsys.features.raw`) rejects such cells with an error naming
    them before they get here.
    """
    text = tf.strings.strip(text)
    valid = tf.strings.regex_full_match(text, r"[+-]?[0-9]+")
    negative = tf.strings.regex_full_match(text, r"-.*")
    # Sign and leading zeros off: what is left is at most 19 digits for an int64.
    digits = tf.strings.regex_replace(text, r"^[+-]?0*", "")
    digits = tf.where(tf.equal(digits, ""), "0", digits)
    length = tf.strings.length(digits)
    short = valid & (length <= 18)
    # 19 digits may overflow: split off the last digit and compare with
    # 9223372036854775807 = 922337203685477580 * 10 + 7 before combining.
    long = valid & tf.equal(length, 19)
    # substr needs 19 characters in every string, not only where `long` holds.
    nineteen = tf.where(long, digits, "0" * 19)
    head = tf.strings.to_number(tf.strings.substr(nineteen, 0, 18), out_type=tf.int64)
    last = tf.strings.to_number(tf.strings.substr(nineteen, 18, 1), out_type=tf.int64)
    limit = tf.constant(922337203685477580, tf.int64)
    long = long & ((head < limit) | (tf.equal(head, limit) & (last <= 7)))
    magnitude = tf.where(
        short, tf.strings.to_number(tf.where(short, digits, "0"), out_type=tf.int64), 0
    )
    magnitude = tf.where(long, head * 10 + last, magnitude)
    parsed = tf.where(negative, -magnitude, magnitude)
    return tf.where(short | long, parsed, tf.constant(MISSING_INT, tf.int64))
