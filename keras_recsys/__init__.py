"""keras_recsys: recommender models on Keras 3.

Describe features once (`FeatureSpec`), fit them from data (`adapt`), build a
model (`models.DeepFM(spec, tasks=[Task("click")])`), `compile`/`fit` it like
any Keras model, and `export` a SavedModel that TF Serving feeds with raw
feature values.
"""

import importlib

from keras_recsys import (
    callbacks,
    datasets,
    distribution,
    evaluation,
    export,
    heads,
    layers,
    metrics,
    models,
    training,
)
from keras_recsys.features import (
    Categorical,
    Crossed,
    FeatureSpec,
    Numeric,
    Sequence,
    Timestamps,
)
from keras_recsys.tasks import Task

__version__ = "0.1.0"


def __getattr__(name: str):
    # `data` (tf.data pipelines) imports TensorFlow; loading it on first use
    # keeps `import keras_recsys` free of TensorFlow, so that models train on
    # JAX or PyTorch from already preprocessed arrays on hosts without it.
    if name == "data":
        return importlib.import_module("keras_recsys.data")
    # `tuning` imports keras-tuner, which only searches need.
    if name == "tuning":
        return importlib.import_module("keras_recsys.tuning")
    raise AttributeError(f"module 'keras_recsys' has no attribute {name!r}")


__all__ = [
    "Categorical",
    "Crossed",
    "FeatureSpec",
    "Numeric",
    "Sequence",
    "Timestamps",
    "Task",
    "callbacks",
    "data",
    "datasets",
    "distribution",
    "evaluation",
    "export",
    "heads",
    "layers",
    "metrics",
    "models",
    "training",
    "tuning",
]
