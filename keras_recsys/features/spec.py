"""`FeatureSpec`: the features of a model, fitted once from data."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from fractions import Fraction
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
        fuse_tables: store the embedding tables of each width as one array
            (`kr.layers.FusedEmbedding`): one gather, one scatter-add and one
            optimizer update per width instead of one per table. The same
            function and the same SavedModel signature; faster on
            accelerators (measured: `benchmarks/bench_fit_jax.py`); weights
            laid out differently, so checkpoints of a fused and an unfused
            model do not load into each other. Default False.

    Example:

    >>> spec = kr.FeatureSpec([
    ...     kr.Categorical("user_id"),
    ...     kr.Numeric("age"),
    ...     kr.Sequence("history", shares_vocabulary_with="item_id"),
    ...     kr.Categorical("item_id"),
    ... ])
    >>> spec.adapt(train_df)
    """

    def __init__(
        self,
        features: Iterable[Feature],
        default_embedding_dim: int = 16,
        fuse_tables: bool = False,
    ):
        self.features = list(features)
        self.default_embedding_dim = int(default_embedding_dim)
        self.fuse_tables = bool(fuse_tables)
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
        candidate lists outside the input pipeline. Hashed features
        (`hash_buckets`) need TensorFlow's hash, so they map only where
        TensorFlow is installed.
        """
        owner = self.vocabulary_owner(name)
        if getattr(owner, "is_hashed", False):
            return self._hashed_lookup(name, owner, values)
        self.check_adapted()
        index = {value: i + 2 for i, value in enumerate(owner.vocabulary)}
        cast = str if owner.dtype == "string" else _as_int
        return np.array([index.get(cast(v), 1) for v in values], dtype=np.int64)

    def _hashed_lookup(self, name: str, owner, values) -> np.ndarray:
        try:
            from keras_recsys.features.preprocessor import hash_bucket
        except ImportError:
            raise ValueError(
                f"Feature '{name}' is hashed (hash_buckets): its ids need TensorFlow's "
                "hash, and TensorFlow is not installed here."
            ) from None
        self.check_adapted()
        cast = str if owner.dtype == "string" else _as_int
        texts, missing = [], []
        for value in values:
            # As in the pipeline: missing values, "" and non-integers of an
            # integer feature take the OOV id instead of a bucket.
            value = (
                None
                if value is None or (isinstance(value, float) and np.isnan(value))
                else cast(value)
            )
            bad = (
                value is None
                or value == ""
                or (owner.dtype == "int64" and not isinstance(value, int))
            )
            missing.append(bad)
            texts.append("" if bad else str(value))
        if not texts:
            return np.zeros(0, dtype=np.int64)
        ids = np.asarray(
            hash_bucket(np.array(texts, dtype=object), owner.num_bins, owner.hash_salt)
        )
        return np.where(missing, 1, ids + 2).astype(np.int64)

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

        The pass streams `batch_size` rows at a time, so memory is bounded by
        one chunk plus what is fitted (value counts of vocabulary features,
        a 1M-value sample per bucketized feature), never by the row count:
        give Parquet or CSV shards larger than memory as a directory, a glob
        or a list of paths. Counts, minima and maxima are exact and sums are
        accumulated without rounding, so the fitted state does not depend on
        how the rows are split into chunks or files: shards give exactly what
        the concatenated DataFrame gives. Hashed features (`hash_buckets`)
        count nothing.

        Args:
            data: a pandas DataFrame, a dict of columns, a
                `tf.data.Dataset` whose elements are dicts of raw columns
                (or `(features, labels)` tuples), or files: a path to a
                directory (its `*.parquet`, `*.pq` and `*.csv*` files), a
                glob, or a list of paths/globs. Files are read in sorted
                order, only the columns the spec reads; CSV columns of
                string categoricals and sequences are read as text, as
                `kr.data.from_csv` reads them.
            batch_size: rows per chunk.
            seed: seed of the subsample used for quantile boundaries.

        Returns:
            The spec itself, fitted.

        Example:

        >>> spec.adapt("data/train/")            # every shard, one pass
        >>> spec.adapt("data/train/part-*.parquet")
        """
        accumulator = _Accumulator(self, seed)
        for chunk in _chunks(data, batch_size, self):
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
        config = {
            "default_embedding_dim": self.default_embedding_dim,
            "features": [{"kind": f.kind, "config": f.get_config()} for f in self.features],
        }
        if self.fuse_tables:  # only when set: older configs stay as they were
            config["fuse_tables"] = True
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureSpec:
        features = [
            FEATURE_KINDS[item["kind"]].from_config(item["config"]) for item in config["features"]
        ]
        return cls(
            features,
            config.get("default_embedding_dim", 16),
            fuse_tables=config.get("fuse_tables", False),
        )

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


def _chunks(data, batch_size: int, spec: FeatureSpec | None = None):
    if isinstance(data, (str, os.PathLike)) or (
        isinstance(data, (list, tuple))
        and data
        and all(isinstance(p, (str, os.PathLike)) for p in data)
    ):
        yield from _file_chunks(spec, expand_paths(data), batch_size)
        return
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
        "adapt() takes a pandas DataFrame, a dict of columns, a "
        "tf.data.Dataset or file paths (a directory, a glob or a list), got "
        f"{type(data).__name__}."
    )


# ------------------------------------------------------------------- files
_PARQUET_SUFFIXES = (".parquet", ".pq")

# pandas' default missing-value markers, kept for non-text CSV columns.
PANDAS_MISSING_MARKERS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip


def _is_data_file(name: str) -> bool:
    name = name.lower()
    return name.endswith(_PARQUET_SUFFIXES) or ".csv" in name


def expand_paths(paths) -> list[str]:
    """Files named by a path, a directory, a glob, or a list of them (each sorted).

    A directory stands for its Parquet (`*.parquet`, `*.pq`) and CSV
    (`*.csv`, compressed or not) files, hidden (`.`) and marker (`_`)
    files such as `_SUCCESS` left out.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[str] = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            matches = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if not name.startswith((".", "_")) and _is_data_file(name)
            )
            if not matches:
                raise FileNotFoundError(
                    f"Directory '{path}' holds no Parquet (*.parquet, *.pq) or CSV (*.csv) file."
                )
        else:
            matches = sorted(glob.glob(path))
            if not matches:
                raise FileNotFoundError(f"No file matches '{path}'.")
        found.extend(matches)
    return found


def file_format(path: str) -> str:
    """'parquet' or 'csv', from the file name."""
    name = os.path.basename(path).lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if ".csv" in name:
        return "csv"
    raise ValueError(
        f"Cannot tell the format of '{path}': name Parquet files *.parquet or *.pq "
        "and CSV files *.csv (optionally compressed, e.g. *.csv.gz)."
    )


def file_columns(path: str, fmt: str, read_csv_kwargs: dict | None = None) -> list[str]:
    """Column names of a file, from its Parquet schema or CSV header only."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    kwargs = {k: v for k, v in (read_csv_kwargs or {}).items() if k != "dtype"}
    return [str(c) for c in pd.read_csv(path, nrows=0, **kwargs).columns]


def check_file_columns(
    path: str, fmt: str, needed: dict[str, str], read_csv_kwargs: dict | None = None
) -> None:
    """A ValueError naming the file, each missing column and what needs it.

    Args:
        needed: column name -> what reads it (e.g. "feature 'user_id'").
    """
    present = file_columns(path, fmt, read_csv_kwargs)
    missing = [c for c in needed if c not in set(present)]
    if missing:
        what = ", ".join(f"'{c}' (read by {needed[c]})" for c in missing)
        shown = ", ".join(present[:20]) + (" ..." if len(present) > 20 else "")
        raise ValueError(
            f"File '{path}' has no column {what}; its columns are [{shown}]. Every "
            "shard must hold every column the spec (and the tasks) read."
        )


def csv_frames(
    path: str,
    chunk_rows: int,
    text: set[str],
    read_csv_kwargs: dict | None = None,
    usecols: list[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """A CSV file, `chunk_rows` rows at a time, `text` columns read as strings.

    Text such as "NA" or "None" is a real category value: unless the caller
    sets `na_values`/`keep_default_na`, only an empty cell is missing in a
    text column, and pandas' usual markers in the others.
    """
    kwargs = dict(read_csv_kwargs or {})
    dtype = kwargs.pop("dtype", None)
    if dtype is None or isinstance(dtype, dict):
        dtype = {**{c: str for c in text}, **(dtype or {})}
    kwargs["dtype"] = dtype
    if "na_values" not in kwargs and "keep_default_na" not in kwargs:
        header = file_columns(path, "csv", kwargs)
        kwargs["keep_default_na"] = False
        kwargs["na_values"] = {c: [""] if c in text else PANDAS_MISSING_MARKERS for c in header}
    if usecols is not None:
        kwargs["usecols"] = usecols
    with pd.read_csv(path, chunksize=chunk_rows, **kwargs) as reader:
        yield from reader


def parquet_frames(
    path: str, chunk_rows: int, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """A Parquet file, at most `chunk_rows` rows at a time (record batches)."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)
    try:
        for batch in file.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()
    finally:
        file.close()


def spec_columns(spec: FeatureSpec) -> dict[str, str]:
    """Input column -> the feature(s) that read it."""
    columns: dict[str, str] = {}
    for feature in spec.input_features:
        name = f"feature '{feature.name}'"
        columns[feature.column] = (
            f"{columns[feature.column]}, {name}" if feature.column in columns else name
        )
    return columns


def _csv_text_columns(spec: FeatureSpec, first_file: str, read_csv_kwargs=None) -> set[str]:
    """CSV columns adapt reads as text: sequences, and categoricals that are not integers.

    A fitted or given dtype decides where there is one; otherwise the first
    rows of the first file do (pandas' own inference), so a column of codes
    such as "007" stays text exactly when `from_csv` will read it as text.
    """
    text: set[str] = set()
    undecided = []
    for feature in spec.input_features:
        if isinstance(feature, Sequence):
            text.add(feature.column)
        elif isinstance(feature, Categorical):
            owner = spec.vocabulary_owner(feature.name)
            if owner.given_vocabulary is not None:
                if owner.dtype == "string":
                    text.add(feature.column)
            else:
                undecided.append(feature.column)
    if undecided:
        kwargs = {k: v for k, v in (read_csv_kwargs or {}).items() if k != "dtype"}
        head = pd.read_csv(first_file, nrows=10_000, usecols=sorted(set(undecided)), **kwargs)
        for column in undecided:
            series = head[column]
            if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
                text.add(column)
    return text


def _file_chunks(spec: FeatureSpec, files: list[str], chunk_rows: int):
    """Chunks of the spec's columns from every file, each file's columns checked first."""
    needed = spec_columns(spec)
    formats = [file_format(path) for path in files]
    for path, fmt in zip(files, formats):
        check_file_columns(path, fmt, needed)
    columns = list(needed)
    text = None
    for path, fmt in zip(files, formats):
        if fmt == "parquet":
            frames = parquet_frames(path, chunk_rows, columns)
        else:
            if text is None:
                text = _csv_text_columns(spec, path)
            frames = csv_frames(path, chunk_rows, text, usecols=columns)
        for frame in frames:
            if len(frame):
                yield frame


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
        # One random stream per feature: a value's sampling key then depends
        # on its position in the column only, not on how rows are chunked.
        self.rngs = {f.name: np.random.default_rng([seed, i]) for i, f in enumerate(spec.features)}
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
        m = self.moments.setdefault(feature.name, [0, _ExactSum(), _ExactSum(), np.inf, -np.inf])
        if len(x):
            m[0] += len(x)
            m[1].add(x)
            m[2].add(np.square(x))
            m[3] = min(m[3], float(x.min()))
            m[4] = max(m[4], float(x.max()))
        if feature.is_bucketized:
            parts = self.samples.setdefault(feature.name, [])
            parts.append((self.rngs[feature.name].random(len(x)), x))
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
        # Exact rationals, rounded once: no cancellation in E[x²] - E[x]².
        mean = total.value / n
        variance = max(squares.value / n - mean * mean, Fraction(0))
        feature.mean = float(mean)
        feature.std = float(np.sqrt(float(variance))) or 1.0
        feature.min = float(low)
        feature.max = float(high)
        feature.fill_value = float(mean)
        if feature.is_bucketized:
            _, sample = _smallest_keys(self.samples[feature.name])
            quantiles = np.quantile(sample, np.linspace(0, 1, feature.buckets + 1)[1:-1])
            feature.boundaries = [float(b) for b in np.unique(quantiles)]


class _ExactSum:
    """The exact sum of float64 values, whatever their order or chunking.

    Each value is split as m · 2^e (`np.frexp`) with a 53-bit integer
    mantissa cut into two halves of at most 27 bits; per exponent the halves
    are summed by `np.bincount` in float64, which is exact while a sum stays
    below 2^53 (chunks of up to 2^25 values), and the per-exponent sums are
    added as Python integers in units of 2^-1126 (below the smallest
    subnormal's unit). So adapt on shards equals adapt on their
    concatenation bit for bit, and the mean and variance are rounded once.
    """

    _UNIT = 1126  # the total counts units of 2**-1126
    _MAX_CHUNK = 2**25

    def __init__(self):
        self.total = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        for start in range(0, len(x), self._MAX_CHUNK):
            self._add(x[start : start + self._MAX_CHUNK])

    def _add(self, x: np.ndarray) -> None:
        x = x[x != 0]
        if not len(x):
            return
        mantissa, exponent = np.frexp(x)
        q = mantissa * 2.0**53  # an integer, |q| < 2**53
        high = np.trunc(q / 2.0**27)
        low = q - high * 2.0**27
        # x = (high · 2^27 + low) · 2^(exponent - 53); shift >= 0 for every float64.
        shift = exponent.astype(np.int64) - 53 + self._UNIT
        base = int(shift.min())
        offsets = shift - base
        for part, extra in ((high, 27), (low, 0)):
            sums = np.bincount(offsets, weights=part)
            for k in np.flatnonzero(sums):
                self.total += int(sums[k]) << (base + int(k) + extra)

    @property
    def value(self) -> Fraction:
        return Fraction(self.total, 1 << self._UNIT)


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
