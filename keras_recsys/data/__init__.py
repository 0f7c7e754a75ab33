"""Input pipelines: pandas, CSV and Parquet to preprocessed batches.

The `tf.data` pipelines (`from_pandas`, `from_csv`, `from_parquet`,
`next_item_dataset`, `to_numpy`, `preprocess`) import TensorFlow, so they
load on first use; `DeviceDataset` and `PreprocessedArrays` do not, so a
machine without TensorFlow trains from arrays preprocessed elsewhere.
"""

import importlib

from keras_recsys.data.arrays import PreprocessedArrays, preprocess
from keras_recsys.data.device import DeviceDataset

_TENSORFLOW_PIPELINES = {
    "from_csv": "keras_recsys.data.pipeline",
    "from_pandas": "keras_recsys.data.pipeline",
    "from_parquet": "keras_recsys.data.pipeline",
    "next_item_dataset": "keras_recsys.data.sequences",
    "to_numpy": "keras_recsys.data.sequences",
}


def __getattr__(name: str):
    if name == "multi_worker":  # MultiWorkerMirroredStrategy support (TensorFlow)
        return importlib.import_module("keras_recsys.data.multi_worker")
    if name in _TENSORFLOW_PIPELINES:
        return getattr(importlib.import_module(_TENSORFLOW_PIPELINES[name]), name)
    raise AttributeError(f"module 'keras_recsys.data' has no attribute {name!r}")


__all__ = [
    "DeviceDataset",
    "PreprocessedArrays",
    "from_csv",
    "from_pandas",
    "from_parquet",
    "multi_worker",
    "next_item_dataset",
    "preprocess",
    "to_numpy",
]
