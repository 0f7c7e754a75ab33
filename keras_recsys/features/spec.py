"""`FeatureSpec`: the features of a model, fitted once from data."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from keras_recsys.features import raw as raw_lib
from keras_recsys.features.feature import (
    FEATURE_KINDS,
    Categorical,
    Crossed,
    Feature,
    Numeric,
    Sequence,
    Timestamps,
)

# Quantile boundaries are fitted on at most this many values per feature
# (a uniform random subsample kept while streaming: each value gets a random
# key and the smallest keys are kept), which keeps adapt linear and memory
# bounded. With fewer values than this the boundaries are exact.
_QUANTILE_SAMPLE = 1_000_000


class FeatureSpec:
    """The features a model reads, declared once and fitted from data.

    `adapt` makes one pass over a DataFrame (or a `tf.data.Dataset` of raw
    feature dicts) and fits vocabularies, normalization statistics and
    bucket boundaries. The fitted spec then drives the TensorFlow
    preprocessing in the input pipeline and the export, and the embedding
    tables of the model; it serializes with the model (`get_config`).

    Args:
        features: the `Categorical`, `Numeric`, `Sequence` and `Crossed`
            features.
        default_embedding_dim: embedding size of features that set none.

    Example:

    >>> spec = kr.FeatureSpec([
    ...     kr.Categorical("user_id"),
    ...     kr.Numeric("age"),
    ...     kr.Sequence("history", shares_vocabulary_with="item_id"),
    ...     kr.Categorical("item_id"),
    ... ])
    >>> spec.adapt(train_df)
    """

    def __init__(self, features: Iterable[Feature], default_embedding_dim: int = 16):
        self.features = list(features)
        self.default_embedding_dim = int(default_embedding_dim)
        self._by_name: dict[str, Feature] = {}
        for feature in self.features:
            if not isinstance(feature, Feature):
                raise TypeError(f"FeatureSpec takes Feature objects, got {feature!r}.")
            if feature.name in self._by_name:
                raise ValueError(f"Feature name '{feature.name}' is used twice.")
            self._by_name[feature.name] = feature
        self._check_references()
        self._preprocessor = None

    # ------------------------------------------------------------- structure
    def _check_references(self) -> None:
        for feature in self.features:
            if isinstance(feature, Sequence) and feature.shares_vocabulary_with:
                owner = self._by_name.get(feature.shares_vocabulary_with)
                # The owner keeps the vocabulary: a Categorical, or a Sequence
                # that shares none itself (a history whose candidates share it).
                if not (
                    isinstance(owner, Categorical)
                    or (isinstance(owner, Sequence) and not owner.shares_vocabulary_with)
                ):
                    raise ValueError(
                        f"Sequence '{feature.name}' shares the vocabulary of "
                        f"'{feature.shares_vocabulary_with}', which is not a "
                        "Categorical feature or a Sequence with its own vocabulary in this spec."
                    )
            if isinstance(feature, Timestamps):
                sequence = self._by_name.get(feature.sequence)
                if not isinstance(sequence, Sequence):
                    raise ValueError(
                        f"Timestamps '{feature.name}' time the items of '{feature.sequence}', "
                        "which is not a Sequence feature of this spec."
                    )
                timed = [
                    f.name
                    for f in self.features
                    if isinstance(f, Timestamps) and f.sequence == feature.sequence
                ]
                if len(timed) > 1:
                    raise ValueError(
                        f"Sequence '{feature.sequence}' has more than one Timestamps "
                        f"feature: {timed}."
                    )
            if isinstance(feature, Crossed):
                for name in feature.features:
                    member = self._by_name.get(name)
                    ok = isinstance(member, Categorical) or (
                        isinstance(member, Numeric) and member.is_bucketized
                    )
                    if not ok:
                        raise ValueError(
                            f"Crossed feature '{feature.name}' crosses '{name}', "
                            "which is not a Categorical or bucketized Numeric "
                            "feature of this spec."
                        )

    def __getitem__(self, name: str) -> Feature:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"No feature '{name}' in the spec; it has {list(self._by_name)}."
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def input_features(self) -> list[Feature]:
        """Features read from input columns (everything but crosses)."""
        return [f for f in self.features if not isinstance(f, Crossed)]

    @property
    def categorical(self) -> list[Categorical]:
        return [f for f in self.features if isinstance(f, Categorical)]

    @property
    def numeric(self) -> list[Numeric]:
        return [f for f in self.features if isinstance(f, Numeric)]

    @property
    def dense(self) -> list[Numeric]:
        """Numeric features that stay numeric (not bucketized)."""
        return [f for f in self.numeric if not f.is_bucketized]

    @property
    def bucketized(self) -> list[Numeric]:
        return [f for f in self.numeric if f.is_bucketized]

    @property
    def sequences(self) -> list[Sequence]:
        return [f for f in self.features if isinstance(f, Sequence)]

    @property
    def timestamps(self) -> list[Timestamps]:
        return [f for f in self.features if isinstance(f, Timestamps)]

    def timestamps_of(self, sequence: str) -> str | None:
        """The name of the `Timestamps` feature aligned with a sequence, or None."""
        for feature in self.timestamps:
            if feature.sequence == sequence:
                return feature.name
        return None

    @property
    def crossed(self) -> list[Crossed]:
        return [f for f in self.features if isinstance(f, Crossed)]

    @property
    def scenario_feature(self) -> Categorical | None:
        """The categorical feature declared with `role="scenario"`, if any."""
        found = [f for f in self.categorical if f.role == "scenario"]
        if len(found) > 1:
            raise ValueError(
                f"Only one feature may have role='scenario'; found {[f.name for f in found]}."
            )
        return found[0] if found else None

    def vocabulary_owner(self, name: str) -> Feature:
        """The feature whose vocabulary (and embedding table) `name` uses."""
        feature = self[name]
        if isinstance(feature, Sequence) and feature.shares_vocabulary_with:
            return self[feature.shares_vocabulary_with]
        return feature

    def dtype_of(self, name: str) -> str:
        """Raw dtype of a categorical or sequence feature after adapt."""
        owner = self.vocabulary_owner(name)
        if owner.dtype is None:
            raise RuntimeError(
                f"Feature '{name}' has not been adapted: call "
                "`spec.adapt(data)` before using the spec."
            )
        return owner.dtype

    def embedding_dim(self, name: str) -> int:
        owner = self.vocabulary_owner(name)
        dim = getattr(owner, "embedding_dim", None)
        return int(dim or self.default_embedding_dim)

    def input_dim(self, name: str) -> int:
        return self.vocabulary_owner(name).input_dim

    def lookup(self, name: str, values) -> np.ndarray:
        """Internal ids of raw values of a categorical or sequence feature (NumPy, no TF).

        The same mapping as the TensorFlow preprocessing: vocabulary entries
        from 2, unseen or missing values 1. For evaluation targets and
        candidate lists outside the input pipeline; hashed features map only
        in the pipeline.
        """
        owner = self.vocabulary_owner(name)
        if getattr(owner, "is_hashed", False):
            raise ValueError(
                f"Feature '{name}' is hashed (num_bins): its ids come from the "
                "TensorFlow preprocessing only (kr.data), not from `lookup`."
            )
        self.check_adapted()
        index = {value: i + 2 for i, value in enumerate(owner.vocabulary)}
        cast = str if owner.dtype == "string" else _as_int
        return np.array([index.get(cast(v), 1) for v in values], dtype=np.int64)

    def sequence_ids(self, name: str, sequences, max_length: int | None = None) -> np.ndarray:
        """(N, L) int32 ids of raw item lists, front-padded, as the TF preprocessing makes them.

        The most recent `max_length` items (default: the feature's) are kept;
        unseen items map to 1. NumPy only, for hosts without TensorFlow and
        for evaluation arrays.
        """
        length = int(max_length or self[name].max_length)
        lists = [list(row)[-length:] if len(row) else [] for row in sequences]
        flat = self.lookup(name, [v for row in lists for v in row])
        out = np.zeros((len(lists), length), dtype=np.int32)
        start = 0
        for i, row in enumerate(lists):
            if row:
                out[i, length - len(row) :] = flat[start : start + len(row)]
                start += len(row)
        return out

    def sequence_timestamps(self, name: str, times, max_length: int | None = None) -> np.ndarray:
        """(N, L) int32 model input of a `Timestamps` feature from raw lists, as the TF preprocessing.

        Seconds since the fitted origin, the latest `max_length` (default:
        the timed sequence's) kept, front-padded with 0: aligned with
        `sequence_ids` of the items. NumPy only.
        """
        feature = self[name]
        if feature.kind != "timestamps":
            raise ValueError(f"Feature '{name}' is a {feature.kind} feature, not Timestamps.")
        length = int(max_length or self[feature.sequence].max_length)
        out = np.zeros((len(times), length), dtype=np.int32)
        for i, row in enumerate(times):
            kept = np.asarray(list(row)[-length:], dtype=np.int64) - feature.origin
            if len(kept):
                out[i, length - len(kept) :] = np.clip(kept, -(2**31) + 1, 2**31 - 1)
        return out

    def vocabulary_values(self, name: str, ids) -> np.ndarray:
        """Raw values of internal ids (the inverse of `lookup`; ids 0 and 1 give None)."""
        owner = self.vocabulary_owner(name)
        vocabulary = np.array(list(owner.vocabulary) if owner.vocabulary else [], dtype=object)
        ids = np.asarray(ids)
        out = np.full(ids.shape, None, dtype=object)
        valid = (ids >= 2) & (ids < len(vocabulary) + 2)
        out[valid] = vocabulary[ids[valid] - 2]
        return out

    @property
    def is_adapted(self) -> bool:
        return all(f.is_adapted for f in self.features) and all(
            self.vocabulary_owner(s.name).is_adapted for s in self.sequences
        )

    def check_adapted(self) -> None:
        missing = [
            f.name
            for f in self.features
            if not (f.is_adapted and self.vocabulary_owner(f.name).is_adapted)
        ]
        if missing:
            raise RuntimeError(
                f"The feature spec is not fitted (features {missing}): call "
                "`spec.adapt(train_df)` before building a model or a dataset."
            )

    # ------------------------------------------------------------------ adapt
    def adapt(self, data, batch_size: int = 100_000, seed: int = 0) -> FeatureSpec:
        """Fits vocabularies and statistics in one pass over `data`.

        Args:
            data: a pandas DataFrame, a dict of columns, or a
                `tf.data.Dataset` whose elements are dicts of raw columns
                (or `(features, labels)` tuples).
            batch_size: rows per chunk when reading a DataFrame.
            seed: seed of the subsample used for quantile boundaries.

        Returns:
            The spec itself, fitted.
        """
        accumulator = _Accumulator(self, seed)
        for chunk in _chunks(data, batch_size):
            accumulator.update(chunk)
        accumulator.finish()
        self._preprocessor = None
        return self

    # ------------------------------------------------------------ processing
    @property
    def preprocessor(self):
        """The TensorFlow preprocessing module (built once, lazily)."""
        if self._preprocessor is None:
            from keras_recsys.features.preprocessor import Preprocessor

            self.check_adapted()
            self._preprocessor = Preprocessor(self)
        return self._preprocessor

    def raw_from_frame(self, df: pd.DataFrame) -> dict[str, Any]:
        """Typed raw arrays of a DataFrame, checked against the spec."""
        self.check_adapted()
        return raw_lib.frame_to_raw(self, df)

    # ---------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        return {
            "default_embedding_dim": self.default_embedding_dim,
            "features": [{"kind": f.kind, "config": f.get_config()} for f in self.features],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureSpec:
        features = [
            FEATURE_KINDS[item["kind"]].from_config(item["config"]) for item in config["features"]
        ]
        return cls(features, config.get("default_embedding_dim", 16))

    def to_json(self) -> str:
        return json.dumps(self.get_config())

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_config(json.loads(text))

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(f) for f in self.features)
        return f"FeatureSpec([\n    {inner}\n])"


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _chunks(data, batch_size: int):
    if isinstance(data, pd.DataFrame):
        if len(data) == 0:
            raise ValueError("Cannot adapt on an empty DataFrame.")
        for start in range(0, len(data), batch_size):
            yield data.iloc[start : start + batch_size]
        return
    if isinstance(data, dict):
        yield from _chunks(pd.DataFrame(data), batch_size)
        return
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        features_spec = data.element_spec
        if isinstance(features_spec, tuple):
            features_spec = features_spec[0]
        if isinstance(features_spec, dict) and any(
            s.shape.rank == 0 for s in features_spec.values()
        ):
            # Unbatched elements (one row each): batch them, ragged where
            # rows differ in length (sequences), instead of one frame a row.
            data = data.ragged_batch(batch_size)
        seen = False
        for element in data.as_numpy_iterator():
            if isinstance(element, tuple):
                element = element[0]
            seen = True
            yield pd.DataFrame({k: _numpy_column(v) for k, v in element.items()})
        if not seen:
            raise ValueError("Cannot adapt on an empty dataset.")
        return
    raise TypeError(
        "adapt() takes a pandas DataFrame, a dict of columns or a "
        f"tf.data.Dataset, got {type(data).__name__}."
    )


def _numpy_column(value) -> list | np.ndarray:
    """One batch column from tf.data as something pandas can hold."""
    if hasattr(value, "to_list"):  # tf.RaggedTensorValue
        value = value.to_list()
    value = np.asarray(value, dtype=object) if isinstance(value, list) else value
    if value.dtype == object:
        return [_decode(v) for v in value]
    return value.reshape(len(value), -1)[:, 0] if value.ndim > 1 else value


def _decode(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (list, np.ndarray)):
        return [_decode(v) for v in value]
    return value


class _Accumulator:
    """Streaming counts and moments for one adapt pass."""

    def __init__(self, spec: FeatureSpec, seed: int):
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.counts: dict[str, Counter] = {}
        self.dtypes: dict[str, str] = {}
        self.moments: dict[str, list[float]] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.origins: dict[str, int] = {}
        self.rows = 0

    def _owner(self, feature) -> Feature:
        return self.spec.vocabulary_owner(feature.name)

    def _needs_vocabulary(self, owner) -> bool:
        return not owner.is_hashed and owner.given_vocabulary is None

    def _dtype(self, owner, series: pd.Series, feature) -> str:
        if owner.dtype is not None and owner.given_vocabulary is not None:
            return owner.dtype
        if owner.name not in self.dtypes:
            if isinstance(feature, Sequence):
                ragged = raw_lib.sequence_values(series, feature)
                items = pd.Series(ragged.values, dtype=object).dropna()
                dtype = raw_lib.infer_categorical_dtype(items, feature.name)
                if dtype == "string" and len(items):
                    numeric = pd.to_numeric(items, errors="coerce")
                    if numeric.notna().all() and (numeric % 1 == 0).all():
                        dtype = "int64"
            else:
                dtype = raw_lib.infer_categorical_dtype(series, feature.name)
            self.dtypes[owner.name] = dtype
        return self.dtypes[owner.name]

    def update(self, df: pd.DataFrame) -> None:
        self.rows += len(df)
        # Owners first, so a shared sequence sees the owner's dtype.
        ordered = self.spec.categorical + [
            f for f in self.spec.input_features if not isinstance(f, Categorical)
        ]
        for feature in ordered:
            series = raw_lib.column_of(df, feature)
            if isinstance(feature, Timestamps):
                sequence = self.spec[feature.sequence]
                items = raw_lib.column_of(df, sequence)
                values = raw_lib.timestamp_array(series, feature, items, sequence).values
                if len(values):
                    low = int(values.min())
                    self.origins[feature.name] = min(self.origins.get(feature.name, low), low)
                continue
            if isinstance(feature, Numeric):
                self._update_numeric(feature, raw_lib.numeric_array(series, feature.name))
                continue
            owner = self._owner(feature)
            dtype = self._dtype(owner, series, feature)
            if isinstance(feature, Sequence):
                values = raw_lib.sequence_array(series, feature, dtype).values
            else:
                values = raw_lib.categorical_array(series, dtype, feature.name)
            if self._needs_vocabulary(owner):
                counter = self.counts.setdefault(owner.name, Counter())
                uniques, counts = np.unique(
                    values.astype(str) if dtype == "string" else values,
                    return_counts=True,
                )
                counter.update(dict(zip(uniques.tolist(), counts.tolist())))

    def _update_numeric(self, feature: Numeric, values: np.ndarray) -> None:
        x = values[~np.isnan(values)].astype(np.float64)
        if feature.transform == "log1p":
            x = np.sign(x) * np.log1p(np.abs(x))
        m = self.moments.setdefault(feature.name, [0.0, 0.0, 0.0, np.inf, -np.inf])
        if len(x):
            m[0] += len(x)
            m[1] += float(x.sum())
            m[2] += float(np.square(x).sum())
            m[3] = min(m[3], float(x.min()))
            m[4] = max(m[4], float(x.max()))
        if feature.is_bucketized:
            parts = self.samples.setdefault(feature.name, [])
            parts.append((self.rng.random(len(x)), x))
            if sum(len(v) for _, v in parts) > 2 * _QUANTILE_SAMPLE:
                parts[:] = [_smallest_keys(parts)]

    def finish(self) -> None:
        for feature in self.spec.features:
            if isinstance(feature, Numeric):
                self._finish_numeric(feature)
            if isinstance(feature, Timestamps):
                if feature.name not in self.origins:
                    raise ValueError(
                        f"Timestamps feature '{feature.name}' has no value in the adapt "
                        "data, so no origin can be fitted."
                    )
                feature.origin = self.origins[feature.name]
        for owner in self.spec.categorical + self.spec.sequences:
            if isinstance(owner, Sequence) and owner.shares_vocabulary_with:
                continue
            if owner.name in self.dtypes:
                owner.dtype = self.dtypes[owner.name]
            if self._needs_vocabulary(owner):
                owner.vocabulary = _vocabulary_from_counts(
                    self.counts.get(owner.name, Counter()), owner
                )

    def _finish_numeric(self, feature: Numeric) -> None:
        n, total, squares, low, high = self.moments[feature.name]
        if n == 0:
            raise ValueError(
                f"Numeric feature '{feature.name}' has no non-missing value "
                "in the adapt data, so no statistic can be fitted."
            )
        mean = total / n
        variance = max(squares / n - mean * mean, 0.0)
        feature.mean = float(mean)
        feature.std = float(np.sqrt(variance)) or 1.0
        feature.min = float(low)
        feature.max = float(high)
        feature.fill_value = float(mean)
        if feature.is_bucketized:
            _, sample = _smallest_keys(self.samples[feature.name])
            quantiles = np.quantile(sample, np.linspace(0, 1, feature.buckets + 1)[1:-1])
            feature.boundaries = [float(b) for b in np.unique(quantiles)]


def _smallest_keys(parts: list) -> tuple[np.ndarray, np.ndarray]:
    """The (key, value) pairs with the `_QUANTILE_SAMPLE` smallest keys."""
    keys = np.concatenate([k for k, _ in parts])
    values = np.concatenate([v for _, v in parts])
    if len(keys) > _QUANTILE_SAMPLE:
        keep = np.argpartition(keys, _QUANTILE_SAMPLE)[:_QUANTILE_SAMPLE]
        keys, values = keys[keep], values[keep]
    return keys, values


def _vocabulary_from_counts(counter: Counter, owner) -> list:
    missing = raw_lib.MISSING_STR if owner.dtype == "string" else raw_lib.MISSING_INT
    items = [
        (value, count)
        for value, count in counter.items()
        if count >= owner.min_frequency and value != missing
    ]
    # Most frequent first; ties broken by value so the vocabulary is
    # deterministic whatever the order of the data.
    items.sort(key=lambda vc: (-vc[1], str(vc[0])))
    if owner.max_tokens is not None:
        items = items[: owner.max_tokens]
    if owner.dtype == "int64":
        return [int(v) for v, _ in items]
    return [str(v) for v, _ in items]
