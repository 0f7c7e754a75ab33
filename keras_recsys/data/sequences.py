"""Input pipelines for next-item models: whole sequences in, (inputs, targets) out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_recsys.data.pipeline import from_pandas
from keras_recsys.features.spec import FeatureSpec


def _longer_spec(spec: FeatureSpec, name: str, extra: int) -> FeatureSpec:
    """A copy of `spec` whose sequence `name` keeps `extra` more items."""
    config = spec.get_config()
    for item in config["features"]:
        if item["config"]["name"] == name:
            item["config"]["max_length"] += extra
    return FeatureSpec.from_config(config)


def next_item_dataset(
    df: pd.DataFrame,
    model,
    batch_size: int = 256,
    shuffle: bool = False,
    seed: int | None = None,
    drop_remainder: bool = False,
    column: str | None = None,
    timestamp_column: str | None = None,
) -> tf.data.Dataset:
    """`(inputs, targets)` batches for training a next-item model on whole sequences.

    Each row's sequence (the model's history feature, e.g. the training part
    of a leave-one-out split) is preprocessed to `max_length + 1` ids, then
    split the way the model trains (`model.target_style`):

    * "shifted" (SASRec, GRU4Rec): inputs = ids[:-1], targets = ids[1:], so
      every position predicts the item after it and the inputs sit at the
      same positions as a `max_length` history at serving time;
    * "cloze" (BERT4Rec): inputs = targets = the latest `max_length` ids; the
      model masks positions itself.

    Targets are internal ids with 0 where there is no target (padding).
    `column`: the column holding the sequences when it is not the history
    feature's (e.g. "item_id", the training frame of `leave_one_out`);
    `timestamp_column` likewise for a model that reads timestamps (e.g.
    "timestamp"). The timestamps are sliced like the inputs.

    Example:

    >>> train, valid, test = dataset.leave_one_out()
    >>> data = kr.data.next_item_dataset(train, model, shuffle=True, column="item_id")
    >>> model.fit(data, epochs=10)
    """
    name = model.history_feature
    time_name = getattr(model, "timestamp_feature", None)
    renames = {column: model.spec[name].column}
    if time_name is not None:
        renames[timestamp_column] = model.spec[time_name].column
    renames = {old: new for old, new in renames.items() if old is not None and old != new}
    if renames:
        missing = [old for old in renames if old not in df.columns]
        if missing:
            raise KeyError(f"Columns {missing} are not in the data: {list(df.columns)[:12]}.")
        kept = [c for c in df.columns if c not in renames and c not in renames.values()]
        df = df[kept + list(renames)].rename(columns=renames)
    # The timestamps follow their sequence's max_length.
    spec = _longer_spec(model.spec, name, 1)
    dataset = from_pandas(
        df,
        spec,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        labels=False,
        drop_remainder=drop_remainder,
    )

    def split(features):
        timestamps = None if time_name is None else features[time_name]
        inputs, targets = model.training_pair(features[name], timestamps)
        return {**features, **inputs}, targets

    return dataset.map(split, num_parallel_calls=tf.data.AUTOTUNE)


def to_numpy(df: pd.DataFrame, model, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """The preprocessed features of a DataFrame as NumPy arrays (e.g. evaluation queries)."""
    parts: dict[str, list] = {}
    for batch in from_pandas(df, model, batch_size=batch_size, labels=False):
        for key, value in batch.items():
            parts.setdefault(key, []).append(value.numpy())
    return {key: np.concatenate(value) for key, value in parts.items()}
