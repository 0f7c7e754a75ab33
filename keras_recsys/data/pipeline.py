"""DataFrames and files to `tf.data` pipelines of preprocessed batches."""

from __future__ import annotations

import difflib
import glob
import os
from collections.abc import Iterable
from typing import Any

import pandas as pd
import tensorflow as tf

from keras_recsys.features.feature import Categorical, Sequence
from keras_recsys.features.raw import RaggedValues
from keras_recsys.features.spec import FeatureSpec
from keras_recsys.tasks import Task, as_tasks


def _spec_and_tasks(target, tasks) -> tuple[FeatureSpec, list[Task] | None]:
    if isinstance(target, FeatureSpec):
        spec = target
    elif hasattr(target, "spec") and isinstance(target.spec, FeatureSpec):
        spec = target.spec
        if tasks is None:
            # Next-item and retrieval models have no pointwise tasks.
            tasks = list(getattr(target, "tasks", None) or []) or None
    else:
        raise TypeError(
            f"Pass a keras_recsys model or a fitted FeatureSpec, got {type(target).__name__}."
        )
    spec.check_adapted()
    return spec, (as_tasks(tasks) if tasks is not None else None)


def _to_tensor(value: Any):
    if isinstance(value, RaggedValues):
        if value.values.dtype == object:
            flat = tf.constant(value.values.tolist(), dtype=tf.string)
        else:
            flat = tf.constant(value.values, dtype=tf.int64)
        return tf.RaggedTensor.from_row_lengths(flat, value.row_lengths)
    if value.dtype == object:
        return tf.constant(value.tolist(), dtype=tf.string)
    return tf.constant(value)


def frame_tensors(
    df: pd.DataFrame, spec: FeatureSpec, tasks: list[Task] | None, labels: bool
) -> tuple:
    """(raw feature tensors, labels, sample weights) of a whole DataFrame."""
    raw = spec.raw_from_frame(df)
    features = {name: _to_tensor(value) for name, value in raw.items()}
    if not labels or tasks is None:
        return features, None, None
    y = {t.name: tf.constant(t.label_array(df)) for t in tasks}
    weights = None
    if any(t.uses_sample_weight for t in tasks):
        weights = {t.name: tf.constant(t.weight_array(df)) for t in tasks}
    return features, y, weights


def _batched_dataset(
    columns: tuple,
    n: int,
    spec: FeatureSpec,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    drop_remainder: bool,
) -> tf.data.Dataset:
    """Batches by gathering row indices, then preprocesses whole batches."""
    indices = tf.data.Dataset.range(n)
    if shuffle:
        indices = indices.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size, drop_remainder=drop_remainder)
    preprocessor = spec.preprocessor
    columns = tuple(c for c in columns if c is not None)

    def gather(index):
        picked = tf.nest.map_structure(lambda t: tf.gather(t, index), columns)
        features = preprocessor(picked[0])
        return features if len(picked) == 1 else (features,) + picked[1:]

    dataset = indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def from_pandas(
    df: pd.DataFrame,
    model,
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int | None = None,
    labels: bool | None = None,
    tasks=None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` of preprocessed batches from a DataFrame.

    Elements are `(features, labels)` (plus `sample_weights` when a task has
    a `mask` or `sample_weight` column), each a dict keyed by feature or
    task name, or `features` alone without labels. Preprocessing (lookups,
    normalization, padding) runs in the pipeline with the spec's
    TensorFlow preprocessor, so the model receives only numbers.

    Args:
        df: the rows; every input feature's column must be present.
        model: a keras_recsys model (its spec and tasks are used) or a
            fitted `FeatureSpec`.
        batch_size: rows per batch.
        shuffle: reshuffle rows every epoch.
        seed: shuffle seed.
        labels: `False` for features only (e.g. to `predict`); `None`
            (default) or `True`: labels of every task when the tasks are
            known (a model with tasks, or `tasks=`), and a `ValueError`
            naming any missing label column; features only when no task
            is known (a bare `FeatureSpec` without `tasks=`).
        tasks: tasks to read labels for, overriding the model's.
        drop_remainder: drop the last incomplete batch.

    Example:

    >>> train = kr.data.from_pandas(train_df, model, batch_size=4096, shuffle=True)
    >>> model.fit(train, epochs=3)
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_pandas takes a pandas DataFrame, got {type(df).__name__}.")
    if len(df) == 0:
        raise ValueError("from_pandas got an empty DataFrame: there are no rows.")
    spec, tasks = _spec_and_tasks(model, tasks)
    labels = _want_labels(labels, tasks, df.columns)
    features, y, weights = frame_tensors(df, spec, tasks, labels)
    return _batched_dataset(
        (features, y, weights), len(df), spec, batch_size, shuffle, seed, drop_remainder
    )


def _want_labels(labels: bool | None, tasks: list[Task] | None, columns) -> bool:
    """Whether to read labels; checks that every task's label column is there.

    Features only is asked for explicitly (`labels=False`): when the tasks
    are known, a missing label column is an error, never a silent switch to
    features only, because that switch surfaced much later as an opaque
    failure inside the loss (`None values not supported`) when the column
    name was only misspelled.
    """
    if labels is not None and not labels:
        return False
    if tasks is None:
        if labels:
            raise ValueError("labels=True needs a model with tasks (or `tasks=`).")
        # A bare spec and no tasks: there is nothing to read labels for.
        return False
    _check_label_columns(tasks, columns)
    return True


def _check_label_columns(tasks: list[Task], columns) -> None:
    """A ValueError naming each missing label column, its task and close matches."""
    present = set(columns)
    missing = [t for t in tasks if t.label not in present]
    if not missing:
        return
    columns = [str(c) for c in columns]
    described = []
    for task in missing:
        text = f"'{task.label}' of task '{task.name}'"
        close = difflib.get_close_matches(task.label, columns, n=3, cutoff=0.7)
        if close:
            text += " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
        described.append(text)
    what = "Label column " if len(missing) == 1 else "Label columns "
    shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
    raise ValueError(
        f"{what}{', '.join(described)} "
        f"{'is' if len(missing) == 1 else 'are'} missing from the data; it has "
        f"columns [{shown}]. Add the missing column(s), point each task at its "
        "column (`Task(name, label=column)`), or pass labels=False to read "
        "features only (e.g. for `predict`)."
    )


def _expand_paths(paths: str | Iterable[str]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[str] = []
    for path in paths:
        matches = sorted(glob.glob(str(path)))
        if not matches:
            raise FileNotFoundError(f"No file matches '{path}'.")
        found.extend(matches)
    return found


def _from_frames(
    frames: Iterable[pd.DataFrame],
    model,
    batch_size: int,
    labels: bool | None,
    tasks,
) -> tf.data.Dataset:
    """Streams frames through `from_pandas` without holding all of them.

    Rows left over at the end of a frame (or file) are carried into the
    next one, so every batch but the last has `batch_size` rows, exactly as
    `from_pandas` on all the rows would give.
    """
    spec, tasks = _spec_and_tasks(model, tasks)
    frames = iter(frames)
    first = next(frames, None)
    if first is None or len(first) == 0:
        raise ValueError("The files hold no rows.")
    labels = _want_labels(labels, tasks, first.columns)
    example = from_pandas(first.head(2), spec, batch_size, labels=labels, tasks=tasks)

    def generate():
        carry = None
        for frame in _chain(first, frames):
            if carry is not None and len(carry):
                frame = pd.concat([carry, frame], ignore_index=True)
            full = len(frame) // batch_size * batch_size
            if full:
                yield from from_pandas(
                    frame.iloc[:full], spec, batch_size, labels=labels, tasks=tasks
                )
            carry = frame.iloc[full:]
        if carry is not None and len(carry):
            yield from from_pandas(carry, spec, batch_size, labels=labels, tasks=tasks)

    return tf.data.Dataset.from_generator(generate, output_signature=example.element_spec).prefetch(
        tf.data.AUTOTUNE
    )


def _chain(first, rest):
    yield first
    yield from rest


def _text_columns(spec: FeatureSpec) -> dict[str, type]:
    """Columns to read as text: string-valued categoricals and sequences.

    Without this, pandas parses a string feature whose values look like
    numbers (codes such as "33") as integers, which no longer match the
    fitted string vocabulary.
    """
    columns: dict[str, type] = {}
    for feature in spec.input_features:
        if isinstance(feature, Sequence) or (
            isinstance(feature, Categorical) and spec.dtype_of(feature.name) == "string"
        ):
            columns[feature.column] = str
    return columns


# pandas' default missing-value markers, kept for non-text CSV columns.
_PANDAS_MISSING_MARKERS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip


def from_csv(
    paths,
    model,
    batch_size: int = 1024,
    chunk_rows: int = 100_000,
    labels: bool | None = None,
    tasks=None,
    **read_csv_kwargs,
) -> tf.data.Dataset:
    """Preprocessed batches streamed from CSV files (globs allowed).

    Files are read `chunk_rows` at a time, so they need not fit in memory;
    rows keep file order (shuffle with `dataset.shuffle` on batches, or
    shuffle the files beforehand). Columns of string categorical and
    sequence features are read as text (a `dtype=` argument overrides
    that per column). `labels` and `tasks` work as in `from_pandas`
    (checked on the first chunk). Extra keyword arguments go to
    `pandas.read_csv`.
    """
    files = _expand_paths(paths)
    spec, _ = _spec_and_tasks(model, tasks)
    dtype = read_csv_kwargs.pop("dtype", None)
    if dtype is None or isinstance(dtype, dict):
        dtype = {**_text_columns(spec), **(dtype or {})}
    read_csv_kwargs["dtype"] = dtype
    custom_missing = "na_values" in read_csv_kwargs or "keep_default_na" in read_csv_kwargs
    text = set(_text_columns(spec))

    def frames():
        for path in files:
            kwargs = dict(read_csv_kwargs)
            if not custom_missing:
                # Text such as "NA" or "None" is a real category value: in
                # text columns only an empty cell is missing.
                header = pd.read_csv(path, nrows=0, **read_csv_kwargs).columns
                kwargs["keep_default_na"] = False
                kwargs["na_values"] = {
                    c: [""] if c in text else _PANDAS_MISSING_MARKERS for c in header
                }
            yield from pd.read_csv(path, chunksize=chunk_rows, **kwargs)

    return _from_frames(frames(), model, batch_size, labels, tasks)


def from_parquet(
    paths,
    model,
    batch_size: int = 1024,
    chunk_rows: int = 100_000,
    labels: bool | None = None,
    tasks=None,
) -> tf.data.Dataset:
    """Preprocessed batches streamed from Parquet files, row group by batch.

    `labels` and `tasks` work as in `from_pandas` (checked on the first
    chunk).
    """
    import pyarrow.parquet as pq

    files = _expand_paths(paths)

    def frames():
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()

    return _from_frames(frames(), model, batch_size, labels, tasks)
