"""DataFrames and files to `tf.data` pipelines of preprocessed batches."""

from __future__ import annotations

import difflib
from typing import Any

import pandas as pd
import tensorflow as tf

from keras_recsys.features.feature import Categorical, Sequence
from keras_recsys.features.raw import RaggedValues
from keras_recsys.features.spec import (
    FeatureSpec,
    check_file_columns,
    csv_frames,
    expand_paths,
    file_columns,
    parquet_frames,
    spec_columns,
)
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


def _needed_columns(spec: FeatureSpec, tasks: list[Task] | None, labels: bool) -> dict[str, str]:
    """Every column a shard must hold -> what reads it (for the missing-column error)."""
    needed = spec_columns(spec)
    for task in (tasks or []) if labels else []:
        needed.setdefault(task.label, f"task '{task.name}' (label)")
        for column, what in ((task.sample_weight, "sample_weight"), (task.mask, "mask")):
            if column is not None:
                needed.setdefault(column, f"task '{task.name}' ({what})")
    return needed


def _raw_element(frame: pd.DataFrame, spec: FeatureSpec, tasks, labels: bool) -> tuple:
    """(raw feature tensors[, labels[, sample weights]]) of one chunk, not preprocessed."""
    return tuple(t for t in frame_tensors(frame, spec, tasks, labels) if t is not None)


def _any_batch(spec: tf.TypeSpec) -> tf.TypeSpec:
    """The same type spec with an unknown batch (first) dimension."""
    if isinstance(spec, tf.RaggedTensorSpec):
        return tf.RaggedTensorSpec(
            [None] + spec.shape[1:].as_list(),
            spec.dtype,
            spec.ragged_rank,
            spec.row_splits_dtype,
        )
    return tf.TensorSpec([None] + spec.shape[1:].as_list(), spec.dtype)


def _from_files(
    files: list[str],
    frames_of,
    fmt: str,
    model,
    batch_size: int,
    labels: bool | None,
    tasks,
    shuffle_files: bool,
    cycle_length: int,
    seed: int | None,
    drop_remainder: bool,
    read_csv_kwargs: dict | None = None,
    num_rows: int | None = None,
) -> tf.data.Dataset:
    """Preprocessed batches read lazily from files, interleaved `cycle_length` at a time.

    Each file is a `tf.data` source of raw chunks (a Python generator over
    pandas/pyarrow chunks, validated like `from_pandas`); `interleave` takes
    one chunk from each of `cycle_length` open files in turn, `rebatch`
    cuts the stream into `batch_size` rows, and the preprocessing (lookups,
    hashing, normalization, padding) runs in TensorFlow in a parallel `map`.
    Memory holds a few chunks per open file, never a whole file.
    """
    if int(cycle_length) < 1:
        raise ValueError(f"cycle_length must be >= 1, got {cycle_length}.")
    spec, tasks = _spec_and_tasks(model, tasks)
    labels = _want_labels(labels, tasks, file_columns(files[0], fmt, read_csv_kwargs))
    # Every shard's header is checked before anything trains: a missing
    # column otherwise surfaces hours in, deep inside tf.data.
    needed = _needed_columns(spec, tasks, labels)
    for path in files:
        check_file_columns(path, fmt, needed, read_csv_kwargs)
    columns = list(needed)  # only these are read
    first = next((f for path in files for f in frames_of(path, columns) if len(f)), None)
    if first is None:
        raise ValueError(f"The files hold no rows: {files[:5]}.")
    example = _raw_element(first.head(2), spec, tasks, labels)
    signature = tf.nest.map_structure(
        _any_batch, tf.nest.map_structure(tf.type_spec_from_value, example)
    )
    del first

    def generate(path):
        path = path.decode() if isinstance(path, bytes) else str(path)
        for frame in frames_of(path, columns):
            if not len(frame):
                continue
            try:
                yield _raw_element(frame, spec, tasks, labels)
            except (KeyError, TypeError, ValueError) as error:
                message = error.args[0] if error.args else str(error)
                raise type(error)(f"In file '{path}': {message}") from error

    def open_file(path):
        return tf.data.Dataset.from_generator(generate, output_signature=signature, args=(path,))

    paths = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        paths = paths.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if cycle_length == 1:
        rows = paths.flat_map(open_file)
    else:
        rows = paths.interleave(
            open_file,
            cycle_length=int(cycle_length),
            block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    preprocessor = spec.preprocessor

    def preprocess(*element):
        features = preprocessor(element[0])
        return features if len(element) == 1 else (features,) + element[1:]

    batches = rows.rebatch(batch_size, drop_remainder=drop_remainder)
    if num_rows is not None:
        # Known from the files' metadata: Keras then knows the epoch length.
        full, rest = divmod(num_rows, batch_size)
        count = full + (1 if rest and not drop_remainder else 0)
        batches = batches.apply(tf.data.experimental.assert_cardinality(count))
    return batches.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


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


def from_csv(
    paths,
    model,
    batch_size: int = 1024,
    chunk_rows: int = 100_000,
    labels: bool | None = None,
    tasks=None,
    shuffle_files: bool = False,
    cycle_length: int = 1,
    seed: int | None = None,
    drop_remainder: bool = False,
    **read_csv_kwargs,
) -> tf.data.Dataset:
    """Preprocessed batches streamed from CSV shards (a file, a directory, globs).

    Files are read lazily, `chunk_rows` rows at a time, so the shards need
    not fit in memory. With the defaults rows keep file order and the
    batches equal `from_pandas` on the concatenated rows; `cycle_length > 1`
    reads that many files at once, interleaving their chunks, and
    `shuffle_files` reorders the files every epoch (for row-level mixing add
    `dataset.shuffle` on the batches, or shuffle rows when writing the
    shards). Every shard's header is checked up front: a missing column is
    an error naming the file and the column. Columns of string categorical
    and sequence features are read as text (a `dtype=` argument overrides
    that per column), where only an empty cell is missing. `labels` and
    `tasks` work as in `from_pandas`. Extra keyword arguments go to
    `pandas.read_csv`.

    The preprocessing runs in TensorFlow (`Dataset.map`); parsing stays in
    pandas, which validates raw values with the same errors as
    `from_pandas` (a TF `CsvDataset` would not: it cannot parse list
    cells or tell a category "NA" from a missing value).

    Example:

    >>> train = kr.data.from_csv("data/train/*.csv", model, batch_size=4096,
    ...                          shuffle_files=True, cycle_length=4)
    """
    files = expand_paths(paths)
    spec, _ = _spec_and_tasks(model, tasks)
    text = set(_text_columns(spec))

    def frames_of(path, columns):
        return csv_frames(path, chunk_rows, text, read_csv_kwargs, usecols=columns)

    return _from_files(
        files,
        frames_of,
        "csv",
        model,
        batch_size,
        labels,
        tasks,
        shuffle_files,
        cycle_length,
        seed,
        drop_remainder,
        read_csv_kwargs,
    )


def from_parquet(
    paths,
    model,
    batch_size: int = 1024,
    chunk_rows: int = 100_000,
    labels: bool | None = None,
    tasks=None,
    shuffle_files: bool = False,
    cycle_length: int = 1,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Preprocessed batches streamed from Parquet shards (a file, a directory, globs).

    Read lazily by record batches of at most `chunk_rows` rows, only the
    columns the spec and tasks read. Ordering, interleaving
    (`cycle_length`, `shuffle_files`), the up-front column check and
    `labels`/`tasks` work as in `from_csv`.

    Example:

    >>> train = kr.data.from_parquet("data/train/", model, batch_size=4096, cycle_length=4)
    """
    import pyarrow.parquet as pq

    files = expand_paths(paths)
    num_rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)

    def frames_of(path, columns):
        return parquet_frames(path, chunk_rows, columns)

    return _from_files(
        files,
        frames_of,
        "parquet",
        model,
        batch_size,
        labels,
        tasks,
        shuffle_files,
        cycle_length,
        seed,
        drop_remainder,
        num_rows=num_rows,
    )
