"""keras_recsys: recommender models on Keras 3.

Describe features once (`FeatureSpec`), fit them from data (`adapt`), build a
model (`models.DeepFM(spec, tasks=[Task("click")])`), `compile`/`fit` it like
any Keras model, and `export` a SavedModel that TF Serving feeds with raw
feature values.
"""

from keras_recsys import data, datasets, export, layers, metrics, models
from keras_recsys.features import Categorical, Crossed, FeatureSpec, Numeric, Sequence
from keras_recsys.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "Categorical",
    "Crossed",
    "FeatureSpec",
    "Numeric",
    "Sequence",
    "Task",
    "data",
    "datasets",
    "export",
    "layers",
    "metrics",
    "models",
]
